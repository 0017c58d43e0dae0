package webhooks

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/flowgate/flowgate/shared/testclock"
)

// The read cache serves an entry for its TTL only, holds at most two
// generations of max entries, and never caches a failed read.
func TestReadCacheBoundsAndExpiry(t *testing.T) {
	t0 := testclock.Date(2026, 3, 1, 12, 0, 0)
	c := newReadCache[int](5*time.Second, 4)
	c.put("a", 1, t0)
	v, ok := c.get("a", t0.Add(4999*time.Millisecond))
	require.True(t, ok)
	require.Equal(t, 1, v)
	_, ok = c.get("a", t0.Add(5*time.Second))
	require.False(t, ok, "expired after the TTL")

	// Eight more entries: a generation is replaced when it holds four, so
	// "a" and 0–2 (the first one) are dropped and 3–7 kept.
	for i := range 8 {
		c.put(fmt.Sprint(i), i, t0)
	}
	_, ok = c.get("a", t0)
	require.False(t, ok, "dropped with its generation")
	for i := range 8 {
		_, ok := c.get(fmt.Sprint(i), t0)
		require.Equal(t, i >= 3, ok, "entry %d", i)
	}
	require.LessOrEqual(t, len(c.cur)+len(c.old), 8)

	loads := 0
	load := func() (int, error) { loads++; return 0, errors.New("store down") }
	_, err := c.read("b", func(int) bool { return true }, load)
	require.Error(t, err)
	_, err = c.read("b", func(int) bool { return true }, load)
	require.Error(t, err)
	require.Equal(t, 2, loads, "a failed read is not cached")

	var off *readCache[int] = newReadCache[int](-1, 4)
	require.Nil(t, off)
	off.put("x", 1, t0)
	_, ok = off.get("x", t0)
	require.False(t, ok, "a nil cache caches nothing")
}
