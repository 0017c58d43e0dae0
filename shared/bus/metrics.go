package bus

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

var (
	published = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "flowgate_bus_published_total",
		Help: "Events acknowledged by JetStream, by stream and whether JetStream dropped them as duplicates.",
	}, []string{"stream", "duplicate"})
	publishRetries = newPublishRetries()
	publishErrors  = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "flowgate_bus_publish_errors_total",
		Help: "Publishes JetStream did not acknowledge, by subject kind.",
	}, []string{"kind"})
	consumed = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "flowgate_bus_consumed_total",
		Help: "Messages handled, by consumer and outcome (ack, retry, transient_retry, dead_letter).",
	}, []string{"consumer", "result"})
	redelivered = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "flowgate_bus_redelivered_total",
		Help: "Messages this process received again (JetStream delivery count above 1), by consumer: after a handler's failure, a lost ack, or an AckWait that ran out because the process or the server holding the message was lost.",
	}, []string{"consumer"})
	ackRetries = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "flowgate_bus_ack_retries_total",
		Help: "Acknowledgements of handled messages sent again because JetStream did not confirm the previous one (the server leading the consumer lost, the connection moving to another server), by consumer. An acknowledgement lost for good redelivers its message and its handler runs again.",
	}, []string{"consumer"})
	deadLettered = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "flowgate_bus_dead_lettered_total",
		Help: "Messages moved to the dead-letter stream, by consumer.",
	}, []string{"consumer"})
	transientRetries = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "flowgate_bus_transient_retries_total",
		Help: "Handler failures with a transient cause (store or bus unavailable, timeout), retried without a delivery cap, by consumer.",
	}, []string{"consumer"})
	republished = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "flowgate_bus_retry_republished_total",
		Help: "Messages re-published with a fresh delivery count to keep retrying a transient failure, by consumer.",
	}, []string{"consumer"})
	replayed = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "flowgate_bus_dead_letters_replayed_total",
		Help: "Dead letters published again on their original subject, by the consumer that dead-lettered them.",
	}, []string{"consumer"})
	repulls = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "flowgate_bus_repulls_total",
		Help: "Times this process started consuming again after an answer that stops the NATS client's consumption: a pull no consumer answered (no_responders: the consumer being created or updated, or its leader elected) or the consumer deleted (consumer_deleted: created again), by consumer and reason.",
	}, []string{"consumer", "reason"})
	standbyPublishes = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "flowgate_bus_trigger_standby_publishes_total",
		Help: "Triggers published on the standby stream FLOWGATE_TRIGGERS_STANDBY because FLOWGATE_TRIGGERS did not take them, by reason: no_responders (the stream had no leader), no_ack (no acknowledgement in time); failed: the standby did not take it either, on the publish's last try (the request was refused).",
	}, []string{"reason"})
	leaderMoves = promauto.NewCounter(prometheus.CounterOpts{
		Name: "flowgate_bus_trigger_standby_leader_moves_total",
		Help: "Times this process moved the standby triggers stream's leader to another NATS server because one server led both triggers streams.",
	})
	handleSeconds = promauto.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "flowgate_bus_handle_duration_seconds",
		Help:    "Time a handler took for one message, by consumer.",
		Buckets: prometheus.ExponentialBuckets(0.0005, 2.5, 12),
	}, []string{"consumer"})
)

func init() {
	// Known reasons start at zero, so that a rate over them exists (and a
	// dashboard shows 0) before the first fail-over.
	for _, r := range []string{"no_responders", "no_ack", "failed"} {
		standbyPublishes.WithLabelValues(r)
	}
}

// newPublishRetries is flowgate_bus_publish_retries_total with a series for
// each reason, so that dashboards show 0 before the first retry.
func newPublishRetries() *prometheus.CounterVec {
	c := promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "flowgate_bus_publish_retries_total",
		Help: "Publishes that failed and were acknowledged when tried again (same message id) within the bus's retry wait (2 s; 15 s in the orchestrator and the channel workers run apart), by why the first try failed: reconnect (the connection to NATS was lost while they were under way, its server stopped or lost; tried once the client had reconnected), no_responders (no server answered: the stream had no leader for the moment), in_process (JetStream was still storing an earlier try of the same message), no_ack (no acknowledgement within the publish timeout: the stream's leader was lost under it).",
	}, []string{"reason"})
	for _, r := range []string{retryReconnect, retryNoResponders, retryInProcess, retryNoAck} {
		c.WithLabelValues(r)
	}
	return c
}
