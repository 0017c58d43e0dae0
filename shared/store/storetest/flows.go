package storetest

import (
	"encoding/json"
	"fmt"
	"testing"

	"github.com/flowgate/flowgate/shared/store"
	"github.com/stretchr/testify/require"
)

func testFlows(t *testing.T, s store.Store, e env) {
	mkBot(t, s, e)
	defs := []string{`{"steps":[{"send":"v1"}]}`, `{"steps":[{"send":"v2"}]}`, `{"steps":[{"send":"v3"}],"x":[1,2,3]}`}
	for i, d := range defs {
		f, err := s.PutFlow(e.ctx, store.Flow{BotID: e.bot, ID: "welcome", Definition: json.RawMessage(d), CreatedAt: base()})
		require.NoError(t, err)
		require.Equal(t, i+1, f.Version, "PutFlow assigns latest+1")
	}
	_, err := s.PutFlow(e.ctx, store.Flow{BotID: e.bot, ID: "other", Definition: json.RawMessage(`{}`)})
	require.NoError(t, err)

	latest, err := s.GetFlow(e.ctx, e.bot, "welcome", 0)
	require.NoError(t, err)
	require.Equal(t, 3, latest.Version)
	require.Equal(t, "welcome", latest.ID)
	require.Equal(t, e.bot, latest.BotID)
	jsonEq(t, json.RawMessage(defs[2]), latest.Definition)

	v2, err := s.GetFlow(e.ctx, e.bot, "welcome", 2)
	require.NoError(t, err)
	require.Equal(t, 2, v2.Version)
	jsonEq(t, json.RawMessage(defs[1]), v2.Definition)

	_, err = s.GetFlow(e.ctx, e.bot, "welcome", 9)
	requireIs(t, err, store.ErrNotFound)
	_, err = s.GetFlow(e.ctx, e.bot, "missing", 0)
	requireIs(t, err, store.ErrNotFound)

	all, err := s.ListFlowVersions(e.ctx, e.bot, "welcome")
	require.NoError(t, err)
	require.Len(t, all, 3)
	for i, f := range all {
		require.Equal(t, i+1, f.Version, "oldest first")
		jsonEq(t, json.RawMessage(defs[i]), f.Definition)
	}
	none, err := s.ListFlowVersions(e.ctx, e.bot, "missing")
	require.NoError(t, err)
	require.Empty(t, none)
}

func testFlowVersionsConcurrent(t *testing.T, s store.Store, e env) {
	mkBot(t, s, e)
	n := e.feats.Concurrency
	versions := make([]int, n)
	errs := make([]error, n)
	parallel(n, func(i int) {
		f, err := s.PutFlow(e.ctx, store.Flow{BotID: e.bot, ID: "race", Definition: json.RawMessage(fmt.Sprintf(`{"writer":%d}`, i))})
		versions[i], errs[i] = f.Version, err
	})
	seen := map[int]bool{}
	for i := range n {
		require.NoError(t, errs[i])
		require.False(t, seen[versions[i]], "version %d handed out twice", versions[i])
		seen[versions[i]] = true
	}
	for v := 1; v <= n; v++ {
		require.True(t, seen[v], "versions are 1..%d without gaps, missing %d", n, v)
	}
	all, err := s.ListFlowVersions(e.ctx, e.bot, "race")
	require.NoError(t, err)
	require.Len(t, all, n)
}
