package orchestrator

import (
	"context"
	"errors"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"github.com/flowgate/flowgate/shared/bus"
	"github.com/flowgate/flowgate/shared/events"
	"github.com/flowgate/flowgate/shared/provider"
	"github.com/flowgate/flowgate/shared/store"
)

var (
	laneQueued = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "flowgate_lane_messages_queued_total",
		Help: "Outbound messages published for channel workers, by channel and delivery lane (high, bulk).",
	}, []string{"channel", "lane"})
	backpressureSeconds = promauto.NewCounter(prometheus.CounterOpts{
		Name: "flowgate_broadcast_backpressure_seconds_total",
		Help: "Time broadcast fan-outs spent waiting for their account's bulk lane to drain below the queue bound.",
	})
	// runsByLane counts a trigger's runs in aggregate, per bot and lane:
	// per-trigger figures are on the trigger resource (a trigger id label
	// would be unbounded); bots are bounded by the installation's tenants.
	runsByLane = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "flowgate_lane_runs_started_total",
		Help: "Runs created from triggers, by bot and delivery lane (high: one user, bulk: broadcasts, or the trigger's explicit priority).",
	}, []string{"bot", "lane"})
	backpressureWaits = promauto.NewCounter(prometheus.CounterOpts{
		Name: "flowgate_broadcast_backpressure_waits_total",
		Help: "Batches of broadcast fan-outs held back because their account's bulk lane was over the queue bound.",
	})
)

// LaneOf is the delivery lane of a trigger's messages: its explicit
// priority, else the bulk lane for a broadcast (everyone, a filter, more
// than one user) and the high lane for one user.
func LaneOf(t events.Trigger) string {
	if events.KnownLane(t.Priority) {
		return t.Priority
	}
	a := t.Audience
	if a.Everyone || a.Filter != "" || len(a.Users)+len(a.UsersBM) > 1 {
		return events.LaneBulk
	}
	return events.LaneHigh
}

// QueueBound is how many messages a broadcast may keep queued in its
// account's bulk lane on channel: QueueSeconds of the account's rate (the
// bot's own, else the channel's default), at least one batch. 0 means no
// bound (the sandbox, which is not paced).
func QueueBound(bot store.Bot, channel string, queueSeconds time.Duration, batch int) (bound uint64, rate float64) {
	rate = provider.Rate(bot, channel)
	if rate <= 0 || queueSeconds <= 0 {
		return 0, 0
	}
	return max(uint64(rate*queueSeconds.Seconds()), uint64(batch)), rate
}

// fanOutChannel is the one channel a broadcast's runs are on, or "" when
// they may be on several (users_bm, platform any).
func fanOutChannel(t events.Trigger) string {
	a, err := newAudience(t)
	if err != nil {
		return ""
	}
	return a.channel
}

// awaitDrain holds a broadcast's next batch of size contacts while its
// account's bulk lane holds more than the queue bound: the fan-out creates
// runs only as fast as the account sends them, so one campaign never fills
// the outbound stream (shared by every bot) and a paused or cancelled
// broadcast has little queued. It returns errFanOutStopped when the
// trigger is paused or cancelled meanwhile.
//
// underway is how many runs of the fan-out's batches under way are not
// published yet: they count against the bound too, or the lane could
// exceed it by a batch.
func (o *Orchestrator) awaitDrain(ctx context.Context, t events.Trigger, size int, underway func() uint64) error {
	if LaneOf(t) != events.LaneBulk || o.cfg.QueueSeconds < 0 {
		return nil
	}
	ch := fanOutChannel(t)
	if p, ok := provider.Lookup(ch); !ok || p.Rate <= 0 {
		return nil // several channels, or not paced: nothing to bound by
	}
	bot, err := o.store.GetBot(ctx, t.BotID)
	if err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return nil // the runs will fail on their own
		}
		return err
	}
	bound, _ := QueueBound(bot, ch, o.cfg.QueueSeconds, size)
	if bound == 0 {
		return nil
	}
	subject := events.OutboundSubject(ch, t.BotID, events.LaneBulk)
	var start time.Time
	defer func() {
		if !start.IsZero() {
			backpressureSeconds.Add(time.Since(start).Seconds())
		}
	}()
	for {
		queued, err := o.bus.Queued(ctx, bus.StreamOutbound, subject)
		if err != nil {
			return err
		}
		queued += underway()
		if queued == 0 || queued+uint64(size) <= bound {
			return nil
		}
		if start.IsZero() {
			start = time.Now()
			backpressureWaits.Inc()
		}
		cur, err := o.store.GetTrigger(ctx, t.BotID, t.ID)
		if err != nil {
			return err
		}
		if stopsFanOut(cur.Status) {
			return errFanOutStopped
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(o.cfg.DrainPoll):
		}
	}
}

// stopsFanOut reports trigger statuses a fan-out stops at.
func stopsFanOut(status string) bool {
	return status == store.TriggerCancelled || status == store.TriggerDone || status == store.TriggerPaused
}
