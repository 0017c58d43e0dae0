package store_test

import (
	"encoding/base64"
	"errors"
	"testing"
	"time"

	"github.com/flowgate/flowgate/shared/store"
	"github.com/flowgate/flowgate/shared/testclock"
)

func TestKeysetCursorRoundTrip(t *testing.T) {
	at := testclock.Date(2026, 3, 4, 5, 6, 7).Add(123456789 * time.Nanosecond)
	ts, id, err := store.DecodeKeysetCursor(store.EncodeKeysetCursor(at, "run.a|b"))
	if err != nil || !ts.Equal(at) || id != "run.a|b" {
		t.Fatalf("round trip: %v %q %v", ts, id, err)
	}
	// A cursor of the old MongoDB run codec (milliseconds) still reads.
	old := base64.RawURLEncoding.EncodeToString([]byte("1772600767123|r1"))
	ts, id, err = store.DecodeKeysetCursor(old)
	if err != nil || ts.UnixMilli() != 1772600767123 || id != "r1" {
		t.Fatalf("millisecond cursor: %v %q %v", ts, id, err)
	}
	for _, bad := range []string{"", "!!", base64.RawURLEncoding.EncodeToString([]byte("x|r")),
		base64.RawURLEncoding.EncodeToString([]byte("12|")), base64.RawURLEncoding.EncodeToString([]byte("-5|r"))} {
		_, _, err := store.DecodeKeysetCursor(bad)
		var inv *store.InvalidError
		if !errors.As(err, &inv) || inv.Field != "cursor" {
			t.Errorf("%q: %v, want an invalid cursor", bad, err)
		}
	}
}
