package channel

import (
	"context"
	"math"
	"sync"
	"time"

	"github.com/flowgate/flowgate/shared/bus"
	"github.com/flowgate/flowgate/shared/events"
	"github.com/flowgate/flowgate/shared/store"
)

// RatePacer is an optional extension of Pacer: the rate (messages per
// second) a bot's account on the channel is paced at. The runner sizes a
// lane's fetching by it, so that a lane holds about Horizon of its
// account's sends and a paced backlog waits in the stream.
type RatePacer interface {
	Rate(bot store.Bot) float64
}

// slowDiscovery is how long listing the lanes may take before the runner
// warns: a new lane's first message waits for it.
const slowDiscovery = 2 * time.Second

// lane is one outbound subject (one bot's lane on the channel) consumed by
// this process.
type lane struct {
	subject  string
	cancel   context.CancelFunc
	done     chan struct{}
	lastSeen time.Time
}

// Run consumes until ctx ends, then drains.
//
// Every bot's lane (events.OutboundSubject) has its own durable consumer,
// shared by all replicas. The runner asks the stream which lanes hold
// messages every DiscoverEvery, consumes each of those with workers of its
// own and a prefetch of about Horizon of its account's sends, and stops
// consuming a lane that has been empty for IdleAfter. So one bot's backlog
// never stands in front of another bot's messages, and a worker only ever
// waits for its own account's pacing (docs/channels.md).
func (r *Runner) Run(ctx context.Context) error {
	ch := r.sender.Channel()
	r.log.Info("channel worker running", "workers", r.cfg.Workers, "max_in_flight_per_account", r.cfg.MaxInFlightPerAccount,
		"horizon", r.cfg.Horizon)
	// The consumer of releases before lanes overlaps every lane consumer,
	// which a work-queue stream refuses.
	if err := r.bus.DeleteConsumer(ctx, bus.StreamOutbound, bus.LegacyOutboundConsumer(ch)); err != nil && ctx.Err() == nil {
		r.log.Warn("deleting the pre-lane outbound consumer failed", "err", err)
	}
	r.log.Debug("discovering outbound lanes", "every", r.cfg.DiscoverEvery)
	filter := events.SubjectOutbound + "." + ch + ".>"
	lanes := map[string]*lane{}
	var wg sync.WaitGroup
	defer func() {
		for _, l := range lanes {
			l.cancel()
		}
		wg.Wait()
		lanesActive.WithLabelValues(ch).Set(0)
	}()
	tick := time.NewTicker(r.cfg.DiscoverEvery)
	defer tick.Stop()
	failures := 0
	for {
		asked := time.Now()
		counts, err := r.bus.SubjectCounts(ctx, bus.StreamOutbound, filter)
		now := time.Now()
		if took := now.Sub(asked); took > slowDiscovery {
			// Every new lane waits for this answer: say when it is slow.
			r.log.Warn("listing outbound lanes was slow", "took", took.Round(time.Millisecond))
		}
		switch {
		case err != nil && ctx.Err() == nil:
			failures++
			if failures == 1 || failures%100 == 0 {
				r.log.Warn("listing outbound lanes failed; retrying", "err", err, "failures", failures)
			}
		case err == nil:
			failures = 0
			for subject, n := range counts {
				if n == 0 {
					continue
				}
				if l, ok := lanes[subject]; ok {
					l.lastSeen = now
					continue
				}
				l := r.startLane(ctx, subject, &wg)
				if l != nil {
					r.log.Debug("consuming outbound lane", "subject", subject)
					l.lastSeen = now
					lanes[subject] = l
				}
			}
		}
		for subject, l := range lanes {
			select {
			case <-l.done: // its consumer stopped (bus unavailable): start again when seen
				delete(lanes, subject)
				continue
			default:
			}
			if now.Sub(l.lastSeen) > r.cfg.IdleAfter {
				r.log.Debug("outbound lane idle; no longer consumed", "subject", subject)
				l.cancel()
				delete(lanes, subject)
			}
		}
		lanesActive.WithLabelValues(ch).Set(float64(len(lanes)))
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}

// startLane starts consuming one outbound subject.
func (r *Runner) startLane(ctx context.Context, subject string, wg *sync.WaitGroup) *lane {
	_, botID, laneName, ok := events.ParseOutboundSubject(subject)
	if !ok {
		r.log.Warn("outbound subject of no lane: not consumed", "subject", subject)
		return nil
	}
	size := r.laneSize(ctx, botID)
	r.log.Debug("outbound lane sized", "subject", subject, "prefetch", size.prefetch, "workers", size.workers, "paced", size.paced)
	// A process holds at most prefetch waiting bundles plus one per worker
	// (2 × prefetch): a killed one leaves room for the others until its
	// bundles come back after AckWait.
	spec := bus.OutboundLaneConsumer(subject, 4*size.prefetch)
	if ackWait := laneAckWait(r.cfg, r.idempotent); ackWait > 0 {
		spec.AckWait = ackWait
	}
	if r.cfg.MaxDeliver > 0 {
		spec.MaxDeliver = r.cfg.MaxDeliver
	}
	lctx, cancel := context.WithCancel(ctx)
	l := &lane{subject: subject, cancel: cancel, done: make(chan struct{})}
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer close(l.done)
		err := r.bus.Consume(lctx, spec, func(ctx context.Context, m bus.Message) error {
			return r.handle(ctx, m, laneName)
		}, bus.ConsumeOptions{
			Workers:    size.workers,
			Prefetch:   size.prefetch,
			MaxBackoff: r.cfg.MaxBackoff,
			// A bundle of a paced lane waiting for its worker (behind one
			// that waits for the account's pacing) is kept, never
			// redelivered for it. A lane fetching Prefetch (an account
			// faster than Prefetch per Horizon, or unpaced) drains what it
			// fetches within Horizon and keeps the free-running pull.
			KeepFetched: size.paced,
			// One contact's bundles go to one worker: they are sent in order.
			Key: func(m bus.Message) string { return m.Event.Subject() },
		})
		if err != nil && lctx.Err() == nil {
			r.log.Warn("consuming an outbound lane failed", "subject", subject, "err", err)
		}
	}()
	return l
}

// laneSizing is how many bundles of one lane this process fetches ahead
// and handles at once.
type laneSizing struct {
	prefetch, workers int
	// paced: the prefetch is bound by the account's rate.
	paced bool
}

// laneSize sizes a lane by its account's rate: about Horizon of sends
// fetched ahead (at least one), at most Prefetch; as many workers as
// bundles fetched, so that every fetched bundle is in a handler that keeps
// it (InProgress) while it waits (up to Workers).
func (r *Runner) laneSize(ctx context.Context, botID string) laneSizing {
	rate := r.accountRate(ctx, botID)
	n := r.cfg.Prefetch
	if !math.IsInf(rate, 1) {
		n = min(n, max(1, int(math.Ceil(rate*r.cfg.Horizon.Seconds()))))
	}
	return laneSizing{prefetch: n, workers: min(n, r.cfg.Workers), paced: n < r.cfg.Prefetch}
}

// accountRate is the rate the bot's account on this channel is paced at
// (the channel's default when the bot cannot be read); +Inf when there is
// no pacer.
func (r *Runner) accountRate(ctx context.Context, botID string) float64 {
	rp, ok := r.pacer.(RatePacer)
	if r.pacer == nil || !ok {
		return math.Inf(1)
	}
	b, err := r.bot(ctx, botID)
	if err != nil {
		b = store.Bot{ID: botID}
	}
	if rate := rp.Rate(b); rate > 0 {
		return rate
	}
	return math.Inf(1)
}

// gateFor returns the account's gate, created with a capacity of about
// Horizon of its sends (at most MaxInFlightPerAccount and Workers). nil:
// no bound (unpaced, idempotent sends).
func (r *Runner) gateFor(account string, bot store.Bot) *gate {
	r.inflightMu.Lock()
	defer r.inflightMu.Unlock()
	if g, ok := r.gates[account]; ok {
		return g
	}
	capacity := r.cfg.Workers
	if r.cfg.MaxInFlightPerAccount > 0 {
		capacity = min(capacity, r.cfg.MaxInFlightPerAccount)
	}
	paced := false
	if rp, ok := r.pacer.(RatePacer); ok && r.pacer != nil {
		if rate := rp.Rate(bot); rate > 0 && !math.IsInf(rate, 1) {
			capacity = min(capacity, max(1, int(math.Ceil(rate*r.cfg.Horizon.Seconds()))))
			paced = true
		}
	}
	var g *gate
	if paced || r.cfg.MaxInFlightPerAccount > 0 {
		g = newGate(capacity, r.cfg.HighPerBulk)
	}
	r.gates[account] = g
	return g
}
