package bus_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/flowgate/flowgate/shared/bus"
	"github.com/flowgate/flowgate/shared/events"
)

// awayAfterBind makes the consumer that Consume binds vanish between the
// bind and the first pull, and come back after away, as when another
// replica updates it or a cluster elects its leader. The flag says it went.
func awayAfterBind(t *testing.T, ctx context.Context, js jetstream.JetStream, stream string, away time.Duration) *atomic.Bool {
	t.Helper()
	var gone atomic.Bool
	t.Cleanup(bus.SetAfterBind(func(durable string) {
		c, err := js.Consumer(ctx, stream, durable)
		require.NoError(t, err)
		cfg := c.CachedInfo().Config
		require.NoError(t, js.DeleteConsumer(ctx, stream, durable))
		gone.Store(true)
		go func() {
			time.Sleep(away)
			if _, err := js.CreateOrUpdateConsumer(ctx, stream, cfg); err != nil {
				t.Errorf("recreate the consumer: %v", err)
			}
		}()
	}))
	return &gone
}

// consumeCounting runs Consume until ctx ends, counting the messages
// handled; Consume's result arrives on the channel.
func consumeCounting(ctx context.Context, b *bus.Bus, spec bus.ConsumerSpec, o bus.ConsumeOptions) (*atomic.Int64, <-chan error) {
	var handled atomic.Int64
	done := make(chan error, 1)
	go func() {
		done <- b.Consume(ctx, spec, func(context.Context, bus.Message) error {
			handled.Add(1)
			return nil
		}, o)
	}()
	return &handled, done
}

// publishInbound publishes one inbound event with the id.
func publishInbound(t *testing.T, ctx context.Context, b *bus.Bus, id string) {
	t.Helper()
	ev, err := bus.NewEvent(id, events.TypeInbound, "c", map[string]string{})
	require.NoError(t, err)
	_, err = b.Publish(ctx, events.InboundSubject("sandbox", "acme"), ev)
	require.NoError(t, err)
}

// A pull that no consumer answers (503 no responders) is pulled again at
// once. Here the consumer is gone between Consume binding it and its first
// pull, and comes back 300 ms later. The client alone pulls again only
// after missing two heartbeats (4 s with the bus's pull heartbeat, 30 s
// with the client's default); seen in TestWhatsAppTwoReplicasAt1000PerSecond,
// where one replica then sent nothing.
func TestPullThatNoConsumerAnswersIsPulledAgain(t *testing.T) {
	_, b := start(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	spec := bus.InboundConsumer
	spec.Durable, spec.MetricName = "pulled-again", "pulled-again"
	gone := awayAfterBind(t, ctx, b.JetStream(), spec.Stream, 300*time.Millisecond)
	before := repullCount(t, spec.MetricName)
	handled, done := consumeCounting(ctx, b, spec, bus.ConsumeOptions{Workers: 2})
	require.Eventually(t, gone.Load, 10*time.Second, 10*time.Millisecond)
	publishInbound(t, ctx, b, "in-1")
	start := time.Now()
	// Under the two missed heartbeats (4 s) after which the client would
	// pull again by itself, and pulled again by the bus.
	require.Eventually(t, func() bool { return handled.Load() == 1 }, 3*time.Second, 10*time.Millisecond)
	t.Logf("handled %s after publishing", time.Since(start).Round(time.Millisecond))
	require.Greater(t, repullCount(t, spec.MetricName)-before, 0.0, "the bus pulled again")
	cancel()
	require.NoError(t, <-done)
}

// A consumer deleted while a process consumes it (by an operator, or with
// its stream) is created again and consumed, as a restarted process would
// do; before, the client stopped for good and the process took nothing
// more from it until it was restarted.
func TestConsumerDeletedWhileConsumingIsCreatedAgain(t *testing.T) {
	_, b := start(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	js := b.JetStream()
	spec := bus.InboundConsumer
	handled, done := consumeCounting(ctx, b, spec, bus.ConsumeOptions{Workers: 2})
	publishInbound(t, ctx, b, "in-1")
	require.Eventually(t, func() bool { return handled.Load() == 1 }, 10*time.Second, 10*time.Millisecond)

	require.NoError(t, js.DeleteConsumer(ctx, spec.Stream, spec.Durable))
	publishInbound(t, ctx, b, "in-2")
	require.Eventually(t, func() bool { return handled.Load() == 2 }, 10*time.Second, 10*time.Millisecond,
		"the message published after the deletion is handled")
	_, err := js.Consumer(ctx, spec.Stream, spec.Durable)
	require.NoError(t, err, "the consumer exists again")
	cancel()
	require.NoError(t, <-done)
}

// The same with KeepFetched (paced lanes fetch what they have room for):
// a fetch that no consumer answers is answered at once, so fetching again
// at once spun, some 23,000 requests in the second the consumer was away.
// Each such fetch now pauses as Consume does.
func TestFetchThatNoConsumerAnswersPauses(t *testing.T) {
	_, b := start(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	spec := bus.InboundConsumer
	spec.Durable, spec.MetricName = "keep-fetched", "keep-fetched"
	const away = time.Second
	gone := awayAfterBind(t, ctx, b.JetStream(), spec.Stream, away)
	before := repullCount(t, spec.MetricName)
	handled, done := consumeCounting(ctx, b, spec, bus.ConsumeOptions{Workers: 2, Prefetch: 4, KeepFetched: true})
	require.Eventually(t, gone.Load, 10*time.Second, 10*time.Millisecond)
	publishInbound(t, ctx, b, "in-1")
	require.Eventually(t, func() bool { return handled.Load() == 1 }, 10*time.Second, 10*time.Millisecond)
	fetches := repullCount(t, spec.MetricName) - before
	t.Logf("fetches answered by no consumer while it was away for %s: %v", away, fetches)
	// Pauses of 50 ms doubling to 2 s: about five in a second; without
	// them, thousands.
	require.Less(t, fetches, 20.0)
	require.Greater(t, fetches, 0.0)
	cancel()
	require.NoError(t, <-done)
}

// repullCount reads flowgate_bus_repulls_total{reason="no_responders"} of
// a consumer's metric name.
func repullCount(t *testing.T, consumer string) float64 {
	t.Helper()
	return counterValue(t, "flowgate_bus_repulls_total", map[string]string{"consumer": consumer, "reason": "no_responders"})
}
