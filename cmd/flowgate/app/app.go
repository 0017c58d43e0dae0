// Package app wires Flowgate's services into processes: `flowgate dev`
// (everything in one process with embedded NATS and the embedded store) and
// one process per service. main only parses configuration and signals.
package app

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/flowgate/flowgate/ingress"
	"github.com/flowgate/flowgate/orchestrator"
	"github.com/flowgate/flowgate/orchestrator/flow"
	"github.com/flowgate/flowgate/orchestrator/webhooks"
	"github.com/flowgate/flowgate/shared/bus"
	"github.com/flowgate/flowgate/shared/channel"
	"github.com/flowgate/flowgate/shared/media"
	"github.com/flowgate/flowgate/shared/provider"
	"github.com/flowgate/flowgate/shared/store"
	"github.com/flowgate/flowgate/shared/store/sqlite"
)

// Config is every setting of every service; each reads what it needs.
// main fills it from flags and FLOWGATE_* environment variables.
type Config struct {
	HTTPAddr string // FLOWGATE_HTTP_ADDR
	DataDir  string // FLOWGATE_DATA_DIR
	AdminKey string // FLOWGATE_ADMIN_KEY
	NATSURL  string // FLOWGATE_NATS_URL (comma-separated for a cluster)
	// NATSReplicas is the replica count of every stream and of the pacer's
	// bucket (1, or 3 on a cluster); raised at start, never lowered.
	NATSReplicas int // FLOWGATE_NATS_REPLICAS
	// NATSRetryWait is how long a publish or an ack that failed for a
	// reason that passes by itself is tried again (bus.Config.RetryWait);
	// 0: bus.DefaultRetryWait for dev and the ingress, BackgroundRetryWait
	// for the orchestrator and the channel workers.
	NATSRetryWait time.Duration // FLOWGATE_NATS_RETRY_WAIT
	// NATS credentials: a user and password, a credentials file, or an
	// nkey seed file (one of them).
	NATSUser     string // FLOWGATE_NATS_USER
	NATSPassword string // FLOWGATE_NATS_PASSWORD
	NATSCreds    string // FLOWGATE_NATS_CREDS
	NATSNKey     string // FLOWGATE_NATS_NKEY
	NATSListen   string // FLOWGATE_NATS_LISTEN (dev: expose the embedded server)
	NATSSync     bool   // FLOWGATE_NATS_SYNC_ALWAYS (dev: fsync every write)
	MongoURI     string // FLOWGATE_MONGODB_URI
	MongoDB      string // FLOWGATE_MONGODB_DATABASE
	// Retention expires final runs and their messages after this long (0 keeps them).
	Retention time.Duration // FLOWGATE_RETENTION
	// HTTPAllowPrivate lets flow http steps reach private networks.
	HTTPAllowPrivate bool // FLOWGATE_HTTP_ALLOW_PRIVATE
	// Webhooks configures run status webhook delivery (part of the
	// orchestrator): AllowPrivate (FLOWGATE_WEBHOOK_ALLOW_PRIVATE, also read
	// by the ingress when subscriptions are created) and RetryPeriod
	// (FLOWGATE_WEBHOOK_RETRY_PERIOD); the other fields are tuning knobs.
	Webhooks webhooks.Config
	// TelegramWebhookBase, when set, makes the Telegram worker point every
	// bot's webhook at TelegramWebhookBase/webhooks/telegram/{bot} at start.
	TelegramWebhookBase string // FLOWGATE_TELEGRAM_WEBHOOK_BASE, `flowgate channel telegram --set-webhook URL`
	// TelegramPoll makes the Telegram worker read every bot's updates with
	// getUpdates long polling instead of a webhook (it deletes the webhook).
	TelegramPoll bool // FLOWGATE_TELEGRAM_POLL, `flowgate channel telegram --poll`
	// ChannelMaxInFlight is every channel runner's MaxInFlightPerAccount
	// (0: the runner's default).
	ChannelMaxInFlight int // FLOWGATE_CHANNEL_MAX_IN_FLIGHT
	// BroadcastQueue bounds what a broadcast keeps queued per account, as
	// time at the account's rate (orchestrator.Config.QueueSeconds; 0 = 2
	// minutes, negative = no bound).
	BroadcastQueue time.Duration // FLOWGATE_BROADCAST_QUEUE
	// PublishAllRunStatus publishes every run status change, also for bots
	// without webhook subscriptions (FLOWGATE_PUBLISH_ALL_RUN_STATUS).
	PublishAllRunStatus bool
	// FanOutBatch is the contacts per broadcast batch (0 = 1000).
	FanOutBatch int
	// StreamMaxBytes bounds each JetStream stream.
	StreamMaxBytes int64 // FLOWGATE_STREAM_MAX_BYTES
	// NoDemo skips creating the demo bot in dev.
	NoDemo bool // FLOWGATE_NO_DEMO
	// PublicURL is the ingress's public base URL, e.g.
	// https://flowgate.example.com: uploaded files are linked under it for
	// RCS (GET /media/{bot}/{id}?exp=&sig=).
	PublicURL string // FLOWGATE_PUBLIC_URL
	// MediaURLKey signs those links (default: generated in the data directory).
	MediaURLKey string // FLOWGATE_MEDIA_URL_KEY
	// MaxMediaBytes caps an uploaded file (default 5 MiB, at most 8 MiB).
	MaxMediaBytes int64 // FLOWGATE_MAX_MEDIA_BYTES
	// MetricsAddr is where the orchestrator and channel workers serve
	// /metrics, /healthz and /readyz (default ":9090", "off" disables).
	MetricsAddr string // FLOWGATE_METRICS_ADDR
	// RateLimit and RateBurst limit the requests of each API key at the
	// ingress (per second, per replica; 0 = off).
	RateLimit float64 // FLOWGATE_RATE_LIMIT
	// TriggerBatch is the most triggers of one bot the ingress publishes in
	// one JetStream message (FLOWGATE_TRIGGER_BATCH; 0: 256, 1: each alone).
	TriggerBatch int
	// WebhookPublishWait is how long a provider webhook keeps trying to
	// queue its events while NATS is unavailable (FLOWGATE_WEBHOOK_PUBLISH_WAIT;
	// 0: ingress.DefaultWebhookPublishWait, negative: 503 at once).
	WebhookPublishWait time.Duration
	RateBurst          int // FLOWGATE_RATE_BURST
	Logger             *slog.Logger
	// Terminal is where dev shows a newly generated admin key, once; nil
	// means standard error when it is a terminal, and nowhere otherwise.
	// The key never goes to Logger: structured logs are collected and kept.
	Terminal io.Writer
	// WrapStore, when set, wraps the store of `flowgate dev` below the
	// metrics decorator (a test seam: fault injection).
	WrapStore func(store.Store) store.Store
	// ClaimLease is how long an orchestrator step's claim on a run lasts
	// if the step's process dies before it writes the run (0: 1 min;
	// orchestrator.Config.ClaimLease).
	ClaimLease time.Duration // FLOWGATE_CLAIM_LEASE
	// RetryBackoff caps the delay before a message whose handling failed
	// transiently (the store, the bus or a provider unavailable) is tried
	// again, in the orchestrator and the channel workers (0 = 1 min).
	RetryBackoff time.Duration // FLOWGATE_RETRY_MAX_BACKOFF
}

func (c *Config) setDefaults() {
	if c.HTTPAddr == "" {
		c.HTTPAddr = ":8080"
	}
	if c.DataDir == "" {
		c.DataDir = "data"
	}
	if c.MongoDB == "" {
		c.MongoDB = "flowgate"
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
}

// CompileFlow validates a flow document and returns its canonical JSON.
func CompileFlow(doc []byte) ([]byte, error) {
	d, err := flow.Parse(doc)
	if err != nil {
		var ve *flow.ValidationErrors
		if errors.As(err, &ve) {
			return nil, flowErrors{*ve}
		}
		return nil, err
	}
	return d.JSON()
}

// flowErrors adapts the interpreter's validation errors to the ingress's
// field-error reporting.
type flowErrors struct{ ve flow.ValidationErrors }

func (f flowErrors) Error() string { return f.ve.Error() }

func (f flowErrors) Fields() []ingress.FieldProblem {
	out := make([]ingress.FieldProblem, 0, len(f.ve))
	for _, e := range f.ve {
		out = append(out, ingress.FieldProblem{Path: e.Path, Message: e.Message})
	}
	return out
}

// OpenStore opens MongoDB when a URI is configured, the embedded SQLite store otherwise.
func OpenStore(ctx context.Context, cfg Config) (store.Store, error) {
	return openStore(ctx, cfg, false)
}

// OpenServiceStore is OpenStore for one service run as its own process
// (`flowgate ingress`, `orchestrator`, `channel`): with SQLite, the data
// directory is shared with the other services' processes (sqlite.WithShared):
// the writer keeps a small page cache (sqlite.SharedWriterCacheKiB), which
// SQLite empties whenever another process has written, and never holds the
// write lock while it waits for more writes.
func OpenServiceStore(ctx context.Context, cfg Config) (store.Store, error) {
	return openStore(ctx, cfg, true)
}

func openStore(ctx context.Context, cfg Config, shared bool) (store.Store, error) {
	cfg.setDefaults()
	if cfg.MongoURI != "" {
		return openMongo(ctx, cfg)
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("data dir: %w", err)
	}
	var opts []sqlite.Option
	if cfg.Retention > 0 {
		opts = append(opts, sqlite.WithRetention(cfg.Retention))
	}
	if shared {
		opts = append(opts, sqlite.WithShared())
	}
	s, err := sqlite.Open(ctx, cfg.DataDir, opts...)
	if err != nil {
		return nil, err // never a typed nil in the interface
	}
	return s, nil
}

// ConnectBus dials the configured NATS server.
func ConnectBus(ctx context.Context, cfg Config, source string) (*bus.Bus, error) {
	return connectBus(ctx, cfg, source, retryWaitFor(cfg, "dev"))
}

// connectBus is ConnectBus with the bus's retry wait (bus.Config.RetryWait).
func connectBus(ctx context.Context, cfg Config, source string, retryWait time.Duration) (*bus.Bus, error) {
	cfg.setDefaults()
	if cfg.NATSURL == "" {
		return nil, errors.New("FLOWGATE_NATS_URL is required (or run `flowgate dev`)")
	}
	opts, err := natsAuth(cfg)
	if err != nil {
		return nil, err
	}
	bc := busConfig(cfg, source)
	bc.RetryWait = retryWait
	return bus.Connect(ctx, cfg.NATSURL, bc, opts...)
}

// natsAuth turns the credential settings into connection options.
func natsAuth(cfg Config) ([]nats.Option, error) {
	var opts []nats.Option
	n := 0
	if cfg.NATSUser != "" || cfg.NATSPassword != "" {
		if cfg.NATSUser == "" || cfg.NATSPassword == "" {
			return nil, errors.New("FLOWGATE_NATS_USER and FLOWGATE_NATS_PASSWORD go together")
		}
		opts = append(opts, nats.UserInfo(cfg.NATSUser, cfg.NATSPassword))
		n++
	}
	if cfg.NATSCreds != "" {
		if _, err := os.Stat(cfg.NATSCreds); err != nil {
			return nil, fmt.Errorf("FLOWGATE_NATS_CREDS: %w", err)
		}
		opts = append(opts, nats.UserCredentials(cfg.NATSCreds))
		n++
	}
	if cfg.NATSNKey != "" {
		o, err := nats.NkeyOptionFromSeed(cfg.NATSNKey)
		if err != nil {
			return nil, fmt.Errorf("FLOWGATE_NATS_NKEY: %w", err)
		}
		opts = append(opts, o)
		n++
	}
	if n > 1 {
		return nil, errors.New("set one of FLOWGATE_NATS_USER/PASSWORD, FLOWGATE_NATS_CREDS and FLOWGATE_NATS_NKEY")
	}
	return opts, nil
}

// BackgroundRetryWait is how long the orchestrator and the channel
// workers run apart (flowgate orchestrator, flowgate channel) keep trying
// a publish that failed for a reason that passes by itself: longer than a
// NATS cluster's stream leader election (4–9 s measured, docs/deploy.md),
// so that a lost leader costs their handlers a wait, not a failed attempt,
// a redelivery and the backoff after it. It stays within the step's claim
// (nine tenths of ClaimLease, 1 min by default), and the handlers' messages
// are kept in progress meanwhile. The ingress keeps bus.DefaultRetryWait:
// a client waits for its answer; flowgate dev too (one process, one
// bus, and its embedded server elects nobody).
const BackgroundRetryWait = 15 * time.Second

// retryWaitFor is the bus's retry wait for a service run apart (cmd, as
// flowgate's command): the configured one, else the service's default.
func retryWaitFor(cfg Config, cmd string) time.Duration {
	if cfg.NATSRetryWait > 0 {
		return cfg.NATSRetryWait
	}
	switch cmd {
	case "orchestrator", "channel":
		return BackgroundRetryWait
	}
	return bus.DefaultRetryWait
}

func busConfig(cfg Config, source string) bus.Config {
	return bus.Config{Source: source, Logger: cfg.Logger, RetryWait: cfg.NATSRetryWait,
		Limits: bus.Limits{MaxBytes: cfg.StreamMaxBytes, Replicas: cfg.NATSReplicas}}
}

// RunIngress runs the ingress service.
func RunIngress(ctx context.Context, cfg Config, st store.Store, b *bus.Bus) error {
	ic, err := ingressConfig(cfg)
	if err != nil {
		return err
	}
	return waitAll(ctx,
		func(ctx context.Context) error {
			return ingress.Run(ctx, ic, ingress.Deps{Store: st, Bus: b, CompileFlow: CompileFlow, Logger: cfg.Logger.With("service", "ingress")})
		},
		// On a NATS cluster: the triggers stream and its standby led by
		// different servers (bus/standby.go); returns at once otherwise.
		func(ctx context.Context) error { return b.KeepTriggerLeadersApart(ctx, 0) })
}

// ingressConfig is the ingress's part of cfg.
func ingressConfig(cfg Config) (ingress.Config, error) {
	signer, err := MediaSigner(cfg)
	if err != nil {
		return ingress.Config{}, err
	}
	return ingress.Config{Addr: cfg.HTTPAddr, AdminKey: cfg.AdminKey, AllowPrivateWebhooks: cfg.Webhooks.AllowPrivate,
		MaxMediaBytes: cfg.MaxMediaBytes, MediaSigner: signer, RateLimit: cfg.RateLimit, RateBurst: cfg.RateBurst,
		TriggerBatch: cfg.TriggerBatch, WebhookPublishWait: cfg.WebhookPublishWait}, nil
}

// RunOrchestrator runs the orchestrator service and, in the same process,
// the delivery of run status webhooks.
func RunOrchestrator(ctx context.Context, cfg Config, st store.Store, b *bus.Bus) error {
	return waitAll(ctx,
		func(ctx context.Context) error {
			return orchestrator.Run(ctx, orchestrator.Config{HTTPAllowPrivate: cfg.HTTPAllowPrivate, RetryBackoff: cfg.RetryBackoff,
				QueueSeconds: cfg.BroadcastQueue, FanOutBatch: cfg.FanOutBatch,
				SubscriptionTTL: cfg.Webhooks.SubscriptionTTL, AlwaysPublishStatus: cfg.PublishAllRunStatus,
				ClaimLease: cfg.ClaimLease},
				orchestrator.Deps{Store: st, Bus: b, Logger: cfg.Logger.With("service", "orchestrator")})
		},
		func(ctx context.Context) error {
			return webhooks.Run(ctx, cfg.Webhooks, webhooks.Deps{Store: st, Bus: b, Logger: cfg.Logger.With("service", "webhooks")})
		})
}

// RunChannel runs the worker of one channel: its registered provider's
// (providers.go lists the channels of this binary).
func RunChannel(ctx context.Context, cfg Config, name string, st store.Store, b *bus.Bus) error {
	p, ok := provider.Lookup(name)
	if !ok {
		return fmt.Errorf("unknown channel %q (one of %s)", name, strings.Join(provider.Names(), ", "))
	}
	links := func() (*media.Signer, error) { return MediaSigner(cfg) }
	return p.Run(ctx, provider.WorkerConfig{
		Runner:      channel.RunnerConfig{MaxInFlightPerAccount: cfg.ChannelMaxInFlight, MaxBackoff: cfg.RetryBackoff},
		Replicas:    cfg.NATSReplicas,
		WebhookBase: cfg.TelegramWebhookBase,
		Poll:        cfg.TelegramPoll,
	}, provider.WorkerDeps{Store: st, Bus: b, Links: links, Logger: cfg.Logger.With("service", "channel-"+name)})
}

// adminKey returns the configured admin key, or the one stored in the data
// directory, or a new one it stores there.
func adminKey(cfg Config) (key string, generated bool, err error) {
	if cfg.AdminKey != "" {
		return cfg.AdminKey, false, nil
	}
	path := filepath.Join(cfg.DataDir, "admin.key")
	if b, err := os.ReadFile(path); err == nil {
		return strings.TrimSpace(string(b)), false, nil
	}
	key = "fga_" + ingress.NewAPIKey()[3:]
	if err := os.WriteFile(path, []byte(key+"\n"), 0o600); err != nil {
		return "", false, fmt.Errorf("store admin key: %w", err)
	}
	return key, true, nil
}

// waitAll runs fns concurrently; the first error cancels the others.
func waitAll(ctx context.Context, fns ...func(context.Context) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errc := make(chan error, len(fns))
	for _, fn := range fns {
		go func() { errc <- fn(ctx) }()
	}
	var first error
	for range fns {
		if err := <-errc; err != nil && first == nil {
			first = err
			cancel()
		}
	}
	return first
}

// connectEmbedded opens an in-process connection to the embedded server.
func connectEmbedded(ctx context.Context, e *bus.Embedded, cfg Config, source string) (*bus.Bus, error) {
	nc, err := e.Connect(nats.Name("flowgate-dev" + source))
	if err != nil {
		return nil, err
	}
	b, err := bus.New(ctx, nc, busConfig(cfg, source))
	if err != nil {
		nc.Close()
		return nil, err
	}
	return b, nil
}
