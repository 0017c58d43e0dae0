package orchestrator

import (
	"context"
	"sync"
	"time"

	"github.com/flowgate/flowgate/shared/store"
)

// counterWriteTimeout bounds one merged counter write: it carries several
// callers' increments, so it does not end with any caller's context.
const counterWriteTimeout = 30 * time.Second

// counterBatcher merges concurrent increments of trigger counters: while
// one write is under way, the increments that arrive are summed per
// trigger and go out together in the next write. A broadcast's delivery
// reports (three per run for a three-message flow) then cost one store
// write per trigger per round instead of one each.
//
// Each caller returns once the write that carried its increment is done,
// with that write's error; a caller never abandons an increment it handed
// over (its message is acked only after its count is durable, and a failed
// write is retried by redelivery as before).
type counterBatcher struct {
	incr func(ctx context.Context, botID, triggerID string, d store.TriggerCounters) error

	mu       sync.Mutex
	pending  map[[2]string]*pendingIncr
	flushing bool
}

type pendingIncr struct {
	delta store.TriggerCounters
	done  chan struct{}
	err   error
}

func newCounterBatcher(incr func(ctx context.Context, botID, triggerID string, d store.TriggerCounters) error) *counterBatcher {
	return &counterBatcher{incr: incr, pending: map[[2]string]*pendingIncr{}}
}

// add adds d to the trigger's counters and returns when it is stored. It
// waits also when ctx ends: the increment was handed over and will be
// written, and the caller must not be told otherwise.
func (b *counterBatcher) add(_ context.Context, botID, triggerID string, d store.TriggerCounters) error {
	k := [2]string{botID, triggerID}
	b.mu.Lock()
	p := b.pending[k]
	if p == nil {
		p = &pendingIncr{done: make(chan struct{})}
		b.pending[k] = p
	}
	addCounters(&p.delta, d)
	if !b.flushing {
		b.flushing = true
		go b.flush()
	}
	b.mu.Unlock()
	<-p.done
	return p.err
}

// flush writes what is pending, and what arrived meanwhile, until nothing
// is left. It runs on its own goroutine, so no caller waits for others'
// writes after its own is done.
func (b *counterBatcher) flush() {
	b.mu.Lock()
	for len(b.pending) > 0 {
		batch := b.pending
		b.pending = make(map[[2]string]*pendingIncr, len(batch))
		b.mu.Unlock()
		// One write per trigger, all at once: the store's group commit
		// puts them in one transaction.
		var wg sync.WaitGroup
		for k, q := range batch {
			wg.Add(1)
			go func() {
				defer wg.Done()
				ctx, cancel := context.WithTimeout(context.Background(), counterWriteTimeout)
				q.err = b.incr(ctx, k[0], k[1], q.delta)
				cancel()
				close(q.done)
			}()
		}
		wg.Wait()
		b.mu.Lock()
	}
	b.flushing = false
	b.mu.Unlock()
}

// addCounters adds d to c.
func addCounters(c *store.TriggerCounters, d store.TriggerCounters) {
	c.Targeted += d.Targeted
	c.RunsCreated += d.RunsCreated
	c.Skipped += d.Skipped
	c.Sent += d.Sent
	c.Delivered += d.Delivered
	c.Failed += d.Failed
	if len(d.SkipReasons) > 0 {
		if c.SkipReasons == nil {
			c.SkipReasons = make(map[string]int64, len(d.SkipReasons))
		}
		for r, n := range d.SkipReasons {
			c.SkipReasons[r] += n
		}
	}
}
