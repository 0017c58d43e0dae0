// Package webhooks owns the delivery of run status changes to the webhook
// subscriptions of a bot: every status change becomes a CloudEvent in
// structured JSON mode, signed with HMAC-SHA256, POSTed to each matching
// subscription in order per run, retried with exponential backoff for a
// configurable period and then dead-lettered with the reason.
//
// Two stages, both on JetStream:
//
//   - fan-out: one durable consumer on FLOWGATE_RUNS (keyed by run) reads a
//     status change, lists the bot's subscriptions and publishes one copy
//     per matching subscription on flowgate.webhook.<bot>.<subscription>
//     (stream FLOWGATE_WEBHOOKS), with the CloudEvent id "<status event
//     id>:<subscription id>" as its dedup id;
//   - delivery: one durable consumer per subscription (created and deleted
//     as subscriptions come and go), keyed by run, so a run's changes are
//     POSTed one at a time in stream order and a failing endpoint holds back
//     only its own subscription. Retries happen inline in the handler, which
//     keeps the message with InProgress, so a later change of the same run
//     never overtakes an earlier one.
package webhooks

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/flowgate/flowgate/shared/bus"
	"github.com/flowgate/flowgate/shared/egress"
	"github.com/flowgate/flowgate/shared/events"
	"github.com/flowgate/flowgate/shared/store"
)

// Config configures the delivery service.
type Config struct {
	// RetryPeriod is how long a status change is retried after it happened
	// before it is dead-lettered (default 24 h).
	RetryPeriod time.Duration
	// InitialBackoff is the wait after the first failed attempt; it doubles
	// per attempt up to MaxBackoff (defaults 1 s and 10 min).
	InitialBackoff time.Duration
	MaxBackoff     time.Duration
	// Timeout bounds one HTTP attempt (default 10 s).
	Timeout time.Duration
	// AllowPrivate lets subscriptions reach loopback, private and link-local
	// addresses (checked on the resolved address when connecting).
	AllowPrivate bool
	// SubscriptionTTL is how long the fan-out caches a bot's subscriptions
	// (default 2 s; negative disables the cache).
	SubscriptionTTL time.Duration
	// ReadTTL is how long a delivery's read of a run (and of a run's
	// trigger, for Recrubo payloads) serves the other deliveries in this
	// process: the deliveries of one change to several subscriptions read
	// its run once, and a broadcast's runs read their trigger once
	// (default 5 s; negative: every delivery reads). A run read is used only
	// for a change it is stored at (its RunVersion) or later, as a fresh
	// read would be.
	ReadTTL time.Duration
	// ReconcileEvery is how often the per-subscription consumers are
	// matched with the stored subscriptions (default 5 s).
	ReconcileEvery time.Duration
	// Workers is the number of runs delivered concurrently per subscription
	// in this process (default 4); FanoutWorkers that of the fan-out (default 16).
	Workers       int
	FanoutWorkers int
	// DrainTimeout bounds the wait for in-flight deliveries on shutdown (default 15 s).
	DrainTimeout time.Duration
}

func (c *Config) setDefaults() {
	if c.RetryPeriod == 0 {
		c.RetryPeriod = 24 * time.Hour
	}
	if c.InitialBackoff == 0 {
		c.InitialBackoff = time.Second
	}
	if c.MaxBackoff == 0 {
		c.MaxBackoff = 10 * time.Minute
	}
	if c.Timeout == 0 {
		c.Timeout = 10 * time.Second
	}
	if c.SubscriptionTTL == 0 {
		c.SubscriptionTTL = 2 * time.Second
	}
	if c.ReadTTL == 0 {
		c.ReadTTL = 5 * time.Second
	}
	if c.ReconcileEvery == 0 {
		c.ReconcileEvery = 5 * time.Second
	}
	if c.Workers == 0 {
		c.Workers = 4
	}
	if c.FanoutWorkers == 0 {
		c.FanoutWorkers = 16
	}
	if c.DrainTimeout == 0 {
		c.DrainTimeout = 15 * time.Second
	}
}

// Validate reports configuration errors.
func (c *Config) Validate() error {
	switch {
	case c.RetryPeriod < 0, c.InitialBackoff < 0, c.MaxBackoff < 0, c.Timeout < 0, c.ReconcileEvery < 0:
		return errors.New("webhooks: durations must not be negative")
	case c.Workers < 0, c.FanoutWorkers < 0:
		return errors.New("webhooks: worker counts must not be negative")
	}
	return nil
}

// Store is what the service reads: bots (to find every subscription),
// their subscriptions, and the runs, contacts and triggers that Recrubo
// webhooks show as FlowRun resources.
type Store interface {
	ListBots(ctx context.Context) ([]store.Bot, error)
	ListSubscriptions(ctx context.Context, botID string) ([]store.Subscription, error)
	GetRun(ctx context.Context, botID, id string) (store.Run, error)
	GetContact(ctx context.Context, botID, id string) (store.Contact, error)
	GetTrigger(ctx context.Context, botID, id string) (store.Trigger, error)
}

// Deps are the service's collaborators.
type Deps struct {
	Store  Store
	Bus    *bus.Bus
	Logger *slog.Logger
	// Client sends the webhooks (default: one that refuses non-public
	// addresses unless Config.AllowPrivate).
	Client *http.Client
	// Resolver resolves subscription hosts (default net.DefaultResolver).
	Resolver *net.Resolver
}

type service struct {
	cfg    Config
	store  Store
	bus    *bus.Bus
	log    *slog.Logger
	client *http.Client
	// stopping is closed when Run's context ends: inline retries stop
	// waiting and hand their message back to JetStream.
	stopping <-chan struct{}

	cacheMu sync.Mutex
	cache   map[string]cachedSubs

	// runs and initialMessages are what deliveries read, shared by the
	// deliveries of every subscription in this process (Config.ReadTTL).
	runs            *readCache[store.Run]
	initialMessages *readCache[*events.Content]
}

// readCacheEntries bounds each read cache (per generation): a few seconds
// of status changes at thousands per second.
const readCacheEntries = 16384

// Run delivers webhooks until ctx ends, then drains.
func Run(ctx context.Context, cfg Config, d Deps) error {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return err
	}
	if d.Store == nil || d.Bus == nil {
		return errors.New("webhooks: Store and Bus are required")
	}
	if d.Logger == nil {
		d.Logger = slog.Default()
	}
	if d.Client == nil {
		d.Client = newClient(egress.Policy{AllowPrivate: cfg.AllowPrivate, Resolver: d.Resolver})
	}
	// The first stage to fail stops the other, so Run returns the error.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	s := &service{cfg: cfg, store: d.Store, bus: d.Bus, log: d.Logger, client: d.Client,
		stopping: ctx.Done(), cache: map[string]cachedSubs{},
		runs: newReadCache[store.Run](cfg.ReadTTL, readCacheEntries), initialMessages: newReadCache[*events.Content](cfg.ReadTTL, readCacheEntries)}

	var wg sync.WaitGroup
	errc := make(chan error, 2)
	wg.Add(2)
	go func() {
		defer wg.Done()
		err := s.bus.Consume(ctx, bus.WebhookFanoutConsumer, s.fanout, bus.ConsumeOptions{
			Workers: cfg.FanoutWorkers, Key: runKey, DrainTimeout: cfg.DrainTimeout,
		})
		if err != nil {
			cancel()
		}
		errc <- err
	}()
	go func() {
		defer wg.Done()
		errc <- s.reconcileLoop(ctx)
	}()
	wg.Wait()
	close(errc)
	var err error
	for e := range errc {
		if e != nil && err == nil {
			err = fmt.Errorf("webhooks: %w", e)
		}
	}
	return err
}

// runKey orders messages per run: the CloudEvent subject is the run id.
func runKey(m bus.Message) string { return m.Event.Subject() }

// pause waits d, telling JetStream every few seconds that the message is
// still being worked on. It reports false if the service is stopping or
// stop is closed.
func (s *service) pause(m bus.Message, d time.Duration, stop <-chan struct{}) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	tick := time.NewTicker(5 * time.Second)
	defer tick.Stop()
	for {
		select {
		case <-t.C:
			return true
		case <-tick.C:
			m.InProgress()
		case <-s.stopping:
			return false
		case <-stop:
			return false
		}
	}
}
