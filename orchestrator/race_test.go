//go:build race

package orchestrator

// raceEnabled: the race detector slows everything ~10x; the heaviest
// tests scale their size down under it.
const raceEnabled = true
