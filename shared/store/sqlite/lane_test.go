package sqlite_test

import (
	"context"
	"database/sql"
	"path/filepath"
	"testing"

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
	rawExec(t, dir, `ALTER TABLE messages DROP COLUMN lane`,
		`INSERT INTO messages (id, bot_id, run_id, trigger_id, contact_id, channel, to_addr, seq, content, status,
		provider_message_id, error, created_at, updated_at) VALUES ('m0', 'old', 'r', '', 'c', 'whatsapp', '+1', 1, '{}', 'queued', '', '', 1, 1)`)

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

// rawExec runs statements on the store's file in dir outside the adapter
// (as an older Flowgate, or a schema of the past, would have left it).
func rawExec(t *testing.T, dir string, stmts ...string) {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+filepath.Join(dir, sqlite.FileName))
	require.NoError(t, err)
	defer db.Close()
	for _, q := range stmts {
		_, err := db.Exec(q)
		require.NoError(t, err)
	}
}
