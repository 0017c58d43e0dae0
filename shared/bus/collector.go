package bus

import (
	"context"
	"errors"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
)

// Metrics read from JetStream's own state when Prometheus scrapes: how far
// behind each consumer is, what is being redelivered, and how full the
// streams (the dead-letter stream among them) are. JetStream keeps these
// numbers for the whole cluster, so every replica of a service reports the
// same values: aggregate them with max, not sum.
var (
	consumerPendingDesc = prometheus.NewDesc("flowgate_jetstream_consumer_pending_messages",
		"Messages in the stream that the consumer has not delivered yet (its backlog), by stream and consumer.",
		[]string{"stream", "consumer"}, nil)
	consumerAckPendingDesc = prometheus.NewDesc("flowgate_jetstream_consumer_ack_pending_messages",
		"Messages delivered to handlers and not acknowledged yet, by stream and consumer.",
		[]string{"stream", "consumer"}, nil)
	consumerRedeliveredDesc = prometheus.NewDesc("flowgate_jetstream_consumer_redelivered_messages",
		"Unacknowledged messages that were delivered more than once, by stream and consumer.",
		[]string{"stream", "consumer"}, nil)
	consumerDeliveredDesc = prometheus.NewDesc("flowgate_jetstream_consumer_delivered_total",
		"Deliveries made by the consumer since it was created, redeliveries included (its consumer sequence), by stream and consumer.",
		[]string{"stream", "consumer"}, nil)
	streamMessagesDesc = prometheus.NewDesc("flowgate_jetstream_stream_messages",
		"Messages stored in the stream, by stream.", []string{"stream"}, nil)
	streamBytesDesc = prometheus.NewDesc("flowgate_jetstream_stream_bytes",
		"Bytes stored in the stream, by stream.", []string{"stream"}, nil)
	streamMaxBytesDesc = prometheus.NewDesc("flowgate_jetstream_stream_max_bytes",
		"The stream's byte limit; at the limit new publishes are refused (the ingress answers 503).", []string{"stream"}, nil)
	jetstreamUpDesc = prometheus.NewDesc("flowgate_jetstream_up",
		"1 when the last scrape could read JetStream's stream and consumer state, 0 otherwise.", nil, nil)
)

// CollectorOptions chooses what a JetStream collector reports.
type CollectorOptions struct {
	// Streams whose size is reported (nil = none).
	Streams []string
	// Consumers whose backlog is reported. A consumer that does not exist
	// yet (its service has not started) is left out of the scrape.
	Consumers []ConsumerSpec
	// AllConsumers also reports every consumer of Streams, whoever created it.
	AllConsumers bool
	// Timeout bounds the JetStream requests of one scrape (0 = 2 s). Keep it
	// below Prometheus's scrape timeout: a slow JetStream must not cost the
	// scrape of the process's other metrics.
	Timeout time.Duration
}

// jetstreamCollector reads stream and consumer info at scrape time.
type jetstreamCollector struct {
	nc interface{ IsConnected() bool }
	js jetstream.JetStream
	o  CollectorOptions
}

// NewCollector returns a Prometheus collector of JetStream state for o.
func (b *Bus) NewCollector(o CollectorOptions) prometheus.Collector {
	if o.Timeout == 0 {
		o.Timeout = 2 * time.Second
	}
	return &jetstreamCollector{nc: b.nc, js: b.js, o: o}
}

// RegisterCollector registers a collector for o on Prometheus's default
// registry, which every service's /metrics serves.
func (b *Bus) RegisterCollector(o CollectorOptions) error {
	err := prometheus.DefaultRegisterer.Register(b.NewCollector(o))
	var are prometheus.AlreadyRegisteredError
	if errors.As(err, &are) {
		return errors.New("bus: a JetStream collector is already registered in this process")
	}
	return err
}

// AllStreams lists every stream of the topology (for collectors).
func AllStreams() []string {
	return []string{StreamTriggers, StreamTriggersStandby, StreamOutbound, StreamEvents, StreamRuns, StreamDLQ}
}

func (c *jetstreamCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- consumerPendingDesc
	ch <- consumerAckPendingDesc
	ch <- consumerRedeliveredDesc
	ch <- consumerDeliveredDesc
	ch <- streamMessagesDesc
	ch <- streamBytesDesc
	ch <- streamMaxBytesDesc
	ch <- jetstreamUpDesc
}

func (c *jetstreamCollector) Collect(ch chan<- prometheus.Metric) {
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	// While NATS is unreachable, say so at once: requests would only wait
	// for their timeout, and the scrape of everything else with them.
	if !c.nc.IsConnected() {
		gauge(jetstreamUpDesc, 0)
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), c.o.Timeout)
	defer cancel()
	up := 1.0
	for _, name := range c.o.Streams {
		s, err := c.js.Stream(ctx, name)
		if err != nil {
			if !errors.Is(err, jetstream.ErrStreamNotFound) {
				up = 0
			}
			continue
		}
		info := s.CachedInfo()
		gauge(streamMessagesDesc, float64(info.State.Msgs), name)
		gauge(streamBytesDesc, float64(info.State.Bytes), name)
		gauge(streamMaxBytesDesc, float64(info.Config.MaxBytes), name)
	}
	consumer := func(info *jetstream.ConsumerInfo) {
		gauge(consumerPendingDesc, float64(info.NumPending), info.Stream, info.Name)
		gauge(consumerAckPendingDesc, float64(info.NumAckPending), info.Stream, info.Name)
		gauge(consumerRedeliveredDesc, float64(info.NumRedelivered), info.Stream, info.Name)
		ch <- prometheus.MustNewConstMetric(consumerDeliveredDesc, prometheus.CounterValue,
			float64(info.Delivered.Consumer), info.Stream, info.Name)
	}
	seen := map[string]bool{}
	if c.o.AllConsumers {
		for _, name := range c.o.Streams {
			s, err := c.js.Stream(ctx, name)
			if err != nil {
				continue // counted above
			}
			lister := s.ListConsumers(ctx)
			for info := range lister.Info() {
				seen[info.Stream+"/"+info.Name] = true
				consumer(info)
			}
			if err := lister.Err(); err != nil {
				up = 0
			}
		}
	}
	for _, spec := range c.o.Consumers {
		if seen[spec.Stream+"/"+spec.Durable] {
			continue
		}
		cons, err := c.js.Consumer(ctx, spec.Stream, spec.Durable)
		if err != nil {
			if !errors.Is(err, jetstream.ErrConsumerNotFound) && !errors.Is(err, jetstream.ErrStreamNotFound) {
				up = 0
			}
			continue
		}
		consumer(cons.CachedInfo())
	}
	gauge(jetstreamUpDesc, up)
}
