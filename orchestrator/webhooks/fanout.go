package webhooks

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	cloudevents "github.com/cloudevents/sdk-go/v2/event"

	"github.com/flowgate/flowgate/shared/bus"
	"github.com/flowgate/flowgate/shared/events"
	"github.com/flowgate/flowgate/shared/recrubo"
	"github.com/flowgate/flowgate/shared/store"
)

// EventTypeAll subscribes to every run status change; "run.<status>"
// subscribes to one status.
const EventTypeAll = "run.status"

// TypePrefix prefixes the CloudEvent type of a delivery: the type of a run
// that completed is "dev.flowgate.run.completed".
const TypePrefix = "dev.flowgate."

// EventTypes are the event types a subscription may name.
var EventTypes = []string{EventTypeAll,
	"run." + store.RunCreated, "run." + store.RunQueued, "run." + store.RunRunning, "run." + store.RunWaiting,
	"run." + store.RunCompleted, "run." + store.RunFailed, "run." + store.RunCancelled, "run." + store.RunExpired}

// Matches reports whether a subscription to types wants a change to status.
func Matches(types []string, status string) bool {
	return slices.Contains(types, EventTypeAll) || slices.Contains(types, "run."+status)
}

// wants reports whether sub is called for the change rs: by its event
// types, or for a Recrubo webhook by Recrubo's events (recrubo.Webhook.Wants).
func wants(sub store.Subscription, rs events.RunStatus) bool {
	if w, ok := recrubo.ParseSubscription(sub.EventTypes); ok {
		_, _, want := w.Wants(rs.Previous, rs.Status)
		return want
	}
	return Matches(sub.EventTypes, rs.Status)
}

type cachedSubs struct {
	subs []store.Subscription
	at   time.Time
}

// subscriptions returns a bot's subscriptions, cached for SubscriptionTTL.
func (s *service) subscriptions(ctx context.Context, bot string) ([]store.Subscription, error) {
	if s.cfg.SubscriptionTTL > 0 {
		s.cacheMu.Lock()
		c, ok := s.cache[bot]
		s.cacheMu.Unlock()
		if ok && time.Since(c.at) < s.cfg.SubscriptionTTL {
			return c.subs, nil
		}
	}
	subs, err := s.store.ListSubscriptions(ctx, bot)
	if err != nil {
		return nil, err
	}
	if s.cfg.SubscriptionTTL > 0 {
		s.cacheMu.Lock()
		s.cache[bot] = cachedSubs{subs: subs, at: time.Now()}
		s.cacheMu.Unlock()
	}
	return subs, nil
}

// fanout queues one delivery per subscription that wants this status
// change. It retries store and bus failures inline rather than handing the
// message back: a redelivery would come after the run's next change, and
// the per-run order would be lost.
func (s *service) fanout(ctx context.Context, m bus.Message) error {
	var rs events.RunStatus
	if err := json.Unmarshal(m.Event.Data(), &rs); err != nil {
		return bus.Permanent(fmt.Errorf("webhooks: run status payload: %w", err))
	}
	if rs.BotID == "" || rs.RunID == "" || rs.Status == "" {
		return bus.Permanent(errors.New("webhooks: run status without bot, run or status"))
	}
	wait := 100 * time.Millisecond
	for {
		err := s.enqueue(ctx, m, rs)
		if err == nil {
			return nil
		}
		if errors.Is(err, store.ErrInvalid) {
			return bus.Permanent(err)
		}
		s.log.Warn("webhook fan-out failed; retrying", "bot", rs.BotID, "run", rs.RunID, "retry_in", wait, "err", err)
		if !s.pause(m, wait, nil) {
			return err
		}
		wait = min(wait*2, 5*time.Second)
	}
}

func (s *service) enqueue(ctx context.Context, m bus.Message, rs events.RunStatus) error {
	subs, err := s.subscriptions(ctx, rs.BotID)
	if err != nil {
		return err
	}
	if created, ok := createdEvent(m.Event, rs); ok {
		// The orchestrator does not publish a run's "created" on its own:
		// the run's first change (version 1, from created) stands for both,
		// and subscribers get "created" first, as its own delivery.
		if err := s.enqueueFor(ctx, subs, created, events.RunStatus{
			BotID: rs.BotID, RunID: rs.RunID, TriggerID: rs.TriggerID, FlowID: rs.FlowID, ContactID: rs.ContactID,
			Status: store.RunCreated, Version: 0, At: created.Time(), RunVersion: rs.RunVersion,
		}); err != nil {
			return err
		}
	}
	return s.enqueueFor(ctx, subs, m.Event, rs)
}

// createdEvent is the "created" status change implied by a run's first
// change: the event the orchestrator would have published for it, with
// the same id, so deliveries keep their ids.
func createdEvent(src cloudevents.Event, rs events.RunStatus) (cloudevents.Event, bool) {
	if rs.Version != 1 || rs.Previous != store.RunCreated {
		return cloudevents.Event{}, false
	}
	e := cloudevents.New()
	e.SetID(fmt.Sprintf("run:%s:0:%s", rs.RunID, store.RunCreated))
	e.SetSource(src.Source())
	e.SetType(events.TypeRunStatus)
	e.SetSubject(rs.RunID)
	e.SetTime(src.Time())
	e.SetDataContentType("application/json")
	data, _ := json.Marshal(events.RunStatus{ // strings, numbers and a time always encode
		BotID: rs.BotID, RunID: rs.RunID, TriggerID: rs.TriggerID, FlowID: rs.FlowID, ContactID: rs.ContactID,
		Status: store.RunCreated, Version: 0, At: src.Time(), RunVersion: rs.RunVersion,
	})
	e.DataEncoded = data
	return e, true
}

func (s *service) enqueueFor(ctx context.Context, subs []store.Subscription, src cloudevents.Event, rs events.RunStatus) error {
	for _, sub := range subs {
		if !wants(sub, rs) {
			continue
		}
		e := deliveryEvent(src, rs, sub.ID)
		res, err := s.bus.Publish(ctx, events.WebhookSubject(rs.BotID, sub.ID), e)
		if err != nil {
			return err
		}
		if !res.Duplicate {
			queued.WithLabelValues(rs.Status).Inc()
		}
	}
	return nil
}

// deliveryEvent is the CloudEvent a subscription receives. Its id is the
// status event's id (deterministic: run, sequence, status) plus the
// subscription id, so receivers can deduplicate and the bus drops a second
// fan-out of the same change.
func deliveryEvent(src cloudevents.Event, rs events.RunStatus, subID string) cloudevents.Event {
	e := cloudevents.New()
	e.SetID(src.ID() + ":" + subID)
	e.SetSource("/flowgate/bots/" + rs.BotID)
	e.SetType(TypePrefix + "run." + rs.Status)
	e.SetSubject(rs.RunID)
	t := src.Time()
	if t.IsZero() {
		t = rs.At
	}
	e.SetTime(t)
	e.SetDataContentType("application/json")
	e.DataEncoded = src.Data()
	return e
}
