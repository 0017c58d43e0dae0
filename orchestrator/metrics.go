package orchestrator

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

var (
	runsStarted = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "flowgate_runs_started_total",
		Help: "Runs created, by the API that triggered them.",
	}, []string{"api"})
	runsByStatus = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "flowgate_run_transitions_total",
		Help: "Run status changes, by the status entered.",
	}, []string{"status"})
	statusEventsSkipped = promauto.NewCounter(prometheus.CounterOpts{
		Name: "flowgate_run_status_events_skipped_total",
		Help: "Run status changes not published on FLOWGATE_RUNS because the bot has no webhook subscriptions (nobody would receive them).",
	})
	inOrderRetries = promauto.NewCounter(prometheus.CounterOpts{
		Name: "flowgate_step_inline_retries_total",
		Help: "Steps of a contact's or run's message retried in place (not handed back, so that the next message of the same contact or run stays behind it) because their run was busy with another step or had moved on.",
	})
	runsClaimBusy = promauto.NewCounter(prometheus.CounterOpts{
		Name: "flowgate_run_claims_busy_total",
		Help: "Steps of a run retried because another step (in this or another orchestrator process) held the run's claim.",
	})
	messagesQueued = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "flowgate_messages_queued_total",
		Help: "Outbound messages published to channel workers, by channel.",
	}, []string{"channel"})
	inboundMessages = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "flowgate_inbound_messages_total",
		Help: "User messages received, by channel.",
	}, []string{"channel"})
	deliveries = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "flowgate_message_status_total",
		Help: "Message status changes recorded from delivery reports and provider callbacks (a send is counted by flowgate_channel_messages_sent_total), by channel and status.",
	}, []string{"channel", "status"})
	timersFired = promauto.NewCounter(prometheus.CounterOpts{
		Name: "flowgate_timers_fired_total",
		Help: "Run timers (wait steps, ask timeouts) fired.",
	})
)

var (
	launches = promauto.NewCounter(prometheus.CounterOpts{
		Name: "flowgate_orchestrator_launches_total",
		Help: "Launches of fresh one-user triggers: each starts, together, the triggers of the trigger batches handled at the same time (their contacts, runs and messages written together, their bundles sharing outbound messages).",
	})
	launchedTriggers = promauto.NewCounter(prometheus.CounterOpts{
		Name: "flowgate_orchestrator_launched_triggers_total",
		Help: "Triggers started by the launches of flowgate_orchestrator_launches_total (the ratio of the two is the triggers per launch).",
	})
)

var httpStepSeconds = promauto.NewHistogram(prometheus.HistogramOpts{
	Name:    "flowgate_flow_http_step_duration_seconds",
	Help:    "Duration of HTTP calls made by flow http steps.",
	Buckets: prometheus.ExponentialBuckets(0.005, 2.5, 10),
})
