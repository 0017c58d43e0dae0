package webhooks

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/flowgate/flowgate/shared/bus"
	"github.com/flowgate/flowgate/shared/store"
)

const consumerPrefix = "webhook-"

type runningSub struct {
	cancel context.CancelFunc
	stop   chan struct{}
	done   chan struct{}
	d      *deliverer
}

// reconcileLoop keeps one consumer per stored subscription: it starts
// delivering for new subscriptions, and for deleted ones stops delivering,
// deletes the consumer and purges its undelivered messages.
func (s *service) reconcileLoop(ctx context.Context) error {
	running := map[string]*runningSub{}
	defer func() {
		for _, r := range running {
			close(r.stop)
			r.cancel()
		}
		for _, r := range running {
			<-r.done
		}
		consumers.Set(0)
	}()
	t := time.NewTicker(s.cfg.ReconcileEvery)
	defer t.Stop()
	for {
		if err := s.reconcile(ctx, running); err != nil && ctx.Err() == nil {
			s.log.Warn("webhook subscriptions: reconcile failed; retrying", "err", err)
		}
		consumers.Set(float64(len(running)))
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

func (s *service) reconcile(ctx context.Context, running map[string]*runningSub) error {
	// Consumers first, subscriptions second: a consumer exists only for a
	// subscription that was stored before it, so one whose subscription is
	// missing from the later listing was deleted (never "not yet seen").
	stream, err := s.bus.JetStream().Stream(ctx, bus.StreamWebhooks)
	if err != nil {
		return err
	}
	var names []string
	lister := stream.ConsumerNames(ctx)
	for n := range lister.Name() {
		if strings.HasPrefix(n, consumerPrefix) {
			names = append(names, n)
		}
	}
	if err := lister.Err(); err != nil && !errors.Is(err, jetstream.ErrEndOfData) {
		return err
	}
	want, err := s.allSubscriptions(ctx)
	if err != nil {
		return err
	}
	for id, r := range running {
		if _, ok := want[id]; !ok {
			close(r.stop)
			r.cancel()
			<-r.done
			delete(running, id)
			s.log.Info("webhook subscription removed; deliveries stopped", "subscription", id)
		}
	}
	for _, n := range names {
		id := strings.TrimPrefix(n, consumerPrefix)
		if _, ok := want[id]; ok {
			continue
		}
		c, err := stream.Consumer(ctx, n)
		if errors.Is(err, jetstream.ErrConsumerNotFound) {
			continue // another replica got there first
		}
		if err != nil {
			return err
		}
		filter := c.CachedInfo().Config.FilterSubject
		if err := stream.DeleteConsumer(ctx, n); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
			return err
		}
		if filter != "" {
			if err := stream.Purge(ctx, jetstream.WithPurgeSubject(filter)); err != nil {
				return err
			}
		}
	}
	for id, sub := range want {
		if r, ok := running[id]; ok {
			select {
			case <-r.done: // its consumer stopped (bus trouble): start again
			default:
				// A rotated secret signs from the next attempt on.
				r.d.setSecrets(sub.Secret, sub.PreviousSecret)
				continue
			}
		}
		running[id] = s.start(ctx, sub)
	}
	return nil
}

func (s *service) allSubscriptions(ctx context.Context) (map[string]store.Subscription, error) {
	bots, err := s.store.ListBots(ctx)
	if err != nil {
		return nil, err
	}
	out := map[string]store.Subscription{}
	for _, b := range bots {
		subs, err := s.store.ListSubscriptions(ctx, b.ID)
		if err != nil {
			return nil, err
		}
		for _, sub := range subs {
			out[sub.ID] = sub
		}
	}
	return out, nil
}

// start runs the subscription's consumer until it is stopped.
func (s *service) start(ctx context.Context, sub store.Subscription) *runningSub {
	cctx, cancel := context.WithCancel(ctx)
	r := &runningSub{cancel: cancel, stop: make(chan struct{}), done: make(chan struct{})}
	d := &deliverer{s: s, sub: sub, stop: r.stop}
	d.setSecrets(sub.Secret, sub.PreviousSecret)
	r.d = d
	go func() {
		defer close(r.done)
		err := s.bus.Consume(cctx, bus.WebhookConsumer(sub.BotID, sub.ID), d.handle, bus.ConsumeOptions{
			Workers: s.cfg.Workers, Key: runKey, DrainTimeout: s.cfg.DrainTimeout,
		})
		if err != nil && cctx.Err() == nil {
			s.log.Warn("webhook consumer stopped", "subscription", sub.ID, "err", err)
		}
	}()
	return r
}
