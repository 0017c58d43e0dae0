package pacer_test

import (
	"context"
	"errors"
	"net"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/flowgate/flowgate/shared/bus/bustest"
	"github.com/flowgate/flowgate/shared/testclock"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/flowgate/flowgate/shared/bus"
	"github.com/flowgate/flowgate/shared/channel/pacer"
	"github.com/flowgate/flowgate/shared/events"
	"github.com/flowgate/flowgate/shared/store"
)

func startJS(t testing.TB) jetstream.JetStream {
	t.Helper()
	js, err := jetstream.New(bustest.Connect(t, bustest.Embedded(t)))
	require.NoError(t, err)
	return js
}

func newPacer(t testing.TB, js jetstream.JetStream, cfg pacer.Config) *pacer.Pacer {
	t.Helper()
	p, err := pacer.New(context.Background(), js, cfg)
	require.NoError(t, err)
	return p
}

// maxIn is the most timestamps within any window of length w.
func maxIn(ts []time.Time, w time.Duration) int {
	sort.Slice(ts, func(i, j int) bool { return ts[i].Before(ts[j]) })
	best, lo := 0, 0
	for hi := range ts {
		for ts[hi].Sub(ts[lo]) >= w {
			lo++
		}
		best = max(best, hi-lo+1)
	}
	return best
}

// hammer calls wait from workers goroutines until d has passed and returns
// when each call returned.
func hammer(t *testing.T, workers int, d time.Duration, wait func(ctx context.Context) error) []time.Time {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	var mu sync.Mutex
	var ts []time.Time
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				err := wait(ctx)
				if err != nil {
					if !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled) {
						t.Errorf("wait: %v", err)
					}
					return
				}
				mu.Lock()
				ts = append(ts, time.Now())
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return ts
}

// Two replicas (separate pacers on one KV bucket) share one account's rate.
func TestReplicasShareTheAccountRate(t *testing.T) {
	js := startJS(t)
	const rate = 200.0
	a := newPacer(t, js, pacer.Config{Channel: events.ChannelWhatsApp, Rate: rate})
	b := newPacer(t, js, pacer.Config{Channel: events.ChannelWhatsApp, Rate: rate})
	var mu sync.Mutex
	var all []time.Time
	var wg sync.WaitGroup
	for _, p := range []*pacer.Pacer{a, b} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ts := hammer(t, 16, 3*time.Second, func(ctx context.Context) error { return p.Wait(ctx, "1555000111") })
			mu.Lock()
			all = append(all, ts...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	got := float64(len(all)) / 3
	t.Logf("two replicas: %d sends in 3 s = %.1f/s (configured %v/s); max in any 1 s: %d; max in any 100 ms: %d",
		len(all), got, rate, maxIn(all, time.Second), maxIn(all, 100*time.Millisecond))
	require.GreaterOrEqual(t, got, 0.9*rate)
	// The rate, with room for sends bunched by scheduling jitter.
	require.LessOrEqual(t, maxIn(all, time.Second), int(rate*1.1)+2)
}

// An idle replica takes no slots: one busy replica gets the whole rate.
func TestOneBusyReplicaGetsTheWholeRate(t *testing.T) {
	js := startJS(t)
	const rate = 100.0
	a := newPacer(t, js, pacer.Config{Channel: events.ChannelRCS, Rate: rate})
	_ = newPacer(t, js, pacer.Config{Channel: events.ChannelRCS, Rate: rate}) // registered, idle
	ts := hammer(t, 8, 2*time.Second, func(ctx context.Context) error { return a.Wait(ctx, "agent-1") })
	got := float64(len(ts)) / 2
	t.Logf("one busy replica of two: %.1f/s", got)
	require.GreaterOrEqual(t, got, 0.9*rate)
	require.LessOrEqual(t, maxIn(ts, time.Second), int(rate*1.1)+2)
}

// Accounts are paced independently.
func TestAccountsAreIndependent(t *testing.T) {
	js := startJS(t)
	p := newPacer(t, js, pacer.Config{Channel: events.ChannelRCS, Rate: 50})
	var wg sync.WaitGroup
	counts := make([]int, 2)
	for i, acct := range []string{"agent-a", "agent-b"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			counts[i] = len(hammer(t, 4, time.Second, func(ctx context.Context) error { return p.Wait(ctx, acct) }))
		}()
	}
	wg.Wait()
	t.Logf("per account in 1 s at 50/s: %v", counts)
	for _, n := range counts {
		require.GreaterOrEqual(t, n, 45)
		require.LessOrEqual(t, n, 57)
	}
}

// The bot's RatePerSecond overrides the channel default.
func TestBotRateOverride(t *testing.T) {
	js := startJS(t)
	p := newPacer(t, js, pacer.Config{Channel: events.ChannelWhatsApp})
	bot := store.Bot{ID: "b", Channels: store.ChannelAccounts{WhatsApp: &store.WhatsAppAccount{PhoneNumberID: "1", RatePerSecond: 20}}}
	ts := hammer(t, 8, 2*time.Second, func(ctx context.Context) error {
		return p.WaitMessage(ctx, bot, "1", events.Outbound{To: "+15550001"})
	})
	t.Logf("override 20/s: %d sends in 2 s", len(ts))
	require.GreaterOrEqual(t, len(ts), 36)
	require.LessOrEqual(t, len(ts), 44)
}

// Telegram: one message per second per chat, whatever the bot's rate.
func TestPerRecipientRate(t *testing.T) {
	js := startJS(t)
	a := newPacer(t, js, pacer.Config{Channel: events.ChannelTelegram})
	b := newPacer(t, js, pacer.Config{Channel: events.ChannelTelegram})
	bot := store.Bot{ID: "b"}
	var mu sync.Mutex
	byChat := map[string][]time.Time{}
	var wg sync.WaitGroup
	for _, p := range []*pacer.Pacer{a, b} {
		for _, chat := range []string{"100", "200", "-300"} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				ts := hammer(t, 2, 3500*time.Millisecond, func(ctx context.Context) error {
					return p.WaitMessage(ctx, bot, "42", events.Outbound{To: chat})
				})
				mu.Lock()
				byChat[chat] = append(byChat[chat], ts...)
				mu.Unlock()
			}()
		}
	}
	wg.Wait()
	for chat, ts := range byChat {
		sort.Slice(ts, func(i, j int) bool { return ts[i].Before(ts[j]) })
		for i := 1; i < len(ts); i++ {
			require.GreaterOrEqual(t, ts[i].Sub(ts[i-1]), time.Second, "chat %s sends %d and %d", chat, i-1, i)
		}
		require.GreaterOrEqual(t, len(ts), 3, "chat %s", chat)
	}
}

// fakeClock is a clock tests move by hand; both replicas share it.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// A provider's "too fast" seen by one replica halves the account's rate for
// every replica, pushes its next slot past the retry-after, and the rate
// climbs back linearly to the configured rate over Recovery; a second
// refusal within a second does not halve it again. The clock is injected:
// no sleeping, no timing (the real-time behaviour is measured by
// bench/channels).
func TestThrottleSlowsDownAndRecovers(t *testing.T) {
	js := startJS(t)
	clock := &fakeClock{now: testclock.Date(2026, 1, 2, 3, 4, 5)}
	cfg := pacer.Config{Channel: events.ChannelWhatsApp, Rate: 200, Recovery: 2 * time.Second, Now: clock.Now}
	a := newPacer(t, js, cfg)
	b := newPacer(t, js, cfg)
	const acct = "999"
	ctx := context.Background()
	st, err := b.AccountState(ctx, acct, 0)
	require.NoError(t, err)
	require.InDelta(t, 196, st.Rate, 1e-9, "the configured rate less 2% headroom")
	require.False(t, st.Throttled)

	t0 := clock.Now()
	a.Throttled(acct, 300*time.Millisecond)
	st, err = b.AccountState(ctx, acct, 0)
	require.NoError(t, err)
	require.True(t, st.Throttled)
	require.InDelta(t, 98, st.Rate, 1e-9, "halved for the other replica too")
	require.False(t, st.Next.Before(t0.Add(300*time.Millisecond)), "nothing is sent before the retry-after")

	clock.Add(500 * time.Millisecond)
	a.Throttled(acct, 0) // the same burst of refusals
	st, err = b.AccountState(ctx, acct, 0)
	require.NoError(t, err)
	require.InDelta(t, 98+0.5*100/2, st.Rate, 1e-9, "not halved twice within a second; climbing back")

	clock.Add(500 * time.Millisecond)
	st, err = b.AccountState(ctx, acct, 0)
	require.NoError(t, err)
	require.InDelta(t, 148, st.Rate, 1e-9, "half-way back after half of Recovery")

	clock.Add(time.Second)
	st, err = b.AccountState(ctx, acct, 0)
	require.NoError(t, err)
	require.InDelta(t, 196, st.Rate, 1e-9, "back to the configured rate after Recovery")
	require.False(t, st.Throttled)
}

// A pause longer than MaxWait is a retry-after error, not a long block.
func TestWaitBeyondMaxWaitAsksForRedelivery(t *testing.T) {
	js := startJS(t)
	p := newPacer(t, js, pacer.Config{Channel: events.ChannelWhatsApp, MaxWait: time.Second})
	p.Throttled("1", 10*time.Minute)
	start := time.Now()
	err := p.Wait(context.Background(), "1")
	var ra *bus.RetryAfterError
	require.ErrorAs(t, err, &ra)
	require.ErrorIs(t, err, pacer.ErrTooFar)
	require.Greater(t, ra.Wait, 9*time.Minute)
	require.Less(t, time.Since(start), 500*time.Millisecond)
}

func TestConfigValidation(t *testing.T) {
	js := startJS(t)
	_, err := pacer.New(context.Background(), js, pacer.Config{})
	require.Error(t, err)
	_, err = pacer.New(context.Background(), js, pacer.Config{Channel: "x", Rate: -1})
	require.Error(t, err)
	r, per := pacer.DefaultRates(events.ChannelTelegram)
	require.Equal(t, 30.0, r)
	require.Equal(t, 1.0, per)
}

// The bucket is in memory: a restarted NATS server comes back without it.
// The pacer recreates it and goes on.
func TestNATSRestartRecreatesTheBucket(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())
	dir := t.TempDir()
	e, err := bus.StartEmbedded(bus.EmbeddedConfig{StoreDir: dir, Listen: addr})
	require.NoError(t, err)
	nc, err := nats.Connect("nats://"+addr, nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	require.NoError(t, err)
	defer nc.Close()
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	p := newPacer(t, js, pacer.Config{Channel: events.ChannelWhatsApp})
	ctx := context.Background()
	require.NoError(t, p.Wait(ctx, "1"))

	e.Shutdown()
	e, err = bus.StartEmbedded(bus.EmbeddedConfig{StoreDir: dir, Listen: addr})
	require.NoError(t, err)
	defer e.Shutdown()
	require.Eventually(t, nc.IsConnected, 10*time.Second, 20*time.Millisecond)
	for i := range 20 { // well past one lease: every slot comes from the new bucket
		wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		require.NoError(t, p.Wait(wctx, "1"), "wait %d", i)
		cancel()
	}
	_, err = js.KeyValue(ctx, pacer.DefaultBucket)
	require.NoError(t, err, "the bucket exists again")
}
