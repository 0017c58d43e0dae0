package orchestrator

import (
	"context"
	"sync"
	"time"
)

// Run status changes are published on FLOWGATE_RUNS for webhook delivery
// (orchestrator/webhooks), their only reader. A bot without webhook
// subscriptions has nobody to deliver them to, so its runs publish none:
// one durable JetStream write per status change fewer (a dispatched run of
// a one-message flow: 2 publishes instead of 3). Whether a bot has
// subscriptions is cached for Config.SubscriptionTTL, as the webhook
// fan-out caches them: a new subscription receives the changes made from
// at most that long after it was created. Config.AlwaysPublishStatus
// publishes every change (for readers of FLOWGATE_RUNS of one's own).

// subscribed caches whether bots have webhook subscriptions.
type subscribed struct {
	mu   sync.Mutex
	bots map[string]subscribedAt
}

type subscribedAt struct {
	has bool
	at  time.Time
}

// wantsStatus reports whether the bot's status changes are published. On
// a store error it answers yes: a change published for nobody costs a
// write; a change not published for a subscriber is lost.
func (o *Orchestrator) wantsStatus(ctx context.Context, botID string) bool {
	if o.cfg.AlwaysPublishStatus {
		return true
	}
	now := time.Now()
	o.subs.mu.Lock()
	c, ok := o.subs.bots[botID]
	o.subs.mu.Unlock()
	if ok && now.Sub(c.at) < o.cfg.SubscriptionTTL {
		return c.has
	}
	subs, err := o.store.ListSubscriptions(ctx, botID)
	if err != nil {
		return true
	}
	has := len(subs) > 0
	o.subs.mu.Lock()
	if o.subs.bots == nil {
		o.subs.bots = map[string]subscribedAt{}
	}
	if len(o.subs.bots) > 100_000 { // bound the cache: start afresh
		clear(o.subs.bots)
	}
	o.subs.bots[botID] = subscribedAt{has: has, at: now}
	o.subs.mu.Unlock()
	return has
}
