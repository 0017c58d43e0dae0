package ingress

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/flowgate/flowgate/shared/store"
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

// TestServeResumesBotDeletions: a deletion an earlier process left (the bot
// marked deleting) is resumed when the ingress serves, not when its handler
// is built; Serve returns once that background work has stopped.
func TestServeResumesBotDeletions(t *testing.T) {
	st := sqlitetest.Open(t)
	ctx := context.Background()
	require.NoError(t, st.CreateBot(ctx, store.Bot{ID: "gone", Name: "Gone"}))
	_, _, err := st.UpsertContact(ctx, store.ContactUpsert{BotID: "gone", Channel: "sandbox", ExternalID: "+15550001", NewID: store.NewContactID()})
	require.NoError(t, err)
	require.NoError(t, st.MarkBotDeleting(ctx, "gone", time.Now().UTC()))

	h, err := NewHandler(Config{AdminKey: "0123456789abcdef0123"},
		Deps{Store: st, Bus: unusedBus{}, CompileFlow: func(b []byte) ([]byte, error) { return b, nil }})
	require.NoError(t, err)
	time.Sleep(100 * time.Millisecond)
	_, err = st.GetBot(ctx, "gone")
	require.NoError(t, err, "building the handler starts no deletion")

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	sctx, stop := context.WithCancel(ctx)
	served := make(chan error, 1)
	go func() { served <- Serve(sctx, ln, Config{}, h, nil) }()
	require.Eventually(t, func() bool {
		_, err := st.GetBot(ctx, "gone")
		return errors.Is(err, store.ErrNotFound)
	}, 10*time.Second, 10*time.Millisecond, "the deletion was resumed")
	stop()
	select {
	case err := <-served:
		require.NoError(t, err)
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return")
	}
}
