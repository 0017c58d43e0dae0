package main

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// relayResult is the JetStream floor of the pipeline drain.
type relayResult struct {
	n, workers int
	rate       float64
	err        string
}

// relayFloor measures what JetStream alone does for each run of the
// pipeline drain, with no Flowgate code: n trigger-sized messages are
// queued on a work-queue stream first (not timed); then a relay consumer
// takes each one, publishes one bundle-sized message (with a dedup id) to
// a second work-queue stream and double-acks the first, as the
// orchestrator does, and a second consumer double-acks each bundle, as the
// channel worker does. Each side handles `workers` messages at once. The
// rate is n over the time until the second stream is empty: the most any
// design with one durable hand-off per run between the orchestrator and a
// channel worker can drain on this NATS, before any store write.
func relayFloor(ctx context.Context, url string, replicas, n, workers int) relayResult {
	res := relayResult{n: n, workers: workers}
	fail := func(err error) relayResult { res.err = err.Error(); return res }
	nc, err := nats.Connect(url)
	if err != nil {
		return fail(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return fail(err)
	}
	streams := map[string]string{"BENCH_RELAY_IN": "bench.relay.in.>", "BENCH_RELAY_OUT": "bench.relay.out.>"}
	for name, subj := range streams {
		if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: name, Subjects: []string{subj},
			Storage: jetstream.FileStorage, Retention: jetstream.WorkQueuePolicy, MaxBytes: 1 << 30,
			Duplicates: 10 * time.Minute, Replicas: replicas}); err != nil {
			return fail(err)
		}
		defer js.DeleteStream(context.WithoutCancel(ctx), name)
	}
	trigger, bundle := make([]byte, 420), make([]byte, 600)
	for i := range trigger {
		trigger[i] = 'x'
	}
	for i := range bundle {
		bundle[i] = 'y'
	}
	for i := 0; i < n; i += 1000 {
		var futs []jetstream.PubAckFuture
		for j := i; j < min(i+1000, n); j++ {
			f, err := js.PublishAsync(fmt.Sprintf("bench.relay.in.%d", j%16), trigger, jetstream.WithMsgID(fmt.Sprintf("in-%d", j)))
			if err != nil {
				return fail(err)
			}
			futs = append(futs, f)
		}
		for _, f := range futs {
			select {
			case <-f.Ok():
			case err := <-f.Err():
				return fail(err)
			case <-time.After(30 * time.Second):
				return fail(fmt.Errorf("queueing the relay's input timed out"))
			}
		}
	}

	var done atomic.Int64
	finished := make(chan struct{})
	var once sync.Once
	consume := func(stream string, handle func(jetstream.Msg) error) (func(), error) {
		c, err := js.CreateOrUpdateConsumer(ctx, stream, jetstream.ConsumerConfig{Durable: "relay",
			AckPolicy: jetstream.AckExplicitPolicy, MaxAckPending: 4 * workers})
		if err != nil {
			return nil, err
		}
		work := make(chan jetstream.Msg, workers)
		var wg sync.WaitGroup
		for range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for m := range work {
					if err := handle(m); err != nil {
						_ = m.Nak()
					}
				}
			}()
		}
		cc, err := c.Consume(func(m jetstream.Msg) { work <- m }, jetstream.PullMaxMessages(2*workers))
		if err != nil {
			close(work)
			return nil, err
		}
		return func() { cc.Stop(); close(work); wg.Wait() }, nil
	}
	start := time.Now()
	stopOut, err := consume("BENCH_RELAY_OUT", func(m jetstream.Msg) error {
		actx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		if err := m.DoubleAck(actx); err != nil {
			return err
		}
		if done.Add(1) == int64(n) {
			once.Do(func() { close(finished) })
		}
		return nil
	})
	if err != nil {
		return fail(err)
	}
	defer stopOut()
	stopIn, err := consume("BENCH_RELAY_IN", func(m jetstream.Msg) error {
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		meta, err := m.Metadata()
		if err != nil {
			return err
		}
		if _, err := js.Publish(pctx, "bench.relay.out.x", bundle, jetstream.WithMsgID(fmt.Sprintf("out-%d", meta.Sequence.Stream))); err != nil {
			return err
		}
		return m.DoubleAck(pctx)
	})
	if err != nil {
		return fail(err)
	}
	defer stopIn()
	select {
	case <-finished:
	case <-time.After(5 * time.Minute):
		return fail(fmt.Errorf("relayed %d of %d in 5 min", done.Load(), n))
	}
	res.rate = float64(n) / time.Since(start).Seconds()
	return res
}
