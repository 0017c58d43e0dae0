package orchestrator

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/flowgate/flowgate/orchestrator/flow"
	"github.com/flowgate/flowgate/shared/bus"
	"github.com/flowgate/flowgate/shared/events"
	"github.com/flowgate/flowgate/shared/store"
)

// firstSlice is a new run's first step, computed for a whole batch and
// performed in bulk.
type firstSlice struct {
	run     store.Run // as stored (status created), then settled
	contact store.Contact
	sl      slice
	prev    string
}

// launchBatch starts the runs of a fan-out batch together: what launching
// them one by one would do, in a few bulk operations instead of a few per
// run.
//
//  1. (No "created" status event: a run's first change stands for it.)
//  2. Cancel the contacts' other waiting runs on the same channel (one
//     query for the batch; a newer trigger takes over the conversation).
//  3. Run the interpreter for each run until it waits or ends (flow http
//     steps and hand-overs are performed inline, runs in parallel), and
//     store the attributes the flows set.
//  4. Record every message (one InsertMessages), publish every bundle and
//     every status change (one PublishAll).
//  5. Store every run's new state (one UpdateRuns, version-checked).
//
// Effects go out before the state is stored, with deterministic ids, as
// in advance: after a crash the batch is redone, the runs still in status
// created replay the same effects (JetStream drops the copies, the channel
// worker skips messages already sent), and runs already started are left
// alone. A run that changed meanwhile (a cancel) loses its version check
// and keeps what it became.
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
	batch := make([]firstSlice, 0, len(runs))
	for i := range runs {
		if !fresh && created[i] {
			runsStarted.WithLabelValues(t.Source).Inc()
			runsByLane.WithLabelValues(t.BotID, LaneOf(t)).Inc()
		}
		if runs[i].Status == store.RunCreated { // else: started by an earlier attempt
			batch = append(batch, firstSlice{run: runs[i], contact: contacts[i]})
		}
	}
	if len(batch) == 0 {
		return nil
	}
	// No "created" status is published: each run's first change (version
	// 1, from created) stands for it, and webhook delivery sends "created"
	// first (one publish per run fewer).
	if err := o.supersedeBatch(ctx, t.BotID, batch); err != nil {
		return err
	}
	if err := o.firstSlices(ctx, t, batch, now); err != nil {
		return err
	}

	var recs []store.Message
	evs := make([]bus.Outgoing, 0, len(batch))
	lane := LaneOf(t)
	queued := 0
	for i := range batch {
		b := &batch[i]
		if len(b.sl.sends) == 0 {
			continue
		}
		var err error
		if recs, err = messageRecords(recs, b.run, b.contact, b.sl.sends, lane, now); err != nil {
			return err
		}
		ev, err := outboundEvent(b.run, b.contact, b.sl.sends, lane)
		if err != nil {
			return err
		}
		evs = append(evs, bus.Outgoing{Subject: events.OutboundSubject(b.run.Channel, b.run.BotID, lane), Event: ev})
		queued += len(b.sl.sends)
	}
	if err := o.store.InsertMessages(ctx, recs); err != nil {
		return err
	}
	// The bundles and the status changes go out in one PublishAll: each
	// run's own events are on different streams, so their order between
	// each other does not matter; only that both precede the stored state.
	settled := make([]store.Run, len(batch))
	publishStatus := o.wantsStatus(ctx, t.BotID)
	for i := range batch {
		b := &batch[i]
		prev, err := settle(&b.run, &b.sl, time.Now().UTC())
		if err != nil {
			return err
		}
		b.prev = prev
		settled[i] = b.run
		if b.run.Status != prev && !publishStatus {
			statusEventsSkipped.Inc()
		}
		if b.run.Status != prev && publishStatus {
			ev, err := statusEvent(b.run, prev, b.sl.state.StatusSeq)
			if err != nil {
				return err
			}
			evs = append(evs, bus.Outgoing{Subject: events.RunStatusSubject(b.run.BotID), Event: ev})
		}
	}
	if err := o.bus.PublishAll(ctx, evs); err != nil {
		return err
	}
	for _, b := range batch {
		if len(b.sl.sends) > 0 {
			messagesQueued.WithLabelValues(b.run.Channel).Add(float64(len(b.sl.sends)))
			laneQueued.WithLabelValues(b.run.Channel, lane).Add(float64(len(b.sl.sends)))
		}
		if o.hooks != nil && o.hooks.AfterPublish != nil {
			if err := o.hooks.AfterPublish(b.run.ID); err != nil {
				return err
			}
		}
	}
	lost, err := o.storeFirstStates(ctx, t, settled, fresh)
	if err != nil {
		return err
	}
	for i, b := range batch {
		if !lost[i] && b.run.Status != b.prev {
			runsByStatus.WithLabelValues(b.run.Status).Inc()
		}
	}
	return nil
}

// storeFirstStates stores the runs' states after their first slice: an
// insert on the fresh path, a version-checked update otherwise. It returns
// the runs that were not written because they had changed (or, fresh, had
// come to exist) meanwhile.
func (o *Orchestrator) storeFirstStates(ctx context.Context, t events.Trigger, settled []store.Run, fresh bool) (map[int]bool, error) {
	lost := map[int]bool{}
	if fresh {
		_, created, err := o.store.CreateRuns(ctx, settled)
		if err != nil {
			return nil, err
		}
		for i, c := range created {
			if c {
				runsStarted.WithLabelValues(t.Source).Inc()
				runsByLane.WithLabelValues(t.BotID, LaneOf(t)).Inc()
			} else {
				lost[i] = true
			}
		}
	} else {
		conflicts, err := o.store.UpdateRuns(ctx, settled)
		if err != nil {
			return nil, err
		}
		for _, i := range conflicts {
			lost[i] = true
		}
	}
	for i := range lost {
		o.log.Debug("run changed while it started", "bot", settled[i].BotID, "run", settled[i].ID)
	}
	return lost, nil
}

// supersedeBatch cancels the waiting runs of the batch's contacts on the
// contact's channel: the user can answer only one question at a time, and
// the newest trigger is what the caller wants asked.
func (o *Orchestrator) supersedeBatch(ctx context.Context, botID string, batch []firstSlice) error {
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
		if err := o.advance(ctx, r, b.contact, flow.Cancel{Now: time.Now().UTC(), Reason: "superseded by run " + b.run.ID}); err != nil {
			return err
		}
	}
	return nil
}

// firstSlices computes each run's first slice, in parallel (a flow's http
// steps wait on the network), and stores the attributes the flows set. A
// run whose flow cannot run fails, with the reason.
func (o *Orchestrator) firstSlices(ctx context.Context, t events.Trigger, batch []firstSlice, now time.Time) error {
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
		go func(b *firstSlice) {
			defer func() { <-sem; wg.Done() }()
			if err := o.firstSlice(ctx, t, b, now); err != nil {
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

func (o *Orchestrator) firstSlice(ctx context.Context, t events.Trigger, b *firstSlice, now time.Time) error {
	if needsInitialMessage(t, b.contact, now) {
		// The initial template opens the WhatsApp window; the flow starts
		// when the contact replies (handleInbound).
		b.sl = slice{state: runState{AwaitingWindow: true, Lane: LaneOf(t)}, sends: []events.OutboundMessage{{
			ID: MessageID(b.run.ID, initialMessageSeq), Seq: initialMessageSeq, Step: "initial_message", Content: *t.InitialMessage,
		}}}
		return nil
	}
	def, _, err := o.definition(ctx, b.run.BotID, b.run.FlowID, b.run.FlowVersion)
	if errors.Is(err, store.ErrNotFound) {
		b.sl = failedSlice(err.Error())
		return nil
	}
	if err != nil {
		return err
	}
	start := flow.Start{
		Now: now, RunID: b.run.ID, Data: t.Data,
		Contact: flow.Contact{ID: b.contact.ID, Name: b.contact.Name, ExternalID: b.contact.ExternalID,
			Channel: b.contact.Channel, Attributes: b.contact.Attributes, LastRequest: contactLastRequest(t, b.contact)},
	}
	sl, err := o.apply(ctx, &b.run, def, runState{Lane: LaneOf(t)}, start)
	if err != nil {
		o.log.Warn("run failed", "bot", b.run.BotID, "run", b.run.ID, "reason", err.Error())
		b.sl = failedSlice(err.Error())
		return nil
	}
	if len(sl.attrs) > 0 {
		if err := o.storeAttributes(ctx, b.contact, sl.attrs, now); err != nil {
			return err
		}
	}
	b.sl = sl
	return nil
}

// failedSlice is the slice of a run that fails before its flow could do
// anything.
func failedSlice(reason string) slice {
	return slice{state: runState{Flow: flow.State{Status: flow.StatusFailed, Error: reason}}}
}
