package webhooks

import (
	"errors"
	"fmt"
	"sync"
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

// A read that missed the cache just as another read of the key finished
// uses what that one cached instead of reading again (the deliveries of a
// broadcast's runs read their trigger once).
func TestReadCacheMissRacingAFinishedRead(t *testing.T) {
	c := newReadCache[int](time.Minute, 16)
	loads := 0
	load := func() (int, error) { loads++; return 7, nil }
	any := func(int) bool { return true }
	c.missed = func(key string) {
		c.missed = nil
		// Another delivery's read of the key, start to end, between this
		// read's miss and its flight.
		v, err := c.read(key, any, load)
		require.NoError(t, err)
		require.Equal(t, 7, v)
	}
	v, err := c.read("trigger", any, load)
	require.NoError(t, err)
	require.Equal(t, 7, v)
	require.Equal(t, 1, loads, "one load for both reads")
}

// A read that joins a load begun before what it needs was stored (a run
// read for an older version) reads again rather than use the older value.
func TestReadCacheJoinedLoadTooOld(t *testing.T) {
	c := newReadCache[int](time.Minute, 16)
	var mu sync.Mutex
	version := 1
	loading, release := make(chan struct{}), make(chan struct{})
	load := func() (int, error) {
		mu.Lock()
		v := version
		mu.Unlock()
		if v == 1 {
			close(loading) // read version 1; now slow to return
			<-release
		}
		return v, nil
	}
	leader := make(chan int)
	go func() {
		v, err := c.read("run", func(int) bool { return true }, load)
		require.NoError(t, err)
		leader <- v
	}()
	<-loading
	// The run is now stored at version 2; a delivery of that change reads
	// while the leader's load of version 1 is in flight.
	mu.Lock()
	version = 2
	mu.Unlock()
	joined := make(chan struct{})
	c.missed = func(string) { close(joined) }
	follower := make(chan int)
	go func() {
		v, err := c.read("run", func(v int) bool { return v >= 2 }, load)
		require.NoError(t, err)
		follower <- v
	}()
	<-joined
	time.Sleep(20 * time.Millisecond) // let the follower join the leader's flight
	close(release)
	require.Equal(t, 1, <-leader)
	require.Equal(t, 2, <-follower, "the follower's read is of version 2 or later")
}
