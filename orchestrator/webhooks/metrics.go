package webhooks

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

// Labels are bounded: results and run statuses, never URLs or ids.
var (
	queued = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "flowgate_run_webhook_queued_total",
		Help: "Webhook deliveries queued by the fan-out (one per matching subscription), by run status.",
	}, []string{"status"})
	attempts = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "flowgate_run_webhook_deliveries_total",
		Help: "Webhook delivery attempts, by result (delivered, http_4xx, http_5xx, error, ...).",
	}, []string{"result"})
	attemptSeconds = promauto.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "flowgate_run_webhook_delivery_duration_seconds",
		Help:    "Duration of webhook delivery attempts, by result.",
		Buckets: prometheus.ExponentialBuckets(0.005, 2.5, 10),
	}, []string{"result"})
	deadLetters = promauto.NewCounter(prometheus.CounterOpts{
		Name: "flowgate_run_webhook_dead_letters_total",
		Help: "Webhook deliveries dead-lettered after the retry period.",
	})
	consumers = promauto.NewGauge(prometheus.GaugeOpts{
		Name: "flowgate_run_webhook_subscriptions",
		Help: "Webhook subscriptions this process delivers (one consumer each).",
	})
)

func observe(result string, began time.Time) {
	attempts.WithLabelValues(result).Inc()
	attemptSeconds.WithLabelValues(result).Observe(time.Since(began).Seconds())
}
