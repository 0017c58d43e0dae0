package sqlite_test

import (
	"context"
	"database/sql"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/flowgate/flowgate/shared/store/sqlite"
	"github.com/flowgate/flowgate/shared/store/storetest"
)

func TestMedia(t *testing.T) {
	storetest.RunMedia(t, openTemp(t), time.Nanosecond)
}

func TestEventInput(t *testing.T) {
	storetest.RunEventInput(t, openTemp(t))
}

// A store created before events had an input column gains it on open,
// and opening twice is harmless.
func TestEventInputColumnMigration(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s, err := sqlite.Open(ctx, dir)
	require.NoError(t, err)
	require.NoError(t, s.Close())
	// Back to the old shape: events without the column.
	db := openRaw(t, dir)
	_, err = db.Exec(`ALTER TABLE events DROP COLUMN input`)
	require.NoError(t, err)
	require.NoError(t, db.Close())
	for range 2 {
		s, err = sqlite.Open(ctx, dir)
		require.NoError(t, err)
		storetest.RunEventInput(t, s)
		require.NoError(t, s.Close())
	}
}

func openRaw(t *testing.T, dir string) *sql.DB {
	db, err := sql.Open("sqlite", "file:"+filepath.Join(dir, sqlite.FileName))
	require.NoError(t, err)
	return db
}
