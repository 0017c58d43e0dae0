package sqlite_test

import (
	"context"
	"database/sql"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/flowgate/flowgate/shared/store"
	"github.com/flowgate/flowgate/shared/store/sqlite"
)

// A store written before messages had a lane gets the column on open, and
// its messages read back with no lane.
func TestOpenAddsTheLaneColumnToAnOlderStore(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s, err := sqlite.Open(ctx, dir)
	require.NoError(t, err)
	require.NoError(t, s.CreateBot(ctx, store.Bot{ID: "old", Name: "old"}))
	require.NoError(t, s.Close())

	// Make it an older store: no lane column, one message.
	db, err := sql.Open("sqlite", "file:"+filepath.Join(dir, sqlite.FileName))
	require.NoError(t, err)
	_, err = db.Exec(`ALTER TABLE messages DROP COLUMN lane`)
	require.NoError(t, err)
	_, err = db.Exec(`INSERT INTO messages (id, bot_id, run_id, trigger_id, contact_id, channel, to_addr, seq, content, status,
		provider_message_id, error, created_at, updated_at) VALUES ('m0', 'old', 'r', '', 'c', 'whatsapp', '+1', 1, '{}', 'queued', '', '', 1, 1)`)
	require.NoError(t, err)
	require.NoError(t, db.Close())

	s, err = sqlite.Open(ctx, dir)
	require.NoError(t, err)
	defer s.Close()
	m, err := s.GetMessage(ctx, "old", "m0")
	require.NoError(t, err)
	require.Empty(t, m.Lane)
	require.NoError(t, s.InsertMessages(ctx, []store.Message{{ID: "m1", BotID: "old", RunID: "r", ContactID: "c",
		Channel: "whatsapp", To: "+1", Seq: 2, Lane: "high"}}))
	m, err = s.GetMessage(ctx, "old", "m1")
	require.NoError(t, err)
	require.Equal(t, "high", m.Lane)
}

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

	db, err := sql.Open("sqlite", "file:"+filepath.Join(dir, sqlite.FileName))
	require.NoError(t, err)
	for _, col := range []string{"claim_by", "claim_until", "claim_version"} {
		_, err = db.Exec(`ALTER TABLE runs DROP COLUMN ` + col)
		require.NoError(t, err)
	}
	require.NoError(t, db.Close())

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

	db, err := sql.Open("sqlite", "file:"+filepath.Join(dir, sqlite.FileName))
	require.NoError(t, err)
	_, err = db.Exec(`UPDATE runs SET version = version + 1, status = 'completed' WHERE id = 'r1'`)
	require.NoError(t, err)
	require.NoError(t, db.Close())

	refused, err = s.ClaimRuns(ctx, []store.RunClaim{{BotID: "b", RunID: "r1", Version: run.Version + 1}}, "b", now, now.Add(time.Minute))
	require.NoError(t, err)
	require.Empty(t, refused, "the claim on the version before is no claim")
}
