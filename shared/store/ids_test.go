package store

import (
	"regexp"
	"testing"
	"time"
)

func TestNewContactIDShapeAndOrder(t *testing.T) {
	hex24 := regexp.MustCompile(`^[0-9a-f]{24}$`)
	seen := map[string]bool{}
	for i := 0; i < 10000; i++ {
		id := NewContactID()
		if !hex24.MatchString(id) {
			t.Fatalf("id %q is not 24 hex characters", id)
		}
		if seen[id] {
			t.Fatalf("id %q repeated", id)
		}
		seen[id] = true
	}
	// Ids of a later second sort after ids of an earlier one.
	a, b := newObjectID(time.Unix(1_700_000_000, 0)), newObjectID(time.Unix(1_700_000_001, 0))
	if !(a < b) {
		t.Fatalf("ids do not ascend with time: %s !< %s", a, b)
	}
}
