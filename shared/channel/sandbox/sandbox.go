// Package sandbox is the channel every bot has: it needs no provider, keeps
// what the bot sends in the store (readable through the ingress's sandbox
// API) and takes simulated replies, so a whole conversation can be tried
// with no credentials.
package sandbox

import (
	"context"
	"encoding/json"
	"errors"
	"time"

	"github.com/flowgate/flowgate/shared/channel"
	"github.com/flowgate/flowgate/shared/events"
	"github.com/flowgate/flowgate/shared/provider"
	"github.com/flowgate/flowgate/shared/store"
)

// Store is where the sandbox "delivers".
type Store interface {
	// DeliverSandbox appends to the transcript and records the messages
	// as sent, in one write.
	DeliverSandbox(ctx context.Context, triggerID string, ms []store.SandboxMessage) error
}

// Sender delivers into the store.
type Sender struct{ store Store }

// NewSender returns the sandbox sender.
func NewSender(s Store) *Sender { return &Sender{store: s} }

// Channel is "sandbox".
func (*Sender) Channel() string { return events.ChannelSandbox }

// Account paces nothing: every bot has one sandbox.
func (*Sender) Account(b store.Bot) (string, error) { return b.ID, nil }

// Send appends the message to the bot's sandbox transcript (once per id).
func (s *Sender) Send(ctx context.Context, bot store.Bot, out events.Outbound, msg events.OutboundMessage) (channel.Result, error) {
	res, err := s.SendBundle(ctx, bot, out, []events.OutboundMessage{msg})
	if err != nil {
		return channel.Result{}, err
	}
	return res[0], nil
}

// SendBundle appends the messages to the transcript in order and records
// them as sent, in one write (channel.BundleSender; the provider declares
// RecordsSent).
func (s *Sender) SendBundle(ctx context.Context, bot store.Bot, out events.Outbound, msgs []events.OutboundMessage) ([]channel.Result, error) {
	now := time.Now().UTC()
	ms := make([]store.SandboxMessage, len(msgs))
	res := make([]channel.Result, len(msgs))
	for i, msg := range msgs {
		content, err := json.Marshal(msg.Content)
		if err != nil {
			return nil, &channel.PermanentError{Code: "invalid_message", Reason: err.Error(), Err: err}
		}
		ms[i] = store.SandboxMessage{MessageID: msg.ID, BotID: bot.ID, RunID: out.RunID, To: out.To, Content: content, CreatedAt: now}
		res[i] = channel.Result{ProviderMessageID: store.SandboxProviderPrefix + msg.ID}
	}
	if err := s.store.DeliverSandbox(ctx, out.TriggerID, ms); err != nil {
		return nil, err
	}
	return res, nil
}

// Provider is the sandbox channel, registered under events.ChannelSandbox:
// every bot has it, it is not paced, a resend is harmless (one transcript
// entry per message id) and a bundle is one write, which also records its
// messages as sent. Replies come through
// the ingress's sandbox API, not a webhook.
var Provider = provider.Provider{
	Name:         events.ChannelSandbox,
	Capabilities: provider.Capabilities{IdempotentSends: true, Bundles: true, RecordsSent: true},
	Account: func(b store.Bot) (provider.Account, bool) {
		return provider.Account{Key: b.ID}, true
	},
	NewSender: func(d provider.SenderDeps) (channel.Sender, error) {
		if d.Store == nil {
			return nil, errors.New("sandbox: a store is required")
		}
		return NewSender(d.Store), nil
	},
}

func init() { provider.MustRegister(Provider) }
