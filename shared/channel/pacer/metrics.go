package pacer

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

var (
	waitSeconds = promauto.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "flowgate_pacer_wait_seconds",
		Help:    "Time a send waited for its pacing slot, by channel.",
		Buckets: prometheus.ExponentialBuckets(0.0005, 3, 12),
	}, []string{"channel"})
	currentRate = promauto.NewGaugeVec(prometheus.GaugeOpts{
		Name: "flowgate_pacer_rate_per_second",
		Help: "Sum of the current (adaptive) send rates of the accounts this replica sent for in the last minute, by channel.",
	}, []string{"channel"})
	throttles = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "flowgate_pacer_throttles_total",
		Help: "Provider answers that slowed an account down (429, 130429...), by channel.",
	}, []string{"channel"})
	lateSlots = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "flowgate_pacer_late_slots_total",
		Help: "Send slots given up because the sender woke too late to use them without a burst, by channel.",
	}, []string{"channel"})
	bucketsRecreated = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "flowgate_pacer_bucket_recreated_total",
		Help: "Times the pacing KV bucket was found gone (a NATS restart) and recreated, by channel.",
	}, []string{"channel"})
	casConflicts = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "flowgate_pacer_lease_conflicts_total",
		Help: "Slot leases retried because another replica leased first, by channel.",
	}, []string{"channel"})
)
