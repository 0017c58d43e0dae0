package ingress

import (
	"context"
	"log/slog"
	"math"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/google/uuid"
)

// The API habits users know from Stripe and Novu: a request id on every
// answer and log line, per-key rate limits, and API keys' last use.

const ctxRequestID = "flowgate.request_id"

type requestIDKey struct{}

// maxRequestID bounds a caller's X-Request-Id; a longer or non-printable
// one is replaced by a fresh id.
const maxRequestID = 128

func validRequestID(id string) bool {
	if id == "" || len(id) > maxRequestID {
		return false
	}
	for i := 0; i < len(id); i++ {
		if id[i] < 0x21 || id[i] > 0x7e {
			return false
		}
	}
	return true
}

// requestID gives every request an id: the caller's X-Request-Id when it is
// short printable ASCII, a fresh UUIDv7 otherwise. It is answered in the
// X-Request-Id header and error bodies, and logged with the request's lines.
func (s *server) requestID(c *gin.Context) {
	id := c.GetHeader("X-Request-Id")
	if !validRequestID(id) {
		id = uuid.Must(uuid.NewV7()).String()
	}
	c.Set(ctxRequestID, id)
	c.Header("X-Request-Id", id)
	c.Request = c.Request.WithContext(context.WithValue(c.Request.Context(), requestIDKey{}, id))
	c.Next()
}

// requestIDHandler adds the request id of a log call's context as
// request_id: every s.log.XContext(ctx, ...) of a request carries it.
type requestIDHandler struct{ slog.Handler }

func (h requestIDHandler) Handle(ctx context.Context, r slog.Record) error {
	if id, ok := ctx.Value(requestIDKey{}).(string); ok {
		r.AddAttrs(slog.String("request_id", id))
	}
	return h.Handler.Handle(ctx, r)
}

func (h requestIDHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return requestIDHandler{h.Handler.WithAttrs(as)}
}

func (h requestIDHandler) WithGroup(name string) slog.Handler {
	return requestIDHandler{h.Handler.WithGroup(name)}
}

// rateLimiter is a token bucket per API key: rate tokens a second, up to
// burst. Limits hold per ingress replica.
type rateLimiter struct {
	rate  float64
	burst int
	now   func() time.Time
	mu    sync.Mutex
	m     map[string]*keyBucket
}

type keyBucket struct {
	tokens float64
	last   time.Time
}

func newRateLimiter(rate float64, burst int, now func() time.Time) *rateLimiter {
	if burst < 1 {
		burst = max(1, int(math.Ceil(rate)))
	}
	return &rateLimiter{rate: rate, burst: burst, now: now, m: map[string]*keyBucket{}}
}

// take spends a token of key's bucket. It returns whether the request may
// go, the tokens left, and how long until the next token (ok false) or the
// bucket is full again (ok true).
func (l *rateLimiter) take(key string) (ok bool, remaining int, wait time.Duration) {
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.m[key]
	if b == nil {
		if len(l.m) > 100_000 { // bound memory; keys are authenticated, so this is rare
			l.m = map[string]*keyBucket{}
		}
		b = &keyBucket{tokens: float64(l.burst), last: now}
		l.m[key] = b
	}
	b.tokens = min(float64(l.burst), b.tokens+now.Sub(b.last).Seconds()*l.rate)
	b.last = now
	if b.tokens < 1 {
		return false, 0, time.Duration((1 - b.tokens) / l.rate * float64(time.Second))
	}
	b.tokens--
	return true, int(b.tokens), time.Duration((float64(l.burst) - b.tokens) / l.rate * float64(time.Second))
}

func ceilSeconds(d time.Duration) string {
	return strconv.FormatInt(int64(math.Ceil(d.Seconds())), 10)
}

// limitRate applies the per-key rate limit: RateLimit-* headers on every
// answer, 429 with Retry-After when the key's bucket is empty.
func (s *server) limitRate(c *gin.Context, p principal) {
	if s.limiter == nil {
		return
	}
	ok, remaining, wait := s.limiter.take(p.rateKey())
	c.Header("RateLimit-Limit", strconv.Itoa(s.limiter.burst))
	c.Header("RateLimit-Remaining", strconv.Itoa(remaining))
	c.Header("RateLimit-Reset", ceilSeconds(wait))
	if !ok {
		c.Header("Retry-After", ceilSeconds(wait))
		rateLimited.Inc()
		abort(c, newError(http.StatusTooManyRequests, "rate_limited",
			"too many requests for this API key; retry after "+ceilSeconds(wait)+" s"))
	}
}

// keyTouchEvery is how often a key's last use is written at most.
const keyTouchEvery = time.Minute

// touchKey records a key's use in the background, at most once a minute
// per key, so that authentication adds no store write to the hot path.
func (s *server) touchKey(id string) {
	now := time.Now()
	s.touchMu.Lock()
	last, seen := s.touched[id]
	if seen && now.Sub(last) < keyTouchEvery {
		s.touchMu.Unlock()
		return
	}
	if len(s.touched) > 100_000 {
		s.touched = map[string]time.Time{}
	}
	s.touched[id] = now
	s.touchMu.Unlock()
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := s.store.TouchAPIKey(ctx, id, now.UTC()); err != nil {
			s.log.Debug("api key last use not recorded", "key", id, "err", err)
		}
	}()
}
