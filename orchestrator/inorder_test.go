package orchestrator

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/flowgate/flowgate/shared/bus"
	"github.com/flowgate/flowgate/shared/events"
	"github.com/flowgate/flowgate/shared/provider"
	"github.com/flowgate/flowgate/shared/store"
)

// A step refused for a busy run is retried in place until it goes
// through; any other error is returned at once; a run busy for longer than
// inOrderFor is handed back with the step's own error.
func TestInOrderRetriesBusyRunsInPlace(t *testing.T) {
	ctx := context.Background()
	claimed := bus.TransientWithin(fmt.Errorf("run r: %w", errRunClaimed), claimRetryCap)
	t.Run("claimed, then free", func(t *testing.T) {
		calls := 0
		err := inOrder(func(context.Context, bus.Message) error {
			calls++
			if calls <= 3 {
				return claimed
			}
			return nil
		})(ctx, bus.Message{})
		require.NoError(t, err)
		require.Equal(t, 4, calls)
	})
	t.Run("moved on, then read again", func(t *testing.T) {
		calls := 0
		err := inOrder(func(context.Context, bus.Message) error {
			calls++
			if calls == 1 {
				return changed("r")
			}
			return nil
		})(ctx, bus.Message{})
		require.NoError(t, err)
		require.Equal(t, 2, calls)
	})
	t.Run("another error", func(t *testing.T) {
		calls := 0
		boom := errors.New("store down")
		err := inOrder(func(context.Context, bus.Message) error { calls++; return boom })(ctx, bus.Message{})
		require.ErrorIs(t, err, boom)
		require.Equal(t, 1, calls, "not retried in place")
	})
	t.Run("claimed for good", func(t *testing.T) {
		calls := 0
		err := inOrder(func(context.Context, bus.Message) error { calls++; return claimed })(ctx, bus.Message{})
		requireWaitsForClaim(t, err)
		require.Greater(t, calls, 1)
	})
}

// Two replies of one contact that arrive while another step holds the
// run's claim are applied in the order they came: the first waits in
// place while the run is busy, and the second waits behind it. When the
// first was handed back to JetStream instead, the second, arriving after
// the claim ended, went first, and the flow took it as the answer to the
// first question.
func TestRepliesOfOneContactStayInOrderWhileTheRunIsBusy(t *testing.T) {
	u := newUnit(t)
	_, err := u.raw.PutFlow(u.ctx, store.Flow{BotID: unitBot, ID: "two", Definition: []byte(`{"steps":[
		{"id":"q1","type":"ask","text":"First?","attribute":"a1"},
		{"id":"q2","type":"ask","text":"Second?","attribute":"a2"},
		{"id":"done","type":"send","text":"{{ a1 }} then {{ a2 }}"}]}`)})
	require.NoError(t, err)
	trig := events.Trigger{ID: "t-two", BotID: unitBot, FlowID: "two", Channel: events.ChannelSandbox,
		Source: "native", Audience: events.Audience{Users: []string{"ann"}}}
	require.NoError(t, u.o.handleTrigger(u.ctx, u.message(trig.ID, events.TypeTriggerAccepted, trig)))
	run := u.run(RunID(trig.ID, u.contact("ann").ID))

	// The consumers of a running orchestrator, as in production.
	o := u.replica()
	ctx, cancel := context.WithCancel(u.ctx)
	done := make(chan error, 1)
	go func() { done <- o.Run(ctx) }()
	t.Cleanup(func() { cancel(); require.NoError(t, <-done) })

	// Another step holds the run for a moment.
	const held = 150 * time.Millisecond
	now := time.Now()
	refused, err := u.raw.ClaimRuns(u.ctx, []store.RunClaim{{BotID: unitBot, RunID: run.ID, Version: run.Version}},
		"other-step", now, now.Add(held))
	require.NoError(t, err)
	require.Empty(t, refused)
	reply := func(id, text string) {
		require.NoError(t, provider.PublishInbound(u.ctx, u.bus, events.Inbound{BotID: unitBot, Channel: events.ChannelSandbox,
			From: "ann", ProviderMessageID: id, Text: text, ReceivedAt: time.Now().UTC()}))
	}
	reply("in-1", "A")
	// The second comes after the claim has ended, while the first
	// (refused) would still be waiting for its redelivery.
	time.Sleep(time.Until(now.Add(held + 50*time.Millisecond)))
	reply("in-2", "B")

	require.Eventually(t, func() bool { return u.run(run.ID).Status == store.RunCompleted }, 20*time.Second, 10*time.Millisecond)
	msgs := u.messages(run.ID)
	require.NotEmpty(t, msgs)
	require.JSONEq(t, `{"type":"text","text":"A then B"}`, string(msgs[len(msgs)-1].Content), "the replies in the order they came")
}
