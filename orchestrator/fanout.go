package orchestrator

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/flowgate/flowgate/shared/bus"
	"github.com/flowgate/flowgate/shared/events"
	"github.com/flowgate/flowgate/shared/store"
)

// fanOut is one trigger's fan-out under way: its audience read batch by
// batch (a slice of the users list, or contacts streamed from the store in
// id order), each batch's runs launched (launchBatch) and counted, and its
// progress checkpointed in the trigger with a version check.
//
// A crash anywhere resumes at the last checkpoint: the unfinished batch is
// redone, which creates no second run (run ids are deterministic and
// CreateRuns returns existing runs) and sends no second message (message ids
// are deterministic, publishes are de-duplicated, and a run that already
// started is not started again). A cancel (status cancelled) is seen before
// each batch and at each checkpoint; it takes effect at a batch boundary:
// the batches under way finish (their messages published, their runs
// stored) and are counted, and none starts after, so the counters equal
// the stored runs and no published message lacks its run.
type fanOut struct {
	o    *Orchestrator
	t    events.Trigger
	trig store.Trigger // as last stored by this fan-out
	cp   checkpoint    // written by the checkpoints, one at a time
	aud  *audience
	// version is the flow version of every run of the fan-out (pinned in
	// the checkpoint): read by the batches under way while a checkpoint
	// writes cp.
	version int
	// fresh: no attempt at this trigger came before, so none of its runs
	// can exist yet (launchBatch's fresh path).
	fresh bool
}

// batch is one batch of a fan-out's audience, as read.
type batch struct {
	contacts []store.Contact
	counts   store.TriggerCounters
	next     string
	last     bool
	err      error
}

// errTriggerTaken: the trigger changed under the fan-out (another replica
// took it over after a stall); this one steps back and looks again later.
var errTriggerTaken = errors.New("trigger changed by another fan-out")

// errFanOutStopped: the trigger was cancelled or finished meanwhile.
var errFanOutStopped = errors.New("fan-out stopped")

// fanOutDepth is how many batches of one fan-out are under way at once.
const fanOutDepth = 2

// newFanOut prepares the fan-out of trig from its checkpoint: the counters
// are brought back to the checkpoint (a resumed fan-out redoes the batch
// after it) and the flow version is pinned.
func (o *Orchestrator) newFanOut(ctx context.Context, t events.Trigger, trig store.Trigger, fresh bool) (*fanOut, error) {
	cp, err := decodeCheckpoint(trig.Cursor)
	if err != nil {
		return nil, bus.Permanent(err)
	}
	aud, err := newAudience(t)
	if err != nil {
		return nil, bus.Permanent(err)
	}
	if d, ok := cp.correction(trig.Counters); ok {
		if err := o.store.IncrTriggerCounters(ctx, t.BotID, t.ID, d); err != nil {
			return nil, err
		}
	}
	if cp.FlowVersion == 0 {
		_, v, err := o.definition(ctx, t.BotID, t.FlowID, 0)
		if err != nil {
			if errors.Is(err, store.ErrNotFound) {
				return nil, bus.Permanent(err)
			}
			return nil, err
		}
		cp.FlowVersion = v
	}
	return &fanOut{o: o, t: t, trig: trig, cp: cp, aud: aud, fresh: fresh, version: cp.FlowVersion}, nil
}

// run fans the trigger out: in one step when its audience is one batch (a
// dispatch to one user, a short list), else as a pipeline of batches.
func (f *fanOut) run(ctx context.Context, m bus.Message) error {
	if f.aud.oneBatch(f.o.cfg.FanOutBatch) {
		return stoppedIsNil(f.once(ctx))
	}
	return f.pipeline(ctx, m)
}

// read reads the batch after `after`.
func (f *fanOut) read(ctx context.Context, after string) batch {
	var b batch
	b.contacts, b.counts, b.next, b.last, b.err = f.aud.next(ctx, f.o, after, f.o.cfg.FanOutBatch)
	return b
}

// start creates and starts the runs of the batch's contacts (launchBatch).
// Contacts that must not be messaged were already left out (and counted)
// by the audience. Every run of the batch counts, new or found: a batch
// found half done was taken back from the counters (newFanOut).
func (f *fanOut) start(ctx context.Context, b *batch) error {
	if len(b.contacts) == 0 {
		return nil
	}
	rs := batchRuns(f.t, f.version, b.contacts)
	b.counts.RunsCreated += int64(len(rs))
	if f.fresh {
		return f.o.launchBatch(ctx, f.t, rs, b.contacts, nil)
	}
	held, err := f.o.lockBatch(rs)
	if err != nil {
		return err
	}
	defer held.releaseAll()
	runs, created, err := f.o.store.CreateRuns(ctx, rs)
	if err != nil {
		return err
	}
	held.keepCreated(rs, runs)
	return f.o.launchBatch(ctx, f.t, runs, b.contacts, created)
}

// count adds a batch's counts to the trigger.
func (f *fanOut) count(ctx context.Context, b batch) error {
	if b.counts.Targeted == 0 {
		return nil
	}
	return f.o.store.IncrTriggerCounters(ctx, f.t.BotID, f.t.ID, b.counts)
}

// checkpoint counts a started batch and stores where the next one starts
// (or that the fan-out is done), in one write with a version check. A
// trigger changed meanwhile still gets the batch's counts (its runs are
// stored); then a trigger cancelled or paused stops the fan-out
// (errFanOutStopped), one taken over by another replica makes this one
// step back (errTriggerTaken).
func (f *fanOut) checkpoint(ctx context.Context, b batch) error {
	cp := f.next(b)
	next := f.trig
	next.Status = checkpointStatus(b)
	next.Cursor = cp.encode()
	next.UpdatedAt = time.Now().UTC()
	updated, err := f.o.store.CheckpointTrigger(ctx, next, b.counts)
	if errors.Is(err, store.ErrVersionConflict) {
		return f.refused(ctx, b)
	}
	if err != nil {
		return err
	}
	f.cp, f.trig = cp, updated
	return nil
}

// next is the fan-out's checkpoint once batch b started.
func (f *fanOut) next(b batch) checkpoint {
	cp := f.cp
	cp.After = b.next
	cp.add(b.counts)
	return cp
}

// checkpointStatus is the trigger's status once batch b started.
func checkpointStatus(b batch) string {
	if b.last {
		return store.TriggerDone
	}
	return store.TriggerFanningOut
}

// checkpointOf is checkpoint's write for CheckpointTriggers, which stores
// several fan-outs' checkpoints at once (launchTogether).
func (f *fanOut) checkpointOf(b batch) store.TriggerCheckpoint {
	return store.TriggerCheckpoint{BotID: f.trig.BotID, ID: f.trig.ID, Version: f.trig.Version,
		Status: checkpointStatus(b), Cursor: f.next(b).encode(), Delta: b.counts}
}

// refused handles a checkpoint refused for the trigger's version: the
// batch is counted all the same, and the trigger as it is now says
// whether the fan-out stops (cancelled, paused) or steps back (taken over).
func (f *fanOut) refused(ctx context.Context, b batch) error {
	if err := f.count(ctx, b); err != nil {
		return err
	}
	cur, err := f.o.store.GetTrigger(ctx, f.t.BotID, f.t.ID)
	if err != nil {
		return err
	}
	if stopsFanOut(cur.Status) {
		return errFanOutStopped
	}
	return bus.RetryAfter(errTriggerTaken, 10*time.Second)
}

// once is the fan-out of an audience of one batch: read, start, checkpoint.
func (f *fanOut) once(ctx context.Context) error {
	b := f.read(ctx, f.cp.After)
	if b.err != nil {
		return b.err
	}
	if err := f.o.awaitDrain(ctx, f.t, len(b.contacts), func() uint64 { return 0 }); err != nil {
		return err
	}
	if err := f.start(ctx, &b); err != nil {
		return err
	}
	return f.checkpoint(ctx, b)
}

// pipeline is the fan-out of a large audience. The next batch is read (and
// its contacts' last_request stored) while the current one starts:
// reading uses a reader connection and the write is small, so the store's
// writer and the bus are kept busy. Two batches are under way at once: the
// next one starts while the previous one is still storing. Checkpoints
// stay in order: each batch's checkpoint is stored after its own start and
// after the previous batch's checkpoint (a chain of done channels), so a
// crash resumes at the last checkpoint and redoes at most the two batches
// after it.
//
// A failure anywhere (or a cancel met at a checkpoint) stops the prefetch
// and the start of further batches. A batch that has begun runs to its end
// under the handler's own context, whatever happens to the others: it
// publishes its messages before it stores its runs, so stopping it in
// between would leave delivered messages with no run (and a cancelled
// trigger is never resumed to repair it). A prefetched batch that a crash
// or a cancel leaves unused only had its contacts' last_request written,
// which the batch's redo writes again.
func (f *fanOut) pipeline(ctx context.Context, m bus.Message) error {
	// A long fan-out keeps its trigger message: without this JetStream would
	// hand it to another replica after AckWait (4 s for triggers, so that a
	// dead orchestrator's fan-out is taken over quickly). bus.Consume sends
	// the same heartbeat for every message it holds; this one keeps the
	// fan-out's guarantee whatever consumes it.
	stop := keepInProgress(m, time.Second)
	defer stop()
	runCtx := ctx
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	fetch := func(after string) chan batch {
		ch := make(chan batch, 1)
		go func() { ch <- f.read(ctx, after) }()
		return ch
	}
	pending := fetch(f.cp.After)
	defer func() {
		if pending != nil {
			<-pending // no read or write of this fan-out outlives it
		}
	}()
	sem := make(chan struct{}, fanOutDepth)
	// underway counts the contacts of the batches started and not yet
	// published, for the back-pressure bound (awaitDrain).
	var underway atomic.Int64
	// prev is the done channel of the last batch started. Each done channel
	// is read once: by the next batch, or by whoever returns (end, or the
	// last batch's wait), so no batch of this fan-out outlives it.
	var prev chan error
	for n := 1; ; n++ {
		var b batch
		select {
		case b = <-pending:
		case <-ctx.Done(): // a batch under way failed
			return end(prev, ctx.Err())
		}
		pending = nil
		if b.err != nil {
			return end(prev, b.err)
		}
		if !b.last {
			pending = fetch(b.next)
		}
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			return end(prev, ctx.Err())
		}
		if n > 1 {
			// Waiting for the slot let the batch before finish: a cancel
			// or pause its checkpoint met is seen here, before another one
			// starts.
			cur, err := f.o.store.GetTrigger(ctx, f.t.BotID, f.t.ID)
			if err == nil && stopsFanOut(cur.Status) {
				err = errFanOutStopped
			}
			if err != nil {
				<-sem
				return end(prev, err)
			}
		}
		// Back-pressure: the batch starts once the account's bulk lane
		// has room for it (QueueSeconds of its rate).
		if err := f.o.awaitDrain(ctx, f.t, len(b.contacts), func() uint64 { return uint64(underway.Load()) }); err != nil {
			<-sem
			return end(prev, err)
		}
		done := make(chan error, 1)
		underway.Add(int64(len(b.contacts)))
		go func(b batch, before chan error) {
			defer func() { <-sem }()
			err := f.start(runCtx, &b)
			underway.Add(-int64(len(b.contacts))) // published (or failed)
			var berr error
			if before != nil {
				berr = <-before
			}
			switch {
			case err != nil:
				// The chain carries the first failure; a stop (cancel) of
				// the batch before does not hide this batch's failure,
				// which the redelivery must repair (finishCancelled).
				if berr != nil && !errors.Is(berr, errFanOutStopped) {
					err = berr
				}
			case berr != nil:
				// The fan-out stops before this batch's checkpoint (a
				// cancel, or a failure of the batch before), but its runs
				// are stored: they are counted, so that the counters equal
				// the stored runs. A fan-out resumed after a failure takes
				// counts past its checkpoint back (correction); one taken
				// over by another replica is that replica's to count.
				if !errors.Is(berr, errTriggerTaken) {
					if cerr := f.count(runCtx, b); cerr != nil {
						berr = cerr
					}
				}
				err = berr
			default:
				err = f.checkpoint(runCtx, b)
			}
			if err != nil {
				cancel()
			}
			done <- err
		}(b, prev)
		prev = done
		if b.last {
			err := <-prev
			prev = nil
			return stoppedIsNil(err)
		}
		m.InProgress()
	}
}

// end waits for the batches under way and returns the first failure of
// the chain, or err.
func end(prev chan error, err error) error {
	if prev != nil {
		if perr := <-prev; perr != nil && !errors.Is(perr, context.Canceled) {
			err = perr
		}
	}
	return stoppedIsNil(err)
}

func stoppedIsNil(err error) error {
	if errors.Is(err, errFanOutStopped) {
		return nil
	}
	return err
}

// keepInProgress tells JetStream every interval that m is still being
// handled, until the returned stop is called.
func keepInProgress(m bus.Message, interval time.Duration) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(interval)
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-tick.C:
				m.InProgress()
			}
		}
	}()
	return func() { close(done); wg.Wait() }
}
