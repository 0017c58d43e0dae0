package bus

import (
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/flowgate/flowgate/shared/events"
)

// Stream names. All of Flowgate's streams are declared here and nowhere else.
const (
	StreamTriggers = "FLOWGATE_TRIGGERS"
	// StreamTriggersStandby takes a trigger when FLOWGATE_TRIGGERS cannot
	// (standby.go): on a NATS cluster its leader is kept on another node,
	// so that losing the node that leads one leaves the other.
	StreamTriggersStandby = "FLOWGATE_TRIGGERS_STANDBY"
	StreamOutbound        = "FLOWGATE_OUTBOUND"
	StreamEvents          = "FLOWGATE_EVENTS"
	StreamRuns            = "FLOWGATE_RUNS"
	StreamDLQ             = "FLOWGATE_DLQ"
	StreamWebhooks        = "FLOWGATE_WEBHOOKS"
)

// Limits bounds the streams. A full stream refuses new messages (discard
// new), which the ingress turns into 503: the bus pushes back instead of
// dropping data.
type Limits struct {
	// MaxBytes per stream (0 = 1 GiB).
	MaxBytes int64
	// MaxAge of a message (0 = 7 days).
	MaxAge time.Duration
	// Duplicates is the Nats-Msg-Id de-duplication window (0 = 10 minutes).
	Duplicates time.Duration
	// Replicas per stream in a NATS cluster (0 = 1).
	Replicas int
}

func (l *Limits) setDefaults() {
	if l.MaxBytes == 0 {
		l.MaxBytes = 1 << 30
	}
	if l.MaxAge == 0 {
		l.MaxAge = 7 * 24 * time.Hour
	}
	if l.Duplicates == 0 {
		l.Duplicates = 10 * time.Minute
	}
	if l.Replicas == 0 {
		l.Replicas = 1
	}
}

// Streams returns the configuration of every stream.
func Streams(l Limits) []jetstream.StreamConfig {
	l.setDefaults()
	work := func(name, desc string, subjects ...string) jetstream.StreamConfig {
		return jetstream.StreamConfig{
			Name:        name,
			Description: desc,
			Subjects:    subjects,
			Retention:   jetstream.WorkQueuePolicy,
			Discard:     jetstream.DiscardNew,
			MaxBytes:    l.MaxBytes,
			MaxAge:      l.MaxAge,
			Duplicates:  l.Duplicates,
			Storage:     jetstream.FileStorage,
			Replicas:    l.Replicas,
		}
	}
	// Its replay subjects take a dead letter back to the one consumer that
	// gave up on it (ReplaySubject).
	runs := work(StreamRuns, "run status changes, read by webhook delivery", events.SubjectRunStatus+".>", events.SubjectReplay+".>")
	// Run status changes may be read by more than one consumer (webhooks,
	// exporters): keep them by limits, not as a work queue.
	runs.Retention = jetstream.LimitsPolicy
	dlq := work(StreamDLQ, "messages no handler could process, with the reason", events.SubjectDLQ+".>")
	dlq.Retention = jetstream.LimitsPolicy
	dlq.MaxAge = 30 * 24 * time.Hour
	dlq.Discard = jetstream.DiscardOld // never refuse a dead letter: drop the oldest instead
	return []jetstream.StreamConfig{
		work(StreamTriggers, "accepted triggers, ingress to orchestrator", events.SubjectTrigger+".>"),
		work(StreamTriggersStandby, "accepted triggers published while FLOWGATE_TRIGGERS had no leader, ingress to orchestrator", events.SubjectTriggerStandby+".>"),
		work(StreamOutbound, "outbound message bundles, orchestrator to channel workers", events.SubjectOutbound+".>"),
		work(StreamEvents, "inbound user messages, delivery statuses and run commands",
			events.SubjectInbound+".>", events.SubjectDelivery+".>", events.SubjectControl+".>"),
		runs,
		work(StreamWebhooks, "run status changes to deliver, one subject per webhook subscription", events.SubjectWebhook+".>"),
		dlq,
	}
}

// ConsumerSpec declares a durable pull consumer shared by every replica of a service.
type ConsumerSpec struct {
	Stream  string
	Durable string
	Filters []string
	// MaxDeliver bounds redeliveries (0 = 10). After the last one the
	// message goes to the dead-letter stream. It counts crashes and
	// unclassified failures: a transient failure (store or bus down) is
	// re-published with a fresh count instead (see Bus.Consume).
	MaxDeliver int
	// AckWait is how long a message stays with a process that stopped
	// answering (0 = 30 s): Consume sends InProgress for every message it
	// holds every AckWait/4, so only a dead process lets it expire.
	AckWait time.Duration
	// BackOff delays redeliveries after AckWait timeouts.
	BackOff []time.Duration
	// MaxAckPending bounds in-flight messages across replicas (0 = 1000).
	MaxAckPending int
	// InactiveThreshold, when set, lets the server delete the consumer
	// after that long without a pull (per-lane outbound consumers).
	InactiveThreshold time.Duration
	// MetricName is the consumer label of the bus metrics (default
	// Durable): the per-lane outbound consumers of a channel share
	// "channel-<channel>", so that the label stays bounded.
	MetricName string
}

func (s *ConsumerSpec) metricName() string {
	if s.MetricName != "" {
		return s.MetricName
	}
	return s.Durable
}

func (s *ConsumerSpec) config() jetstream.ConsumerConfig {
	if s.MaxDeliver == 0 {
		s.MaxDeliver = 10
	}
	if s.AckWait == 0 {
		s.AckWait = 30 * time.Second
	}
	if s.MaxAckPending == 0 {
		s.MaxAckPending = 1000
	}
	backoff := s.BackOff
	if len(backoff) > s.MaxDeliver {
		backoff = backoff[:s.MaxDeliver]
	}
	cfg := jetstream.ConsumerConfig{
		Durable:       s.Durable,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       s.AckWait,
		MaxDeliver:    s.MaxDeliver,
		BackOff:       backoff,
		MaxAckPending: s.MaxAckPending,
		DeliverPolicy: jetstream.DeliverAllPolicy,
		// The consumer is gone after this long without a pull; 0: kept.
		InactiveThreshold: s.InactiveThreshold,
	}
	filters := s.Filters
	if s.Stream == StreamRuns {
		// Several consumers read this stream: each also reads the dead
		// letters replayed to it alone.
		filters = append(filters[:len(filters):len(filters)], ReplaySubject(s.Durable, ">"))
	}
	if len(filters) == 1 {
		cfg.FilterSubject = filters[0]
	} else {
		cfg.FilterSubjects = filters
	}
	return cfg
}

// ReplaySubject is where a dead letter that consumer gave up on, first
// published on subject, is replayed when its stream has more than one
// reader (FLOWGATE_RUNS): on the original subject every reader would get
// it again. ReplaySubject(consumer, ">") is the consumer's filter.
func ReplaySubject(consumer, subject string) string {
	return events.SubjectReplay + "." + consumer + "." + subject
}

// replayTarget is the subject a dead letter is replayed on: its original
// subject, or, in a stream read by several consumers, the replay subject
// of the consumer that gave up on it.
func replayTarget(subject, consumer string) string {
	if consumer != "" && strings.HasPrefix(subject, events.SubjectRunStatus+".") {
		return ReplaySubject(consumer, subject)
	}
	return subject
}

// Consumers used by Flowgate's services.
var (
	// TriggerConsumer: the orchestrator's intake of accepted triggers.
	// Its AckWait is short so that a fan-out held by a killed orchestrator
	// is taken over within seconds (live ones keep theirs with InProgress).
	TriggerConsumer = ConsumerSpec{Stream: StreamTriggers, Durable: "orchestrator-triggers", Filters: []string{events.SubjectTrigger + ".>"}, AckWait: 4 * time.Second}
	// TriggerStandbyConsumer: the same intake from the standby stream
	// (standby.go), handled alike.
	TriggerStandbyConsumer = ConsumerSpec{Stream: StreamTriggersStandby, Durable: "orchestrator-triggers-standby", Filters: []string{events.SubjectTriggerStandby + ".>"}, AckWait: 4 * time.Second}
	// InboundConsumer: the orchestrator's intake of user replies.
	InboundConsumer = ConsumerSpec{Stream: StreamEvents, Durable: "orchestrator-inbound", Filters: []string{events.SubjectInbound + ".>"}, AckWait: StepAckWait}
	// DeliveryConsumer: the orchestrator's intake of message statuses.
	DeliveryConsumer = ConsumerSpec{Stream: StreamEvents, Durable: "orchestrator-delivery", Filters: []string{events.SubjectDelivery + ".>"}, AckWait: StepAckWait}
	// ControlConsumer: the orchestrator's intake of run commands (cancel).
	ControlConsumer = ConsumerSpec{Stream: StreamEvents, Durable: "orchestrator-control", Filters: []string{events.SubjectControl + ".>"}, AckWait: StepAckWait}
)

// StepAckWait is the AckWait of the orchestrator's step consumers (replies,
// statuses, commands). It is short, as the trigger consumer's is, so that
// the steps a killed orchestrator held (a user's reply among them) are
// handed to another replica within seconds. A live process keeps its
// messages with InProgress every AckWait/4, and a step that a slow but
// live process is still handling when it comes back again is safe: its
// claim is named for the event, so the second handling replays the same
// effects, which JetStream and the channel workers drop
// (docs/architecture.md).
const StepAckWait = 5 * time.Second

// OutboundAckWait is the AckWait of the outbound lanes: how long the
// bundles a killed channel worker held (fetched ahead, waiting for a pacing
// slot, or being sent) wait before another replica gets them. A live
// worker keeps what it holds with InProgress every AckWait/4 (Consume's
// heartbeats), so a bundle that may still be in a send goes to another
// replica only after 3/4 of it without heartbeats (15 s: a process
// stopped, or cut from NATS that long; a cluster fail-over stalls about
// 5 s, docs/deploy.md). It is longer than StepAckWait because a send to
// WhatsApp or Telegram is not safe to repeat. It was 60 s.
const OutboundAckWait = 20 * time.Second

// IdempotentOutboundAckWait is the AckWait of the outbound lanes of a
// channel whose sends are safe to repeat (RCS, the sandbox: the provider
// or the transcript drops a message id it has): nothing argues for waiting
// longer than a step does. A bundle a lost worker, or a lost server,
// held (fetched, or delivered into a pull that server never passed on)
// goes out again within 5 s instead of 20 s.
const IdempotentOutboundAckWait = StepAckWait

// WebhookFanoutConsumer reads run status changes and queues one delivery
// per matching webhook subscription.
var WebhookFanoutConsumer = ConsumerSpec{Stream: StreamRuns, Durable: "webhooks-fanout", Filters: []string{events.SubjectRunStatus + ".>"}}

// WebhookConsumer delivers one webhook subscription's events. Each
// subscription has its own consumer, so a failing endpoint holds back only
// its own deliveries. The handler retries inline (keeping the message with
// InProgress), so MaxDeliver counts crashes, not failed attempts.
func WebhookConsumer(bot, subscription string) ConsumerSpec {
	return ConsumerSpec{
		Stream:        StreamWebhooks,
		Durable:       "webhook-" + subscription,
		Filters:       []string{events.WebhookSubject(bot, subscription)},
		MaxDeliver:    20,
		AckWait:       2 * time.Minute,
		MaxAckPending: 256,
	}
}

// LegacyOutboundConsumer is the name of the one consumer per channel that
// releases before delivery lanes used (filter flowgate.outbound.<channel>.>).
// It overlaps every lane consumer of the channel, which a work-queue stream
// refuses, so channel workers delete it at start.
func LegacyOutboundConsumer(channel string) string { return "channel-" + channel }

// OutboundLaneConsumer is the consumer of one outbound subject (one bot's
// lane on a channel, events.OutboundSubject), shared by every replica of
// the channel's worker. maxAckPending bounds the bundles of the lane
// handed out at once across replicas (0 = 1000): a lane's bundles are
// fetched only as fast as its account sends them, so a paced backlog waits
// in the stream, not in a worker. The server deletes the consumer after
// ten minutes without a pull; a worker creates it again when the subject
// has messages.
func OutboundLaneConsumer(subject string, maxAckPending int) ConsumerSpec {
	durable, metric := "out", "channel-outbound"
	if ch, bot, lane, ok := events.ParseOutboundSubject(subject); ok {
		metric = LegacyOutboundConsumer(ch)
		durable += "-" + ch + "-" + bot
		if subject != events.SubjectOutbound+"."+ch+"."+bot { // a legacy subject has no lane token
			durable += "-" + lane
		}
	}
	return ConsumerSpec{
		Stream:     StreamOutbound,
		Durable:    durable,
		Filters:    []string{subject},
		MetricName: metric,
		// Providers can be slow or down for a while: retry for longer.
		// Waiting for a pacing slot never counts here: the runner waits
		// inside the handler (docs/channels.md).
		MaxDeliver:        20,
		AckWait:           OutboundAckWait,
		MaxAckPending:     maxAckPending,
		InactiveThreshold: 10 * time.Minute,
	}
}
