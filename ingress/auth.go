package ingress

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
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
	return principal{botID: k.BotID}, true, nil
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
	}
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
