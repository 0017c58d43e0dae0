package main

import (
	"errors"
	"testing"
)

func TestWritesBetween(t *testing.T) {
	before := map[string]uint64{"A": 10, "B": 5}
	after := map[string]uint64{"A": 30, "B": 5, "C": 4}
	if got, want := writesBetween(before, after, nil, nil, 40).String(), "`A` 0.500, `C` 0.100"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	if got := writesBetween(before, before, nil, nil, 40).String(); got != "none" {
		t.Errorf("nothing stored: got %q", got)
	}
	if got := writesBetween(nil, after, errors.New("no server"), nil, 40).String(); got != "not measured (no server <nil>)" {
		t.Errorf("an error: got %q", got)
	}
}
