package channel_test

import (
	"context"
	"encoding/json"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/flowgate/flowgate/shared/bus"
	"github.com/flowgate/flowgate/shared/channel"
	"github.com/flowgate/flowgate/shared/channel/sandbox"
	"github.com/flowgate/flowgate/shared/events"
	"github.com/flowgate/flowgate/shared/store"
)

// flakySender fails its first calls the way a provider in trouble does —
// a 5xx or a connection reset (a plain error) or "try later" (a
// RetryAfterError) — then sends through the sandbox.
type flakySender struct {
	channel.Sender
	failures int64
	retry    bool
	calls    atomic.Int64
}

func (f *flakySender) Send(ctx context.Context, bot store.Bot, out events.Outbound, msg events.OutboundMessage) (channel.Result, error) {
	if f.calls.Add(1) <= f.failures {
		if f.retry {
			return channel.Result{}, &channel.RetryAfterError{Wait: 5 * time.Millisecond, Code: "503", Err: errors.New("provider: 503 try later")}
		}
		return channel.Result{}, errors.New("provider: 500 internal error")
	}
	return f.Sender.Send(ctx, bot, out, msg)
}

// A provider that keeps failing for longer than the lane consumer's
// MaxDeliver does not turn the message into a dead letter: it is retried
// (re-published with a fresh delivery count) until the provider recovers,
// then sent exactly once.
func TestProviderOutageOutlastingMaxDeliverDeadLettersNothing(t *testing.T) {
	for _, retry := range []bool{false, true} {
		name := "5xx"
		if retry {
			name = "retry-after"
		}
		t.Run(name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			b, st, log := busAndStore(t)
			require.NoError(t, st.CreateBot(ctx, store.Bot{ID: "acme", Name: "Acme"}))
			out := events.Outbound{BotID: "acme", RunID: "r1", ContactID: "c1", Channel: events.ChannelSandbox, To: "u1",
				Messages: []events.OutboundMessage{{ID: "r1:1", Seq: 1, Step: "s", Content: events.Content{Type: events.ContentText, Text: "hello"}}}}
			require.NoError(t, st.InsertMessages(ctx, []store.Message{{ID: "r1:1", BotID: "acme", RunID: "r1", ContactID: "c1",
				Channel: events.ChannelSandbox, To: "u1", Seq: 1, Content: json.RawMessage(`{}`)}}))

			const maxDeliver, failures = 4, 13 // three times MaxDeliver and more
			sender := &flakySender{Sender: sandbox.NewSender(st), failures: failures, retry: retry}
			r, err := channel.NewRunner(channel.RunnerConfig{MaxDeliver: maxDeliver, MaxBackoff: 10 * time.Millisecond},
				channel.RunnerDeps{Sender: sender, Bus: b, Store: st, Logger: log})
			require.NoError(t, err)
			done := make(chan error, 1)
			go func() { done <- r.Run(ctx) }()
			ev, err := bus.NewEvent("out:r1", events.TypeOutbound, "c1", out)
			require.NoError(t, err)
			_, err = b.Publish(ctx, events.OutboundSubject(events.ChannelSandbox, "acme", "high"), ev)
			require.NoError(t, err)

			require.Eventually(t, func() bool {
				m, err := st.GetMessage(ctx, "acme", "r1:1")
				return err == nil && m.Status == store.MessageSent
			}, 30*time.Second, 10*time.Millisecond, "sent once the provider recovered")
			time.Sleep(200 * time.Millisecond)
			require.EqualValues(t, failures+1, sender.calls.Load(), "retried through the outage, sent once")
			ms, err := st.ListSandbox(ctx, "acme", "u1", 0, 10)
			require.NoError(t, err)
			require.Len(t, ms, 1)
			dlq, err := b.JetStream().Stream(ctx, bus.StreamDLQ)
			require.NoError(t, err)
			require.Zero(t, dlq.CachedInfo().State.Msgs, "nothing dead-lettered")
			cancel()
			require.NoError(t, <-done)
		})
	}
}
