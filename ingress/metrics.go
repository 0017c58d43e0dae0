package ingress

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

var (
	httpRequests = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "flowgate_http_requests_total",
		Help: "HTTP requests answered by the ingress, by route template, method and status code.",
	}, []string{"route", "method", "code"})
	httpSeconds = promauto.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "flowgate_http_request_duration_seconds",
		Help:    "Ingress request latency, by route template and method.",
		Buckets: prometheus.ExponentialBuckets(0.0001, 2.5, 14),
	}, []string{"route", "method"})
	triggersAccepted = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "flowgate_triggers_accepted_total",
		Help: "Triggers durably queued, by API (dispatch, native, cloudevents, botmother, engati, recrubo) and bot.",
	}, []string{"api", "bot"})
	triggerMessages = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "flowgate_ingress_trigger_messages_total",
		Help: "JetStream messages the ingress published for triggers: single (one trigger), batch (several triggers of one bot: those that arrived together, or queued behind a publish in flight) or batch_bots (several triggers of several bots, on flowgate.trigger._bots).",
	}, []string{"kind"})
	triggersWaiting = promauto.NewGauge(prometheus.GaugeOpts{
		Name: "flowgate_ingress_triggers_waiting",
		Help: "Triggers queued behind the trigger publish in flight, to go in the next message (the ingress's group commit).",
	})
	batchedTriggers = promauto.NewCounter(prometheus.CounterOpts{
		Name: "flowgate_ingress_batched_triggers_total",
		Help: "Triggers the ingress published in batch messages (divided by the sum of flowgate_ingress_trigger_messages_total{kind=\"batch\"} and {kind=\"batch_bots\"}: the mean batch size).",
	})
	triggersRejected = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "flowgate_triggers_rejected_total",
		Help: "Trigger requests refused, by API and error code.",
	}, []string{"api", "code"})
	triggersOutcomeUnknown = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "flowgate_triggers_outcome_unknown_total",
		Help: "Trigger requests answered 503 outcome_unknown (JetStream did not confirm in time; the trigger may be queued), by API.",
	}, []string{"api"})
	rateLimited = promauto.NewCounter(prometheus.CounterOpts{
		Name: "flowgate_http_rate_limited_total",
		Help: "Requests refused with 429 by the per-API-key rate limit.",
	})
	idempotencyReused = promauto.NewCounter(prometheus.CounterOpts{
		Name: "flowgate_idempotency_key_reused_total",
		Help: "Trigger requests refused because their Idempotency-Key was first used with another request.",
	})
)
