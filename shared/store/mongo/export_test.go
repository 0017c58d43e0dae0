package mongo

// Test helpers for the external test package.
var (
	SharedFerret = sharedFerret
	OpenTest     = openTest
)
