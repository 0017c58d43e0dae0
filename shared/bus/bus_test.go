package bus_test

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/flowgate/flowgate/shared/bus"
	"github.com/flowgate/flowgate/shared/bus/bustest"
	"github.com/flowgate/flowgate/shared/events"
)

func start(t *testing.T) (*bus.Embedded, *bus.Bus) {
	t.Helper()
	return bustest.Bus(t, bus.Config{Source: "/test"})
}

func TestPublishIsBinaryCloudEventAndDeduplicated(t *testing.T) {
	_, b := start(t)
	ctx := context.Background()
	ev, err := bus.NewEvent("trigger-1", events.TypeTriggerAccepted, "acme", map[string]string{"a": "b"})
	require.NoError(t, err)
	r1, err := b.Publish(ctx, events.TriggerSubject("acme"), ev)
	require.NoError(t, err)
	require.False(t, r1.Duplicate)
	r2, err := b.Publish(ctx, events.TriggerSubject("acme"), ev)
	require.NoError(t, err)
	require.True(t, r2.Duplicate, "same id inside the window must be dropped")

	st, err := b.JetStream().Stream(ctx, bus.StreamTriggers)
	require.NoError(t, err)
	msg, err := st.GetMsg(ctx, r1.Sequence)
	require.NoError(t, err)
	require.Equal(t, "trigger-1", msg.Header["ce-id"][0])
	require.Equal(t, events.TypeTriggerAccepted, msg.Header["ce-type"][0])
	require.Equal(t, "/test", msg.Header["ce-source"][0])
	require.Equal(t, "1.0", msg.Header["ce-specversion"][0])
	require.Equal(t, "acme", msg.Header["ce-subject"][0])
	require.Equal(t, bus.MsgID("trigger-1"), msg.Header.Get(jetstream.MsgIDHeader), "the id hashed to 22 characters")
	require.Len(t, msg.Header.Get(jetstream.MsgIDHeader), 22)
	require.NotEqual(t, bus.MsgID("trigger-2"), bus.MsgID("trigger-1"))
	require.JSONEq(t, `{"a":"b"}`, string(msg.Data))
	info, err := b.JetStream().Stream(ctx, bus.StreamTriggers)
	require.NoError(t, err)
	require.EqualValues(t, 1, info.CachedInfo().State.Msgs)
}

func TestConsumeAckRetryAndDeadLetter(t *testing.T) {
	_, b := start(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for _, id := range []string{"ok", "flaky", "bad", "hopeless"} {
		ev, err := bus.NewEvent(id, events.TypeTriggerAccepted, id, map[string]string{})
		require.NoError(t, err)
		_, err = b.Publish(ctx, events.TriggerSubject("acme"), ev)
		require.NoError(t, err)
	}
	var mu sync.Mutex
	seen := map[string]int{}
	spec := bus.TriggerConsumer
	spec.MaxDeliver = 3
	redelivered := func() float64 {
		return counterValue(t, "flowgate_bus_redelivered_total", map[string]string{"consumer": spec.Durable})
	}
	redeliveredBefore := redelivered()
	done := make(chan error, 1)
	go func() {
		done <- b.Consume(ctx, spec, func(_ context.Context, m bus.Message) error {
			mu.Lock()
			seen[m.Event.ID()]++
			n := seen[m.Event.ID()]
			mu.Unlock()
			switch m.Event.ID() {
			case "flaky":
				if n < 2 {
					return bus.RetryAfter(errors.New("not yet"), 10*time.Millisecond)
				}
			case "bad":
				return bus.Permanent(errors.New("malformed"))
			case "hopeless":
				return errors.New("always fails")
			}
			return nil
		}, bus.ConsumeOptions{Workers: 2, MaxBackoff: 20 * time.Millisecond})
	}()
	require.Eventually(t, func() bool {
		info, err := b.JetStream().Stream(ctx, bus.StreamDLQ)
		if err != nil {
			return false
		}
		return info.CachedInfo().State.Msgs == 2
	}, 10*time.Second, 20*time.Millisecond)
	cancel()
	require.NoError(t, <-done)
	mu.Lock()
	defer mu.Unlock()
	require.Equal(t, 1, seen["ok"])
	require.Equal(t, 2, seen["flaky"])
	require.Equal(t, 1, seen["bad"], "permanent errors are not retried")
	require.Equal(t, 3, seen["hopeless"], "retried up to MaxDeliver")
	require.Equal(t, 3.0, redelivered()-redeliveredBefore, "received again: flaky once, hopeless twice")

	// The dead letters keep the reason and the original subject.
	dst, err := b.JetStream().Stream(context.Background(), bus.StreamDLQ)
	require.NoError(t, err)
	dl, err := dst.GetMsg(context.Background(), 1)
	require.NoError(t, err)
	require.Contains(t, dl.Header.Get(bus.HeaderDLQReason), "malformed")
	require.Equal(t, events.TriggerSubject("acme"), dl.Header.Get(bus.HeaderDLQSubject))
	// Work-queue stream is empty: everything was acked or termed.
	info, err := b.JetStream().Stream(context.Background(), bus.StreamTriggers)
	require.NoError(t, err)
	require.EqualValues(t, 0, info.CachedInfo().State.Msgs)
}

func TestConsumeKeyKeepsOrderPerKey(t *testing.T) {
	_, b := start(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	const perKey = 50
	for i := 0; i < perKey; i++ {
		for _, k := range []string{"a", "b", "c"} {
			ev, err := bus.NewEvent(k+"-"+string(rune('0'+i%10))+"-"+strconv.Itoa(i), events.TypeInbound, k, map[string]int{"i": i})
			require.NoError(t, err)
			_, err = b.Publish(ctx, events.InboundSubject("sandbox", "acme"), ev)
			require.NoError(t, err)
		}
	}
	var mu sync.Mutex
	last := map[string]int{"a": -1, "b": -1, "c": -1}
	var total, outOfOrder atomic.Int64
	go b.Consume(ctx, bus.InboundConsumer, func(_ context.Context, m bus.Message) error {
		var p struct{ I int }
		require.NoError(t, m.Event.DataAs(&p))
		mu.Lock()
		if p.I != last[m.Event.Subject()]+1 {
			outOfOrder.Add(1)
		}
		last[m.Event.Subject()] = p.I
		mu.Unlock()
		total.Add(1)
		return nil
	}, bus.ConsumeOptions{Workers: 4, Key: func(m bus.Message) string { return m.Event.Subject() }})
	require.Eventually(t, func() bool { return total.Load() == 3*perKey }, 10*time.Second, 10*time.Millisecond)
	require.Zero(t, outOfOrder.Load())
}

func TestPublishFailsWhenNATSIsDown(t *testing.T) {
	e, b := start(t)
	e.Shutdown()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	ev, err := bus.NewEvent("x", events.TypeTriggerAccepted, "acme", map[string]string{})
	require.NoError(t, err)
	_, err = b.Publish(ctx, events.TriggerSubject("acme"), ev)
	require.ErrorIs(t, err, bus.ErrUnavailable)
	require.Error(t, b.Ping(ctx))
}

// The orchestrator's step consumers have the short StepAckWait, and a
// durable consumer left by an earlier version (the 30 s default) gets it
// in place when a process of this version starts consuming: a rolling
// upgrade needs no step of its own (docs/deploy.md, "A process killed").
func TestStepConsumersAckWaitIsUpdatedInPlace(t *testing.T) {
	_, b := start(t)
	ctx := context.Background()
	ackWait := func(durable string) time.Duration {
		c, err := b.JetStream().Consumer(ctx, bus.StreamEvents, durable)
		if err != nil {
			return -1
		}
		return c.CachedInfo().Config.AckWait
	}
	consumeBriefly := func(spec bus.ConsumerSpec, want time.Duration) {
		cctx, cancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() {
			done <- b.Consume(cctx, spec, func(context.Context, bus.Message) error { return nil }, bus.ConsumeOptions{Workers: 1})
		}()
		require.Eventually(t, func() bool { return ackWait(spec.Durable) == want }, 10*time.Second, 20*time.Millisecond,
			"%s: ack wait %v, want %v", spec.Durable, ackWait(spec.Durable), want)
		cancel()
		require.NoError(t, <-done)
	}
	for _, spec := range []bus.ConsumerSpec{bus.InboundConsumer, bus.DeliveryConsumer, bus.ControlConsumer} {
		require.Equal(t, bus.StepAckWait, spec.AckWait, spec.Durable)
		earlier := spec
		earlier.AckWait = 0 // the default before: 30 s
		consumeBriefly(earlier, 30*time.Second)
		consumeBriefly(spec, bus.StepAckWait)
	}
}

// TestPublishLeavesTheCallersEventAlone: Publish and PublishAll set the
// bus's source on their own copy of an event without one; the caller's
// event keeps none, and one event may be published by several goroutines
// at once (the race detector checks that).
func TestPublishLeavesTheCallersEventAlone(t *testing.T) {
	_, b := start(t)
	ctx := context.Background()
	ev, err := bus.NewEvent("shared-1", events.TypeTriggerAccepted, "acme", map[string]string{"a": "b"})
	require.NoError(t, err)
	subject := events.TriggerSubject("acme")
	var wg sync.WaitGroup
	errs := make([]error, 8)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = b.Publish(ctx, subject, ev)
		}()
	}
	wg.Wait()
	for _, err := range errs {
		require.NoError(t, err)
	}
	require.NoError(t, b.PublishAll(ctx, []bus.Outgoing{{Subject: subject, Event: ev}}))
	require.Empty(t, ev.Source(), "the caller's event is left as it was")

	st, err := b.JetStream().Stream(ctx, bus.StreamTriggers)
	require.NoError(t, err)
	msg, err := st.GetMsg(ctx, 1)
	require.NoError(t, err)
	require.Equal(t, "/test", msg.Header.Get("ce-source"), "the stored event has the bus's source")
}
