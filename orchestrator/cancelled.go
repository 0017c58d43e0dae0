package orchestrator

import (
	"context"
	"errors"

	"github.com/flowgate/flowgate/orchestrator/flow"
	"github.com/flowgate/flowgate/shared/bus"
	"github.com/flowgate/flowgate/shared/events"
	"github.com/flowgate/flowgate/shared/store"
)

// finishCancelled handles a trigger message that finds its broadcast
// cancelled. Usually there is nothing left to do: the fan-out saw the
// cancel, let the batches under way finish and stopped. But when the
// process died (or the handler failed) while batches were under way, a
// batch may have published its messages and recorded them without storing
// its runs: a launch writes the messages first and the runs last. A cancel
// lets the batches under way finish; so does this, after a crash: the
// batches after the last checkpoint (at most fanOutDepth of them) are read
// again, without writing to any contact (peek: the cancel stands for the
// trigger's data and attributes too, and a contact of a users list that
// does not exist is not created), and every contact whose first message
// was recorded gets its run, started as the crashed attempt started it (same ids, same effects, which
// JetStream and the channel workers de-duplicate). Contacts whose batch
// never got that far get nothing: the cancel stands for them. Runs that
// exist and have started are left alone and not counted again, so a second
// redelivery changes nothing.
func (o *Orchestrator) finishCancelled(ctx context.Context, t events.Trigger, trig store.Trigger) error {
	cp, err := decodeCheckpoint(trig.Cursor)
	if err != nil {
		return bus.Permanent(err)
	}
	aud, err := newAudience(t)
	if err != nil {
		return bus.Permanent(err)
	}
	version := cp.FlowVersion
	if version == 0 {
		_, v, err := o.definition(ctx, t.BotID, t.FlowID, 0)
		if errors.Is(err, store.ErrNotFound) {
			return nil // nothing can have been launched without a flow
		}
		if err != nil {
			return err
		}
		version = v
	}
	after := cp.After
	for range fanOutDepth {
		contacts, next, last, err := aud.peek(ctx, o, after, o.cfg.FanOutBatch)
		if err != nil {
			return err
		}
		if err := o.finishLaunched(ctx, t, version, contacts); err != nil {
			return err
		}
		if last {
			break
		}
		after = next
	}
	return nil
}

// finishLaunched stores and starts the runs of the contacts whose first
// message a crashed launch recorded, and counts them.
func (o *Orchestrator) finishLaunched(ctx context.Context, t events.Trigger, version int, contacts []store.Contact) error {
	var launched []store.Contact
	for _, c := range contacts {
		id := runIDFor(t, c.ID, len(contacts))
		recorded := false
		for _, seq := range []int{1, flow.InitialMessageSeq} {
			_, err := o.store.GetMessage(ctx, t.BotID, MessageID(id, seq))
			if err == nil {
				recorded = true
				break
			}
			if !errors.Is(err, store.ErrNotFound) {
				return err
			}
		}
		if recorded {
			launched = append(launched, c)
		}
	}
	if len(launched) == 0 {
		return nil
	}
	rs := batchRuns(t, version, launched)
	held, err := o.lockBatch(rs) // as in fanOut.start
	if err != nil {
		return err
	}
	defer held.releaseAll()
	runs, created, err := o.store.CreateRuns(ctx, rs)
	if err != nil {
		return err
	}
	held.keepCreated(rs, runs)
	// Only runs this launch starts are counted: new ones, and ones the
	// crashed attempt stored (status created) but never started. A run that
	// started was counted by the batch that started it.
	n := int64(0)
	for i := range runs {
		if created[i] || runs[i].Status == store.RunCreated {
			n++
		}
	}
	if n == 0 {
		return nil
	}
	if err := o.launchBatch(ctx, t, runs, launched, created); err != nil {
		return err
	}
	o.log.Info("finished a batch a crash left under way at a cancel", "bot", t.BotID, "trigger", t.ID, "runs", n)
	// A crash between the launch and this write leaves the counters n short
	// (the next redelivery finds the runs started); the window is one write.
	return o.store.IncrTriggerCounters(ctx, t.BotID, t.ID, store.TriggerCounters{Targeted: n, RunsCreated: n})
}
