package channel_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/flowgate/flowgate/shared/bus"
	"github.com/flowgate/flowgate/shared/channel"
	"github.com/flowgate/flowgate/shared/channel/sandbox"
	"github.com/flowgate/flowgate/shared/events"
	"github.com/flowgate/flowgate/shared/store"
	"github.com/flowgate/flowgate/shared/store/sqlite"
)

// pickySender sends through the sandbox, except to "blocked" (a permanent
// failure every time) and to "flaky" (a 5xx on its first attempts).
type pickySender struct {
	channel.Sender
	mu         sync.Mutex
	flakyFails int
	attempts   map[string]int // by recipient
	// unblocked: "blocked" has unblocked the bot, its sends go.
	unblocked atomic.Bool
	// laterFails: how many first sends to "later" the provider answers
	// with a retry-after of laterWait.
	laterFails int
	laterWait  time.Duration
	at         map[string][]time.Time // attempts' times, by recipient
}

func (p *pickySender) Send(ctx context.Context, bot store.Bot, out events.Outbound, msg events.OutboundMessage) (channel.Result, error) {
	p.mu.Lock()
	p.attempts[out.To]++
	n := p.attempts[out.To]
	if p.at != nil {
		p.at[out.To] = append(p.at[out.To], time.Now())
	}
	p.mu.Unlock()
	switch {
	case out.To == "later" && n <= p.laterFails:
		return channel.Result{}, &channel.RetryAfterError{Wait: p.laterWait, Code: "429", Throttled: true, Err: errors.New("provider: too many requests")}
	case out.To == "blocked" && !p.unblocked.Load():
		return channel.Result{}, &channel.PermanentError{Code: "131026", Reason: "receiver is incapable of receiving this message", Unreachable: true}
	case out.To == "flaky" && n <= p.flakyFails:
		return channel.Result{}, errors.New("provider: 500 internal error")
	}
	return p.Sender.Send(ctx, bot, out, msg)
}

func (p *pickySender) tries(to string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.attempts[to]
}

// batchFixture is a bot, a trigger and a bundle of two messages for each
// recipient, stored as the orchestrator stores them.
func batchFixture(t *testing.T, ctx context.Context, st *sqlite.Store, recipients ...string) []events.Outbound {
	t.Helper()
	now := time.Now().UTC()
	require.NoError(t, st.CreateBot(ctx, store.Bot{ID: "acme", Name: "Acme"}))
	_, _, err := st.CreateTrigger(ctx, store.Trigger{ID: "tr1", BotID: "acme", Source: "native", FlowID: "f",
		Spec: json.RawMessage(`{}`), Status: store.TriggerDone, CreatedAt: now, UpdatedAt: now})
	require.NoError(t, err)
	var bundles []events.Outbound
	var recs []store.Message
	for _, to := range recipients {
		run := "run-" + to
		out := events.Outbound{BotID: "acme", RunID: run, TriggerID: "tr1", ContactID: "c-" + to, Channel: events.ChannelSandbox, To: to}
		for seq := 1; seq <= 2; seq++ {
			id := fmt.Sprintf("%s:%d", run, seq)
			out.Messages = append(out.Messages, events.OutboundMessage{ID: id, Seq: seq, Step: "s",
				Content: events.Content{Type: events.ContentText, Text: fmt.Sprintf("hello %s %d", to, seq)}})
			recs = append(recs, store.Message{ID: id, BotID: "acme", RunID: run, TriggerID: "tr1", ContactID: out.ContactID,
				Channel: events.ChannelSandbox, To: to, Seq: seq, Content: json.RawMessage(`{}`)})
		}
		bundles = append(bundles, out)
	}
	require.NoError(t, st.InsertMessages(ctx, recs))
	return bundles
}

// An outbound batch message (several runs' bundles, as the orchestrator
// publishes them for an unpaced channel) is delivered bundle by bundle:
// every message once, in order per contact, counted once on its trigger;
// a redelivery of the same bundles under another message id (a replay the
// duplicate window no longer catches) doubles nothing.
func TestBatchMessageDeliversEachBundleOnce(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	b, st, log := busAndStore(t)
	recipients := []string{"u1", "u2", "u3", "u4", "u5"}
	bundles := batchFixture(t, ctx, st, recipients...)
	// u3's first message was sent by an earlier attempt.
	res, err := sandbox.NewSender(st).Send(ctx, store.Bot{ID: "acme"}, bundles[2], bundles[2].Messages[0])
	require.NoError(t, err)
	require.NoError(t, st.MarkSent(ctx, "acme", "tr1", []store.SentMessage{{ID: bundles[2].Messages[0].ID, ProviderMessageID: res.ProviderMessageID}}))

	r, err := channel.NewRunner(channel.RunnerConfig{}, channel.RunnerDeps{Sender: sandbox.NewSender(st), Bus: b, Store: st, Logger: log,
		Capabilities: channel.Capabilities{IdempotentSends: true, Bundles: true, RecordsSent: true}})
	require.NoError(t, err)
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()

	subject := events.OutboundSubject(events.ChannelSandbox, "acme", events.LaneHigh)
	publish := func(id string) {
		ev, err := bus.NewEvent(id, events.TypeOutboundBatch, "c-u1", events.OutboundBatch{Bundles: bundles})
		require.NoError(t, err)
		_, err = b.Publish(ctx, subject, ev)
		require.NoError(t, err)
	}
	sent := func() int64 {
		tr, err := st.GetTrigger(ctx, "acme", "tr1")
		require.NoError(t, err)
		return tr.Counters.Sent
	}
	publish("outs:first")
	require.Eventually(t, func() bool { return sent() == 10 }, 10*time.Second, 10*time.Millisecond)
	publish("outs:replayed")
	time.Sleep(300 * time.Millisecond)
	for _, to := range recipients {
		require.Equal(t, []string{"run-" + to + ":1", "run-" + to + ":2"}, transcriptIDs(t, st, to), "each message once, in order, for %s", to)
	}
	require.EqualValues(t, 10, sent(), "each message counted once")
	for _, out := range bundles {
		for _, msg := range out.Messages {
			got, err := st.GetMessage(ctx, "acme", msg.ID)
			require.NoError(t, err)
			require.Equal(t, store.MessageSent, got.Status)
		}
	}
	queued, err := b.Queued(ctx, bus.StreamOutbound, subject)
	require.NoError(t, err)
	require.Zero(t, queued, "the batch messages were acknowledged")
	cancel()
	require.NoError(t, <-done)
}

// One bundle's failure does not hold the others of its batch: the others
// are sent and the message is acknowledged; a bundle that failed
// permanently is dead-lettered alone (its messages reported failed, as
// alone) and one that failed transiently is handed on alone and sent on a
// later attempt, once.
func TestBatchMessageHandsOnTheBundlesThatFailed(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	b, st, log := busAndStore(t)
	bundles := batchFixture(t, ctx, st, "u1", "blocked", "flaky", "u2")
	sender := &pickySender{Sender: sandbox.NewSender(st), flakyFails: 1, attempts: map[string]int{}}
	r, err := channel.NewRunner(channel.RunnerConfig{MaxBackoff: 20 * time.Millisecond},
		channel.RunnerDeps{Sender: sender, Bus: b, Store: st, Logger: log, Capabilities: channel.Capabilities{IdempotentSends: true}})
	require.NoError(t, err)
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()

	// The failure reports the channel worker publishes, as the orchestrator
	// would consume them.
	reports := make(chan events.Delivery, 16)
	go func() {
		_ = b.Consume(ctx, bus.ConsumerSpec{Stream: bus.StreamEvents, Durable: "test-deliveries",
			Filters: []string{events.DeliverySubject(events.ChannelSandbox, "acme")}}, func(_ context.Context, m bus.Message) error {
			var d events.Delivery
			if err := json.Unmarshal(m.Event.Data(), &d); err != nil {
				return bus.Permanent(err)
			}
			reports <- d
			return nil
		}, bus.ConsumeOptions{})
	}()

	subject := events.OutboundSubject(events.ChannelSandbox, "acme", events.LaneHigh)
	ev, err := bus.NewEvent("outs:batch", events.TypeOutboundBatch, "c-u1", events.OutboundBatch{Bundles: bundles})
	require.NoError(t, err)
	_, err = b.Publish(ctx, subject, ev)
	require.NoError(t, err)

	delivered := func(to string) int { return len(transcriptIDs(t, st, to)) }
	require.Eventually(t, func() bool {
		return delivered("u1") == 2 && delivered("u2") == 2 && delivered("flaky") == 2
	}, 10*time.Second, 10*time.Millisecond)
	require.Eventually(t, func() bool {
		letters, _, err := b.DeadLetters(ctx, 0, 10)
		return err == nil && len(letters) == 1
	}, 10*time.Second, 10*time.Millisecond)
	time.Sleep(300 * time.Millisecond) // room for anything sent twice to show

	letters, _, err := b.DeadLetters(ctx, 0, 10)
	require.NoError(t, err)
	require.Len(t, letters, 1, "only the bundle that failed permanently is a dead letter")
	dl, err := b.DeadLetter(ctx, letters[0].Seq)
	require.NoError(t, err)
	require.Equal(t, events.TypeOutbound, dl.Type)
	require.Equal(t, subject, dl.Subject)
	require.Contains(t, dl.Reason, "131026")
	var alone events.Outbound
	require.NoError(t, json.Unmarshal(dl.Data, &alone), "the dead letter is the bundle alone")
	require.Equal(t, "run-blocked", alone.RunID)
	require.Equal(t, 0, delivered("blocked"))
	require.Equal(t, 1, sender.tries("blocked"), "a permanent failure is not tried again")
	require.Equal(t, 2, delivered("flaky"), "the transient failure was sent once it passed, once")
	for _, to := range []string{"u1", "u2"} {
		require.Equal(t, 2, sender.tries(to), "%s: each message sent once", to)
	}

	var failedIDs []string
	for len(failedIDs) < 2 {
		select {
		case d := <-reports:
			require.Equal(t, events.StatusFailed, d.Status)
			require.Equal(t, "run-blocked", d.RunID)
			failedIDs = append(failedIDs, d.MessageID)
		case <-time.After(10 * time.Second):
			t.Fatalf("failure reports: got %v", failedIDs)
		}
	}
	require.ElementsMatch(t, []string{"run-blocked:1", "run-blocked:2"}, failedIDs)
	queued, err := b.Queued(ctx, bus.StreamOutbound, subject)
	require.NoError(t, err)
	require.Zero(t, queued, "the batch and the bundle handed on were acknowledged")

	// The dead letter is replayed as any other: the bundle alone goes back
	// to its lane and is sent (here its messages were never recorded as
	// failed, as no orchestrator consumed the reports).
	sender.unblocked.Store(true)
	_, _, err = b.Replay(ctx, letters[0].Seq)
	require.NoError(t, err)
	require.Eventually(t, func() bool { return delivered("blocked") == 2 }, 10*time.Second, 10*time.Millisecond)
	require.Equal(t, []string{"run-blocked:1", "run-blocked:2"}, transcriptIDs(t, st, "blocked"))
	cancel()
	require.NoError(t, <-done)
}

// A bundle of a batch whose send the provider answered with a retry-after
// is handed on alone and waits the time the provider gave before it is
// tried again (it used to be tried at once, as a new message); the others
// are sent at once.
func TestBatchBundleHandedOnAfterRetryAfterWaits(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	b, st, log := busAndStore(t)
	bundles := batchFixture(t, ctx, st, "u1", "later")
	const wait = 1500 * time.Millisecond
	sender := &pickySender{Sender: sandbox.NewSender(st), laterFails: 1, laterWait: wait,
		attempts: map[string]int{}, at: map[string][]time.Time{}}
	r, err := channel.NewRunner(channel.RunnerConfig{MaxBackoff: 20 * time.Millisecond},
		channel.RunnerDeps{Sender: sender, Bus: b, Store: st, Logger: log, Capabilities: channel.Capabilities{IdempotentSends: true}})
	require.NoError(t, err)
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()

	subject := events.OutboundSubject(events.ChannelSandbox, "acme", events.LaneHigh)
	ev, err := bus.NewEvent("outs:later", events.TypeOutboundBatch, "c-u1", events.OutboundBatch{Bundles: bundles})
	require.NoError(t, err)
	_, err = b.Publish(ctx, subject, ev)
	require.NoError(t, err)

	delivered := func(to string) int { return len(transcriptIDs(t, st, to)) }
	require.Eventually(t, func() bool { return delivered("u1") == 2 && delivered("later") == 2 }, 15*time.Second, 10*time.Millisecond)
	sender.mu.Lock()
	at := append([]time.Time(nil), sender.at["later"]...)
	sender.mu.Unlock()
	require.Len(t, at, 3, "the refused first message, then the bundle's two messages once")
	// The bound is the provider's wait, less the clock's resolution: the
	// handed-on bundle must not be tried before it.
	require.GreaterOrEqual(t, at[1].Sub(at[0]), wait-10*time.Millisecond, "the retry came before the provider's retry-after")
	require.Equal(t, 2, sender.tries("u1"), "the other bundle was sent once")
	letters, _, err := b.DeadLetters(ctx, 0, 10)
	require.NoError(t, err)
	require.Empty(t, letters, "waiting is not failing")
	cancel()
	require.NoError(t, <-done)
}
