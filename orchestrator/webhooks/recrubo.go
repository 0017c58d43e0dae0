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
func (d *deliverer) body(ctx context.Context, m bus.Message) ([]byte, error) {
	w, ok := recrubo.ParseSubscription(d.sub.EventTypes)
	if !ok {
		body, err := json.Marshal(m.Event)
		if err != nil {
			return nil, bus.Permanent(fmt.Errorf("webhook %s: encode event: %w", d.sub.ID, err))
		}
		return body, nil
	}
	var rs events.RunStatus
	if err := json.Unmarshal(m.Event.Data(), &rs); err != nil {
		return nil, bus.Permanent(fmt.Errorf("webhook %s: run status payload: %w", d.sub.ID, err))
	}
	event, fields, _ := w.Wants(rs.Previous, rs.Status)
	if event == "" {
		event, fields = recrubo.EventUpdate, []string{recrubo.FieldStatus}
	}
	// The store is read inline, retried like the fan-out's reads: handing
	// the message back would let the run's next change overtake it.
	wait, waited := 100*time.Millisecond, time.Duration(0)
	for {
		run, err := d.flowRun(ctx, rs)
		if errors.Is(err, errRunNotStored) && waited >= maxRunWait {
			// The run never came: show what the change itself says.
			d.s.log.Warn("webhook: the run of a Recrubo payload is not stored; sending the change alone", "bot", rs.BotID,
				"run", rs.RunID, "waited", waited)
			run, err = changeOnly(rs), nil
		}
		if err == nil {
			// The id of the delivery (status change and subscription) names
			// the payload: a redelivered change carries the same id.
			return recrubo.RenderWebhookPayload(recrubo.PayloadID(m.Event.ID()), d.sub.ID, event, fields, run)
		}
		level := slog.LevelWarn
		if errors.Is(err, errRunNotStored) {
			level = slog.LevelDebug // expected for a moment after a run starts
		}
		d.s.log.Log(ctx, level, "webhook: reading the run for a Recrubo payload failed; retrying", "bot", rs.BotID,
			"run", rs.RunID, "retry_in", wait, "err", err)
		if !d.s.pause(m, wait, d.stop) {
			return nil, fmt.Errorf("webhook %s: stopped: %w", d.sub.ID, err)
		}
		waited += wait
		wait = min(wait*2, 5*time.Second)
	}
}

// errRunNotStored is a run whose contact is stored but which is not (yet):
// the orchestrator publishes a run's changes before it writes the run (a
// crash in between redoes both), so the first change of a new run can
// arrive before the run is committed.
var errRunNotStored = errors.New("the run is not stored yet")

// maxRunWait is how long a Recrubo payload waits for its run to be stored
// before it is sent with what the change alone says (a run whose trigger
// was cancelled before the run was written never comes).
var maxRunWait = 30 * time.Second

// changeOnly is the FlowRun as the status change alone shows it.
func changeOnly(rs events.RunStatus) recrubo.FlowRun {
	return recrubo.FlowRun{ID: rs.RunID, CreatedAt: rs.At, UpdatedAt: rs.At, FlowID: rs.FlowID,
		MessageThreadID: recrubo.ThreadID(rs.ContactID), Status: recrubo.Status(rs.Status)}
}

// flowRun is the run as Recrubo's GET /public/v2/flow-runs/{id} shows it,
// with the status of the change being delivered (the stored run may have
// moved on since). A run no longer stored because its contact was deleted
// shows what the change itself says; a run not stored yet is
// errRunNotStored.
func (d *deliverer) flowRun(ctx context.Context, rs events.RunStatus) (recrubo.FlowRun, error) {
	v := changeOnly(rs)
	run, err := d.s.store.GetRun(ctx, rs.BotID, rs.RunID)
	switch {
	case errors.Is(err, store.ErrNotFound):
		_, cerr := d.s.store.GetContact(ctx, rs.BotID, rs.ContactID)
		if absent(cerr) {
			return v, nil
		}
		if cerr != nil {
			return v, cerr
		}
		return v, errRunNotStored
	case absent(err):
		return v, nil
	case err != nil:
		return v, err
	}
	v.CreatedAt, v.State = run.CreatedAt, run.Data
	if rs.At.IsZero() {
		v.UpdatedAt = run.UpdatedAt
	}
	if run.TriggerID == "" {
		return v, nil
	}
	t, err := d.s.store.GetTrigger(ctx, rs.BotID, run.TriggerID)
	switch {
	case absent(err):
		return v, nil
	case err != nil:
		return v, err
	}
	var spec events.Trigger
	if json.Unmarshal(t.Spec, &spec) == nil {
		v.InitialMessage = spec.InitialMessage
	}
	return v, nil
}

// absent reports a record that is not stored (or whose id cannot be one).
func absent(err error) bool {
	return errors.Is(err, store.ErrNotFound) || errors.Is(err, store.ErrInvalid)
}
