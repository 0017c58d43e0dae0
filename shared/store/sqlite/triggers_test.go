package sqlite_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/flowgate/flowgate/shared/store"
	"github.com/flowgate/flowgate/shared/store/sqlite"
)

// TestCheckpointTriggerIsAllOrNothing: a checkpoint that fails part-way
// (the stored skip reasons do not decode) leaves the trigger as it was. It
// used to advance status, cursor and version in one statement and fail in
// the next, and the group commit committed the half.
func TestCheckpointTriggerIsAllOrNothing(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s, err := sqlite.Open(ctx, dir)
	require.NoError(t, err)
	defer s.Close()
	require.NoError(t, s.CreateBot(ctx, store.Bot{ID: "b1", Name: "B"}))
	tr, fresh, err := s.CreateTrigger(ctx, store.Trigger{ID: "t1", BotID: "b1", Source: "api", Event: "E", FlowID: "f",
		Channel: "sandbox", Spec: json.RawMessage(`{"id":"t1"}`), Status: store.TriggerAccepted})
	require.NoError(t, err)
	require.True(t, fresh)

	db, err := sql.Open("sqlite", "file:"+filepath.Join(dir, sqlite.FileName)+"?_pragma=busy_timeout(5000)")
	require.NoError(t, err)
	defer db.Close()
	_, err = db.Exec(`UPDATE triggers SET skip_reasons = '{not json' WHERE id = 't1'`)
	require.NoError(t, err)

	next := tr
	next.Status, next.Cursor = store.TriggerDone, "1"
	for _, d := range []store.TriggerCounters{
		{Targeted: 2, Skipped: 1, SkipReasons: map[string]int64{"invalid_user": 1}},
		{Targeted: 1, RunsCreated: 1},
	} {
		_, err := s.CheckpointTrigger(ctx, next, d)
		require.Error(t, err, "delta %+v", d)
		var status, cursor string
		var version, targeted int64
		require.NoError(t, db.QueryRow(`SELECT status, cursor, version, targeted FROM triggers WHERE id = 't1'`).
			Scan(&status, &cursor, &version, &targeted))
		require.Equal(t, string(store.TriggerAccepted), status, "delta %+v", d)
		require.Equal(t, "", cursor)
		require.EqualValues(t, 1, version)
		require.EqualValues(t, 0, targeted)
	}

	// Repaired, the same checkpoint goes through once.
	_, err = db.Exec(`UPDATE triggers SET skip_reasons = NULL WHERE id = 't1'`)
	require.NoError(t, err)
	got, err := s.CheckpointTrigger(ctx, next, store.TriggerCounters{Targeted: 2, Skipped: 1, SkipReasons: map[string]int64{"invalid_user": 1}})
	require.NoError(t, err)
	require.Equal(t, store.TriggerDone, got.Status)
	require.EqualValues(t, 2, got.Version)
	require.EqualValues(t, 2, got.Counters.Targeted)
	require.Equal(t, map[string]int64{"invalid_user": 1}, got.Counters.SkipReasons)
	_, err = s.CheckpointTrigger(ctx, next, store.TriggerCounters{Targeted: 2})
	require.ErrorIs(t, err, store.ErrVersionConflict)
	_, err = s.CheckpointTrigger(ctx, store.Trigger{ID: "nope", BotID: "b1", Source: "api", Event: "E", FlowID: "f",
		Channel: "sandbox", Status: store.TriggerDone, Version: 1}, store.TriggerCounters{})
	require.ErrorIs(t, err, store.ErrNotFound)
}
