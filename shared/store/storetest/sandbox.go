package storetest

import (
	"encoding/json"
	"fmt"
	"testing"

	"github.com/flowgate/flowgate/shared/store"
	"github.com/stretchr/testify/require"
)

func testSandbox(t *testing.T, s store.Store, e env) {
	mkBot(t, s, e)
	tos := []string{"+1", "+2", "+1", "+1", "+2"}
	for i, to := range tos {
		require.NoError(t, s.AppendSandbox(e.ctx, store.SandboxMessage{
			MessageID: fmt.Sprintf("m%d", i), BotID: e.bot, RunID: "r1", To: to,
			Content: json.RawMessage(fmt.Sprintf(`{"text":"msg %d"}`, i)), CreatedAt: base(),
		}))
	}
	require.NoError(t, s.AppendSandbox(e.ctx, store.SandboxMessage{MessageID: "m1", BotID: e.bot, RunID: "r1", To: "+2",
		Content: json.RawMessage(`{"text":"duplicate"}`)}), "a redelivered message is ignored")

	all, err := s.ListSandbox(e.ctx, e.bot, "", 0, 100)
	require.NoError(t, err)
	require.Len(t, all, 5)
	for i, m := range all {
		require.Equal(t, fmt.Sprintf("m%d", i), m.MessageID, "oldest first")
		require.Equal(t, tos[i], m.To)
		require.Equal(t, e.bot, m.BotID)
		require.Equal(t, "r1", m.RunID)
		jsonEq(t, json.RawMessage(fmt.Sprintf(`{"text":"msg %d"}`, i)), m.Content)
		if i > 0 {
			require.Greater(t, m.Seq, all[i-1].Seq, "seq grows")
		}
	}
	one, err := s.ListSandbox(e.ctx, e.bot, "+1", 0, 100)
	require.NoError(t, err)
	require.Equal(t, []string{"m0", "m2", "m3"}, sandboxIDs(one))
	after, err := s.ListSandbox(e.ctx, e.bot, "+1", one[0].Seq, 1)
	require.NoError(t, err)
	require.Equal(t, []string{"m2"}, sandboxIDs(after), "after seq, limited")
	after, err = s.ListSandbox(e.ctx, e.bot, "", all[4].Seq, 100)
	require.NoError(t, err)
	require.Empty(t, after)

	// Concurrent appends get distinct, increasing seqs.
	n := e.feats.Concurrency * 2
	errs := make([]error, n)
	parallel(n, func(i int) {
		errs[i] = s.AppendSandbox(e.ctx, store.SandboxMessage{MessageID: fmt.Sprintf("p%d", i), BotID: e.bot, RunID: "r2", To: "+3",
			Content: json.RawMessage(`{}`)})
	})
	for _, err := range errs {
		require.NoError(t, err)
	}
	par, err := s.ListSandbox(e.ctx, e.bot, "+3", 0, 1000)
	require.NoError(t, err)
	require.Len(t, par, n)
	for i := 1; i < len(par); i++ {
		require.Greater(t, par[i].Seq, par[i-1].Seq)
	}
	require.Greater(t, par[0].Seq, all[4].Seq)

	// Several messages in one call: in order, a repeated one ignored.
	mk := func(id string) store.SandboxMessage {
		return store.SandboxMessage{MessageID: id, BotID: e.bot, RunID: "r3", To: "+4", Content: json.RawMessage(`{"text":"` + id + `"}`)}
	}
	require.NoError(t, s.AppendSandbox(e.ctx, mk("b1"), mk("b2"), mk("b3")))
	require.NoError(t, s.AppendSandbox(e.ctx, mk("b2"), mk("b4")), "b2 again is ignored, b4 appended")
	require.NoError(t, s.AppendSandbox(e.ctx))
	bundle, err := s.ListSandbox(e.ctx, e.bot, "+4", 0, 100)
	require.NoError(t, err)
	require.Equal(t, []string{"b1", "b2", "b3", "b4"}, sandboxIDs(bundle))
	bad := mk("b5")
	bad.MessageID = ""
	requireInvalid(t, s.AppendSandbox(e.ctx, mk("b6"), bad), "message_id")
	bundle, err = s.ListSandbox(e.ctx, e.bot, "+4", 0, 100)
	require.NoError(t, err)
	require.Len(t, bundle, 4, "an invalid message in the call writes nothing")
}

func sandboxIDs(ms []store.SandboxMessage) []string {
	var ids []string
	for _, m := range ms {
		ids = append(ids, m.MessageID)
	}
	return ids
}
