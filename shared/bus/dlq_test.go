package bus_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/flowgate/flowgate/shared/bus"
	"github.com/flowgate/flowgate/shared/events"
)

// A message dead-lettered by a permanent error is listed with its reason,
// shown with its payload, replayed to its subject once the fault is fixed
// (handled again, with the same event id), and gone from the stream.
func TestDeadLetterListShowReplayPurge(t *testing.T) {
	_, b := start(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for i := range 3 {
		ev, err := bus.NewEvent(fmt.Sprint("ev-", i), events.TypeTriggerAccepted, "acme", map[string]int{"n": i})
		require.NoError(t, err)
		_, err = b.Publish(ctx, events.TriggerSubject("acme"), ev)
		require.NoError(t, err)
	}
	var mu sync.Mutex
	fixed := false
	handled := map[string][]bool{} // event id → fixed at each delivery
	spec := bus.TriggerConsumer
	spec.Durable = "dlq-test"
	go b.Consume(ctx, spec, func(_ context.Context, m bus.Message) error {
		mu.Lock()
		defer mu.Unlock()
		handled[m.Event.ID()] = append(handled[m.Event.ID()], fixed)
		if !fixed {
			return bus.Permanent(errors.New("flow missing"))
		}
		return nil
	}, bus.ConsumeOptions{Workers: 1})
	var list []bus.DeadLetter
	require.Eventually(t, func() bool {
		var err error
		list, _, err = b.DeadLetters(ctx, 0, 10)
		return err == nil && len(list) == 3
	}, 10*time.Second, 10*time.Millisecond)
	require.Equal(t, events.TriggerSubject("acme"), list[0].Subject)
	require.Equal(t, "dlq-test", list[0].Consumer)
	require.Contains(t, list[0].Reason, "flow missing")
	require.Equal(t, "ev-0", list[0].EventID)
	require.Empty(t, list[0].Data, "the list leaves payloads out")

	page, next, err := b.DeadLetters(ctx, 0, 2)
	require.NoError(t, err)
	require.Len(t, page, 2)
	page, next, err = b.DeadLetters(ctx, next, 2)
	require.NoError(t, err)
	require.Len(t, page, 1)
	require.Equal(t, list[2].Seq, page[0].Seq)
	require.Zero(t, next)

	dl, err := b.DeadLetter(ctx, list[1].Seq)
	require.NoError(t, err)
	require.JSONEq(t, `{"n":1}`, string(dl.Data))
	_, err = b.DeadLetter(ctx, 999)
	require.ErrorIs(t, err, bus.ErrNoDeadLetter)

	mu.Lock()
	fixed = true
	mu.Unlock()
	got, res, err := b.Replay(ctx, list[0].Seq)
	require.NoError(t, err)
	require.Equal(t, "ev-0", got.EventID)
	require.False(t, res.Duplicate)
	_, _, err = b.Replay(ctx, list[0].Seq)
	require.ErrorIs(t, err, bus.ErrNoDeadLetter, "a replayed dead letter is gone")
	require.Eventually(t, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(handled["ev-0"]) == 2
	}, 10*time.Second, 10*time.Millisecond)

	require.NoError(t, b.PurgeDeadLetter(ctx, list[1].Seq))
	require.ErrorIs(t, b.PurgeDeadLetter(ctx, list[1].Seq), bus.ErrNoDeadLetter)
	left, _, err := b.DeadLetters(ctx, 0, 10)
	require.NoError(t, err)
	require.Len(t, left, 1)
	require.Equal(t, list[2].Seq, left[0].Seq)
	n, err := b.PurgeDeadLetters(ctx)
	require.NoError(t, err)
	require.EqualValues(t, 1, n)
	left, _, err = b.DeadLetters(ctx, 0, 10)
	require.NoError(t, err)
	require.Empty(t, left)

	time.Sleep(200 * time.Millisecond) // nothing else arrives
	mu.Lock()
	defer mu.Unlock()
	require.Equal(t, []bool{false, true}, handled["ev-0"], "replayed once, handled once after the fix")
	require.Equal(t, []bool{false}, handled["ev-1"])
	require.Equal(t, []bool{false}, handled["ev-2"])
}

// On an empty dead-letter stream, every sequence is "no such dead letter"
// (the server answers a delete past the stream's end with its store's EOF
// error, not "no message found").
func TestDeadLetterMissingOnEmptyStream(t *testing.T) {
	_, b := start(t)
	ctx := context.Background()
	for _, seq := range []uint64{0, 1, 1000} {
		_, err := b.DeadLetter(ctx, seq)
		require.ErrorIs(t, err, bus.ErrNoDeadLetter, "show %d", seq)
		require.ErrorIs(t, b.PurgeDeadLetter(ctx, seq), bus.ErrNoDeadLetter, "purge %d", seq)
		_, _, err = b.Replay(ctx, seq)
		require.ErrorIs(t, err, bus.ErrNoDeadLetter, "replay %d", seq)
	}
}

// FLOWGATE_RUNS is read by several consumers: a dead letter of one of them
// is replayed to that consumer alone, not to every reader of the stream.
func TestDeadLetterReplayReachesOnlyItsConsumer(t *testing.T) {
	_, b := start(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ev, err := bus.NewEvent("rs-1", events.TypeRunStatus, "run-1", map[string]string{"status": "completed"})
	require.NoError(t, err)
	_, err = b.Publish(ctx, events.RunStatusSubject("acme"), ev)
	require.NoError(t, err)

	var mu sync.Mutex
	fixed := false
	handled := map[string]int{}
	consume := func(durable string, fail bool) {
		spec := bus.WebhookFanoutConsumer
		spec.Durable = durable
		go b.Consume(ctx, spec, func(_ context.Context, m bus.Message) error {
			mu.Lock()
			defer mu.Unlock()
			handled[durable]++
			if fail && !fixed {
				return bus.Permanent(errors.New("subscription store down for good"))
			}
			return nil
		}, bus.ConsumeOptions{Workers: 1})
	}
	consume("failing", true)
	consume("other", false)
	var list []bus.DeadLetter
	require.Eventually(t, func() bool {
		list, _, err = b.DeadLetters(ctx, 0, 10)
		return err == nil && len(list) == 1
	}, 10*time.Second, 10*time.Millisecond)
	require.Equal(t, "failing", list[0].Consumer)
	require.Equal(t, events.RunStatusSubject("acme"), list[0].Subject)

	mu.Lock()
	fixed = true
	mu.Unlock()
	_, _, err = b.Replay(ctx, list[0].Seq)
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return handled["failing"] == 2
	}, 10*time.Second, 10*time.Millisecond)
	time.Sleep(200 * time.Millisecond) // nothing else arrives
	mu.Lock()
	defer mu.Unlock()
	require.Equal(t, map[string]int{"failing": 2, "other": 1}, handled)
}
