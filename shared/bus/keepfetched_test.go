package bus_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/flowgate/flowgate/shared/bus"
	"github.com/flowgate/flowgate/shared/events"
)

// With KeepFetched, messages fetched while the only worker is busy for
// several AckWaits are kept in progress: each is handled once, on its
// first delivery, and none reaches MaxDeliver.
func TestKeepFetchedHoldsQueuedMessages(t *testing.T) {
	_, b := start(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	subject := events.OutboundSubject(events.ChannelSandbox, "keep", events.LaneBulk)
	for i := range 4 {
		ev, err := bus.NewEvent(fmt.Sprintf("k%d", i), events.TypeOutbound, "c", map[string]int{"i": i})
		require.NoError(t, err)
		_, err = b.Publish(ctx, subject, ev)
		require.NoError(t, err)
	}
	spec := bus.OutboundLaneConsumer(subject, 8)
	spec.AckWait, spec.MaxDeliver = time.Second, 2
	var mu sync.Mutex
	deliveries := map[string][]uint64{}
	done := make(chan error, 1)
	go func() {
		done <- b.Consume(ctx, spec, func(_ context.Context, m bus.Message) error {
			mu.Lock()
			deliveries[m.Event.ID()] = append(deliveries[m.Event.ID()], m.Delivered)
			mu.Unlock()
			if m.Event.ID() == "k0" {
				// The worker is busy for 3 AckWaits, keeping its own
				// message; the three behind it wait in this process.
				for range 6 {
					time.Sleep(500 * time.Millisecond)
					m.InProgress()
				}
			}
			return nil
		}, bus.ConsumeOptions{Workers: 1, Prefetch: 8, KeepFetched: true})
	}()
	require.Eventually(t, func() bool {
		n, err := b.Queued(ctx, bus.StreamOutbound, subject)
		return err == nil && n == 0
	}, 30*time.Second, 20*time.Millisecond)
	time.Sleep(1500 * time.Millisecond) // anything redelivered would show now
	cancel()
	require.NoError(t, <-done)
	mu.Lock()
	defer mu.Unlock()
	for i := range 4 {
		require.Equal(t, []uint64{1}, deliveries[fmt.Sprintf("k%d", i)], "k%d handled once, first delivery", i)
	}
	n, err := b.Queued(context.Background(), bus.StreamDLQ, events.SubjectDLQ+".>")
	require.NoError(t, err)
	require.Zero(t, n)
}
