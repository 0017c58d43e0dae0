package webhooks

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/flowgate/flowgate/shared/bus"
	"github.com/flowgate/flowgate/shared/events"
	"github.com/flowgate/flowgate/shared/recrubo"
	"github.com/flowgate/flowgate/shared/store"
)

// body is what one delivery POSTs: the CloudEvent in structured mode, or
// for a Recrubo webhook the FlowRun in Recrubo's WebhookPayload envelope.
// Either is sent once the run is stored at the change or later (awaitRun):
// a receiver that reads the run on receipt sees the change.
func (d *deliverer) body(ctx context.Context, m bus.Message) ([]byte, error) {
	var rs events.RunStatus
	if err := json.Unmarshal(m.Event.Data(), &rs); err != nil {
		return nil, bus.Permanent(fmt.Errorf("webhook %s: run status payload: %w", d.sub.ID, err))
	}
	w, isRecrubo := recrubo.ParseSubscription(d.sub.EventTypes)
	run, err := d.awaitRun(ctx, m, rs, isRecrubo)
	if err != nil {
		return nil, err
	}
	if !isRecrubo {
		body, err := json.Marshal(m.Event)
		if err != nil {
			return nil, bus.Permanent(fmt.Errorf("webhook %s: encode event: %w", d.sub.ID, err))
		}
		return body, nil
	}
	event, fields, _ := w.Wants(rs.Previous, rs.Status)
	if event == "" {
		event, fields = recrubo.EventUpdate, []string{recrubo.FieldStatus}
	}
	// The id of the delivery (status change and subscription) names the
	// payload: a redelivered change carries the same id.
	return recrubo.RenderWebhookPayload(recrubo.PayloadID(m.Event.ID()), d.sub.ID, event, fields, run)
}

// awaitRun waits until the run is stored at the change or later, reading
// the store inline, retried like the fan-out's reads (handing the message
// back would let the run's next change overtake it), and returns the run
// as a Recrubo payload shows it (payload: whether that is wanted). A run
// whose contact was deleted shows what the change itself says; so does one
// still not stored after maxRunWait (a trigger cancelled before its run
// was written), with a warning.
func (d *deliverer) awaitRun(ctx context.Context, m bus.Message, rs events.RunStatus, payload bool) (recrubo.FlowRun, error) {
	wait, waited := 100*time.Millisecond, time.Duration(0)
	for {
		run, err := d.storedRun(ctx, rs)
		if errors.Is(err, errRunNotStored) && waited >= maxRunWait {
			d.s.log.Warn("webhook: the run of a status change is not stored; sending the change alone", "bot", rs.BotID,
				"run", rs.RunID, "waited", waited)
			run, err = nil, nil
		}
		if err == nil && (run == nil || !payload) {
			return changeOnly(rs), nil
		}
		if err == nil {
			var v recrubo.FlowRun
			if v, err = d.flowRun(ctx, rs, *run); err == nil {
				return v, nil
			}
		}
		level := slog.LevelWarn
		if errors.Is(err, errRunNotStored) {
			level = slog.LevelDebug // expected for a moment after a change
		}
		d.s.log.Log(ctx, level, "webhook: reading the run of a status change failed; retrying", "bot", rs.BotID,
			"run", rs.RunID, "retry_in", wait, "err", err)
		if !d.s.pause(m, wait, d.stop) {
			return recrubo.FlowRun{}, fmt.Errorf("webhook %s: stopped: %w", d.sub.ID, err)
		}
		waited += wait
		wait = min(wait*2, 5*time.Second)
	}
}

// errRunNotStored is a change whose run is not stored at it (yet): the
// orchestrator publishes a run's changes before it writes the run (a crash
// in between redoes both), so a change can arrive before its write is
// committed — the first change of a new run before the run exists.
var errRunNotStored = errors.New("the run is not stored at this change yet")

// maxRunWait is how long a delivery waits for its run to be stored at the
// change before it is sent as the change alone says it.
var maxRunWait = 30 * time.Second

// changeOnly is the FlowRun as the status change alone shows it.
func changeOnly(rs events.RunStatus) recrubo.FlowRun {
	return recrubo.FlowRun{ID: rs.RunID, CreatedAt: rs.At, UpdatedAt: rs.At, FlowID: rs.FlowID,
		MessageThreadID: recrubo.ThreadID(rs.ContactID), Status: recrubo.Status(rs.Status)}
}

// storedRun is the run, stored at the change (its RunVersion) or later;
// nil if it is gone with its contact; errRunNotStored if not stored at the
// change yet. A change from before RunVersion existed waits only for the
// run to exist.
func (d *deliverer) storedRun(ctx context.Context, rs events.RunStatus) (*store.Run, error) {
	// A run read for another delivery serves if it was stored at this
	// change or later, as a fresh read would be.
	run, err := d.s.runs.read(rs.BotID+"\x00"+rs.RunID, func(r store.Run) bool { return r.Version >= rs.RunVersion },
		func() (store.Run, error) { return d.s.store.GetRun(ctx, rs.BotID, rs.RunID) })
	switch {
	case errors.Is(err, store.ErrNotFound):
		_, cerr := d.s.store.GetContact(ctx, rs.BotID, rs.ContactID)
		if absent(cerr) {
			return nil, nil
		}
		if cerr != nil {
			return nil, cerr
		}
		return nil, errRunNotStored
	case absent(err):
		return nil, nil
	case err != nil:
		return nil, err
	case run.Version < rs.RunVersion:
		return nil, errRunNotStored
	}
	return &run, nil
}

// flowRun is the run as Recrubo's GET /public/v2/flow-runs/{id} shows it,
// with the status of the change being delivered (the stored run may have
// moved on since).
func (d *deliverer) flowRun(ctx context.Context, rs events.RunStatus, run store.Run) (recrubo.FlowRun, error) {
	v := changeOnly(rs)
	v.CreatedAt, v.State = run.CreatedAt, run.Data
	if rs.At.IsZero() {
		v.UpdatedAt = run.UpdatedAt
	}
	if run.TriggerID == "" {
		return v, nil
	}
	// A trigger's spec never changes: the runs of a broadcast read it once.
	msg, err := d.s.initialMessages.read(rs.BotID+"\x00"+run.TriggerID, func(*events.Content) bool { return true },
		func() (*events.Content, error) {
			t, err := d.s.store.GetTrigger(ctx, rs.BotID, run.TriggerID)
			switch {
			case absent(err):
				return nil, nil
			case err != nil:
				return nil, err
			}
			var spec events.Trigger
			if json.Unmarshal(t.Spec, &spec) != nil {
				return nil, nil
			}
			return spec.InitialMessage, nil
		})
	v.InitialMessage = msg
	return v, err
}

// absent reports a record that is not stored (or whose id cannot be one).
func absent(err error) bool {
	return errors.Is(err, store.ErrNotFound) || errors.Is(err, store.ErrInvalid)
}
