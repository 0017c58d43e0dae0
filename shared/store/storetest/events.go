package storetest

import (
	"testing"
	"time"

	"github.com/flowgate/flowgate/shared/store"
	"github.com/stretchr/testify/require"
)

func testEvents(t *testing.T, s store.Store, e env) {
	mkBot(t, s, e)
	created := base().Add(-time.Minute)
	ev := store.Event{BotID: e.bot, Name: "WELCOME_NEW_USER", FlowID: "welcome", TokenHash: "hash-1", CreatedAt: created, UpdatedAt: created}
	require.NoError(t, s.PutEvent(e.ctx, ev))
	got, err := s.GetEvent(e.ctx, e.bot, ev.Name)
	require.NoError(t, err)
	require.Equal(t, "welcome", got.FlowID)
	require.Equal(t, "hash-1", got.TokenHash)

	ev.FlowID, ev.TokenHash, ev.CreatedAt, ev.UpdatedAt = "welcome2", "hash-2", base(), base()
	require.NoError(t, s.PutEvent(e.ctx, ev), "PutEvent replaces")
	got, err = s.GetEvent(e.ctx, e.bot, ev.Name)
	require.NoError(t, err)
	require.Equal(t, "welcome2", got.FlowID)
	requireTime(t, e, created, got.CreatedAt, "created_at of a replaced event is kept")

	byTok, err := s.GetEventByToken(e.ctx, e.bot, "hash-2")
	require.NoError(t, err)
	require.Equal(t, ev.Name, byTok.Name)
	_, err = s.GetEventByToken(e.ctx, e.bot, "hash-1")
	requireIs(t, err, store.ErrNotFound, "the old token no longer matches")
	_, err = s.GetEvent(e.ctx, e.bot, "NOPE")
	requireIs(t, err, store.ErrNotFound)
}
