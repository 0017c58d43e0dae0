package provider

import (
	"context"
	"errors"
	"fmt"
	"time"

	cloudevents "github.com/cloudevents/sdk-go/v2/event"

	"github.com/flowgate/flowgate/shared/bus"
	"github.com/flowgate/flowgate/shared/events"
	"github.com/flowgate/flowgate/shared/store"
)

// Bus is what publishing notifications needs of the bus.
type Bus interface {
	Publish(ctx context.Context, subject string, e cloudevents.Event) (bus.PublishResult, error)
}

// Contacts is what recording reachability needs of the store.
type Contacts interface {
	GetContactByExternalID(ctx context.Context, botID, channel, externalID string) (store.Contact, error)
	SetContactReachability(ctx context.Context, botID, contactID string, unreachable bool, reason string) error
}

// Errors of Publish, to tell which dependency failed.
var (
	ErrBus   = errors.New("provider: the bus is unavailable")
	ErrStore = errors.New("provider: the store is unavailable")
)

// Publish makes a notification's events durable: inbound messages and
// deliveries on the bus, reachability in the store. Every event's
// Nats-Msg-Id derives from the provider's own id, so a provider's retry
// (or a webhook and a poll of the same update) is dropped by JetStream.
// The ingress's webhook handler and Telegram's poller both use it.
func Publish(ctx context.Context, b Bus, st Contacts, botID, channel string, n Notification) error {
	for _, in := range n.Inbound {
		if err := PublishInbound(ctx, b, in); err != nil {
			return err
		}
	}
	for _, d := range n.Deliveries {
		if err := PublishDelivery(ctx, b, d); err != nil {
			return err
		}
	}
	for _, r := range n.Reachability {
		if err := setReachability(ctx, st, botID, channel, r); err != nil {
			return err
		}
	}
	return nil
}

// PublishInbound queues a user's message for the orchestrator.
func PublishInbound(ctx context.Context, b Bus, in events.Inbound) error {
	id := fmt.Sprintf("in:%s:%s:%s", in.BotID, in.Channel, in.ProviderMessageID)
	ev, err := bus.NewEvent(id, events.TypeInbound, in.Channel+":"+in.From, in)
	if err != nil {
		return err
	}
	if _, err := b.Publish(ctx, events.InboundSubject(in.Channel, in.BotID), ev); err != nil {
		return fmt.Errorf("%w: %w", ErrBus, err)
	}
	return nil
}

// PublishDelivery queues a provider's status report of a message. Its id
// names the provider message and the status, so a retried callback is
// dropped by JetStream; the orchestrator finds the message by provider id.
func PublishDelivery(ctx context.Context, b Bus, d events.Delivery) error {
	if d.At.IsZero() {
		d.At = time.Now().UTC()
	}
	id := fmt.Sprintf("wh-dlv:%s:%s:%s:%s", d.BotID, d.Channel, d.ProviderMessageID, d.Status)
	// The event subject keys the orchestrator's ordering: statuses of one
	// provider message are applied one at a time.
	ev, err := bus.NewEvent(id, events.TypeDelivery, d.Channel+":"+d.ProviderMessageID, d)
	if err != nil {
		return err
	}
	if _, err := b.Publish(ctx, events.DeliverySubject(d.Channel, d.BotID), ev); err != nil {
		return fmt.Errorf("%w: %w", ErrBus, err)
	}
	return nil
}

// setReachability records that a contact blocked (or unblocked) the bot,
// so that broadcasts skip it. A contact Flowgate never saw needs nothing.
func setReachability(ctx context.Context, st Contacts, botID, channel string, r Reachability) error {
	c, err := st.GetContactByExternalID(ctx, botID, channel, r.ExternalID)
	if errors.Is(err, store.ErrNotFound) || errors.Is(err, store.ErrInvalid) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("%w: %w", ErrStore, err)
	}
	if err := st.SetContactReachability(ctx, botID, c.ID, !r.Reachable, r.Reason); err != nil && !errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("%w: %w", ErrStore, err)
	}
	return nil
}
