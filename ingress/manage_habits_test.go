package ingress

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/flowgate/flowgate/shared/store/sqlite/sqlitetest"
	"github.com/flowgate/flowgate/shared/testclock"

	cloudevents "github.com/cloudevents/sdk-go/v2/event"
	"github.com/stretchr/testify/require"

	"github.com/flowgate/flowgate/shared/bus"
)

// TestKeyCacheTTLCapped: whatever CacheTTL says, API keys are cached at
// most MaxKeyCacheTTL, so a revoked key is refused within 5 s everywhere.
func TestKeyCacheTTLCapped(t *testing.T) {
	require.LessOrEqual(t, MaxKeyCacheTTL, 5*time.Second)
	st := sqlitetest.Open(t)
	for _, ttl := range []time.Duration{time.Minute, time.Hour, 10 * time.Second} {
		s, err := newServer(Config{AdminKey: "0123456789abcdef0123", CacheTTL: ttl},
			Deps{Store: st, Bus: unusedBus{}, CompileFlow: func(b []byte) ([]byte, error) { return b, nil }})
		require.NoError(t, err)
		<-s.resumed // its start-up read of the store ends before the store is closed
		require.Equal(t, MaxKeyCacheTTL, s.keys.ttl, "CacheTTL %v", ttl)
		require.Equal(t, ttl, s.bots.ttl, "bots keep the configured TTL")
	}
}

// unusedBus satisfies Publisher for tests that publish nothing.
type unusedBus struct{}

func (unusedBus) Publish(context.Context, string, cloudevents.Event) (bus.PublishResult, error) {
	return bus.PublishResult{}, errors.New("unused")
}
func (unusedBus) Ping(context.Context) error { return nil }

// TestRateLimiterBucket: a burst, then one request per 1/rate, with the
// waits the headers announce (a fixed clock: no timing in the test).
func TestRateLimiterBucket(t *testing.T) {
	now := testclock.Date(2026, 1, 1, 0, 0, 0)
	l := newRateLimiter(2, 3, func() time.Time { return now })
	for i := 2; i >= 0; i-- {
		ok, rem, _ := l.take("k")
		require.True(t, ok)
		require.Equal(t, i, rem)
	}
	ok, rem, wait := l.take("k")
	require.False(t, ok)
	require.Zero(t, rem)
	require.Equal(t, 500*time.Millisecond, wait, "one token comes back after 1/rate")
	ok, _, _ = l.take("other")
	require.True(t, ok, "buckets are per key")
	now = now.Add(500 * time.Millisecond)
	ok, rem, wait = l.take("k")
	require.True(t, ok)
	require.Zero(t, rem)
	require.Equal(t, 1500*time.Millisecond, wait, "the burst is full again after (burst-tokens)/rate")
	now = now.Add(time.Hour)
	ok, rem, _ = l.take("k")
	require.True(t, ok)
	require.Equal(t, 2, rem, "the bucket never holds more than the burst")
}

func TestValidRequestID(t *testing.T) {
	for id, want := range map[string]bool{"abc-123": true, "": false, "a b": false, "x\n": false,
		string(make([]byte, 129)): false, "01JABCDEF/req:1": true, "é": false} {
		require.Equal(t, want, validRequestID(id), "%q", id)
	}
}
