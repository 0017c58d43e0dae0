package main

import (
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/flowgate/flowgate/cmd/flowgate/app"
	"github.com/flowgate/flowgate/shared/provider"
)

// Which commands read which flags: every command lists only its own.
var (
	allServices = []string{"dev", "ingress", "orchestrator", "channel"}
	store       = allServices // data-dir, mongodb-*, retention
	withHTTP    = []string{"dev", "ingress"}
	withMetrics = []string{"orchestrator", "channel"}
	withHooks   = []string{"dev", "ingress", "orchestrator"}
	runsFlows   = []string{"dev", "orchestrator"}
	devOnly     = []string{"dev"}
	withMedia   = []string{"dev", "ingress", "channel"} // signed links to uploaded files
	channelOnly = []string{"channel"}
	withWorkers = []string{"dev", "channel"}
	consumers   = []string{"dev", "orchestrator", "channel"}
)

// parseConfig reads the command's flags, with FLOWGATE_* environment
// variables as defaults. -h prints them on out and returns flag.ErrHelp.
func parseConfig(cmd string, args []string, out io.Writer) (app.Config, []string, error) {
	var cfg app.Config
	fs := flag.NewFlagSet("flowgate "+cmd, flag.ContinueOnError)
	fs.SetOutput(out)
	fs.Usage = func() {
		fmt.Fprintf(out, "usage: flowgate %s [flags]%s\n\nflags (each has a FLOWGATE_* environment variable):\n", cmd,
			map[bool]string{true: " NAME   (NAME: " + strings.Join(provider.Names(), ", ") + ")"}[cmd == "channel"])
		fs.PrintDefaults()
	}
	str := func(cmds []string, p *string, name, env, def, help string) {
		if slices.Contains(cmds, cmd) {
			fs.StringVar(p, name, envOr(env, def), help+" ($"+env+")")
		} else {
			*p = envOr(env, def)
		}
	}
	boolean := func(cmds []string, p *bool, name, env, help string) {
		v, _ := strconv.ParseBool(os.Getenv(env))
		if slices.Contains(cmds, cmd) {
			fs.BoolVar(p, name, v, help+" ($"+env+")")
		} else {
			*p = v
		}
	}
	var logLevel, logFormat, maxInFlight, maxBytes, maxMedia, retention, webhookRetry, broadcastQueue, claimLease, replicas, rateLimit, rateBurst, triggerBatch, webhookWait, natsRetryWait, retryBackoff string
	httpAddr := ":8080"
	if cmd == "dev" {
		// dev has a generated admin key and a demo bot: it listens on
		// loopback unless told otherwise (--http-addr 0.0.0.0:8080).
		httpAddr = app.DevHTTPAddr
	}
	str(withHTTP, &cfg.HTTPAddr, "http-addr", "FLOWGATE_HTTP_ADDR", httpAddr, "HTTP listen address (dev: loopback; 0.0.0.0:8080 exposes it)")
	str(withMetrics, &cfg.MetricsAddr, "metrics-addr", "FLOWGATE_METRICS_ADDR", "", "/metrics, /healthz and /readyz listen address (default :9090; off disables)")
	str(store, &cfg.DataDir, "data-dir", "FLOWGATE_DATA_DIR", "data", "data directory (embedded store, embedded NATS)")
	str(withHTTP, &cfg.AdminKey, "admin-key", "FLOWGATE_ADMIN_KEY", "", "admin API key (dev generates one when empty)")
	str(allServices, &cfg.NATSURL, "nats-url", "FLOWGATE_NATS_URL", "", "NATS server URL, or the URLs of a cluster's servers separated by commas (dev embeds one when empty)")
	str(allServices, &replicas, "nats-replicas", "FLOWGATE_NATS_REPLICAS", "1", "replicas of every JetStream stream and the pacer's bucket: 1, or 3 on a NATS cluster (raised at start, never lowered)")
	str(allServices, &natsRetryWait, "nats-retry-wait", "FLOWGATE_NATS_RETRY_WAIT", "0", "how long a publish or an ack that failed for a reason that passes by itself (a NATS reconnect, a stream leader election) is tried again: 100ms to 1m (0: 2s for dev and the ingress, 15s for the orchestrator and channel workers)")
	str(allServices, &cfg.NATSUser, "nats-user", "FLOWGATE_NATS_USER", "", "NATS user (with FLOWGATE_NATS_PASSWORD)")
	str(allServices, &cfg.NATSPassword, "nats-password", "FLOWGATE_NATS_PASSWORD", "", "NATS password (prefer the environment variable to the flag)")
	str(allServices, &cfg.NATSCreds, "nats-creds", "FLOWGATE_NATS_CREDS", "", "NATS credentials file (JWT + nkey seed)")
	str(allServices, &cfg.NATSNKey, "nats-nkey", "FLOWGATE_NATS_NKEY", "", "file holding the NATS nkey seed of this service")
	str(devOnly, &cfg.NATSListen, "nats-listen", "FLOWGATE_NATS_LISTEN", "", "also expose the embedded NATS on this address")
	boolean(devOnly, &cfg.NATSSync, "nats-sync-always", "FLOWGATE_NATS_SYNC_ALWAYS", "fsync every JetStream write")
	str(store, &cfg.MongoURI, "mongodb-uri", "FLOWGATE_MONGODB_URI", "", "MongoDB URI (the embedded SQLite store is used when empty)")
	str(store, &cfg.MongoDB, "mongodb-database", "FLOWGATE_MONGODB_DATABASE", "flowgate", "MongoDB database name")
	boolean(runsFlows, &cfg.HTTPAllowPrivate, "http-allow-private", "FLOWGATE_HTTP_ALLOW_PRIVATE", "let flow http steps call private addresses")
	boolean(withHooks, &cfg.Webhooks.AllowPrivate, "webhook-allow-private", "FLOWGATE_WEBHOOK_ALLOW_PRIVATE", "let webhook subscriptions target private addresses")
	boolean(runsFlows, &cfg.PublishAllRunStatus, "publish-all-run-status", "FLOWGATE_PUBLISH_ALL_RUN_STATUS", "publish every run status change on FLOWGATE_RUNS, also for bots without webhook subscriptions (for readers of the stream of your own)")
	str(runsFlows, &webhookRetry, "webhook-retry-period", "FLOWGATE_WEBHOOK_RETRY_PERIOD", "24h", "how long a run status webhook is retried before it is dead-lettered")
	boolean(devOnly, &cfg.NoDemo, "no-demo", "FLOWGATE_NO_DEMO", "do not create the demo bot")
	boolean(channelOnly, &cfg.TelegramPoll, "poll", "FLOWGATE_TELEGRAM_POLL", "telegram: read updates with getUpdates long polling (deletes the bots' webhooks)")
	str(channelOnly, &cfg.TelegramWebhookBase, "set-webhook", "FLOWGATE_TELEGRAM_WEBHOOK_BASE", "", "telegram: point every bot's webhook at this public base URL + /webhooks/telegram/{bot} at start")
	str(withWorkers, &maxInFlight, "max-in-flight", "FLOWGATE_CHANNEL_MAX_IN_FLIGHT", "0", "channel workers: sends per sender account a crash may repeat (0 = 32, or no limit for idempotent providers; negative: no limit)")
	str(withMedia, &cfg.PublicURL, "public-url", "FLOWGATE_PUBLIC_URL", "", "the ingress's public base URL (RCS fetches uploaded files from links under it)")
	str(withMedia, &cfg.MediaURLKey, "media-url-key", "FLOWGATE_MEDIA_URL_KEY", "", "key signing uploaded files' links (default: generated in the data directory; set it when services share no data directory)")
	str(withHTTP, &maxMedia, "max-media-bytes", "FLOWGATE_MAX_MEDIA_BYTES", "0", "largest uploaded file in bytes (0 = 5 MiB, at most 8 MiB)")
	str(runsFlows, &broadcastQueue, "broadcast-queue", "FLOWGATE_BROADCAST_QUEUE", "2m", "a broadcast keeps at most this long of its account's rate queued (back-pressure; -1s: no bound)")
	str(runsFlows, &claimLease, "claim-lease", "FLOWGATE_CLAIM_LEASE", "1m", "how long a run stays claimed by an orchestrator that died mid-step before another replica may step it (30s to 1h: several times the step consumers' 5 s ack wait)")
	str(consumers, &retryBackoff, "retry-max-backoff", "FLOWGATE_RETRY_MAX_BACKOFF", "1m", "the longest wait before a message whose handling failed for a reason that passes (the store, NATS or a provider unavailable, a provider's 5xx or a timeout; a provider's 429 waits what it asks) is tried again; the wait doubles from 250ms up to it, and such a message is never dead-lettered for it: 100ms to 10m (shorter: resumes sooner after an outage, with more tries during it)")
	str(store, &retention, "retention", "FLOWGATE_RETENTION", "0", "delete finished runs and their messages after this long, e.g. 720h (0 keeps them)")
	str(allServices, &maxBytes, "stream-max-bytes", "FLOWGATE_STREAM_MAX_BYTES", "0", "bytes per JetStream stream (0 = 1 GiB)")
	str(withHTTP, &rateLimit, "rate-limit", "FLOWGATE_RATE_LIMIT", "0", "requests per second per API key (per ingress replica; 0 = no limit)")
	str(withHTTP, &triggerBatch, "trigger-batch", "FLOWGATE_TRIGGER_BATCH", "0", "the most triggers published in one JetStream message, of one bot or several, the ingress's group commit (0 = 256; 1 = each alone)")
	str(withHTTP, &webhookWait, "webhook-publish-wait", "FLOWGATE_WEBHOOK_PUBLISH_WAIT", "10s", "how long a provider webhook keeps trying to queue its events while NATS is unavailable (a leader election, a reconnect) before answering 503 (0: answer 503 at once)")
	str(withHTTP, &rateBurst, "rate-burst", "FLOWGATE_RATE_BURST", "0", "requests an API key may burst (default: the rate limit, rounded up)")
	str(allServices, &logLevel, "log-level", "FLOWGATE_LOG_LEVEL", "info", "debug, info, warn or error")
	str(allServices, &logFormat, "log-format", "FLOWGATE_LOG_FORMAT", "text", "text or json")
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
	if cfg.ChannelMaxInFlight, err = strconv.Atoi(maxInFlight); err != nil {
		return cfg, nil, fmt.Errorf("invalid max in flight %q: a number of sends (0: the default, negative: no limit)", maxInFlight)
	}
	if cfg.BroadcastQueue, err = time.ParseDuration(broadcastQueue); err != nil || cfg.BroadcastQueue == 0 {
		return cfg, nil, fmt.Errorf("invalid broadcast queue %q (a duration such as 2m; negative: no bound)", broadcastQueue)
	}
	if cfg.ClaimLease, err = time.ParseDuration(claimLease); err != nil || cfg.ClaimLease < minClaimLease || cfg.ClaimLease > time.Hour {
		return cfg, nil, fmt.Errorf("invalid claim lease %q: a duration from %v to 1h, e.g. 1m", claimLease, minClaimLease)
	}
	switch replicas {
	case "1", "3":
		cfg.NATSReplicas, _ = strconv.Atoi(replicas)
	default:
		return cfg, nil, fmt.Errorf("invalid NATS replicas %q: 1, or 3 on a three-node cluster", replicas)
	}
	if cfg.NATSRetryWait, err = time.ParseDuration(natsRetryWait); err != nil || cfg.NATSRetryWait != 0 && (cfg.NATSRetryWait < 100*time.Millisecond || cfg.NATSRetryWait > time.Minute) {
		return cfg, nil, fmt.Errorf("invalid NATS retry wait %q: a duration from 100ms to 1m, e.g. 15s (0: the service's default)", natsRetryWait)
	}
	if cfg.RetryBackoff, err = time.ParseDuration(retryBackoff); err != nil || cfg.RetryBackoff < 100*time.Millisecond || cfg.RetryBackoff > 10*time.Minute {
		return cfg, nil, fmt.Errorf("invalid retry max backoff %q: a duration from 100ms to 10m, e.g. 1m", retryBackoff)
	}
	if cfg.Retention, err = time.ParseDuration(retention); err != nil || cfg.Retention < 0 {
		return cfg, nil, fmt.Errorf("invalid retention %q", retention)
	}
	if cfg.Webhooks.RetryPeriod, err = time.ParseDuration(webhookRetry); err != nil || cfg.Webhooks.RetryPeriod <= 0 {
		return cfg, nil, fmt.Errorf("invalid webhook retry period %q", webhookRetry)
	}
	if cfg.TriggerBatch, err = strconv.Atoi(triggerBatch); err != nil || cfg.TriggerBatch < 0 || cfg.TriggerBatch > 10_000 {
		return cfg, nil, fmt.Errorf("invalid trigger batch %q: a number of triggers, 0 to 10000 (0: 256, 1: each alone)", triggerBatch)
	}
	if cfg.WebhookPublishWait, err = time.ParseDuration(webhookWait); err != nil || cfg.WebhookPublishWait < 0 || cfg.WebhookPublishWait > time.Minute {
		return cfg, nil, fmt.Errorf("invalid webhook publish wait %q: a duration from 0 to 1m, e.g. 10s", webhookWait)
	}
	if cfg.WebhookPublishWait == 0 {
		cfg.WebhookPublishWait = -1 // answer 503 at once (ingress.Config: 0 is the default)
	}
	if cfg.RateLimit, err = strconv.ParseFloat(rateLimit, 64); err != nil || cfg.RateLimit < 0 {
		return cfg, nil, fmt.Errorf("invalid rate limit %q", rateLimit)
	}
	if cfg.RateBurst, err = strconv.Atoi(rateBurst); err != nil || cfg.RateBurst < 0 {
		return cfg, nil, fmt.Errorf("invalid rate burst %q", rateBurst)
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

// minClaimLease is the shortest claim lease accepted: several times the
// step consumers' ack wait (bus.StepAckWait, 5 s), the time a dead
// process's event takes to come back and finish its own step. A lease
// near that wait would let another step take a run first when the machine
// is slow.
const minClaimLease = 30 * time.Second

func envOr(key, def string) string {
	if v, ok := os.LookupEnv(key); ok {
		return v
	}
	return def
}
