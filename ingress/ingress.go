// Package ingress owns Flowgate's HTTP front door: every trigger API
// (native, CloudEvents and the drop-in compatible endpoints), the admin API,
// the sandbox channel's API, provider webhooks and the operations endpoints.
// A trigger is answered 202 only after JetStream acknowledged it.
package ingress

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	cloudevents "github.com/cloudevents/sdk-go/v2/event"
	"github.com/gin-gonic/gin"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/flowgate/flowgate/shared/bus"
	"github.com/flowgate/flowgate/shared/egress"
	"github.com/flowgate/flowgate/shared/media"
	"github.com/flowgate/flowgate/shared/store"
)

// Config configures the ingress.
type Config struct {
	// Addr to listen on (default ":8080").
	Addr string
	// AdminKey authorises admin calls (creating bots). Required.
	AdminKey string
	// MaxBodyBytes caps request bodies (default 1 MiB).
	MaxBodyBytes int64
	// CacheTTL bounds how long keys, bots and events are cached (default 5 s;
	// a revoked key stops working within this time). Negative disables caching.
	CacheTTL time.Duration
	// ShutdownTimeout bounds the graceful shutdown (default 15 s).
	ShutdownTimeout time.Duration
	// AllowPrivateWebhooks accepts webhook subscriptions whose URL points at
	// loopback, private or link-local addresses (refused by default).
	AllowPrivateWebhooks bool
	// MaxMediaBytes caps an uploaded file (default DefaultMaxMediaBytes, at
	// most store.MaxMediaBytes).
	MaxMediaBytes int64
	// MediaSigner verifies the signed links of GET /media/{bot}/{id}; nil
	// disables that route (RCS then cannot fetch uploaded files).
	MediaSigner *media.Signer
	// RateLimit is how many requests a second one API key may make (per
	// ingress replica), with bursts of RateBurst (default: RateLimit rounded
	// up). 0 disables the limit.
	RateLimit float64
	RateBurst int
	// TriggerBatch is the most triggers published in one JetStream
	// message, the ingress's group commit (batch.go; default 256), of one
	// bot or of several. 1 publishes every trigger alone.
	TriggerBatch int
	// WebhookPublishWait is how long a provider webhook request keeps
	// trying to queue its events while the bus is unavailable before it
	// answers 503 (default DefaultWebhookPublishWait; negative: 503 at
	// once). A provider answered 503 retries on its own schedule.
	WebhookPublishWait time.Duration
}

// DefaultWebhookPublishWait is Config.WebhookPublishWait's default: longer
// than a NATS stream leader's election (4–9 s).
const DefaultWebhookPublishWait = 10 * time.Second

// MaxKeyCacheTTL bounds how long an API key is cached whatever CacheTTL
// says, so that a revoked key is refused within 5 s on every replica.
const MaxKeyCacheTTL = 4 * time.Second

func (c *Config) setDefaults() {
	if c.Addr == "" {
		c.Addr = ":8080"
	}
	if c.MaxBodyBytes == 0 {
		c.MaxBodyBytes = 1 << 20
	}
	if c.CacheTTL == 0 {
		c.CacheTTL = 5 * time.Second
	}
	if c.ShutdownTimeout == 0 {
		c.ShutdownTimeout = 15 * time.Second
	}
	if c.MaxMediaBytes == 0 {
		c.MaxMediaBytes = DefaultMaxMediaBytes
	}
	if c.TriggerBatch == 0 {
		c.TriggerBatch = DefaultTriggerBatch
	}
	if c.WebhookPublishWait == 0 {
		c.WebhookPublishWait = DefaultWebhookPublishWait
	}
}

// DefaultTriggerBatch is Config.TriggerBatch's default.
const DefaultTriggerBatch = 256

// Validate reports configuration errors.
func (c *Config) Validate() error {
	if len(c.AdminKey) < 16 {
		return errors.New("ingress: admin key must be at least 16 characters")
	}
	if c.MaxMediaBytes < 0 || c.MaxMediaBytes > store.MaxMediaBytes {
		return fmt.Errorf("ingress: media limit %d must be within 0..%d bytes", c.MaxMediaBytes, store.MaxMediaBytes)
	}
	if c.RateLimit < 0 || c.RateBurst < 0 {
		return errors.New("ingress: rate limit and burst must not be negative")
	}
	if c.TriggerBatch < 1 || c.TriggerBatch > 10_000 {
		return fmt.Errorf("ingress: trigger batch %d must be within 1..10000", c.TriggerBatch)
	}
	return nil
}

// Publisher is the part of the bus the ingress needs.
type Publisher interface {
	Publish(ctx context.Context, subject string, e cloudevents.Event) (bus.PublishResult, error)
	Ping(ctx context.Context) error
}

// FlowCompiler validates a flow document and returns its canonical JSON.
// Its errors are *FlowErrors-like values rendered by the caller: any error
// implementing FieldErrors is reported with paths.
type FlowCompiler func(doc []byte) (canonical []byte, err error)

// FieldErrors is implemented by flow validation errors that name the
// offending fields.
type FieldErrors interface {
	error
	Fields() []FieldProblem
}

// FieldProblem is one invalid field of a document.
type FieldProblem struct {
	Path    string `json:"path"`
	Message string `json:"message"`
}

// Deps are the ingress's collaborators.
type Deps struct {
	Store       Store
	Bus         Publisher
	CompileFlow FlowCompiler
	Logger      *slog.Logger
	// Resolver resolves webhook subscription hosts when they are created
	// (default net.DefaultResolver).
	Resolver *net.Resolver
}

type server struct {
	cfg       Config
	store     Store
	bus       Publisher
	compile   FlowCompiler
	log       *slog.Logger
	egress    egress.Policy
	adminHash string
	keys      *cache[store.APIKey]
	bots      *cache[store.Bot]
	events    *cache[store.Event]
	// acceptedRuns: Recrubo flow runs accepted but maybe not yet stored.
	acceptedRuns recentRuns
	// mappings caches compiled event input mappings.
	mappings mappingCache
	limiter  *rateLimiter
	touchMu  sync.Mutex
	touched  map[string]time.Time
	// deleting: bots whose data is being deleted by this replica.
	deleting sync.Map
	// batcher publishes keyless triggers together (nil: each alone).
	batcher *triggerBatcher
	// bg is the context of the work that outlives a request (bot
	// deletions): Handler.Run's, or none before Run. bgWG counts that work.
	bgMu sync.Mutex
	bg   context.Context
	bgWG sync.WaitGroup
}

// Handler is the ingress's HTTP API. The work it does in the background
// (deleting bots' data, and resuming the deletions an earlier process
// left) runs under Run, which Serve calls: the constructor starts nothing.
type Handler struct {
	http.Handler
	s *server
}

// NewHandler builds the ingress's HTTP handler.
func NewHandler(cfg Config, d Deps) (*Handler, error) {
	s, err := newServer(cfg, d)
	if err != nil {
		return nil, err
	}
	return &Handler{Handler: s.routes(), s: s}, nil
}

// Run resumes the bot deletions an earlier process left and lets
// background work run until ctx ends; it returns when that work has
// stopped (a deletion cut short goes on at the next start).
func (h *Handler) Run(ctx context.Context) error {
	s := h.s
	s.bgMu.Lock()
	s.bg = ctx
	s.bgMu.Unlock()
	s.resumeBotDeletions(ctx)
	<-ctx.Done()
	s.bgWG.Wait()
	return nil
}

// background is the context of work that outlives a request.
func (s *server) background() context.Context {
	s.bgMu.Lock()
	defer s.bgMu.Unlock()
	if s.bg == nil {
		return context.Background() // no Run (a handler used on its own)
	}
	return s.bg
}

func newServer(cfg Config, d Deps) (*server, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if d.Store == nil || d.Bus == nil || d.CompileFlow == nil {
		return nil, errors.New("ingress: Store, Bus and CompileFlow are required")
	}
	if d.Logger == nil {
		d.Logger = slog.Default()
	}
	keyTTL := cfg.CacheTTL
	if keyTTL > MaxKeyCacheTTL {
		keyTTL = MaxKeyCacheTTL
	}
	s := &server{
		cfg: cfg, store: d.Store, bus: d.Bus, compile: d.CompileFlow,
		log:       slog.New(requestIDHandler{d.Logger.Handler()}),
		egress:    egress.Policy{AllowPrivate: cfg.AllowPrivateWebhooks, Resolver: d.Resolver},
		adminHash: HashKey(cfg.AdminKey),
		touched:   map[string]time.Time{},
		keys:      newCache[store.APIKey](keyTTL),
		bots:      newCache[store.Bot](cfg.CacheTTL),
		events:    newCache[store.Event](cfg.CacheTTL),
	}
	if cfg.RateLimit > 0 {
		s.limiter = newRateLimiter(cfg.RateLimit, cfg.RateBurst, time.Now)
	}
	if cfg.TriggerBatch > 1 {
		s.batcher = newTriggerBatcher(d.Bus, cfg.TriggerBatch)
	}
	return s, nil
}

func (s *server) routes() *gin.Engine {
	gin.SetMode(gin.ReleaseMode)
	r := gin.New()
	r.HandleMethodNotAllowed = true
	r.Use(s.requestID, s.recover, s.observe)
	r.NoRoute(func(c *gin.Context) { abort(c, newError(http.StatusNotFound, "not_found", "no such endpoint")) })
	r.NoMethod(func(c *gin.Context) {
		abort(c, newError(http.StatusMethodNotAllowed, "method_not_allowed", "method not allowed on this endpoint"))
	})

	r.GET("/healthz", func(c *gin.Context) { c.JSON(http.StatusOK, gin.H{"status": "ok"}) })
	r.GET("/readyz", s.ready)
	r.GET("/metrics", gin.WrapH(promhttp.Handler()))
	r.GET("/openapi.json", serveOpenAPI)

	r.POST("/v1/bots", s.requireAdmin, s.createBot)
	// Dispatch also takes a third party's signed webhook without a key.
	r.POST("/v1/bots/:bot/dispatch/:event", rejectAs("dispatch", false), s.dispatchAuth, s.dispatch)
	bot := r.Group("/v1/bots/:bot", s.requireBot)
	bot.GET("", s.getBot)
	bot.PUT("/flows/:flow", s.putFlow)
	bot.GET("/flows/:flow", s.getFlow)
	bot.PUT("/events/:event", s.putEvent)
	bot.GET("/events/:event", s.getEvent)
	bot.GET("/runs/:run", s.getRun)
	bot.GET("/runs", s.listRuns)
	bot.POST("/runs/:run/cancel", s.cancelRun)
	bot.GET("/sandbox/messages", s.listSandbox)
	bot.POST("/sandbox/messages", s.postSandbox)
	s.triggerRoutes(r, bot)
	s.contactRoutes(bot)
	s.subscriptionRoutes(bot)
	s.mediaRoutes(r, bot)
	s.manageRoutes(r, bot)
	s.webhookRoutes(r)
	s.deadLetterRoutes(r)
	return r
}

func (s *server) recover(c *gin.Context) {
	defer func() {
		if r := recover(); r != nil {
			s.log.ErrorContext(c.Request.Context(), "handler panic", "path", c.FullPath(), "panic", fmt.Sprint(r))
			abort(c, newError(http.StatusInternalServerError, "internal", "internal error"))
		}
	}()
	c.Next()
}

func (s *server) observe(c *gin.Context) {
	start := time.Now()
	c.Next()
	route := c.FullPath()
	if route == "" {
		route = "unmatched"
	}
	code := c.Writer.Status()
	httpRequests.WithLabelValues(route, c.Request.Method, strconv.Itoa(code)).Inc()
	httpSeconds.WithLabelValues(route, c.Request.Method).Observe(time.Since(start).Seconds())
	if code >= 500 {
		s.log.WarnContext(c.Request.Context(), "request failed", "method", c.Request.Method, "route", route, "status", code)
	} else if s.log.Enabled(c.Request.Context(), slog.LevelDebug) {
		s.log.DebugContext(c.Request.Context(), "request", "method", c.Request.Method, "route", route, "status", code, "took", time.Since(start))
	}
}

func (s *server) ready(c *gin.Context) {
	ctx, cancel := context.WithTimeout(c.Request.Context(), 2*time.Second)
	defer cancel()
	checks := gin.H{}
	ok := true
	if err := s.bus.Ping(ctx); err != nil {
		checks["nats"], ok = err.Error(), false
	} else {
		checks["nats"] = "ok"
	}
	// Writable, not only reachable: a store that refuses writes (disk
	// full) holds every trigger back, and the operator must see it.
	if err := store.Writable(ctx, s.store); err != nil {
		checks["store"], ok = err.Error(), false
	} else {
		checks["store"] = "ok"
	}
	status := http.StatusOK
	if !ok {
		status = http.StatusServiceUnavailable
	}
	c.JSON(status, gin.H{"ready": ok, "checks": checks})
}

// Run serves the ingress on cfg.Addr until ctx ends, then shuts down gracefully.
func Run(ctx context.Context, cfg Config, d Deps) error {
	cfg.setDefaults()
	h, err := NewHandler(cfg, d)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return fmt.Errorf("ingress: listen %s: %w", cfg.Addr, err)
	}
	return Serve(ctx, ln, cfg, h, d.Logger)
}

// Serve serves h on ln until ctx ends.
func Serve(ctx context.Context, ln net.Listener, cfg Config, h http.Handler, log *slog.Logger) error {
	cfg.setDefaults()
	if log == nil {
		log = slog.Default()
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute}
	// The handler's background work runs as long as the server does.
	if hh, ok := h.(*Handler); ok {
		bgCtx, stopBackground := context.WithCancel(ctx)
		bgDone := make(chan struct{})
		go func() { defer close(bgDone); _ = hh.Run(bgCtx) }()
		defer func() { stopBackground(); <-bgDone }()
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	log.Info("ingress listening", "addr", ln.Addr().String())
	select {
	case err := <-errc:
		return fmt.Errorf("ingress: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		return fmt.Errorf("ingress: shutdown: %w", err)
	}
	return nil
}
