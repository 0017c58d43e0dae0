//go:build race

package pacer_test

const raceEnabled = true
