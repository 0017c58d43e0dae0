package channel_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/flowgate/flowgate/shared/bus"
	"github.com/flowgate/flowgate/shared/bus/bustest"
	"github.com/flowgate/flowgate/shared/channel"
	"github.com/flowgate/flowgate/shared/channel/sandbox"
	"github.com/flowgate/flowgate/shared/events"
	"github.com/flowgate/flowgate/shared/store"
	"github.com/flowgate/flowgate/shared/store/sqlite"
	"github.com/flowgate/flowgate/shared/store/sqlite/sqlitetest"
)

// busAndStore is a real embedded JetStream with a bus on it and a real
// SQLite store, both gone when the test ends, and a quiet logger.
func busAndStore(t *testing.T) (*bus.Bus, *sqlite.Store, *slog.Logger) {
	t.Helper()
	log := slog.New(slog.DiscardHandler)
	_, b := bustest.Bus(t, bus.Config{Source: "/test", Logger: log})
	return b, sqlitetest.Open(t), log
}

// mkBotAndTrigger stores bot acme and its trigger tr1.
func mkBotAndTrigger(t *testing.T, st *sqlite.Store) {
	t.Helper()
	ctx := context.Background()
	now := time.Now().UTC()
	require.NoError(t, st.CreateBot(ctx, store.Bot{ID: "acme", Name: "Acme"}))
	_, _, err := st.CreateTrigger(ctx, store.Trigger{ID: "tr1", BotID: "acme", Source: "native", FlowID: "f",
		Spec: json.RawMessage(`{}`), Status: store.TriggerDone, CreatedAt: now, UpdatedAt: now})
	require.NoError(t, err)
}

// transcriptIDs lists the ids of the messages bot acme's sandbox
// transcript holds for recipient to, in order.
func transcriptIDs(t *testing.T, st *sqlite.Store, to string) []string {
	t.Helper()
	ms, err := st.ListSandbox(context.Background(), "acme", to, 0, 100)
	require.NoError(t, err)
	var ids []string
	for _, m := range ms {
		ids = append(ids, m.MessageID)
	}
	return ids
}

// The sandbox takes a bundle in one write and records it with MarkSent:
// every message once in the transcript, in order, counted once on the
// trigger — also when the same bundle arrives again as another stream
// message (a replay the duplicate window no longer catches) and when a
// message was already sent by an earlier attempt.
func TestSandboxBundleIsDeliveredAndCountedOnce(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	b, st, log := busAndStore(t)

	mkBotAndTrigger(t, st)
	out := events.Outbound{BotID: "acme", RunID: "r1", TriggerID: "tr1", ContactID: "c1", Channel: events.ChannelSandbox, To: "u1"}
	var recs []store.Message
	for i := 1; i <= 3; i++ {
		msg := events.OutboundMessage{ID: "r1:" + string(rune('0'+i)), Seq: i, Step: "s", Content: events.Content{Type: events.ContentText, Text: "hello " + string(rune('0'+i))}}
		out.Messages = append(out.Messages, msg)
		recs = append(recs, store.Message{ID: msg.ID, BotID: "acme", RunID: "r1", TriggerID: "tr1", ContactID: "c1",
			Channel: events.ChannelSandbox, To: "u1", Seq: i, Content: json.RawMessage(`{}`)})
	}
	require.NoError(t, st.InsertMessages(ctx, recs))
	// The first message was sent by an earlier attempt.
	res, err := sandbox.NewSender(st).Send(ctx, store.Bot{ID: "acme"}, out, out.Messages[0])
	require.NoError(t, err)
	require.NoError(t, st.MarkSent(ctx, "acme", "tr1", []store.SentMessage{{ID: out.Messages[0].ID, ProviderMessageID: res.ProviderMessageID}}))

	r, err := channel.NewRunner(channel.RunnerConfig{}, channel.RunnerDeps{Sender: sandbox.NewSender(st), Bus: b, Store: st, Logger: log,
		Capabilities: channel.Capabilities{IdempotentSends: true, Bundles: true}})
	require.NoError(t, err)
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()

	publish := func(id string) {
		ev, err := bus.NewEvent(id, events.TypeOutbound, "c1", out)
		require.NoError(t, err)
		// A subject of releases before lanes: still consumed (high lane).
		_, err = b.Publish(ctx, events.SubjectOutbound+".sandbox.acme", ev)
		require.NoError(t, err)
	}
	transcript := func() []string { return transcriptIDs(t, st, "u1") }
	sent := func() int64 {
		tr, err := st.GetTrigger(ctx, "acme", "tr1")
		require.NoError(t, err)
		return tr.Counters.Sent
	}
	publish("out:r1:1")
	require.Eventually(t, func() bool { return len(transcript()) == 3 && sent() == 3 }, 10*time.Second, 10*time.Millisecond)
	publish("out:r1:1-replayed") // the same bundle, another stream message
	time.Sleep(300 * time.Millisecond)
	require.Equal(t, []string{"r1:1", "r1:2", "r1:3"}, transcript(), "each message once, in order")
	require.EqualValues(t, 3, sent(), "each message counted once")
	for _, m := range recs {
		got, err := st.GetMessage(ctx, "acme", m.ID)
		require.NoError(t, err)
		require.Equal(t, store.MessageSent, got.Status)
		require.Equal(t, "sandbox-"+m.ID, got.ProviderMessageID)
	}
	cancel()
	require.NoError(t, <-done)
}

// A sender whose resends are harmless (the sandbox) has lane consumers
// with the short AckWait (bus.IdempotentOutboundAckWait, 5 s): a bundle a
// lost worker held, fetched and never answered, is sent by another worker
// about 5 s after the loss, not after OutboundAckWait (20 s).
func TestIdempotentSenderTakesOverALostWorkersBundleWithinStepAckWait(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	b, st, log := busAndStore(t)
	mkBotAndTrigger(t, st)
	subject := events.OutboundSubject(events.ChannelSandbox, "acme", events.LaneHigh)
	publish := func(to string) {
		t.Helper()
		out := events.Outbound{BotID: "acme", RunID: "r-" + to, TriggerID: "tr1", ContactID: "c-" + to, Channel: events.ChannelSandbox, To: to,
			Messages: []events.OutboundMessage{{ID: "r-" + to + ":1", Seq: 1, Step: "s", Content: events.Content{Type: events.ContentText, Text: "hi"}}}}
		require.NoError(t, st.InsertMessages(ctx, []store.Message{{ID: out.Messages[0].ID, BotID: "acme", RunID: out.RunID, TriggerID: "tr1",
			ContactID: out.ContactID, Channel: events.ChannelSandbox, To: to, Seq: 1, Content: json.RawMessage(`{}`)}}))
		ev, err := bus.NewEvent("out:"+to, events.TypeOutbound, out.ContactID, out)
		require.NoError(t, err)
		_, err = b.Publish(ctx, subject, ev)
		require.NoError(t, err)
	}
	runner := func(ctx context.Context) chan error {
		r, err := channel.NewRunner(channel.RunnerConfig{}, channel.RunnerDeps{Sender: sandbox.NewSender(st), Bus: b, Store: st, Logger: log,
			Capabilities: sandbox.Provider.Capabilities.Runner()})
		require.NoError(t, err)
		done := make(chan error, 1)
		go func() { done <- r.Run(ctx) }()
		return done
	}

	// A first worker creates the lane's consumer, sends, and stops.
	firstCtx, stopFirst := context.WithCancel(ctx)
	first := runner(firstCtx)
	publish("u0")
	require.Eventually(t, func() bool { return len(transcriptIDs(t, st, "u0")) == 1 }, 10*time.Second, 10*time.Millisecond)
	stopFirst()
	require.NoError(t, <-first)
	durable := bus.OutboundLaneConsumer(subject, 1).Durable
	cons, err := b.JetStream().Consumer(ctx, bus.StreamOutbound, durable)
	require.NoError(t, err)
	require.Equal(t, bus.IdempotentOutboundAckWait, cons.CachedInfo().Config.AckWait)

	// A worker that fetched the next bundle and was lost.
	publish("u1")
	batch, err := cons.Fetch(1, jetstream.FetchMaxWait(5*time.Second))
	require.NoError(t, err)
	var held []jetstream.Msg
	for m := range batch.Messages() {
		held = append(held, m)
	}
	require.Len(t, held, 1)
	lost := time.Now()

	second := runner(ctx)
	require.Eventually(t, func() bool { return len(transcriptIDs(t, st, "u1")) == 1 }, 15*time.Second, 20*time.Millisecond)
	took := time.Since(lost)
	t.Logf("the lost worker's bundle was sent %s after the loss (AckWait %s)", took.Round(time.Millisecond), bus.IdempotentOutboundAckWait)
	require.GreaterOrEqual(t, took, bus.IdempotentOutboundAckWait-time.Second, "not before the AckWait ran out")
	require.Less(t, took, bus.IdempotentOutboundAckWait+5*time.Second)
	cancel()
	require.NoError(t, <-second)
}
