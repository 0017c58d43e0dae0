package orchestrator

import (
	"context"
	"crypto/rand"
	"encoding/hex"
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

// NewContactID returns a fresh internal contact id (24 hex characters, the
// shape of Botmother's bm_id).
func NewContactID() string {
	b := make([]byte, 12)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
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
	return o.fanOut(ctx, t, trig)
}

// fanOut creates a run for every user the trigger names and starts it.
func (o *Orchestrator) fanOut(ctx context.Context, t events.Trigger, trig store.Trigger) error {
	var c store.TriggerCounters
	for _, user := range t.Audience.Users {
		c.Targeted++
		contact, _, err := o.store.UpsertContact(ctx, store.ContactUpsert{
			BotID: t.BotID, Channel: t.Channel, ExternalID: user, Name: t.Name,
			Attributes: t.Attributes, LastRequest: lastRequest(t), NewID: NewContactID(), Now: time.Now().UTC(),
		})
		if err != nil {
			return err
		}
		created, err := o.startRun(ctx, t, contact)
		if err != nil {
			return err
		}
		if created {
			c.RunsCreated++
		}
	}
	for _, id := range t.Audience.UsersBM {
		c.Targeted++
		contact, err := o.store.GetContact(ctx, t.BotID, id)
		if errors.Is(err, store.ErrNotFound) || errors.Is(err, store.ErrInvalid) {
			c.Skipped++
			c.SkipReasons = addReason(c.SkipReasons, "unknown_contact")
			continue
		}
		if err != nil {
			return err
		}
		if t.Data != nil {
			if contact, _, err = o.store.UpsertContact(ctx, store.ContactUpsert{
				BotID: contact.BotID, Channel: contact.Channel, ExternalID: contact.ExternalID,
				Attributes: t.Attributes, LastRequest: lastRequest(t), Now: time.Now().UTC(),
			}); err != nil {
				return err
			}
		}
		created, err := o.startRun(ctx, t, contact)
		if err != nil {
			return err
		}
		if created {
			c.RunsCreated++
		}
	}
	trig.Status = store.TriggerDone
	trig.Counters.Targeted = c.Targeted
	trig.Counters.RunsCreated = c.RunsCreated
	trig.Counters.Skipped = c.Skipped
	trig.Counters.SkipReasons = c.SkipReasons
	trig.UpdatedAt = time.Now().UTC()
	if _, err := o.store.UpdateTrigger(ctx, trig); err != nil && !errors.Is(err, store.ErrVersionConflict) {
		return err
	}
	return nil
}

func addReason(m map[string]int64, reason string) map[string]int64 {
	if m == nil {
		m = map[string]int64{}
	}
	m[reason]++
	return m
}

// lastRequest is what the contact's last_request becomes: the trigger's data.
func lastRequest(t events.Trigger) map[string]any {
	if t.Data == nil {
		return map[string]any{}
	}
	return t.Data
}

// startRun creates the contact's run for t (once) and executes it until it
// waits or ends. It reports whether the run was created by this call.
func (o *Orchestrator) startRun(ctx context.Context, t events.Trigger, contact store.Contact) (bool, error) {
	if contact.OptedOut || contact.Unreachable {
		return false, nil
	}
	_, version, err := o.definition(ctx, t.BotID, t.FlowID, 0)
	if err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return false, bus.Permanent(err)
		}
		return false, err
	}
	id := t.RunID
	if id == "" {
		id = RunID(t.ID, contact.ID)
	}
	now := time.Now().UTC()
	run, created, err := o.store.CreateRun(ctx, store.Run{
		ID: id, BotID: t.BotID, TriggerID: t.ID, FlowID: t.FlowID, FlowVersion: version,
		ContactID: contact.ID, Channel: contact.Channel, Status: store.RunCreated, Data: t.Data,
		CreatedAt: now, UpdatedAt: now,
	})
	if err != nil {
		return false, err
	}
	if created {
		runsStarted.WithLabelValues(t.Source).Inc()
		if err := o.publishStatus(ctx, run, "", run.Version); err != nil {
			return true, err
		}
	}
	if run.Status != store.RunCreated {
		return created, nil // started before this redelivery
	}
	if err := o.supersede(ctx, contact, run.ID); err != nil {
		return created, err
	}
	if needsInitialMessage(t, contact, now) {
		return created, o.awaitWindow(ctx, run, contact, *t.InitialMessage)
	}
	start := flow.Start{
		Now: now, RunID: run.ID, Data: t.Data,
		Contact: flow.Contact{ID: contact.ID, Name: contact.Name, ExternalID: contact.ExternalID,
			Channel: contact.Channel, Attributes: contact.Attributes},
	}
	return created, o.advance(ctx, run, contact, start)
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
	if t.Channel != events.ChannelWhatsApp || t.InitialMessage == nil || t.InitialMessage.Type != events.ContentTemplate {
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
