package bus

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// gather collects c into a map "name{label=value,...}" -> value.
func gather(t *testing.T, c prometheus.Collector) map[string]float64 {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	if err := reg.Register(c); err != nil {
		t.Fatal(err)
	}
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, f := range fams {
		for _, m := range f.GetMetric() {
			key := f.GetName()
			for _, l := range m.GetLabel() {
				key += fmt.Sprintf(",%s=%s", l.GetName(), l.GetValue())
			}
			switch f.GetType() {
			case dto.MetricType_COUNTER:
				out[key] = m.GetCounter().GetValue()
			default:
				out[key] = m.GetGauge().GetValue()
			}
		}
	}
	return out
}

func TestCollectorReportsBacklogAndStreams(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	e, err := StartEmbedded(EmbeddedConfig{StoreDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Shutdown()
	nc, err := e.Connect()
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	b, err := New(ctx, nc, Config{Source: "/test"})
	if err != nil {
		t.Fatal(err)
	}
	spec := TriggerConsumer
	if _, err := b.js.CreateOrUpdateConsumer(ctx, spec.Stream, spec.config()); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		ev, err := NewEvent(fmt.Sprintf("id-%d", i), "test", "", map[string]int{"i": i})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := b.Publish(ctx, "flowgate.trigger.bot", ev); err != nil {
			t.Fatal(err)
		}
	}
	// The consumer counts a stored message as pending a moment after the
	// publish is acknowledged (the stream signals its consumers
	// asynchronously): under load, a scrape at once saw 2 of the 3.
	cons, err := b.js.Consumer(ctx, spec.Stream, spec.Durable)
	if err != nil {
		t.Fatal(err)
	}
	for pending := uint64(0); pending != 3; {
		info, err := cons.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if pending = info.NumPending; pending != 3 {
			if ctx.Err() != nil {
				t.Fatalf("the consumer counts %d pending, want 3", pending)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	// Explicit consumer spec (a consumer that does not exist is left out)
	// and every consumer of the listed streams.
	missing := ConsumerSpec{Stream: StreamEvents, Durable: "nobody"}
	for name, o := range map[string]CollectorOptions{
		"explicit": {Streams: []string{StreamTriggers, StreamDLQ}, Consumers: []ConsumerSpec{spec, missing}},
		"all":      {Streams: []string{StreamTriggers, StreamDLQ}, AllConsumers: true},
	} {
		got := gather(t, b.NewCollector(o))
		want := map[string]float64{
			"flowgate_jetstream_up": 1,
			"flowgate_jetstream_consumer_pending_messages,consumer=orchestrator-triggers,stream=FLOWGATE_TRIGGERS":     3,
			"flowgate_jetstream_consumer_ack_pending_messages,consumer=orchestrator-triggers,stream=FLOWGATE_TRIGGERS": 0,
			"flowgate_jetstream_consumer_redelivered_messages,consumer=orchestrator-triggers,stream=FLOWGATE_TRIGGERS": 0,
			"flowgate_jetstream_consumer_delivered_total,consumer=orchestrator-triggers,stream=FLOWGATE_TRIGGERS":      0,
			"flowgate_jetstream_stream_messages,stream=FLOWGATE_TRIGGERS":                                              3,
			"flowgate_jetstream_stream_messages,stream=FLOWGATE_DLQ":                                                   0,
			"flowgate_jetstream_stream_max_bytes,stream=FLOWGATE_TRIGGERS":                                             1 << 30,
		}
		for k, v := range want {
			if g, ok := got[k]; !ok || g != v {
				t.Errorf("%s: %s = %v (present %v), want %v", name, k, g, ok, v)
			}
		}
		if got["flowgate_jetstream_stream_bytes,stream=FLOWGATE_TRIGGERS"] <= 0 {
			t.Errorf("%s: stream bytes not reported: %v", name, got)
		}
		for k := range got {
			if k == "flowgate_jetstream_consumer_pending_messages,consumer=nobody,stream=FLOWGATE_EVENTS" {
				t.Errorf("%s: a missing consumer was reported", name)
			}
		}
	}

	// NATS down: the scrape answers at once with up 0.
	c := b.NewCollector(CollectorOptions{Streams: AllStreams(), AllConsumers: true})
	e.Shutdown()
	deadline := time.Now().Add(5 * time.Second)
	for nc.IsConnected() && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	start := time.Now()
	got := gather(t, c)
	if took := time.Since(start); took > time.Second {
		t.Errorf("a scrape with NATS down took %s", took)
	}
	if got["flowgate_jetstream_up"] != 0 || len(got) != 1 {
		t.Errorf("with NATS down: %v, want only flowgate_jetstream_up 0", got)
	}
}
