package orchestrator

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/flowgate/flowgate/orchestrator/flow"
	"github.com/flowgate/flowgate/shared/events"
	"github.com/flowgate/flowgate/shared/store"
)

// launchBatch starts the runs of a fan-out batch together: what launching
// them one by one would do, in a few bulk operations instead of a few per
// run.
//
//  1. (No "created" status event: a run's first change stands for it, and
//     webhook delivery sends "created" first.)
//  2. Cancel the contacts' other waiting runs on the same channel (one
//     query for the batch; a newer trigger takes over the conversation).
//  3. Run the interpreter for each run until it waits or ends (flow http
//     steps and hand-overs are performed inline, runs in parallel).
//  4. Commit the batch (commit): attributes, messages, publishes, runs.
//
// After a crash the batch is redone: the runs still in status created
// replay the same effects (JetStream drops the copies, the channel worker
// skips messages already sent), and runs already started are left alone.
// A run that changed meanwhile (a cancel) loses its version check and
// keeps what it became.
//
// created == nil is the fresh path: the runs are not stored yet, and no
// attempt came before (the trigger was stored by this one), so none of
// them can exist. Their first state is then inserted at the end (one
// CreateRuns) instead of being inserted as created and updated: half the
// run writes. A run that does exist by then (another replica took the
// trigger over) is left as it is; its effects were the same.
func (o *Orchestrator) launchBatch(ctx context.Context, t events.Trigger, runs []store.Run, contacts []store.Contact, created []bool) error {
	now := time.Now().UTC()
	fresh := created == nil
	batch := make([]pending, 0, len(runs))
	for i := range runs {
		if !fresh && created[i] {
			runsStarted.WithLabelValues(t.Source).Inc()
			runsByLane.WithLabelValues(t.BotID, LaneOf(t)).Inc()
		}
		if runs[i].Status == store.RunCreated { // else: started by an earlier attempt
			batch = append(batch, pending{run: runs[i], contact: contacts[i], trig: &t})
		}
	}
	if len(batch) == 0 {
		return nil
	}
	if err := o.supersedeBatch(ctx, t.BotID, batch); err != nil {
		return err
	}
	if err := o.firstSlices(ctx, batch, now); err != nil {
		return err
	}
	if !fresh {
		// Stored runs: claimed before anything goes out (claims.go).
		var (
			err    error
			cancel context.CancelFunc
		)
		ctx, cancel = o.withinClaim(ctx)
		defer cancel()
		if batch, err = o.claimBatch(ctx, stepName("start", t.ID), batch); err != nil || len(batch) == 0 {
			return err
		}
	}
	_, err := o.commit(ctx, batch, func(ctx context.Context, settled []store.Run) (map[int]bool, error) {
		if fresh {
			return o.insertFirstStates(ctx, batch, settled)
		}
		lost, err := o.updateRuns(ctx, settled)
		o.logLost(settled, lost)
		return lost, err
	})
	return err
}

// insertFirstStates is the runWriter of a fresh batch's first steps (runs
// not stored yet): one insert, counting the runs started by their
// triggers. A run that exists by then is left as it is (lost).
func (o *Orchestrator) insertFirstStates(ctx context.Context, batch []pending, settled []store.Run) (map[int]bool, error) {
	_, created, err := o.store.CreateRuns(ctx, settled)
	if err != nil {
		return nil, err
	}
	lost := map[int]bool{}
	for i, c := range created {
		if c {
			t := batch[i].trig
			runsStarted.WithLabelValues(t.Source).Inc()
			runsByLane.WithLabelValues(t.BotID, LaneOf(*t)).Inc()
		} else {
			lost[i] = true
		}
	}
	o.logLost(settled, lost)
	return lost, nil
}

func (o *Orchestrator) logLost(settled []store.Run, lost map[int]bool) {
	for i := range lost {
		o.log.Debug("run changed while it started", "bot", settled[i].BotID, "run", settled[i].ID)
	}
}

// supersedeBatch cancels the waiting runs of the batch's contacts on the
// contact's channel: the user can answer only one question at a time, and
// the newest trigger is what the caller wants asked.
func (o *Orchestrator) supersedeBatch(ctx context.Context, botID string, batch []pending) error {
	ids := make([]string, len(batch))
	byContact := make(map[string]int, len(batch))
	for i, b := range batch {
		ids[i] = b.contact.ID
		byContact[b.contact.ID] = i
	}
	waiting, err := o.store.WaitingRuns(ctx, botID, ids)
	if err != nil {
		return err
	}
	for _, r := range waiting {
		b := batch[byContact[r.ContactID]]
		if r.ID == b.run.ID || r.Channel != b.contact.Channel {
			continue
		}
		if err := o.advance(ctx, stepName("supersede", b.run.ID), r, b.contact, flow.Cancel{Now: time.Now().UTC(), Reason: "superseded by run " + b.run.ID}); err != nil {
			return err
		}
	}
	return nil
}

// firstSlices computes each run's first slice, in parallel (a flow's http
// steps wait on the network). A run whose flow cannot run fails, with the
// reason.
func (o *Orchestrator) firstSlices(ctx context.Context, batch []pending, now time.Time) error {
	if len(batch) == 1 { // a dispatch: no goroutine to start
		if err := o.firstSlice(ctx, *batch[0].trig, &batch[0], now); err != nil {
			return fmt.Errorf("start run %s: %w", batch[0].run.ID, err)
		}
		return nil
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		first error
		sem   = make(chan struct{}, o.cfg.FanOutParallelism)
	)
	for i := range batch {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
		wg.Add(1)
		go func(b *pending) {
			defer func() { <-sem; wg.Done() }()
			if err := o.firstSlice(ctx, *b.trig, b, now); err != nil {
				mu.Lock()
				if first == nil {
					first = fmt.Errorf("start run %s: %w", b.run.ID, err)
				}
				mu.Unlock()
				cancel()
			}
		}(&batch[i])
	}
	wg.Wait()
	if first != nil {
		return first
	}
	return ctx.Err()
}

// firstSlice applies the run's Start. A contact outside the channel's reply
// window (WhatsApp: 24 hours) gets the trigger's initial template first,
// and the flow starts when the contact replies (handleInbound).
func (o *Orchestrator) firstSlice(ctx context.Context, t events.Trigger, b *pending, now time.Time) error {
	start := flow.Start{
		Now: now, RunID: b.run.ID, Data: t.Data,
		Contact: flow.Contact{ID: b.contact.ID, Name: b.contact.Name, ExternalID: b.contact.ExternalID,
			Channel: b.contact.Channel, Attributes: b.contact.Attributes, LastRequest: contactLastRequest(t, b.contact)},
	}
	if needsInitialMessage(t, b.contact, now) {
		start.OpenWindow = t.InitialMessage
	}
	sl, err := o.next(ctx, &b.run, runState{Lane: LaneOf(t)}, start)
	if err != nil {
		return err
	}
	// The first messages answer no user: they go in the trigger's lane.
	sl.lane = LaneOf(t)
	b.sl = sl
	return nil
}
