package mongo

// Test helpers for the external test package.
var (
	SharedFerret = sharedFerret
	OpenTest     = openTest
)

// FerretBulkLimit is the most updates the adapter sends FerretDB in one
// command.
const FerretBulkLimit = ferretBulkLimit
