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
	laneSent = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "flowgate_channel_lane_messages_sent_total",
		Help: "Messages the provider accepted, by channel and delivery lane (high, bulk).",
	}, []string{"channel", "lane"})
	laneLatency = promauto.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "flowgate_channel_lane_queue_seconds",
		Help:    "Time from a bundle's publish by the orchestrator to the provider's acceptance of its message, by channel and lane.",
		Buckets: prometheus.ExponentialBuckets(0.005, 2, 16),
	}, []string{"channel", "lane"})
	lanesActive = promauto.NewGaugeVec(prometheus.GaugeOpts{
		Name: "flowgate_channel_lanes_consumed",
		Help: "Outbound lanes (bot x lane) this worker process is consuming, by channel.",
	}, []string{"channel"})
	handedOn = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "flowgate_channel_batch_bundles_handed_on_total",
		Help: "Bundles of an outbound batch message whose send failed, handed on alone (fate: dead_letter after a permanent failure, retry after any other), by channel.",
	}, []string{"channel", "fate"})
	farWaits = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "flowgate_channel_far_slot_waits_total",
		Help: "Times a bundle kept waiting in its handler for a pacing slot beyond the pacer's MaxWait (instead of being redelivered), by channel.",
	}, []string{"channel"})
)
