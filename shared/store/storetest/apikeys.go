package storetest

import (
	"strings"
	"testing"

	"github.com/flowgate/flowgate/shared/store"
	"github.com/stretchr/testify/require"
)

func testAPIKeys(t *testing.T, s store.Store, e env) {
	mkBot(t, s, e)
	k := store.APIKey{ID: "key-" + e.bot, BotID: e.bot, Hash: strings.Repeat("ab", 32), Prefix: "fg_abc", CreatedAt: base()}
	require.NoError(t, s.CreateAPIKey(e.ctx, k))
	requireIs(t, s.CreateAPIKey(e.ctx, k), store.ErrConflict, "same id twice")
	dupHash := k
	dupHash.ID = "key2-" + e.bot
	requireIs(t, s.CreateAPIKey(e.ctx, dupHash), store.ErrConflict, "same hash twice")

	got, err := s.GetAPIKeyByHash(e.ctx, k.Hash)
	require.NoError(t, err)
	require.Equal(t, k.ID, got.ID)
	require.Equal(t, e.bot, got.BotID)
	require.Equal(t, k.Hash, got.Hash)
	require.Equal(t, "fg_abc", got.Prefix)
	require.False(t, got.Revoked)
	requireTime(t, e, k.CreatedAt, got.CreatedAt, "created_at")

	revoked := store.APIKey{ID: "key3-" + e.bot, BotID: e.bot, Hash: strings.Repeat("cd", 32), Prefix: "fg_cd", Revoked: true}
	require.NoError(t, s.CreateAPIKey(e.ctx, revoked))
	got, err = s.GetAPIKeyByHash(e.ctx, revoked.Hash)
	require.NoError(t, err)
	require.True(t, got.Revoked, "a revoked key is returned and says so")

	_, err = s.GetAPIKeyByHash(e.ctx, strings.Repeat("ef", 32))
	requireIs(t, err, store.ErrNotFound)
}
