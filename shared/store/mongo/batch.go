package mongo

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/flowgate/flowgate/shared/store"
)

// committer gathers hot-path writes and hands them to flush in batches: a
// batch closes when maxOps operations are gathered or maxWait has passed
// since its first one. Up to cfg.flushers batches are written at once, so a
// slow round trip does not stall the next batch. flush must complete every
// operation of its batch.
type committer[T pendingOp] struct {
	in       chan T
	flush    func(ctx context.Context, batch []T)
	maxWait  time.Duration
	maxOps   int
	timeout  time.Duration
	slots    chan struct{}
	mu       sync.RWMutex
	closed   bool
	loopDone chan struct{}

	// batches and ops count what was flushed (tests and benchmarks read them).
	batches, ops atomic.Int64
}

// pendingOp is one queued write: the committer completes it exactly once.
type pendingOp interface {
	complete(err error)
}

// result is embedded in every op: the caller waits on it.
type result struct{ done chan error }

func newResult() result { return result{done: make(chan error, 1)} }

func (r result) complete(err error) { r.done <- err }

// wait returns the op's result, or ctx's error if ctx ends first (the write
// may then still happen).
func (r result) wait(ctx context.Context) error {
	select {
	case err := <-r.done:
		return err
	case <-ctx.Done():
		return fmt.Errorf("mongo: waiting for group commit (the write may still be applied): %w", ctx.Err())
	}
}

func newCommitter[T pendingOp](cfg config, flush func(context.Context, []T)) *committer[T] {
	c := &committer[T]{
		in:       make(chan T, cfg.maxOps),
		flush:    flush,
		maxWait:  cfg.maxWait,
		maxOps:   cfg.maxOps,
		timeout:  cfg.opTimeout,
		slots:    make(chan struct{}, cfg.flushers),
		loopDone: make(chan struct{}),
	}
	go c.loop()
	return c
}

// submit queues op; it fails if the store is closed or ctx ends first.
func (c *committer[T]) submit(ctx context.Context, op T) error {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if c.closed {
		return fmt.Errorf("%w: store is closed", store.ErrUnavailable)
	}
	select {
	case c.in <- op:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (c *committer[T]) loop() {
	var flushing sync.WaitGroup
	defer close(c.loopDone)
	defer flushing.Wait()
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	for {
		first, ok := <-c.in
		if !ok {
			return
		}
		batch := []T{first}
		open := true
		timer.Reset(c.maxWait)
	gather:
		for len(batch) < c.maxOps {
			select {
			case op, ok := <-c.in:
				if !ok {
					open = false
					break gather
				}
				batch = append(batch, op)
			case <-timer.C:
				break gather
			}
		}
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
		c.batches.Add(1)
		c.ops.Add(int64(len(batch)))
		c.slots <- struct{}{}
		flushing.Add(1)
		go func(batch []T) {
			defer func() { <-c.slots; flushing.Done() }()
			ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
			defer cancel()
			c.flush(ctx, batch)
		}(batch)
		if !open {
			return
		}
	}
}

// close writes what is queued and waits for every batch to finish.
func (c *committer[T]) close() {
	c.mu.Lock()
	if !c.closed {
		c.closed = true
		close(c.in)
	}
	c.mu.Unlock()
	<-c.loopDone
}

// rounds splits ops so that no key occurs twice in one round, keeping each
// key's operations in submission order. An unordered bulk write may apply
// its operations in any order; rounds keep two writes to one record in the
// order their callers made them.
func rounds[T any](ops []T, key func(T) string) [][]T {
	seen := make(map[string]int, len(ops))
	var out [][]T
	for _, op := range ops {
		k := key(op)
		r := seen[k]
		seen[k] = r + 1
		if r == len(out) {
			out = append(out, nil)
		}
		out[r] = append(out[r], op)
	}
	return out
}
