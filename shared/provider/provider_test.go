package provider_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/flowgate/flowgate/shared/bus"
	"github.com/flowgate/flowgate/shared/channel"
	"github.com/flowgate/flowgate/shared/events"
	"github.com/flowgate/flowgate/shared/provider"
	"github.com/flowgate/flowgate/shared/store"
	"github.com/flowgate/flowgate/shared/store/sqlite"
	"github.com/flowgate/flowgate/shared/testclock"
)

// fake is a provider whose bots have an account when their name is set:
// the key is the bot id, the rate the name's length (0: the default).
func fake(name string) provider.Provider {
	return provider.Provider{
		Name: name,
		Rate: 25,
		Account: func(b store.Bot) (provider.Account, bool) {
			if b.Name == "" {
				return provider.Account{}, false
			}
			return provider.Account{Key: b.ID, Rate: float64(len(b.Name) - 1)}, true
		},
		CheckAccounts: func(ch store.ChannelAccounts) error {
			if ch.DefaultChannel == "refused-by-"+name {
				return provider.Invalid("channels.default_channel", "refused by "+name)
			}
			return nil
		},
		NewSender: func(provider.SenderDeps) (channel.Sender, error) { return nil, errors.New("not in this test") },
	}
}

// base is the tests' one fixed instant.
var base = testclock.Date(2026, time.March, 2, 9, 0, 0)

func register(t *testing.T, p provider.Provider) {
	t.Helper()
	require.NoError(t, provider.Register(p))
	t.Cleanup(func() { provider.Remove(p.Name) })
}

func TestRegisterRefusesInvalidProviders(t *testing.T) {
	noName := fake("")
	noAccount := fake("t-noaccount")
	noAccount.Account = nil
	noSender := fake("t-nosender")
	noSender.NewSender = nil
	negative := fake("t-negative")
	negative.Rate = -1
	bundles := fake("t-bundles")
	bundles.Capabilities.Bundles = true // without idempotent sends
	records := fake("t-records")
	records.Capabilities.IdempotentSends = true
	records.Capabilities.RecordsSent = true // without bundles
	for _, p := range []provider.Provider{noName, noAccount, noSender, negative, bundles, records} {
		require.Error(t, provider.Register(p), p.Name)
		require.False(t, provider.Known(p.Name), p.Name)
	}
	register(t, fake("t-once"))
	require.ErrorContains(t, provider.Register(fake("t-once")), "twice")
	require.Panics(t, func() { provider.MustRegister(fake("t-once")) })
}

func TestRegistryLookups(t *testing.T) {
	register(t, fake("t-b"))
	register(t, fake("t-a"))
	unpaced := fake("t-unpaced")
	unpaced.Rate = 0
	register(t, unpaced)

	names := provider.Names()
	require.Subset(t, names, []string{"t-a", "t-b", "t-unpaced"})
	require.IsNonDecreasing(t, names)
	require.True(t, provider.Known("t-a"))
	require.False(t, provider.Known("t-c"))

	none, own, dflt := store.Bot{ID: "x"}, store.Bot{ID: "y", Name: "eleven chr"}, store.Bot{ID: "z", Name: "a"}
	require.False(t, provider.Configured(none, "t-a"))
	require.True(t, provider.Configured(own, "t-a"))
	require.False(t, provider.Configured(own, "t-c"), "unknown channel")
	require.Equal(t, 9.0, provider.Rate(own, "t-a"), "the bot's own rate")
	require.Equal(t, 25.0, provider.Rate(dflt, "t-a"), "the channel's default")
	require.Equal(t, 25.0, provider.Rate(none, "t-a"), "no account: the default")
	require.Zero(t, provider.Rate(own, "t-unpaced"), "not paced")
	require.Zero(t, provider.Rate(own, "t-c"), "unknown")

	err := provider.CheckAccounts(store.ChannelAccounts{DefaultChannel: "refused-by-t-b"})
	var fe *provider.FieldError
	require.ErrorAs(t, err, &fe)
	require.Equal(t, "channels.default_channel", fe.Field)
	require.Equal(t, "invalid", fe.Code)
	require.NoError(t, provider.CheckAccounts(store.ChannelAccounts{}))
}

func TestPacerConfigAndCapabilities(t *testing.T) {
	p := fake("t-pacer")
	c := p.PacerConfig()
	require.Equal(t, "t-pacer", c.Channel)
	require.Equal(t, 25.0, c.Rate)
	require.Negative(t, c.PerRecipient, "no per-recipient pacing declared")
	require.Equal(t, 4.0, c.AccountRate(store.Bot{Name: "abcde"}))
	require.Zero(t, c.AccountRate(store.Bot{}))
	p.Capabilities.RecipientRate = 1
	require.Equal(t, 1.0, p.PacerConfig().PerRecipient)

	caps := provider.Capabilities{IdempotentSends: true, Bundles: true}
	require.Equal(t, channel.Capabilities{IdempotentSends: true, Bundles: true}, caps.Runner())

	now := base
	at := func(d time.Duration) *time.Time { t := now.Add(-d); return &t }
	require.True(t, caps.InWindow(nil, now), "no reply window: always")
	w := provider.Capabilities{ReplyWindow: 24 * time.Hour}
	require.False(t, w.InWindow(nil, now), "never wrote")
	require.True(t, w.InWindow(at(24*time.Hour-time.Second), now))
	require.False(t, w.InWindow(at(24*time.Hour), now))
}

// Publish makes a notification durable: inbound and delivery events on
// the real bus with ids derived from the provider's (a retry is a
// duplicate), and reachability in the real store.
func TestPublish(t *testing.T) {
	ctx := context.Background()
	nats, err := bus.StartEmbedded(bus.EmbeddedConfig{StoreDir: t.TempDir()})
	require.NoError(t, err)
	defer nats.Shutdown()
	nc, err := nats.Connect()
	require.NoError(t, err)
	defer nc.Close()
	b, err := bus.New(ctx, nc, bus.Config{Source: "/test"})
	require.NoError(t, err)
	st, err := sqlite.Open(ctx, t.TempDir())
	require.NoError(t, err)
	defer st.Close()
	contact, _, err := st.UpsertContact(ctx, store.ContactUpsert{BotID: "acme", Channel: "t-pub", ExternalID: "42", NewID: store.NewContactID(), Now: base})
	require.NoError(t, err)

	n := provider.Notification{
		Inbound:      []events.Inbound{{BotID: "acme", Channel: "t-pub", From: "42", ProviderMessageID: "m1", Text: "hi", ReceivedAt: base}},
		Deliveries:   []events.Delivery{{BotID: "acme", Channel: "t-pub", ProviderMessageID: "p1", Status: events.StatusDelivered, At: base}},
		Reachability: []provider.Reachability{{ExternalID: "42", Reason: "blocked the bot"}, {ExternalID: "never-seen"}},
	}
	for range 2 { // the provider retries: nothing new
		require.NoError(t, provider.Publish(ctx, b, st, "acme", "t-pub", n))
	}
	in, err := b.Queued(ctx, bus.StreamEvents, events.InboundSubject("t-pub", "acme"))
	require.NoError(t, err)
	require.EqualValues(t, 1, in)
	dl, err := b.Queued(ctx, bus.StreamEvents, events.DeliverySubject("t-pub", "acme"))
	require.NoError(t, err)
	require.EqualValues(t, 1, dl)
	got, err := st.GetContact(ctx, "acme", contact.ID)
	require.NoError(t, err)
	require.True(t, got.Unreachable)
	require.Equal(t, "blocked the bot", got.UnreachableReason)

	require.NoError(t, provider.Publish(ctx, b, st, "acme", "t-pub", provider.Notification{
		Reachability: []provider.Reachability{{ExternalID: "42", Reachable: true}}}))
	got, err = st.GetContact(ctx, "acme", contact.ID)
	require.NoError(t, err)
	require.False(t, got.Unreachable)

	// A bus that is down says so, as ErrBus.
	nc.Close()
	err = provider.Publish(ctx, b, st, "acme", "t-pub", provider.Notification{Inbound: []events.Inbound{{BotID: "acme", Channel: "t-pub", From: "42", ProviderMessageID: "m2"}}})
	require.ErrorIs(t, err, provider.ErrBus)
}
