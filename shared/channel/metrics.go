package channel

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

var (
	sent = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "flowgate_channel_messages_sent_total",
		Help: "Messages the provider accepted, by channel.",
	}, []string{"channel"})
	failed = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "flowgate_channel_send_failures_total",
		Help: "Failed send attempts, by channel and reason (provider code, retry, transient).",
	}, []string{"channel", "reason"})
	rateLimited = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "flowgate_channel_rate_limited_total",
		Help: "Provider answers saying the account sends too fast (429, 130429), by channel.",
	}, []string{"channel"})
	providerSeconds = promauto.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "flowgate_channel_provider_duration_seconds",
		Help:    "Provider API call latency, by channel.",
		Buckets: prometheus.ExponentialBuckets(0.0005, 2.5, 12),
	}, []string{"channel"})
)
