package orchestrator

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"

	"github.com/flowgate/flowgate/orchestrator/flow"
	"github.com/flowgate/flowgate/shared/bus"
	"github.com/flowgate/flowgate/shared/events"
	"github.com/flowgate/flowgate/shared/store"
)

var runNamespace = uuid.MustParse("a1f0c2de-29a4-4d8e-8a53-6c0d0b3e7f21")

// RunID is the id of the run of trigger for contact: deterministic, so a
// redelivered trigger finds the run it created before.
func RunID(triggerID, contactID string) string {
	return uuid.NewSHA1(runNamespace, []byte(triggerID+"\x00"+contactID)).String()
}

// handleTrigger turns an accepted trigger into runs.
func (o *Orchestrator) handleTrigger(ctx context.Context, m bus.Message) error {
	var t events.Trigger
	if err := json.Unmarshal(m.Event.Data(), &t); err != nil {
		return bus.Permanent(fmt.Errorf("trigger payload: %w", err))
	}
	if t.ID == "" || t.BotID == "" || t.FlowID == "" {
		return bus.Permanent(errors.New("trigger without id, bot or flow"))
	}
	spec := m.Event.Data()
	now := time.Now().UTC()
	trig, _, err := o.store.CreateTrigger(ctx, store.Trigger{
		ID: t.ID, BotID: t.BotID, Source: t.Source, Event: t.Event, FlowID: t.FlowID, Channel: t.Channel,
		Spec: spec, IdempotencyKey: t.IdempotencyKey, Status: store.TriggerAccepted,
		CreatedAt: now, UpdatedAt: now,
	})
	if err != nil {
		return err
	}
	if trig.Status == store.TriggerDone || trig.Status == store.TriggerCancelled {
		return nil // a redelivery of a trigger already handled
	}
	return o.fanOut(ctx, m, t, trig)
}

// lastRequest is what the contact's last_request becomes: the trigger's data.
func lastRequest(t events.Trigger) map[string]any {
	if t.Data == nil {
		return map[string]any{}
	}
	return t.Data
}

// launch starts a run that the fan-out created (or found, on a
// redelivery): it publishes the created status once and executes the flow
// until it waits or ends.
func (o *Orchestrator) launch(ctx context.Context, t events.Trigger, run store.Run, contact store.Contact, created bool) error {
	now := time.Now().UTC()
	if created {
		runsStarted.WithLabelValues(t.Source).Inc()
	}
	if run.Status != store.RunCreated {
		return nil // started before this redelivery
	}
	// Published again when a crash came between creating the run and
	// starting it: the event id is deterministic, JetStream drops the copy.
	if err := o.publishStatus(ctx, run, "", 0); err != nil {
		return err
	}
	if err := o.supersede(ctx, contact, run.ID); err != nil {
		return err
	}
	if needsInitialMessage(t, contact, now) {
		return o.awaitWindow(ctx, run, contact, *t.InitialMessage)
	}
	start := flow.Start{
		Now: now, RunID: run.ID, Data: t.Data,
		Contact: flow.Contact{ID: contact.ID, Name: contact.Name, ExternalID: contact.ExternalID,
			Channel: contact.Channel, Attributes: contact.Attributes},
	}
	return o.advance(ctx, run, contact, start)
}

// supersede cancels the contact's other waiting runs on the same channel: a
// newer trigger takes over the conversation (the user can answer only one
// question at a time, and the newest is what the caller wants asked).
func (o *Orchestrator) supersede(ctx context.Context, contact store.Contact, keep string) error {
	runs, _, err := o.store.ListRuns(ctx, store.RunFilter{BotID: contact.BotID, ContactID: contact.ID, Status: store.RunWaiting, Limit: 10})
	if err != nil {
		return err
	}
	for _, r := range runs {
		if r.ID == keep || r.Channel != contact.Channel {
			continue
		}
		if err := o.advance(ctx, r, contact, flow.Cancel{Now: time.Now().UTC(), Reason: "superseded by run " + keep}); err != nil {
			return err
		}
	}
	return nil
}

// whatsappWindow is WhatsApp's customer-service window: free-form messages
// only this long after the contact last wrote.
const whatsappWindow = 24 * time.Hour

// initialMessageSeq is the sequence of the initial template; the flow's
// own messages start at 1.
const initialMessageSeq = 0

// needsInitialMessage reports whether the run must open the WhatsApp
// window with the trigger's initial template before its flow may speak.
func needsInitialMessage(t events.Trigger, contact store.Contact, now time.Time) bool {
	if contact.Channel != events.ChannelWhatsApp || t.InitialMessage == nil || t.InitialMessage.Type != events.ContentTemplate {
		return false
	}
	return contact.LastInboundAt == nil || now.Sub(*contact.LastInboundAt) >= whatsappWindow
}

// awaitWindow sends only the initial template and parks the run until the
// contact replies (handleInbound then starts the flow inside the window).
func (o *Orchestrator) awaitWindow(ctx context.Context, run store.Run, contact store.Contact, initial events.Content) error {
	st := runState{AwaitingWindow: true}
	send := events.OutboundMessage{ID: MessageID(run.ID, initialMessageSeq), Seq: initialMessageSeq, Step: "initial_message", Content: initial}
	return o.commit(ctx, run, contact, slice{state: st, sends: []events.OutboundMessage{send}})
}
