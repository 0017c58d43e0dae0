package ingress

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/flowgate/flowgate/shared/store"
)

// Principal is who a request authenticated as.
type principal struct {
	admin bool
	botID string // for bot keys
	// keyID, scope and events of a bot key (scope "" is admin).
	keyID  string
	scope  string
	events []string
}

// triggerOnly reports whether the principal is a trigger-scope key.
func (p principal) triggerOnly() bool { return !p.admin && p.scope == store.ScopeTrigger }

// mayTrigger reports whether the principal may trigger the event ("" for
// requests that name a flow, which an event-limited key may not).
func (p principal) mayTrigger(event string) bool {
	if !p.triggerOnly() || len(p.events) == 0 {
		return true
	}
	return event != "" && slices.Contains(p.events, event)
}

// rateKey names the principal for the per-key rate limit.
func (p principal) rateKey() string {
	if p.admin {
		return "admin"
	}
	return p.keyID
}

const ctxPrincipal = "flowgate.principal"
const ctxBot = "flowgate.bot"

// HashKey is how API keys and secret tokens are stored: hex SHA-256. Keys
// are 160 random bits, so a fast hash is enough (no password stretching).
func HashKey(key string) string {
	s := sha256.Sum256([]byte(key))
	return hex.EncodeToString(s[:])
}

// NewAPIKey returns a fresh random API key.
func NewAPIKey() string { return "fg_" + randomHex(20) }

func randomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic("crypto/rand failed: " + err.Error()) // the OS has no entropy: nothing is safe to do
	}
	return hex.EncodeToString(b)
}

// cache keeps store lookups of the hot path (keys, bots, events) for a short
// TTL. A revoked key or a changed event is therefore honoured within TTL.
type cache[V any] struct {
	ttl time.Duration
	mu  sync.RWMutex
	m   map[string]cacheEntry[V]
}

type cacheEntry[V any] struct {
	v   V
	err error
	exp time.Time
}

func newCache[V any](ttl time.Duration) *cache[V] {
	return &cache[V]{ttl: ttl, m: map[string]cacheEntry[V]{}}
}

// get returns the cached value or loads it. Not-found results are cached
// too (so a flood of bad keys does not reach the store); other errors are not.
func (c *cache[V]) get(ctx context.Context, key string, load func(context.Context) (V, error)) (V, error) {
	now := time.Now()
	if c.ttl > 0 {
		c.mu.RLock()
		e, ok := c.m[key]
		c.mu.RUnlock()
		if ok && now.Before(e.exp) {
			return e.v, e.err
		}
	}
	v, err := load(ctx)
	if c.ttl > 0 && (err == nil || errors.Is(err, store.ErrNotFound)) {
		c.mu.Lock()
		if len(c.m) > 100_000 { // bound memory under a key-guessing flood
			c.m = map[string]cacheEntry[V]{}
		}
		c.m[key] = cacheEntry[V]{v: v, err: err, exp: now.Add(c.ttl)}
		c.mu.Unlock()
	}
	return v, err
}

func (c *cache[V]) forget(key string) {
	c.mu.Lock()
	delete(c.m, key)
	c.mu.Unlock()
}

// bearer extracts the token of "Authorization: Bearer <token>".
func bearer(c *gin.Context) string {
	h := c.GetHeader("Authorization")
	if len(h) > 7 && strings.EqualFold(h[:7], "bearer ") {
		return strings.TrimSpace(h[7:])
	}
	return ""
}

// authenticate resolves a key to a principal; ok is false for unknown keys.
func (s *server) authenticate(ctx context.Context, key string) (principal, bool, error) {
	if key == "" {
		return principal{}, false, nil
	}
	h := HashKey(key)
	if subtle.ConstantTimeCompare([]byte(h), []byte(s.adminHash)) == 1 {
		return principal{admin: true}, true, nil
	}
	k, err := s.keys.get(ctx, h, func(ctx context.Context) (store.APIKey, error) {
		return s.store.GetAPIKeyByHash(ctx, h)
	})
	if errors.Is(err, store.ErrNotFound) {
		return principal{}, false, nil
	}
	if err != nil {
		return principal{}, false, err
	}
	if k.Revoked {
		return principal{}, false, nil
	}
	s.touchKey(k.ID)
	return principal{botID: k.BotID, keyID: k.ID, scope: k.Scope, events: k.Events}, true, nil
}

// requireKey authenticates the Bearer key (401 otherwise).
func (s *server) requireKey(c *gin.Context) {
	p, ok, err := s.authenticate(c.Request.Context(), bearer(c))
	if err != nil {
		abort(c, errStoreDown)
		return
	}
	if !ok {
		abort(c, errUnauthenticated)
		return
	}
	c.Set(ctxPrincipal, p)
	s.limitRate(c, p)
}

// requireAdmin allows only the admin key.
func (s *server) requireAdmin(c *gin.Context) {
	s.requireKey(c)
	if c.IsAborted() {
		return
	}
	if !c.MustGet(ctxPrincipal).(principal).admin {
		abort(c, errAdminOnly)
	}
}

// requireBot authenticates, loads the path's bot (404) and checks the key
// may use it (403). The order keeps unauthenticated callers from probing
// which bots exist.
func (s *server) requireBot(c *gin.Context) {
	s.requireKey(c)
	if c.IsAborted() {
		return
	}
	s.loadBot(c, c.Param("bot"))
	if c.IsAborted() {
		return
	}
	p := c.MustGet(ctxPrincipal).(principal)
	if !p.admin && p.botID != c.Param("bot") {
		abort(c, errForbidden)
		return
	}
	s.requireScope(c, p)
}

// requireScope refuses a trigger-scope key on any route but the trigger
// routes: such a key (a CRM's) may start flows but read nothing.
func (s *server) requireScope(c *gin.Context, p principal) {
	if p.triggerOnly() && !triggerRoutes[c.Request.Method+" "+c.FullPath()] {
		abort(c, errTriggerScope)
	}
}

// triggerRoutes are the routes a trigger-scope key may call.
var triggerRoutes = map[string]bool{
	"POST /v1/bots/:bot/dispatch/:event":                   true,
	"POST /v1/bots/:bot/triggers":                          true,
	"POST /v1/bots/:bot/cloudevents":                       true,
	"POST /bot_api/v2.0/customer/:cid/bot/:bot/flow/:flow": true,
	"POST /bot_api/v1.0/customer/:cid/bot/:bot/flow/:flow": true,
	"POST /public/v2/message-threads":                      true,
	"POST /public/v2/flow-runs":                            true,
}

// keyMayTrigger aborts with 403 unless the request's key may trigger the
// event ("" when the request names a flow).
func keyMayTrigger(c *gin.Context, event string) *apiError {
	p, ok := c.Get(ctxPrincipal)
	if !ok || p.(principal).mayTrigger(event) {
		return nil
	}
	if event == "" {
		return newError(http.StatusForbidden, "event_not_allowed", "this API key may trigger only the events "+strings.Join(p.(principal).events, ", ")+", not flows by name")
	}
	return fieldError(http.StatusForbidden, "event_not_allowed", "event", "this API key may not trigger event "+event)
}

func (s *server) loadBot(c *gin.Context, id string) {
	b, err := s.bots.get(c.Request.Context(), id, func(ctx context.Context) (store.Bot, error) {
		return s.store.GetBot(ctx, id)
	})
	if err != nil {
		if errors.Is(err, store.ErrInvalid) {
			err = store.ErrNotFound // a malformed id names no bot
		}
		abort(c, storeError(err, "bot"))
		return
	}
	c.Set(ctxBot, b)
}

func botOf(c *gin.Context) store.Bot { return c.MustGet(ctxBot).(store.Bot) }
