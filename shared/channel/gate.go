package channel

import (
	"context"
	"sync"
	"time"

	"github.com/flowgate/flowgate/shared/events"
)

// gate bounds one sender account's sends under way in this process (taken
// before the pacer's slot, held until the send is recorded) and decides
// which lane's message goes next when the account is busy: the high lane
// first, but after highPerBulk high grants in a row a waiting bulk message
// goes, so neither lane starves.
type gate struct {
	mu          sync.Mutex
	capacity    int
	used        int
	highPerBulk int
	highRun     int                // high grants in a row while bulk waited
	waiting     [2][]chan struct{} // FIFO per lane: 0 high, 1 bulk
}

func newGate(capacity, highPerBulk int) *gate {
	return &gate{capacity: max(1, capacity), highPerBulk: max(1, highPerBulk)}
}

func laneIndex(lane string) int {
	if lane == events.LaneBulk {
		return 1
	}
	return 0
}

// acquire takes one slot for lane, calling heartbeat every interval
// while it waits (the bundle stays with this worker: waiting is not
// failing).
func (g *gate) acquire(ctx context.Context, lane string, interval time.Duration, heartbeat func()) error {
	l := laneIndex(lane)
	g.mu.Lock()
	if g.used < g.capacity && len(g.waiting[0]) == 0 && len(g.waiting[1]) == 0 {
		g.used++
		g.mu.Unlock()
		return nil
	}
	ch := make(chan struct{})
	g.waiting[l] = append(g.waiting[l], ch)
	g.mu.Unlock()
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		select {
		case <-ch:
			return nil
		case <-tick.C:
			heartbeat()
		case <-ctx.Done():
			g.mu.Lock()
			for i, w := range g.waiting[l] {
				if w == ch {
					g.waiting[l] = append(g.waiting[l][:i:i], g.waiting[l][i+1:]...)
					g.mu.Unlock()
					return ctx.Err()
				}
			}
			g.mu.Unlock()
			// Granted meanwhile: give the slot back.
			g.release()
			return ctx.Err()
		}
	}
}

// release gives a slot back and hands it to the next waiter.
func (g *gate) release() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.used--
	for g.used < g.capacity {
		high, bulk := len(g.waiting[0]) > 0, len(g.waiting[1]) > 0
		var l int
		switch {
		case !high && !bulk:
			return
		case high && bulk && g.highRun >= g.highPerBulk:
			l, g.highRun = 1, 0
		case high:
			l = 0
			if bulk {
				g.highRun++
			}
		default:
			l, g.highRun = 1, 0
		}
		ch := g.waiting[l][0]
		g.waiting[l] = g.waiting[l][1:]
		g.used++
		close(ch)
	}
}
