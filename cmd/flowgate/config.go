package main

import (
	"flag"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/flowgate/flowgate/cmd/flowgate/app"
)

// parseConfig reads flags, with FLOWGATE_* environment variables as defaults.
func parseConfig(cmd string, args []string) (app.Config, []string, error) {
	var cfg app.Config
	fs := flag.NewFlagSet("flowgate "+cmd, flag.ContinueOnError)
	str := func(p *string, name, env, def, help string) {
		fs.StringVar(p, name, envOr(env, def), help+" ($"+env+")")
	}
	boolean := func(p *bool, name, env, help string) {
		v, _ := strconv.ParseBool(os.Getenv(env))
		fs.BoolVar(p, name, v, help+" ($"+env+")")
	}
	var logLevel, logFormat, maxBytes, maxMedia, retention, webhookRetry, broadcastQueue, replicas string
	httpAddr := ":8080"
	if cmd == "dev" {
		// dev has a generated admin key and a demo bot: it listens on
		// loopback unless told otherwise (--http-addr 0.0.0.0:8080).
		httpAddr = app.DevHTTPAddr
	}
	str(&cfg.HTTPAddr, "http-addr", "FLOWGATE_HTTP_ADDR", httpAddr, "HTTP listen address (dev: loopback; 0.0.0.0:8080 exposes it)")
	str(&cfg.MetricsAddr, "metrics-addr", "FLOWGATE_METRICS_ADDR", "", "orchestrator and channel workers: /metrics, /healthz and /readyz listen address (default :9090; off disables)")
	str(&cfg.DataDir, "data-dir", "FLOWGATE_DATA_DIR", "data", "data directory (embedded store, embedded NATS)")
	str(&cfg.AdminKey, "admin-key", "FLOWGATE_ADMIN_KEY", "", "admin API key (dev generates one when empty)")
	str(&cfg.NATSURL, "nats-url", "FLOWGATE_NATS_URL", "", "NATS server URL, or the URLs of a cluster's servers separated by commas (dev embeds one when empty)")
	str(&replicas, "nats-replicas", "FLOWGATE_NATS_REPLICAS", "1", "replicas of every JetStream stream and the pacer's bucket: 1, or 3 on a NATS cluster (raised at start, never lowered)")
	str(&cfg.NATSUser, "nats-user", "FLOWGATE_NATS_USER", "", "NATS user (with FLOWGATE_NATS_PASSWORD)")
	str(&cfg.NATSPassword, "nats-password", "FLOWGATE_NATS_PASSWORD", "", "NATS password (prefer the environment variable to the flag)")
	str(&cfg.NATSCreds, "nats-creds", "FLOWGATE_NATS_CREDS", "", "NATS credentials file (JWT + nkey seed)")
	str(&cfg.NATSNKey, "nats-nkey", "FLOWGATE_NATS_NKEY", "", "file holding the NATS nkey seed of this service")
	str(&cfg.NATSListen, "nats-listen", "FLOWGATE_NATS_LISTEN", "", "dev: also expose the embedded NATS on this address")
	boolean(&cfg.NATSSync, "nats-sync-always", "FLOWGATE_NATS_SYNC_ALWAYS", "dev: fsync every JetStream write")
	str(&cfg.MongoURI, "mongodb-uri", "FLOWGATE_MONGODB_URI", "", "MongoDB URI (the embedded SQLite store is used when empty)")
	str(&cfg.MongoDB, "mongodb-database", "FLOWGATE_MONGODB_DATABASE", "flowgate", "MongoDB database name")
	boolean(&cfg.HTTPAllowPrivate, "http-allow-private", "FLOWGATE_HTTP_ALLOW_PRIVATE", "let flow http steps call private addresses")
	boolean(&cfg.Webhooks.AllowPrivate, "webhook-allow-private", "FLOWGATE_WEBHOOK_ALLOW_PRIVATE", "let webhook subscriptions target private addresses")
	str(&webhookRetry, "webhook-retry-period", "FLOWGATE_WEBHOOK_RETRY_PERIOD", "24h", "how long a run status webhook is retried before it is dead-lettered")
	boolean(&cfg.NoDemo, "no-demo", "FLOWGATE_NO_DEMO", "dev: do not create the demo bot")
	boolean(&cfg.TelegramPoll, "poll", "FLOWGATE_TELEGRAM_POLL", "channel telegram: read updates with getUpdates long polling (deletes the bots' webhooks)")
	str(&cfg.TelegramWebhookBase, "set-webhook", "FLOWGATE_TELEGRAM_WEBHOOK_BASE", "", "channel telegram: point every bot's webhook at this public base URL + /webhooks/telegram/{bot} at start")
	str(&cfg.PublicURL, "public-url", "FLOWGATE_PUBLIC_URL", "", "the ingress's public base URL (RCS fetches uploaded files from links under it)")
	str(&cfg.MediaURLKey, "media-url-key", "FLOWGATE_MEDIA_URL_KEY", "", "key signing uploaded files' links (default: generated in the data directory; set it when services share no data directory)")
	str(&maxMedia, "max-media-bytes", "FLOWGATE_MAX_MEDIA_BYTES", "0", "largest uploaded file in bytes (0 = 5 MiB, at most 8 MiB)")
	str(&retention, "retention", "FLOWGATE_RETENTION", "0", "delete finished runs and their messages after this long, e.g. 720h (0 keeps them)")
	str(&broadcastQueue, "broadcast-queue", "FLOWGATE_BROADCAST_QUEUE", "2m", "orchestrator: a broadcast keeps at most this long of its account's rate queued (back-pressure; -1s: no bound)")
	str(&maxBytes, "stream-max-bytes", "FLOWGATE_STREAM_MAX_BYTES", "0", "bytes per JetStream stream (0 = 1 GiB)")
	str(&logLevel, "log-level", "FLOWGATE_LOG_LEVEL", "info", "debug, info, warn or error")
	str(&logFormat, "log-format", "FLOWGATE_LOG_FORMAT", "text", "text or json")
	if err := fs.Parse(args); err != nil {
		return cfg, nil, err
	}
	rest := fs.Args()
	if len(rest) > 1 {
		// `flowgate channel telegram --set-webhook URL`: flags may follow the name.
		if err := fs.Parse(rest[1:]); err != nil {
			return cfg, nil, err
		}
		rest = append([]string{rest[0]}, fs.Args()...)
	}
	n, err := strconv.ParseInt(maxBytes, 10, 64)
	if err != nil || n < 0 {
		return cfg, nil, fmt.Errorf("invalid stream max bytes %q", maxBytes)
	}
	cfg.StreamMaxBytes = n
	if cfg.MaxMediaBytes, err = strconv.ParseInt(maxMedia, 10, 64); err != nil || cfg.MaxMediaBytes < 0 {
		return cfg, nil, fmt.Errorf("invalid max media bytes %q", maxMedia)
	}
	if cfg.BroadcastQueue, err = time.ParseDuration(broadcastQueue); err != nil || cfg.BroadcastQueue == 0 {
		return cfg, nil, fmt.Errorf("invalid broadcast queue %q (a duration such as 2m; negative: no bound)", broadcastQueue)
	}
	switch replicas {
	case "1", "3":
		cfg.NATSReplicas, _ = strconv.Atoi(replicas)
	default:
		return cfg, nil, fmt.Errorf("invalid NATS replicas %q: 1, or 3 on a three-node cluster", replicas)
	}
	if cfg.Retention, err = time.ParseDuration(retention); err != nil || cfg.Retention < 0 {
		return cfg, nil, fmt.Errorf("invalid retention %q", retention)
	}
	if cfg.Webhooks.RetryPeriod, err = time.ParseDuration(webhookRetry); err != nil || cfg.Webhooks.RetryPeriod <= 0 {
		return cfg, nil, fmt.Errorf("invalid webhook retry period %q", webhookRetry)
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(logLevel)); err != nil {
		return cfg, nil, fmt.Errorf("invalid log level %q", logLevel)
	}
	opts := &slog.HandlerOptions{Level: level}
	switch strings.ToLower(logFormat) {
	case "json":
		cfg.Logger = slog.New(slog.NewJSONHandler(os.Stderr, opts))
	case "text":
		cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, opts))
	default:
		return cfg, nil, fmt.Errorf("invalid log format %q", logFormat)
	}
	slog.SetDefault(cfg.Logger)
	return cfg, rest, nil
}

func envOr(key, def string) string {
	if v, ok := os.LookupEnv(key); ok {
		return v
	}
	return def
}
