// Package orchestrator owns flow runs: it turns accepted triggers into one
// run per contact, drives each run through the flow interpreter, resumes
// runs on user replies, timers and delivery results, and publishes outbound
// messages and run status changes.
package orchestrator

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/flowgate/flowgate/orchestrator/flow"
	"github.com/flowgate/flowgate/shared/bus"
	"github.com/flowgate/flowgate/shared/egress"
)

// Config configures the orchestrator.
type Config struct {
	// Workers handle messages of each consumer concurrently (default 32).
	Workers int
	// TimerInterval is how often due timers are looked for (default 1 s).
	TimerInterval time.Duration
	// HTTPAllowPrivate lets flow `http` steps call private-network addresses.
	HTTPAllowPrivate bool
	// HTTPTimeout is the default timeout of flow `http` steps (default 10 s).
	HTTPTimeout time.Duration
	// FanOutBatch is how many contacts a broadcast takes per batch and
	// checkpoint (default 1000, max 10000).
	FanOutBatch int
	// FanOutParallelism bounds the runs of a batch started at once (default
	// 256: starting a run is a few store and bus round trips, mostly waiting).
	FanOutParallelism int
	// RetryBackoff caps the delay before a failed message is retried
	// (default 1 min). Transient failures (store or bus unavailable) are
	// retried at this pace for as long as they last.
	RetryBackoff time.Duration
	// QueueSeconds bounds what a broadcast keeps queued per account: a
	// batch starts only while the account's bulk lane holds less than
	// QueueSeconds of its rate (default 2 min; negative: no bound).
	QueueSeconds time.Duration
	// DrainPoll is how often a held fan-out looks at its lane again
	// (default 500 ms).
	DrainPoll time.Duration
	// SubscriptionTTL is how long whether a bot has webhook subscriptions
	// is cached (default 2 s, as the webhook fan-out's cache): the runs of
	// a bot without any publish no status changes (statusevents.go).
	SubscriptionTTL time.Duration
	// AlwaysPublishStatus publishes every run status change on
	// FLOWGATE_RUNS, subscriptions or not (for readers of one's own).
	AlwaysPublishStatus bool
	// ClaimLease is how long a step's claim on a run lasts if the step dies
	// before it writes the run (default 1 min; claims.go). Another step of
	// the run waits that long; the same event redelivered does not. Keep it
	// above the consumers' AckWait (30 s).
	ClaimLease time.Duration
}

func (c *Config) setDefaults() {
	if c.Workers == 0 {
		c.Workers = 32
	}
	if c.TimerInterval == 0 {
		c.TimerInterval = time.Second
	}
	if c.SubscriptionTTL <= 0 {
		c.SubscriptionTTL = 2 * time.Second
	}
	if c.HTTPTimeout == 0 {
		c.HTTPTimeout = 10 * time.Second
	}
	if c.FanOutBatch <= 0 {
		c.FanOutBatch = 1000
	}
	c.FanOutBatch = min(c.FanOutBatch, 10_000)
	if c.FanOutParallelism <= 0 {
		c.FanOutParallelism = 256
	}
	if c.QueueSeconds == 0 {
		c.QueueSeconds = 2 * time.Minute
	}
	if c.ClaimLease <= 0 {
		c.ClaimLease = time.Minute
	}
	if c.DrainPoll <= 0 {
		c.DrainPoll = 500 * time.Millisecond
	}
}

// Bus is what the orchestrator needs of the message bus.
type Bus interface {
	// PublishAll publishes a batch and waits for every acknowledgement.
	PublishAll(ctx context.Context, evs []bus.Outgoing) error
	Consume(ctx context.Context, spec bus.ConsumerSpec, h bus.Handler, o bus.ConsumeOptions) error
	// Queued is how many messages a stream holds on a subject (the
	// back-pressure of broadcasts).
	Queued(ctx context.Context, stream, subject string) (uint64, error)
}

// Deps are the orchestrator's collaborators.
type Deps struct {
	Store  Store
	Bus    Bus
	Logger *slog.Logger
	// HTTPClient performs flow `http` steps (default: the egress policy's
	// client, which refuses non-public addresses unless allowed).
	HTTPClient *http.Client
	// Resolver resolves the host names of flow `http` steps (default
	// net.DefaultResolver).
	Resolver *net.Resolver
	// Clock is the time of the runs' claims (default time.Now).
	Clock func() time.Time
}

// Orchestrator drives flow runs.
type Orchestrator struct {
	cfg   Config
	store Store
	bus   Bus
	log   *slog.Logger
	http  *http.Client
	now   func() time.Time
	id    string // this process's, in the names of its timer steps' claims

	counters *counterBatcher
	launches *launchGroups
	subs     subscribed
	runs     *runLocks

	defsMu sync.RWMutex
	defs   map[string]*flow.Definition
	latest map[string]latestVersion
}

// New builds an orchestrator.
func New(cfg Config, d Deps) (*Orchestrator, error) {
	cfg.setDefaults()
	if d.Store == nil || d.Bus == nil {
		return nil, errors.New("orchestrator: Store and Bus are required")
	}
	if d.Logger == nil {
		d.Logger = slog.Default()
	}
	if d.HTTPClient == nil {
		d.HTTPClient = newHTTPClient(egress.Policy{AllowPrivate: cfg.HTTPAllowPrivate, Resolver: d.Resolver})
	}
	if d.Clock == nil {
		d.Clock = time.Now
	}
	o := &Orchestrator{cfg: cfg, store: d.Store, bus: d.Bus, log: d.Logger, http: d.HTTPClient, now: d.Clock, id: newProcessID(),
		counters: newCounterBatcher(d.Store.IncrTriggerCounters), runs: newRunLocks(),
		defs: map[string]*flow.Definition{}, latest: map[string]latestVersion{}}
	o.launches = newLaunchGroups(o.launchTogether)
	return o, nil
}

// Run consumes triggers, replies and delivery results and fires timers
// until ctx ends, then drains.
func Run(ctx context.Context, cfg Config, d Deps) error {
	o, err := New(cfg, d)
	if err != nil {
		return err
	}
	return o.Run(ctx)
}

// Run is the orchestrator's lifecycle.
func (o *Orchestrator) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	errc := make(chan error, 8)
	consume := func(spec bus.ConsumerSpec, h bus.Handler, key func(bus.Message) string) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := o.bus.Consume(ctx, spec, h, bus.ConsumeOptions{Workers: o.cfg.Workers, Key: key, MaxBackoff: o.cfg.RetryBackoff}); err != nil {
				errc <- err
			}
		}()
	}
	// Messages about one contact (or one run) are handled one at a time, in order.
	bySubject := func(m bus.Message) string { return m.Event.Subject() }
	consume(bus.TriggerConsumer, o.handleTrigger, nil)
	// Triggers the ingress published on the standby stream while the
	// triggers stream had no leader (bus/standby.go): handled alike; a
	// trigger on both streams is stored once (CreateTrigger is keyed by id).
	consume(bus.TriggerStandbyConsumer, o.handleTrigger, nil)
	// A step refused for a busy run is retried in place (inOrder), so
	// that the next message about the same contact or run stays behind it.
	consume(bus.InboundConsumer, inOrder(o.handleInbound), bySubject)
	consume(bus.DeliveryConsumer, inOrder(o.handleDelivery), bySubject)
	consume(bus.ControlConsumer, inOrder(o.handleControl), bySubject)
	wg.Add(1)
	go func() {
		defer wg.Done()
		o.runTimers(ctx)
	}()
	o.log.Info("orchestrator running", "workers", o.cfg.Workers)
	var err error
	select {
	case <-ctx.Done():
	case err = <-errc:
		cancel()
	}
	wg.Wait()
	return err
}
