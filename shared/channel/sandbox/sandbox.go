// Package sandbox is the channel every bot has: it needs no provider, keeps
// what the bot sends in the store (readable through the ingress's sandbox
// API) and takes simulated replies, so a whole conversation can be tried
// with no credentials.
package sandbox

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
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
	// DeliverSandboxMany is DeliverSandbox for several bundles at once.
	DeliverSandboxMany(ctx context.Context, ds []store.SandboxDelivery) error
}

// Sender delivers into the store. Bundles that arrive while a delivery
// is being written are written together when it returns, in one
// DeliverSandboxMany (the worker's group commit, as the ingress's for
// triggers): a lone bundle never waits, and a batch of bundles fetched
// together (one outbound message carries up to 32) costs one write where
// it cost one each: under SQLite shared by several processes, a
// transcript insert, savepoint and release less per bundle under the write
// lock (docs/performance.md).
type Sender struct {
	store Store

	mu      sync.Mutex
	busy    bool
	waiting []*delivery
}

// delivery is one bundle waiting for its write.
type delivery struct {
	d    store.SandboxDelivery
	done chan error // buffered: the writer never blocks on it
}

// NewSender returns the sandbox sender.
func NewSender(s Store) *Sender { return &Sender{store: s} }

// deliver writes one bundle, with the bundles waiting beside it.
func (s *Sender) deliver(ctx context.Context, d store.SandboxDelivery) error {
	q := &delivery{d: d, done: make(chan error, 1)}
	s.mu.Lock()
	s.waiting = append(s.waiting, q)
	lead := !s.busy
	s.busy = true
	s.mu.Unlock()
	if lead {
		s.flush(context.WithoutCancel(ctx), true)
	}
	select {
	case err := <-q.done:
		return err
	case <-ctx.Done():
		return ctx.Err() // the bundle may still be written: delivering it again is harmless
	}
}

// flush writes what waits, a group at a time, until nothing does. The
// caller that started it writes one group and hands the rest to a
// goroutine, so that its own answer never waits for later bundles.
func (s *Sender) flush(ctx context.Context, first bool) {
	for {
		s.mu.Lock()
		n, msgs := 0, 0
		for n < len(s.waiting) && (n == 0 || msgs+len(s.waiting[n].d.Messages) <= store.MaxSandboxDeliveries) {
			msgs += len(s.waiting[n].d.Messages)
			n++
		}
		group := s.waiting[:n:n]
		s.waiting = s.waiting[n:]
		if n == 0 {
			s.busy = false
			s.waiting = nil
			s.mu.Unlock()
			return
		}
		s.mu.Unlock()
		s.write(ctx, group)
		if first {
			s.mu.Lock()
			more := len(s.waiting) > 0
			if !more {
				s.busy = false
			}
			s.mu.Unlock()
			if more {
				go s.flush(ctx, false)
			}
			return
		}
	}
}

// write writes a group: one DeliverSandboxMany. When that refuses bad
// input, each bundle is written alone, so that one bad bundle fails only
// its own sender; any other failure (the store unavailable) is every
// bundle's, retried as each would be alone.
func (s *Sender) write(ctx context.Context, group []*delivery) {
	if len(group) > 1 {
		ds := make([]store.SandboxDelivery, len(group))
		for i, q := range group {
			ds[i] = q.d
		}
		err := s.store.DeliverSandboxMany(ctx, ds)
		if !errors.Is(err, store.ErrInvalid) {
			for _, q := range group {
				q.done <- err
			}
			return
		}
	}
	for _, q := range group {
		q.done <- s.store.DeliverSandbox(ctx, q.d.TriggerID, q.d.Messages)
	}
}

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
	if err := s.deliver(ctx, store.SandboxDelivery{TriggerID: out.TriggerID, Messages: ms}); err != nil {
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
