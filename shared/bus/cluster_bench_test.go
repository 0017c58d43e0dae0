package bus_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/flowgate/flowgate/shared/bus"
	"github.com/flowgate/flowgate/shared/bus/bustest"
)

// BenchmarkClusterPublish measures synchronous JetStream publishes of a
// trigger-sized message with a dedup id, from 32 concurrent publishers, on
// one server and on an in-process three-node cluster with an R3 stream, for
// the two sync settings docs/deploy.md discusses. All on this machine: the
// ratios between the rows are the figures to read, not the absolute rates
// (a real cluster adds a network round trip between machines).
func BenchmarkClusterPublish(b *testing.B) {
	always := func(o *server.Options) { o.SyncAlways = true }
	everySecond := func(o *server.Options) { o.SyncInterval = time.Second }
	for _, c := range []struct {
		name     string
		nodes    int
		replicas int
		opt      func(*server.Options)
	}{
		{"1-node-R1-default-sync", 1, 1, func(*server.Options) {}},
		{"1-node-R1-sync-always", 1, 1, always},
		{"3-node-R3-sync-1s", 3, 3, everySecond},
		{"3-node-R3-sync-always", 3, 3, always},
	} {
		b.Run(c.name, func(b *testing.B) {
			cl := bustest.StartCluster(b, c.nodes, c.opt)
			nc := cl.Connect(b)
			js, err := jetstream.New(nc)
			if err != nil {
				b.Fatal(err)
			}
			ctx := context.Background()
			sc := bus.Streams(bus.Limits{Replicas: c.replicas})[0] // FLOWGATE_TRIGGERS
			if err := bus.EnsureStream(ctx, js, sc, nil); err != nil {
				b.Fatal(err)
			}
			payload := make([]byte, 512)
			var seq atomic.Int64
			b.ResetTimer()
			start := time.Now()
			var wg sync.WaitGroup
			per := (b.N + 31) / 32
			for w := range 32 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := 0; i < per && w*per+i < b.N; i++ {
						id := seq.Add(1)
						msg := &nats.Msg{Subject: "flowgate.trigger.bench", Data: payload, Header: nats.Header{}}
						if _, err := js.PublishMsg(ctx, msg, jetstream.WithMsgID(fmt.Sprint(id))); err != nil {
							b.Error(err)
							return
						}
					}
				}()
			}
			wg.Wait()
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "msgs/s")
		})
	}
}
