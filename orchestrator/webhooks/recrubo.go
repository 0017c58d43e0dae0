package webhooks

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
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
	wait := 100 * time.Millisecond
	for {
		run, err := d.flowRun(ctx, rs)
		if err == nil {
			// The id of the delivery (status change and subscription) names
			// the payload: a redelivered change carries the same id.
			return recrubo.RenderWebhookPayload(recrubo.PayloadID(m.Event.ID()), d.sub.ID, event, fields, run)
		}
		d.s.log.Warn("webhook: reading the run for a Recrubo payload failed; retrying", "bot", rs.BotID,
			"run", rs.RunID, "retry_in", wait, "err", err)
		if !d.s.pause(m, wait, d.stop) {
			return nil, fmt.Errorf("webhook %s: stopped: %w", d.sub.ID, err)
		}
		wait = min(wait*2, 5*time.Second)
	}
}

// flowRun is the run as Recrubo's GET /public/v2/flow-runs/{id} shows it,
// with the status of the change being delivered (the stored run may have
// moved on since). A run no longer stored (its contact was deleted) shows
// what the change itself says.
func (d *deliverer) flowRun(ctx context.Context, rs events.RunStatus) (recrubo.FlowRun, error) {
	v := recrubo.FlowRun{ID: rs.RunID, CreatedAt: rs.At, UpdatedAt: rs.At, FlowID: rs.FlowID,
		MessageThreadID: recrubo.ThreadID(rs.ContactID), Status: recrubo.Status(rs.Status)}
	run, err := d.s.store.GetRun(ctx, rs.BotID, rs.RunID)
	switch {
	case errors.Is(err, store.ErrNotFound), errors.Is(err, store.ErrInvalid):
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
	case errors.Is(err, store.ErrNotFound), errors.Is(err, store.ErrInvalid):
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
