package orchestrator

import (
	"context"
	"time"

	"github.com/flowgate/flowgate/orchestrator/flow"
)

// runTimers fires the timers of waiting runs whose time came. Timers are
// stored with the run (wait_until), so they survive restarts; every replica
// polls, and the run's version check lets only one of them apply a timer.
func (o *Orchestrator) runTimers(ctx context.Context) {
	t := time.NewTicker(o.cfg.TimerInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		o.fireDue(ctx)
	}
}

func (o *Orchestrator) fireDue(ctx context.Context) {
	for {
		now := time.Now().UTC()
		runs, err := o.store.DueRuns(ctx, now, 200)
		if err != nil {
			o.log.Warn("timer query failed", "err", err)
			return
		}
		for _, run := range runs {
			contact, err := o.store.GetContact(ctx, run.BotID, run.ContactID)
			if err != nil {
				o.log.Warn("timer: contact", "run", run.ID, "err", err)
				continue
			}
			if err := o.advance(ctx, o.timerStep(run), run, contact, flow.TimerFired{Now: now}); err != nil {
				o.log.Debug("timer: advance", "run", run.ID, "err", err)
			}
			timersFired.Inc()
		}
		if len(runs) < 200 || ctx.Err() != nil {
			return
		}
	}
}
