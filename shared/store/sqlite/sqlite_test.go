package sqlite_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/flowgate/flowgate/shared/store"
	"github.com/flowgate/flowgate/shared/store/sqlite"
	"github.com/flowgate/flowgate/shared/store/storetest"
)

func openTemp(t *testing.T, opts ...sqlite.Option) *sqlite.Store {
	t.Helper()
	s, err := sqlite.Open(context.Background(), t.TempDir(), opts...)
	require.NoError(t, err)
	t.Cleanup(func() {
		require.NoError(t, s.Close())
		require.Zero(t, s.UnsafeSharedWrites(), "shared writes ran several modifying statements outside a savepoint: half of one could be committed")
	})
	return s
}

func TestContract(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store { return openTemp(t) },
		storetest.Features{TimePrecision: time.Nanosecond + 1, AtomicBulk: true})
}

// The contract holds without lingering in the group commit as well.
func TestContractNoLinger(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store { return openTemp(t, sqlite.WithGroupCommit(0, 64)) },
		storetest.Features{TimePrecision: time.Nanosecond + 1, AtomicBulk: true, Concurrency: 16})
}

// The contract with the writer of a process sharing its directory
// (WithShared: batches gathered before the write lock is taken).
func TestContractShared(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store { return openTemp(t, sqlite.WithShared()) },
		storetest.Features{TimePrecision: time.Nanosecond + 1, AtomicBulk: true, Concurrency: 16})
}

func TestReopenKeepsDataAndSchema(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s, err := sqlite.Open(ctx, dir)
	require.NoError(t, err)
	require.NoError(t, s.CreateBot(ctx, store.Bot{ID: "acme", Name: "Acme"}))
	require.NoError(t, s.Close())
	require.NoError(t, s.Close(), "Close twice is harmless")

	for range 2 { // migration on an existing file is a no-op
		s, err = sqlite.Open(ctx, dir)
		require.NoError(t, err)
		b, err := s.GetBot(ctx, "acme")
		require.NoError(t, err)
		require.Equal(t, "Acme", b.Name)
		require.NoError(t, s.Close())
	}
	require.FileExists(t, filepath.Join(dir, sqlite.FileName))
}

func TestOpenCreatesNestedDir(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a", "b")
	s2, err := sqlite.Open(context.Background(), dir)
	require.NoError(t, err)
	require.NoError(t, s2.Close())
	require.FileExists(t, filepath.Join(dir, sqlite.FileName))
}

func TestOpenRejectsBadOptions(t *testing.T) {
	ctx := context.Background()
	for name, opt := range map[string]sqlite.Option{
		"group commit ops":  sqlite.WithGroupCommit(time.Millisecond, 0),
		"group commit wait": sqlite.WithGroupCommit(-time.Millisecond, 10),
		"retention":         sqlite.WithRetention(0),
		"synchronous":       sqlite.WithSynchronous("off"),
		"logger":            sqlite.WithLogger(nil),
	} {
		_, err := sqlite.Open(ctx, t.TempDir(), opt)
		require.Error(t, err, name)
	}
	_, err := sqlite.Open(ctx, "")
	require.Error(t, err)
}

func TestWriteAfterCloseIsUnavailable(t *testing.T) {
	s, err := sqlite.Open(context.Background(), t.TempDir())
	require.NoError(t, err)
	require.NoError(t, s.Close())
	err = s.CreateBot(context.Background(), store.Bot{ID: "late", Name: "x"})
	require.ErrorIs(t, err, store.ErrUnavailable)
	_, err = s.GetBot(context.Background(), "late")
	require.ErrorIs(t, err, store.ErrUnavailable, "reads too")
	require.ErrorIs(t, s.Ping(context.Background()), store.ErrUnavailable)
}

func TestCancelledContextWritesNothing(t *testing.T) {
	s := openTemp(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	require.ErrorIs(t, s.CreateBot(ctx, store.Bot{ID: "x", Name: "x"}), context.Canceled)
	_, err := s.GetBot(context.Background(), "x")
	require.ErrorIs(t, err, store.ErrNotFound)
}

func TestRetentionExpiresFinalRuns(t *testing.T) {
	s := openTemp(t, sqlite.WithRetention(3*time.Second))
	ctx := context.Background()
	old := time.Now().Add(-time.Hour)
	for _, r := range []store.Run{
		{ID: "done", BotID: "b", FlowID: "f", ContactID: "c", Status: store.RunCompleted, CreatedAt: old, UpdatedAt: old},
		{ID: "waiting", BotID: "b", FlowID: "f", ContactID: "c", Status: store.RunWaiting, CreatedAt: old, UpdatedAt: old},
	} {
		_, _, err := s.CreateRun(ctx, r)
		require.NoError(t, err)
	}
	require.NoError(t, s.InsertMessages(ctx, []store.Message{{ID: "m", BotID: "b", RunID: "done"}}))
	fresh, _, err := s.CreateRun(ctx, store.Run{ID: "fresh", BotID: "b", FlowID: "f", ContactID: "c2"})
	require.NoError(t, err)
	fresh.Status = store.RunCompleted
	_, err = s.UpdateRun(ctx, fresh)
	require.NoError(t, err)

	require.Eventually(t, func() bool {
		_, err := s.GetRun(ctx, "b", "done")
		return errors.Is(err, store.ErrNotFound)
	}, 5*time.Second, 10*time.Millisecond, "the retention goroutine deletes an old completed run")
	_, err = s.GetMessage(ctx, "b", "m")
	require.ErrorIs(t, err, store.ErrNotFound, "with its messages")
	_, err = s.GetRun(ctx, "b", "waiting")
	require.NoError(t, err, "a waiting run is never expired")
	_, err = s.GetRun(ctx, "b", "fresh")
	require.NoError(t, err, "a run completed just now is kept")
}

// Many small writes from many callers end up in few transactions, and each
// caller gets its own result: conflicts and successes in one batch.
func TestGroupCommitGivesEachCallerItsResult(t *testing.T) {
	s := openTemp(t, sqlite.WithGroupCommit(5*time.Millisecond, 256))
	ctx := context.Background()
	var runs []store.Run
	for i := range 100 {
		runs = append(runs, store.Run{ID: fmt.Sprintf("r%d", i), BotID: "b", FlowID: "f", ContactID: fmt.Sprintf("c%d", i)})
	}
	runs, _, err := s.CreateRuns(ctx, runs)
	require.NoError(t, err)
	errs := make([]error, len(runs))
	var wg sync.WaitGroup
	for i, r := range runs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r.Status = store.RunRunning
			if i%2 == 1 {
				r.Version = 7 // stale
			}
			_, errs[i] = s.UpdateRun(ctx, r)
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if i%2 == 1 {
			require.ErrorIs(t, err, store.ErrVersionConflict, "run %d", i)
			continue
		}
		require.NoError(t, err, "run %d", i)
		got, err := s.GetRun(ctx, "b", runs[i].ID)
		require.NoError(t, err)
		require.Equal(t, store.RunRunning, got.Status)
	}
}

// Close while writers are busy: every write that was acknowledged is on
// disk, the others were refused with ErrUnavailable.
func TestCloseDrainsQueuedWrites(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s, err := sqlite.Open(ctx, dir)
	require.NoError(t, err)
	var wg sync.WaitGroup
	acked := make([][]string, 16)
	for g := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				id := fmt.Sprintf("r%02d-%05d", g, i)
				_, _, err := s.CreateRun(ctx, store.Run{ID: id, BotID: "b", FlowID: "f", ContactID: id})
				if err != nil {
					assert.ErrorIs(t, err, store.ErrUnavailable)
					return
				}
				acked[g] = append(acked[g], id)
			}
		}()
	}
	time.Sleep(50 * time.Millisecond)
	require.NoError(t, s.Close())
	wg.Wait()

	s, err = sqlite.Open(ctx, dir)
	require.NoError(t, err)
	defer s.Close()
	n := 0
	for _, ids := range acked {
		for _, id := range ids {
			_, err := s.GetRun(ctx, "b", id)
			require.NoError(t, err, "acknowledged run %s", id)
			n++
		}
	}
	require.Positive(t, n)
}

// Times are nanoseconds since 1970 in an int64: years outside 1678..2262
// are refused, not wrapped around.
func TestTimeOutOfRangeIsInvalid(t *testing.T) {
	s := openTemp(t)
	ctx := context.Background()
	far := time.Date(3000, 1, 1, 0, 0, 0, 0, time.UTC) // testclock: data, not a clock
	_, _, err := s.CreateRun(ctx, store.Run{ID: "r", BotID: "b", FlowID: "f", ContactID: "c", CreatedAt: far})
	var ie *store.InvalidError
	require.ErrorAs(t, err, &ie)
	require.Equal(t, "created_at", ie.Field)
	_, _, err = s.CreateRun(ctx, store.Run{ID: "r", BotID: "b", FlowID: "f", ContactID: "c", WaitUntil: &far})
	require.ErrorAs(t, err, &ie)
	require.Equal(t, "wait_until", ie.Field)
	_, err = s.DueRuns(ctx, far, 10)
	require.ErrorIs(t, err, store.ErrInvalid)
	require.ErrorIs(t, s.CreateBot(ctx, store.Bot{ID: "b", Name: "x", CreatedAt: far}), store.ErrInvalid)
	_, _, err = s.UpsertContact(ctx, store.ContactUpsert{BotID: "b", Channel: "sandbox", ExternalID: "x", NewID: "c", Now: far})
	require.ErrorIs(t, err, store.ErrInvalid)
}

// CreateRuns over many INSERT chunks: an invalid run in a later chunk
// leaves nothing written, and existing runs are found in any chunk.
func TestCreateRunsAcrossChunks(t *testing.T) {
	s := openTemp(t)
	ctx := context.Background()
	mk := func(i int) store.Run {
		return store.Run{ID: fmt.Sprintf("r%04d", i), BotID: "b", TriggerID: "t", FlowID: "f", ContactID: fmt.Sprintf("c%04d", i)}
	}
	var rs []store.Run
	for i := range 700 {
		rs = append(rs, mk(i))
	}
	bad := append([]store.Run(nil), rs...)
	bad[650].ContactID = ""
	_, _, err := s.CreateRuns(ctx, bad)
	var ie *store.InvalidError
	require.ErrorAs(t, err, &ie)
	require.Equal(t, "contact_id", ie.Field)
	require.ErrorContains(t, err, "run 650")
	page, _, err := s.ListRuns(ctx, store.RunFilter{BotID: "b"})
	require.NoError(t, err)
	require.Empty(t, page, "nothing of the failed batch was written")

	// Some runs exist already, spread over the chunks.
	for _, i := range []int{0, 127, 128, 300, 699} {
		_, created, err := s.CreateRun(ctx, mk(i))
		require.NoError(t, err)
		require.True(t, created)
	}
	out, created, err := s.CreateRuns(ctx, rs)
	require.NoError(t, err)
	n := 0
	for i := range rs {
		require.Equal(t, rs[i].ID, out[i].ID)
		if created[i] {
			n++
		}
	}
	require.Equal(t, 695, n)
	for _, i := range []int{0, 127, 128, 300, 699} {
		require.False(t, created[i], "run %d existed", i)
	}
}

// The writer does not checkpoint: the checkpointer copies the WAL into the
// database file while the store is open (the file grows before Close), and
// Close leaves no WAL behind.
func TestWALIsCheckpointedBesideTheWriter(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s, err := sqlite.Open(ctx, dir)
	require.NoError(t, err)
	db := filepath.Join(dir, sqlite.FileName)
	size := func(p string) int64 {
		fi, err := os.Stat(p)
		if errors.Is(err, os.ErrNotExist) {
			return 0
		}
		require.NoError(t, err)
		return fi.Size()
	}
	before := size(db)
	require.NoError(t, s.CreateBot(ctx, store.Bot{ID: "acme", Name: "Acme"}))
	state := json.RawMessage(`{"pad":"` + strings.Repeat("x", 2000) + `"}`)
	for b := range 4 {
		rs := make([]store.Run, 500)
		for i := range rs {
			rs[i] = store.Run{ID: fmt.Sprintf("r-%d-%d", b, i), BotID: "acme", FlowID: "f", FlowVersion: 1,
				ContactID: fmt.Sprintf("c-%d-%d", b, i), Channel: "sandbox", Status: store.RunCompleted, State: state}
		}
		_, _, err := s.CreateRuns(ctx, rs)
		require.NoError(t, err)
	}
	require.Eventually(t, func() bool { return size(db) > before+2<<20 }, 10*time.Second, 20*time.Millisecond,
		"the database file grows while the store is open: the WAL was checkpointed")
	require.NoError(t, s.Close())
	require.Zero(t, size(db+"-wal"), "no WAL left after Close")
	s, err = sqlite.Open(ctx, dir)
	require.NoError(t, err)
	defer s.Close()
	r, err := s.GetRun(ctx, "acme", "r-3-499")
	require.NoError(t, err)
	require.JSONEq(t, string(state), string(r.State))
}
