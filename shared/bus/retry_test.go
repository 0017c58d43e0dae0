package bus_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/require"

	"github.com/flowgate/flowgate/shared/bus"
	"github.com/flowgate/flowgate/shared/events"
	"github.com/flowgate/flowgate/shared/store"
)

func TestIsTransient(t *testing.T) {
	for _, c := range []struct {
		err  error
		want bool
	}{
		{fmt.Errorf("create trigger: %w", store.ErrUnavailable), true},
		{fmt.Errorf("publish: %w", bus.ErrUnavailable), true},
		{context.DeadlineExceeded, true},
		{fmt.Errorf("x: %w", nats.ErrTimeout), true},
		{bus.Transient(errors.New("upstream restarting")), true},
		{bus.RetryAfter(fmt.Errorf("%w: locked", store.ErrUnavailable), time.Second), true},
		{bus.Permanent(fmt.Errorf("%w", store.ErrUnavailable)), false},
		{errors.New("bug"), false},
		{fmt.Errorf("%w: run r1", store.ErrNotFound), false},
		{nil, false},
	} {
		require.Equal(t, c.want, bus.IsTransient(c.err), "%v", c.err)
	}
}

// A store outage that outlasts MaxDeliver deliveries dead-letters nothing:
// the message is re-published with a fresh count and handled once the
// store is back. An unclassified error still dead-letters at MaxDeliver.
func TestTransientFailureOutlastsMaxDeliver(t *testing.T) {
	_, b := start(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for _, id := range []string{"outage", "poison"} {
		ev, err := bus.NewEvent(id, events.TypeTriggerAccepted, id, map[string]string{})
		require.NoError(t, err)
		_, err = b.Publish(ctx, events.TriggerSubject("acme"), ev)
		require.NoError(t, err)
	}
	const failures = 12 // four times MaxDeliver
	var mu sync.Mutex
	seen := map[string]int{}
	var succeeded atomic.Int64
	spec := bus.TriggerConsumer
	spec.Durable = "transient-test"
	spec.MaxDeliver = 3
	done := make(chan error, 1)
	go func() {
		done <- b.Consume(ctx, spec, func(_ context.Context, m bus.Message) error {
			mu.Lock()
			seen[m.Event.ID()]++
			n := seen[m.Event.ID()]
			mu.Unlock()
			if m.Event.ID() == "poison" {
				return errors.New("handler bug")
			}
			if n <= failures {
				return fmt.Errorf("create trigger: %w", store.ErrUnavailable)
			}
			succeeded.Add(1)
			return nil
		}, bus.ConsumeOptions{Workers: 2, MaxBackoff: 10 * time.Millisecond})
	}()
	require.Eventually(t, func() bool { return succeeded.Load() == 1 }, 30*time.Second, 10*time.Millisecond)
	require.Eventually(t, func() bool {
		info, err := b.JetStream().Stream(ctx, bus.StreamDLQ)
		return err == nil && info.CachedInfo().State.Msgs == 1
	}, 30*time.Second, 10*time.Millisecond, "the poison message is dead-lettered")
	// Nothing is left to deliver: the stream is empty once the copies are acked.
	require.Eventually(t, func() bool {
		info, err := b.JetStream().Stream(ctx, bus.StreamTriggers)
		return err == nil && info.CachedInfo().State.Msgs == 0
	}, 10*time.Second, 10*time.Millisecond)
	cancel()
	require.NoError(t, <-done)

	mu.Lock()
	defer mu.Unlock()
	require.Equal(t, failures+1, seen["outage"], "retried through the outage, handled once after it")
	require.Equal(t, 3, seen["poison"], "an unclassified failure still ends at MaxDeliver")
	dst, err := b.JetStream().Stream(context.Background(), bus.StreamDLQ)
	require.NoError(t, err)
	dl, err := dst.GetMsg(context.Background(), 1)
	require.NoError(t, err)
	require.Equal(t, "poison", dl.Header.Get("ce-id"))
	require.Equal(t, "transient-test", dl.Header.Get(bus.HeaderDLQConsumer))
	require.Equal(t, 1, int(succeeded.Load()))
}

// A process holding messages (one being handled for longer than AckWait,
// others queued behind it) keeps them: none is redelivered while it lives.
// When its connection dies, another consumer gets them one AckWait later.
func TestHeldMessagesAreKeptAliveAndTakenOverAfterAckWait(t *testing.T) {
	e, _ := start(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	connect := func() (*nats.Conn, *bus.Bus) {
		nc, err := e.Connect()
		require.NoError(t, err)
		t.Cleanup(nc.Close)
		b, err := bus.New(ctx, nc, bus.Config{Source: "/test"})
		require.NoError(t, err)
		return nc, b
	}
	nc1, b1 := connect()
	for i := range 3 {
		ev, err := bus.NewEvent(fmt.Sprint("t", i), events.TypeTriggerAccepted, "acme", map[string]string{})
		require.NoError(t, err)
		_, err = b1.Publish(ctx, events.TriggerSubject("acme"), ev)
		require.NoError(t, err)
	}
	spec := bus.TriggerConsumer
	spec.Durable = "heartbeat-test"
	spec.AckWait = time.Second

	var mu sync.Mutex
	deliveries := map[string][]uint64{}
	record := func(m bus.Message) {
		mu.Lock()
		deliveries[m.Event.ID()] = append(deliveries[m.Event.ID()], m.Delivered)
		mu.Unlock()
	}
	// The first process handles t0 for 4 AckWaits, then t1 the same way:
	// every message it holds must stay with it.
	release := make(chan struct{})
	var handled1 atomic.Int64
	ctx1, cancel1 := context.WithCancel(ctx)
	// dead is the simulated crash: a dead process runs no handler, even for
	// the messages still queued in it.
	var dead atomic.Bool
	go b1.Consume(ctx1, spec, func(hctx context.Context, m bus.Message) error {
		if dead.Load() {
			return errors.New("crashed")
		}
		record(m)
		if m.Event.ID() == "t0" {
			time.Sleep(4 * spec.AckWait)
			handled1.Add(1)
			return nil
		}
		<-release // holds t1 (and t2 behind it) until the "crash"
		return errors.New("crashed")
	}, bus.ConsumeOptions{Workers: 1})
	require.Eventually(t, func() bool { return handled1.Load() == 1 }, 30*time.Second, 10*time.Millisecond)
	mu.Lock()
	require.Equal(t, []uint64{1}, deliveries["t0"], "t0 was not redelivered while its handler ran past AckWait")
	mu.Unlock()
	time.Sleep(3 * spec.AckWait)
	mu.Lock()
	require.Equal(t, []uint64{1}, deliveries["t1"], "t1 stays with the live process")
	require.Empty(t, deliveries["t2"], "t2 waits in the live process's queue, not redelivered")
	mu.Unlock()
	cons, err := b1.JetStream().Consumer(ctx, bus.StreamTriggers, spec.Durable)
	require.NoError(t, err)
	info, err := cons.Info(ctx)
	require.NoError(t, err)
	require.Zero(t, info.NumRedelivered, "JetStream redelivered nothing the live process held")

	// The first process dies: its connection is gone, no ack, no nak.
	dead.Store(true)
	nc1.Close()
	crashed := time.Now()
	_, b2 := connect()
	var handled2 atomic.Int64
	var tookOver atomic.Int64
	go b2.Consume(ctx, spec, func(_ context.Context, m bus.Message) error {
		record(m)
		if handled2.Add(1) == 1 {
			tookOver.Store(int64(time.Since(crashed)))
		}
		return nil
	}, bus.ConsumeOptions{Workers: 1})
	require.Eventually(t, func() bool { return handled2.Load() == 2 }, 30*time.Second, 10*time.Millisecond)
	t.Logf("taken over %s after the crash (AckWait %s)", time.Duration(tookOver.Load()).Round(time.Millisecond), spec.AckWait)
	close(release)
	cancel1()
	mu.Lock()
	defer mu.Unlock()
	require.Len(t, deliveries["t1"], 2)
	require.Len(t, deliveries["t2"], 1)
}

// On the run-status stream, which several consumers may read, a consumer
// whose handler fails transiently for longer than MaxDeliver deliveries is
// not dead-lettered either: its re-published copy is for it alone — the
// other consumers acknowledge it unhandled, so they see the change once.
func TestTransientFailureOnSharedStreamIsRetriedForItsConsumerOnly(t *testing.T) {
	_, b := start(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ev, err := bus.NewEvent("status-1", events.TypeRunStatus, "r1", map[string]string{"status": "completed"})
	require.NoError(t, err)
	_, err = b.Publish(ctx, events.RunStatusSubject("acme"), ev)
	require.NoError(t, err)

	const failures = 8 // more than twice MaxDeliver
	var failing, other, failingOK atomic.Int64
	var wg sync.WaitGroup
	for _, c := range []struct {
		durable string
		h       bus.Handler
	}{
		{"flaky-reader", func(context.Context, bus.Message) error {
			if failing.Add(1) <= failures {
				return fmt.Errorf("store: %w", store.ErrUnavailable)
			}
			failingOK.Add(1)
			return nil
		}},
		{"steady-reader", func(context.Context, bus.Message) error { other.Add(1); return nil }},
	} {
		spec := bus.WebhookFanoutConsumer
		spec.Durable = c.durable
		spec.MaxDeliver = 3
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = b.Consume(ctx, spec, c.h, bus.ConsumeOptions{Workers: 1, MaxBackoff: 10 * time.Millisecond})
		}()
	}
	require.Eventually(t, func() bool { return failingOK.Load() == 1 }, 30*time.Second, 10*time.Millisecond)
	time.Sleep(200 * time.Millisecond) // any copy the steady reader would wrongly handle arrives by now
	cancel()
	wg.Wait()
	require.Equal(t, int64(failures+1), failing.Load(), "retried through the outage, handled once after it")
	require.Equal(t, int64(1), other.Load(), "the other consumer handled the change once, not the copies")
	dlq, err := b.JetStream().Stream(context.Background(), bus.StreamDLQ)
	require.NoError(t, err)
	require.Zero(t, dlq.CachedInfo().State.Msgs, "nothing dead-lettered")
}

// A TransientWithin failure is retried no later than its cap, however
// long the consumer's backoff has grown: six failures in a row are over
// within seconds, where the backoff (250 ms doubled, up to 10 s here)
// would take 7.75 s before the sixth delivery.
func TestTransientWithinCapsTheBackoff(t *testing.T) {
	_, b := start(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ev, err := bus.NewEvent("claimed", events.TypeTriggerAccepted, "claimed", map[string]string{})
	require.NoError(t, err)
	_, err = b.Publish(ctx, events.TriggerSubject("acme"), ev)
	require.NoError(t, err)
	const failures = 5
	var mu sync.Mutex
	var at []time.Time
	succeeded := make(chan struct{})
	spec := bus.TriggerConsumer
	spec.Durable = "within-test"
	done := make(chan error, 1)
	go func() {
		done <- b.Consume(ctx, spec, func(_ context.Context, m bus.Message) error {
			mu.Lock()
			at = append(at, time.Now())
			n := len(at)
			mu.Unlock()
			if n <= failures {
				return bus.TransientWithin(errors.New("run claimed by another step"), 100*time.Millisecond)
			}
			close(succeeded)
			return nil
		}, bus.ConsumeOptions{Workers: 1, MaxBackoff: 10 * time.Second})
	}()
	select {
	case <-succeeded:
	case <-time.After(5 * time.Second):
		t.Fatal("a capped transient failure waited longer than its cap: not handled within 5 s")
	}
	cancel()
	require.NoError(t, <-done)
	mu.Lock()
	defer mu.Unlock()
	for i := 1; i < len(at); i++ {
		require.Less(t, at[i].Sub(at[i-1]), 2*time.Second, "gap before delivery %d", i+1)
	}
}
