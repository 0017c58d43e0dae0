package storetest

import (
	"testing"
	"time"

	"github.com/flowgate/flowgate/shared/store"
	"github.com/stretchr/testify/require"
)

func testBots(t *testing.T, s store.Store, e env) {
	created := base().Add(-time.Hour)
	b := store.Bot{
		ID: e.bot, Name: "Acme", CreatedAt: created, UpdatedAt: created,
		Channels: store.ChannelAccounts{
			DefaultChannel: "telegram",
			Telegram:       &store.TelegramAccount{BotToken: "123:abc", WebhookSecret: "s3cret", RatePerSecond: 25},
		},
	}
	require.NoError(t, s.CreateBot(e.ctx, b))
	requireIs(t, s.CreateBot(e.ctx, b), store.ErrConflict, "second create of the same id")

	got, err := s.GetBot(e.ctx, e.bot)
	require.NoError(t, err)
	require.Equal(t, "Acme", got.Name)
	require.Equal(t, b.Channels, got.Channels)
	requireTime(t, e, created, got.CreatedAt, "created_at")

	b.Name = "Acme Corp"
	b.Channels.WhatsApp = &store.WhatsAppAccount{PhoneNumberID: "1055", AccessToken: "tok", AppSecret: "app", VerifyToken: "v"}
	b.UpdatedAt = base()
	require.NoError(t, s.UpdateBot(e.ctx, b))
	got, err = s.GetBot(e.ctx, e.bot)
	require.NoError(t, err)
	require.Equal(t, "Acme Corp", got.Name)
	require.Equal(t, b.Channels, got.Channels)
	requireTime(t, e, created, got.CreatedAt, "created_at survives an update")

	other := e.bot[:len(e.bot)-1] + "z"
	if other == e.bot {
		other = e.bot[:len(e.bot)-1] + "y"
	}
	require.NoError(t, s.CreateBot(e.ctx, store.Bot{ID: other, Name: "Other"}))
	all, err := s.ListBots(e.ctx)
	require.NoError(t, err)
	var ids []string
	for _, x := range all {
		if x.ID == e.bot || x.ID == other {
			ids = append(ids, x.ID)
		}
	}
	require.ElementsMatch(t, []string{e.bot, other}, ids)
	for i := 1; i < len(all); i++ {
		require.Less(t, all[i-1].ID, all[i].ID, "ListBots is ordered by id")
	}

	requireIs(t, s.UpdateBot(e.ctx, store.Bot{ID: "no-such-bot-" + e.bot[:8], Name: "x"}), store.ErrNotFound)
}
