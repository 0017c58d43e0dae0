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

// providerIDGrace is how long a status quoting an unknown provider message
// id is retried: the channel worker may not have recorded the id yet when
// the provider's callback overtakes it.
const providerIDGrace = 2 * time.Minute

// handleDelivery records a message status change, counts it on the
// trigger, marks contacts the provider called unreachable, and fails the
// run when a message could not be delivered.
func (o *Orchestrator) handleDelivery(ctx context.Context, m bus.Message) error {
	var d events.Delivery
	if err := json.Unmarshal(m.Event.Data(), &d); err != nil {
		return bus.Permanent(fmt.Errorf("delivery payload: %w", err))
	}
	at := d.At
	if at.IsZero() {
		at = time.Now().UTC()
	}
	if d.Status == events.StatusSent && d.MessageID != "" {
		// A channel worker's report: it recorded the send itself before
		// reporting it, so there is nothing to read or write but the count.
		deliveries.WithLabelValues(d.Channel, d.Status).Inc()
		return o.countDelivery(ctx, d, store.Message{ID: d.MessageID, BotID: d.BotID, TriggerID: d.TriggerID}, events.StatusQueued)
	}
	msg, err := o.deliveredMessage(ctx, d, m)
	if err != nil || msg.ID == "" {
		return err
	}
	prev := msg.Status
	// The channel worker records "sent" itself before reporting it: write
	// only what moves the message forward.
	if store.MessageStatusAdvances(prev, d.Status) || (d.ProviderMessageID != "" && msg.ProviderMessageID == "") {
		if err := o.store.UpdateMessageStatus(ctx, store.StatusUpdate{BotID: d.BotID, MessageID: msg.ID, Status: d.Status, ProviderMessageID: d.ProviderMessageID, Reason: d.Reason, At: at}); err != nil {
			if errors.Is(err, store.ErrNotFound) || errors.Is(err, store.ErrInvalid) {
				return nil
			}
			return err
		}
	}
	deliveries.WithLabelValues(d.Channel, d.Status).Inc()
	if err := o.countDelivery(ctx, d, msg, prev); err != nil {
		return err
	}
	if d.Unreachable {
		contactID := d.ContactID
		if contactID == "" {
			contactID = msg.ContactID
		}
		reason := d.Reason
		if d.Code != "" {
			reason = d.Code + ": " + reason
		}
		if err := o.store.SetContactReachability(ctx, d.BotID, contactID, true, reason); err != nil && !errors.Is(err, store.ErrNotFound) {
			return err
		}
	}
	if d.Status != events.StatusFailed {
		return nil
	}
	runID := d.RunID
	if runID == "" {
		runID = msg.RunID
	}
	if runID == "" {
		return nil
	}
	run, err := o.store.GetRun(ctx, d.BotID, runID)
	if errors.Is(err, store.ErrNotFound) {
		// A broadcast stores a batch's runs after publishing their
		// messages (launchBatch): a fast failure can overtake its run.
		if time.Since(m.Event.Time()) < providerIDGrace && m.Delivered < 6 {
			return bus.RetryAfter(err, 2*time.Second)
		}
		return nil
	}
	if err != nil {
		return err
	}
	reason := d.Reason
	if d.Code != "" {
		reason = d.Code + ": " + reason
	}
	seq := d.Seq
	if seq == 0 {
		seq = msg.Seq
	}
	// A failure carries no message and sets no attribute: the run's contact
	// is not read.
	return o.advance(ctx, stepName("delivery", m.Event.ID()), run, store.Contact{ID: run.ContactID, BotID: run.BotID, Channel: run.Channel},
		flow.DeliveryFailed{Now: time.Now().UTC(), Seq: seq, Reason: reason})
}

// deliveredMessage finds the message a status is about: by Flowgate's id
// (channel workers) or by the provider's id (webhooks). A zero message
// and nil mean: nothing to record.
func (o *Orchestrator) deliveredMessage(ctx context.Context, d events.Delivery, m bus.Message) (store.Message, error) {
	var msg store.Message
	var err error
	switch {
	case d.MessageID != "":
		msg, err = o.store.GetMessage(ctx, d.BotID, d.MessageID)
	case d.ProviderMessageID != "":
		msg, err = o.store.FindMessageByProviderID(ctx, d.BotID, d.ProviderMessageID)
		if errors.Is(err, store.ErrNotFound) {
			// Bounded by deliveries too, so that statuses of messages another
			// system sent from the same number never reach the dead letters.
			if time.Since(m.Event.Time()) < providerIDGrace && m.Delivered < 6 {
				return store.Message{}, bus.RetryAfter(err, 5*time.Second)
			}
			return store.Message{}, nil // a message Flowgate did not send
		}
	default:
		return store.Message{}, nil
	}
	if errors.Is(err, store.ErrNotFound) || errors.Is(err, store.ErrInvalid) {
		return store.Message{}, nil
	}
	return msg, err
}

// countDelivery adds a status change to the trigger's progress counts.
// "sent" is counted from the channel worker's report (one per message: its
// event id is the message id); the worker records the status itself, so
// the store cannot tell. Delivered and failed are counted when this status
// change is the one that moved the message there.
func (o *Orchestrator) countDelivery(ctx context.Context, d events.Delivery, msg store.Message, prev string) error {
	if msg.TriggerID == "" {
		return nil
	}
	var c store.TriggerCounters
	switch d.Status {
	case events.StatusSent:
		if d.MessageID != "" {
			c.Sent = 1
		}
	case events.StatusDelivered, events.StatusRead:
		if prev == events.StatusQueued || prev == events.StatusSent {
			c.Delivered = 1
		}
	case events.StatusFailed:
		if store.MessageStatusAdvances(prev, events.StatusFailed) {
			c.Failed = 1
		}
	}
	if c.Sent+c.Delivered+c.Failed == 0 {
		return nil
	}
	if err := o.counters.add(ctx, msg.BotID, msg.TriggerID, c); err != nil && !errors.Is(err, store.ErrNotFound) {
		return err
	}
	return nil
}
