package orchestrator

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/flowgate/flowgate/orchestrator/flow"
	"github.com/flowgate/flowgate/shared/bus"
	"github.com/flowgate/flowgate/shared/events"
	"github.com/flowgate/flowgate/shared/store"
)

// handleDelivery records a message status change and fails the run when a
// message could not be delivered.
func (o *Orchestrator) handleDelivery(ctx context.Context, m bus.Message) error {
	var d events.Delivery
	if err := json.Unmarshal(m.Event.Data(), &d); err != nil {
		return bus.Permanent(fmt.Errorf("delivery payload: %w", err))
	}
	if d.MessageID == "" {
		return nil // statuses of messages Flowgate did not send
	}
	at := d.At
	if at.IsZero() {
		at = time.Now().UTC()
	}
	if err := o.store.UpdateMessageStatus(ctx, d.BotID, d.MessageID, d.Status, d.ProviderMessageID, d.Reason, at); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return nil
		}
		return err
	}
	deliveries.WithLabelValues(d.Channel, d.Status).Inc()
	if d.Status != events.StatusFailed || d.RunID == "" {
		return nil
	}
	run, err := o.store.GetRun(ctx, d.BotID, d.RunID)
	if errors.Is(err, store.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	contact, err := o.store.GetContact(ctx, run.BotID, run.ContactID)
	if err != nil {
		return err
	}
	reason := d.Reason
	if d.Code != "" {
		reason = d.Code + ": " + reason
	}
	return o.advance(ctx, run, contact, flow.DeliveryFailed{Now: time.Now().UTC(), Seq: d.Seq, Reason: reason})
}
