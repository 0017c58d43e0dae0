package sqlite

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/flowgate/flowgate/shared/store"
)

// A write that panics (a bug) fails its own caller and the batch it was in,
// and the store keeps working.
func TestWriterSurvivesPanic(t *testing.T) {
	ctx := context.Background()
	s, err := Open(ctx, t.TempDir())
	require.NoError(t, err)
	defer s.Close()

	for _, solo := range []bool{false, true} {
		err := s.w.do(ctx, solo, func(*wtx) error { panic("boom") })
		require.ErrorContains(t, err, "panicked: boom")
	}

	// A panic inside a batch of concurrent writes: every caller hears of it
	// or succeeded in a later batch; nothing half-written stays.
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if i == 7 {
				_ = s.w.do(ctx, false, func(t *wtx) error {
					if _, err := t.exec(`INSERT INTO bots (id, name, created_at, updated_at) VALUES ('half', 'x', 0, 0)`); err != nil {
						return err
					}
					panic("after a write")
				})
				return
			}
			_ = s.CreateBot(ctx, store.Bot{ID: "b" + string(rune('a'+i)), Name: "x"})
		}()
	}
	wg.Wait()
	_, err = s.GetBot(ctx, "half")
	require.ErrorIs(t, err, store.ErrNotFound, "the panicking write was rolled back")
	require.NoError(t, s.CreateBot(ctx, store.Bot{ID: "after", Name: "x"}))
	_, err = s.GetBot(ctx, "after")
	require.NoError(t, err)
}

// ExpireBefore works in chunks; every chunk is deleted and counted.
func TestExpireBeforeChunks(t *testing.T) {
	ctx := context.Background()
	s, err := Open(ctx, t.TempDir())
	require.NoError(t, err)
	defer s.Close()
	s.opts.expireChunk = 7
	old := time.Now().Add(-time.Hour)
	var rs []store.Run
	for i := range 30 {
		status := store.RunCompleted
		if i%10 == 0 {
			status = store.RunWaiting
		}
		rs = append(rs, store.Run{ID: fmt.Sprintf("r%02d", i), BotID: "b", FlowID: "f", ContactID: fmt.Sprintf("c%d", i),
			Status: status, CreatedAt: old, UpdatedAt: old})
	}
	_, _, err = s.CreateRuns(ctx, rs)
	require.NoError(t, err)
	n, err := s.ExpireBefore(ctx, time.Now())
	require.NoError(t, err)
	require.EqualValues(t, 27, n)
	left, _, err := s.ListRuns(ctx, store.RunFilter{BotID: "b"})
	require.NoError(t, err)
	require.Len(t, left, 3, "the waiting runs stay")
}
