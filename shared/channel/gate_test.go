package channel

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/flowgate/flowgate/shared/events"
)

// waitQueued waits until the gate has n waiters in all.
func waitQueued(t *testing.T, g *gate, n int) {
	t.Helper()
	require.Eventually(t, func() bool {
		g.mu.Lock()
		defer g.mu.Unlock()
		return len(g.waiting[0])+len(g.waiting[1]) == n
	}, 10*time.Second, time.Millisecond)
}

// With the gate full, waiting high sends go first, but after highPerBulk
// high grants in a row a waiting bulk send goes: the order of grants is
// fixed by the queue, whatever the timing.
func TestGateServesHighFirstAndKeepsBulkShare(t *testing.T) {
	g := newGate(1, 2)
	ctx := context.Background()
	require.NoError(t, g.acquire(ctx, events.LaneBulk, time.Hour, func() {}))
	granted := make(chan string, 16)
	queue := func(lane string, n int) {
		for range n {
			go func() {
				if err := g.acquire(ctx, lane, time.Hour, func() {}); err == nil {
					granted <- lane
				}
			}()
		}
	}
	queue(events.LaneBulk, 3)
	waitQueued(t, g, 3)
	queue(events.LaneHigh, 5)
	waitQueued(t, g, 8)
	var order []string
	for range 8 {
		g.release()
		order = append(order, <-granted)
	}
	require.Equal(t, []string{"high", "high", "bulk", "high", "high", "bulk", "high", "bulk"}, order)
}

// A cancelled waiter leaves the queue, and a slot granted to it as it gave
// up goes to the next one.
func TestGateCancelledWaiterGivesUp(t *testing.T) {
	g := newGate(1, 4)
	require.NoError(t, g.acquire(context.Background(), events.LaneHigh, time.Hour, func() {}))
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- g.acquire(ctx, events.LaneBulk, time.Hour, func() {}) }()
	waitQueued(t, g, 1)
	cancel()
	require.ErrorIs(t, <-errc, context.Canceled)
	waitQueued(t, g, 0)
	g.release()
	require.NoError(t, g.acquire(context.Background(), events.LaneBulk, time.Hour, func() {}), "the slot is free again")
}

// A waiter keeps its bundle: heartbeat is called while it waits.
func TestGateHeartbeatsWhileWaiting(t *testing.T) {
	g := newGate(1, 4)
	require.NoError(t, g.acquire(context.Background(), events.LaneHigh, time.Hour, func() {}))
	beats := make(chan struct{}, 100)
	done := make(chan error, 1)
	go func() {
		done <- g.acquire(context.Background(), events.LaneBulk, time.Millisecond, func() { beats <- struct{}{} })
	}()
	<-beats
	<-beats
	g.release()
	require.NoError(t, <-done)
}
