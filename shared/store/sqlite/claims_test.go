package sqlite_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/flowgate/flowgate/shared/store"
	"github.com/flowgate/flowgate/shared/store/sqlite"
)

// A store from before run claims gets their columns at open: its runs are
// unclaimed, and claims and writes work on them.
func TestOpenAddsTheClaimColumnsToAnOlderStore(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s, err := sqlite.Open(ctx, dir)
	require.NoError(t, err)
	require.NoError(t, s.CreateBot(ctx, store.Bot{ID: "old", Name: "old"}))
	_, _, err = s.CreateRun(ctx, store.Run{ID: "r1", BotID: "old", FlowID: "f", FlowVersion: 1, ContactID: "c",
		Channel: "sandbox", Status: store.RunWaiting, CreatedAt: time.Unix(1, 0)})
	require.NoError(t, err)
	require.NoError(t, s.Close())

	rawExec(t, dir, `ALTER TABLE runs DROP COLUMN claim_by`, `ALTER TABLE runs DROP COLUMN claim_until`,
		`ALTER TABLE runs DROP COLUMN claim_version`)

	s, err = sqlite.Open(ctx, dir)
	require.NoError(t, err)
	defer s.Close()
	run, err := s.GetRun(ctx, "old", "r1")
	require.NoError(t, err)
	now := time.Unix(100, 0)
	refused, err := s.ClaimRuns(ctx, []store.RunClaim{{BotID: "old", RunID: "r1", Version: run.Version}}, "a", now, now.Add(time.Minute))
	require.NoError(t, err)
	require.Empty(t, refused)
	run.Status = store.RunCompleted
	_, err = s.UpdateRun(ctx, run)
	require.NoError(t, err)
}

// A claim holds only on the version it was taken on: a write that did not
// end it (an older Flowgate's, during a rolling upgrade) outdates it, and
// the run's next version is free at once.
func TestAClaimOutdatedByAWriteThatDidNotEndIt(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s, err := sqlite.Open(ctx, dir)
	require.NoError(t, err)
	defer s.Close()
	require.NoError(t, s.CreateBot(ctx, store.Bot{ID: "b", Name: "b"}))
	run, _, err := s.CreateRun(ctx, store.Run{ID: "r1", BotID: "b", FlowID: "f", FlowVersion: 1, ContactID: "c",
		Channel: "sandbox", Status: store.RunWaiting, CreatedAt: time.Unix(1, 0)})
	require.NoError(t, err)
	now := time.Unix(100, 0)
	refused, err := s.ClaimRuns(ctx, []store.RunClaim{{BotID: "b", RunID: "r1", Version: run.Version}}, "a", now, now.Add(time.Minute))
	require.NoError(t, err)
	require.Empty(t, refused)

	rawExec(t, dir, `UPDATE runs SET version = version + 1, status = 'completed' WHERE id = 'r1'`)

	refused, err = s.ClaimRuns(ctx, []store.RunClaim{{BotID: "b", RunID: "r1", Version: run.Version + 1}}, "b", now, now.Add(time.Minute))
	require.NoError(t, err)
	require.Empty(t, refused, "the claim on the version before is no claim")
}
