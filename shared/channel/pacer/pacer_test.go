package pacer_test

import (
	"context"
	"sort"
	"sync"
	"testing"
	"time"

	_ "github.com/flowgate/flowgate/channel-rcs" // the providers register themselves
	_ "github.com/flowgate/flowgate/channel-telegram"
	_ "github.com/flowgate/flowgate/channel-whatsapp"
	"github.com/flowgate/flowgate/shared/bus/bustest"
	"github.com/flowgate/flowgate/shared/provider"
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
	p, err := pacer.New(context.Background(), js, fromProvider(cfg))
	require.NoError(t, err)
	return p
}

// fromProvider fills what cfg leaves unset (rate, the bot's own rate, the
// per-recipient rate) from the registered provider of cfg.Channel, as the
// worker does (provider.Provider.PacerConfig).
func fromProvider(cfg pacer.Config) pacer.Config {
	p, ok := provider.Lookup(cfg.Channel)
	if !ok {
		return cfg
	}
	base := p.PacerConfig()
	if cfg.Rate == 0 {
		cfg.Rate = base.Rate
	}
	if cfg.AccountRate == nil {
		cfg.AccountRate = base.AccountRate
	}
	if cfg.PerRecipient == 0 {
		cfg.PerRecipient = base.PerRecipient
	}
	return cfg
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

// Two replicas (separate pacers on one KV bucket) share one account's rate
// (virtual time: see virtual_test.go).
func TestReplicasShareTheAccountRate(t *testing.T) {
	const rate = 200.0
	s := paceVirtually(t, pacer.Config{Channel: events.ChannelWhatsApp, Rate: rate}, []int{16, 16}, 3*time.Second,
		func(p *pacer.Pacer, _, _ int) (string, error) { return "", p.Wait(context.Background(), "1555000111") })
	t.Logf("two replicas: %d sends in 3 s (configured %v/s), by replica %v; max in any 1 s: %d; max in any 100 ms: %d",
		len(s.all), rate, s.byReplica, maxIn(s.all, time.Second), maxIn(s.all, 100*time.Millisecond))
	requireRate(t, s.all, rate, 3*time.Second)
	require.Positive(t, s.byReplica[0])
	require.Positive(t, s.byReplica[1])
}

// An idle replica takes no slots: one busy replica gets the whole rate.
func TestOneBusyReplicaGetsTheWholeRate(t *testing.T) {
	const rate = 100.0
	s := paceVirtually(t, pacer.Config{Channel: events.ChannelRCS, Rate: rate}, []int{8, 0}, 2*time.Second, // replica 1 registered, idle
		func(p *pacer.Pacer, _, _ int) (string, error) { return "", p.Wait(context.Background(), "agent-1") })
	t.Logf("one busy replica of two: %d sends in 2 s", len(s.all))
	requireRate(t, s.all, rate, 2*time.Second)
}

// Accounts are paced independently.
func TestAccountsAreIndependent(t *testing.T) {
	const rate = 50.0
	s := paceVirtually(t, pacer.Config{Channel: events.ChannelRCS, Rate: rate}, []int{8}, 2*time.Second,
		func(p *pacer.Pacer, _, worker int) (string, error) {
			acct := []string{"agent-a", "agent-b"}[worker%2]
			return acct, p.Wait(context.Background(), acct)
		})
	for _, acct := range []string{"agent-a", "agent-b"} {
		t.Logf("%s at %v/s: %d sends in 2 s", acct, rate, len(s.byLabel[acct]))
		requireRate(t, s.byLabel[acct], rate, 2*time.Second)
	}
}

// The bot's RatePerSecond overrides the channel default.
func TestBotRateOverride(t *testing.T) {
	bot := store.Bot{ID: "b", Channels: store.ChannelAccounts{WhatsApp: &store.WhatsAppAccount{PhoneNumberID: "1", RatePerSecond: 20}}}
	s := paceVirtually(t, pacer.Config{Channel: events.ChannelWhatsApp}, []int{8}, 5*time.Second,
		func(p *pacer.Pacer, _, _ int) (string, error) {
			return "", p.WaitMessage(context.Background(), bot, "1", events.Outbound{To: "+15550001"})
		})
	t.Logf("override 20/s: %d sends in 5 s", len(s.all))
	requireRate(t, s.all, 20, 5*time.Second)
}

// Telegram: one message per second per chat, whatever the bot's rate, with
// two replicas sending to the same chats.
func TestPerRecipientRate(t *testing.T) {
	bot := store.Bot{ID: "b"}
	chats := []string{"100", "200", "-300"}
	s := paceVirtually(t, pacer.Config{Channel: events.ChannelTelegram}, []int{6, 6}, 3500*time.Millisecond,
		func(p *pacer.Pacer, _, worker int) (string, error) {
			chat := chats[worker%len(chats)]
			return chat, p.WaitMessage(context.Background(), bot, "42", events.Outbound{To: chat})
		})
	for _, chat := range chats {
		ts := s.byLabel[chat]
		sort.Slice(ts, func(i, j int) bool { return ts[i].Before(ts[j]) })
		for i := 1; i < len(ts); i++ {
			// 1 s per chat (less the 2% headroom) plus the 100 ms RecipientMargin.
			require.GreaterOrEqual(t, ts[i].Sub(ts[i-1]), 1100*time.Millisecond, "chat %s sends %d and %d", chat, i-1, i)
		}
		// About 1.12 s apart: three or four in 3.5 s, depending on when the
		// chat's first send got an account slot.
		require.GreaterOrEqual(t, len(ts), 3, "chat %s", chat)
	}
	require.Positive(t, s.byReplica[0])
	require.Positive(t, s.byReplica[1])
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
	slept := false
	p := newPacer(t, js, pacer.Config{Channel: events.ChannelWhatsApp, MaxWait: time.Second,
		Sleep: func(context.Context, time.Duration) error { slept = true; return nil }})
	p.Throttled("1", 10*time.Minute)
	err := p.Wait(context.Background(), "1")
	var ra *bus.RetryAfterError
	require.ErrorAs(t, err, &ra)
	require.ErrorIs(t, err, pacer.ErrTooFar)
	require.Greater(t, ra.Wait, 9*time.Minute)
	require.False(t, slept, "no waiting at all")
}

func TestConfigValidation(t *testing.T) {
	js := startJS(t)
	_, err := pacer.New(context.Background(), js, pacer.Config{})
	require.Error(t, err)
	_, err = pacer.New(context.Background(), js, pacer.Config{Channel: "x", Rate: -1})
	require.Error(t, err)
}

// The bucket is in memory: a restarted NATS server comes back without it.
// The pacer recreates it and goes on.
func TestNATSRestartRecreatesTheBucket(t *testing.T) {
	addr := bustest.FreeAddr(t)
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
