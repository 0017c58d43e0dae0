package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
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

// An all-or-nothing write of a few rows joins the batch in a savepoint: it
// shares the commit with the writes around it, and when it fails half way
// only its own rows are rolled back. A bulk one runs in a transaction of its
// own.
func TestDoAllSharesTheBatchAndRollsBackAlone(t *testing.T) {
	ctx := context.Background()
	s, err := Open(ctx, t.TempDir())
	require.NoError(t, err)
	defer s.Close()
	insert := func(tx *wtx, id string) error {
		_, err := tx.exec(`INSERT INTO bots (id, name, created_at, updated_at) VALUES (?, 'x', 0, 0)`, id)
		return err
	}
	commits0 := s.w.commits.Load()
	// Hold the writer so that the 40 writes queue up behind it, as
	// concurrent dispatches do under load.
	hold := make(chan error, 1)
	go func() {
		hold <- s.w.do(ctx, false, func(*wtx) error { time.Sleep(200 * time.Millisecond); return nil })
	}()
	time.Sleep(50 * time.Millisecond)
	var wg sync.WaitGroup
	errs := make([]error, 40)
	for i := range 40 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = s.w.doAll(ctx, 2, func(tx *wtx) error {
				if err := insert(tx, fmt.Sprintf("a%d", i)); err != nil {
					return err
				}
				if i%4 == 0 {
					return fmt.Errorf("fails after its first row")
				}
				return insert(tx, fmt.Sprintf("b%d", i))
			})
		}()
	}
	wg.Wait()
	require.NoError(t, <-hold)
	require.Less(t, s.w.commits.Load()-commits0, int64(10), "the writes shared commits (solo, each of the 30 that succeed would be one)")
	for i := range 40 {
		_, errA := s.GetBot(ctx, fmt.Sprintf("a%d", i))
		_, errB := s.GetBot(ctx, fmt.Sprintf("b%d", i))
		if i%4 == 0 {
			require.Error(t, errs[i])
			require.ErrorIs(t, errA, store.ErrNotFound, "write %d failed: its first row is rolled back", i)
			require.ErrorIs(t, errB, store.ErrNotFound)
		} else {
			require.NoError(t, errs[i])
			require.NoError(t, errA, "write %d", i)
			require.NoError(t, errB, "write %d", i)
		}
	}
	// A bulk write fails whole, too.
	err = s.w.doAll(ctx, sharedMaxRows+1, func(tx *wtx) error {
		if err := insert(tx, "bulk"); err != nil {
			return err
		}
		return fmt.Errorf("bulk fails")
	})
	require.Error(t, err)
	_, err = s.GetBot(ctx, "bulk")
	require.ErrorIs(t, err, store.ErrNotFound)
}

// The write-lock metrics: a writer that waits for a lock another
// connection holds (as another process sharing the directory would) counts
// the wait, and counts what it then holds itself.
func TestWriteLockWaitAndHoldAreCounted(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s, err := Open(ctx, dir)
	require.NoError(t, err)
	defer s.Close()
	other, err := sql.Open("sqlite", "file:"+filepath.Join(dir, FileName)+"?_pragma=busy_timeout(5000)")
	require.NoError(t, err)
	defer other.Close()
	conn, err := other.Conn(ctx)
	require.NoError(t, err)
	defer conn.Close()

	waited, held, txs := testutil.ToFloat64(lockWaitSeconds), testutil.ToFloat64(lockHeldSeconds), testutil.ToFloat64(writeTransactions)
	_, err = conn.ExecContext(ctx, "BEGIN IMMEDIATE")
	require.NoError(t, err)
	const hold = 300 * time.Millisecond
	released := make(chan struct{})
	go func() {
		time.Sleep(hold)
		_, _ = conn.ExecContext(ctx, "COMMIT")
		close(released)
	}()
	require.NoError(t, s.PingWrite(ctx)) // waits for the other connection
	<-released
	require.GreaterOrEqual(t, testutil.ToFloat64(lockWaitSeconds)-waited, (hold - 50*time.Millisecond).Seconds(), "the wait for the other connection's lock is counted")
	require.Equal(t, 1.0, testutil.ToFloat64(writeTransactions)-txs)
	heldNow := testutil.ToFloat64(lockHeldSeconds) - held
	require.Greater(t, heldNow, 0.0)
	require.Less(t, heldNow, hold.Seconds(), "the other connection's hold is not counted as this writer's")

	// A hold of this writer: a write that takes its time inside the
	// transaction (the operation runs under the lock).
	held = testutil.ToFloat64(lockHeldSeconds)
	require.NoError(t, s.w.do(ctx, true, func(t *wtx) error { time.Sleep(100 * time.Millisecond); return nil }))
	require.GreaterOrEqual(t, testutil.ToFloat64(lockHeldSeconds)-held, 0.1)
}

// The group commit's linger under the write lock: writes that arrive a
// little apart (within the gap) share a transaction either way; a writer
// alone with its directory waits for them holding the lock, which
// flowgate_sqlite_write_lock_idle_seconds_total counts, and a shared
// writer (WithShared) gathers them before it takes the lock, so another
// connection never waits on an idle writer.
func TestSharedWriterGathersBeforeTheLock(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name   string
		opts   []Option
		shared bool
	}{
		{"alone", nil, false},
		{"shared", []Option{WithShared()}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// A long linger (gap 10 ms) against writes 2 ms apart.
			s, err := Open(ctx, t.TempDir(), append(tc.opts, WithGroupCommit(80*time.Millisecond, 256))...)
			require.NoError(t, err)
			defer s.Close()
			require.Equal(t, tc.shared, s.w.shared)
			// The writer lingers only for a batch smaller than the last.
			var wg sync.WaitGroup
			write := func(i int) {
				defer wg.Done()
				require.NoError(t, s.w.do(ctx, false, func(t *wtx) error {
					_, err := t.exec(`INSERT INTO bots (id, name, created_at, updated_at) VALUES (?, 'b', 0, 0)`, fmt.Sprintf("%s-%d", tc.name, i))
					return err
				}))
			}
			// Three writes queued behind a slow one commit together.
			slow := make(chan error, 1)
			go func() {
				slow <- s.w.do(ctx, true, func(*wtx) error { time.Sleep(30 * time.Millisecond); return nil })
			}()
			time.Sleep(5 * time.Millisecond)
			wg.Add(3)
			for i := range 3 {
				go write(100 + i)
			}
			wg.Wait()
			require.NoError(t, <-slow)
			require.Equal(t, 3, s.w.lastBatch)
			idle, commits := testutil.ToFloat64(lockIdleSeconds), s.w.commits.Load()
			for round := range 5 {
				wg.Add(2)
				go write(2 * round)
				time.Sleep(2 * time.Millisecond)
				go write(2*round + 1)
				wg.Wait()
			}
			idleNow := testutil.ToFloat64(lockIdleSeconds) - idle
			n := s.w.commits.Load() - commits
			t.Logf("10 writes in %d transactions; lock held idle %.1f ms", n, idleNow*1000)
			require.Less(t, n, int64(10), "writes 2 ms apart share transactions")
			if tc.shared {
				require.Zero(t, idleNow, "a shared writer never holds the lock idle")
			} else {
				require.Greater(t, idleNow, 0.001, "the linger under the lock is counted")
			}
			var bots int
			require.NoError(t, s.rdb.QueryRowContext(ctx, `SELECT COUNT(*) FROM bots WHERE id LIKE ?`, tc.name+"-%").Scan(&bots))
			require.Equal(t, 13, bots)
		})
	}
}

// The writer's page cache: 32,000 KiB by default, what WithWriterCache
// says otherwise; too small a cache is refused.
func TestWriterCacheSize(t *testing.T) {
	ctx := context.Background()
	cacheOf := func(s *Store) int {
		var v int
		require.NoError(t, s.w.conn.QueryRowContext(ctx, "PRAGMA cache_size").Scan(&v))
		return v
	}
	s, err := Open(ctx, t.TempDir())
	require.NoError(t, err)
	require.Equal(t, -32000, cacheOf(s))
	require.NoError(t, s.Close())

	s, err = Open(ctx, t.TempDir(), WithShared())
	require.NoError(t, err)
	defer s.Close()
	require.Equal(t, -SharedWriterCacheKiB, cacheOf(s))
	require.NoError(t, s.PingWrite(ctx))

	_, err = Open(ctx, t.TempDir(), WithWriterCache(10))
	require.ErrorContains(t, err, "WithWriterCache(10)")
}

// A writer, shared or not, answers every write when solo writes (bulk
// ones) queue behind a shared one: the shared writer used to lose the
// first solo write it met while gathering its batch (it kept it aside,
// then took the next write from the queue to run after the batch and kept
// that solo one aside in its place), and its caller waited for ever.
func TestWriterAnswersSoloWritesQueuedBehindABatch(t *testing.T) {
	ctx := context.Background()
	inEachWriterMode(t, func(t *testing.T, s *Store) {
		// A solo write holds the writer while the others queue, in
		// order: a shared write, then two solo writes.
		started, release := make(chan struct{}), make(chan struct{})
		results := make(chan error, 4)
		go func() {
			results <- s.w.do(ctx, true, func(*wtx) error { close(started); <-release; return nil })
		}()
		queue := func(solo bool, n int) {
			go func() {
				results <- s.w.do(ctx, solo, func(t *wtx) error {
					return insertBot(t, fmt.Sprintf("b-%d", n))
				})
			}()
			require.Eventually(t, func() bool { return len(s.w.ops) == n }, 5*time.Second, time.Millisecond, "write %d queued", n)
		}
		<-started // the writer runs the first write: the others queue
		queue(false, 1)
		queue(true, 2)
		queue(true, 3)
		close(release)
		for i := range 4 {
			select {
			case err := <-results:
				require.NoError(t, err)
			case <-time.After(10 * time.Second):
				t.Fatalf("%d of 4 writes answered; the others were lost", i)
			}
		}
		var n int
		require.NoError(t, s.rdb.QueryRowContext(ctx, `SELECT count(*) FROM bots WHERE id LIKE 'b-%'`).Scan(&n))
		require.Equal(t, 3, n)
	})
}

// Under writes of every kind from many callers at once (shared ones,
// savepointed ones, solo ones), a writer, shared or not, answers each
// write once and stores each one that succeeded.
func TestWriterAnswersEveryWriteUnderMixedLoad(t *testing.T) {
	ctx := context.Background()
	inEachWriterMode(t, func(t *testing.T, s *Store) {
		const callers, writes = 8, 150
		done := make(chan error, callers*writes)
		var wg sync.WaitGroup
		for c := range callers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range writes {
					id := fmt.Sprintf("m-%d-%d", c, i)
					insert := func(t *wtx) error { return insertBot(t, id) }
					var err error
					switch (c + i) % 3 {
					case 0:
						err = s.w.do(ctx, false, insert)
					case 1:
						err = s.w.doAll(ctx, 1, insert)
					default:
						err = s.w.doAll(ctx, sharedMaxRows+1, insert) // solo
					}
					done <- err
				}
			}()
		}
		finished := make(chan struct{})
		go func() { wg.Wait(); close(finished) }()
		select {
		case <-finished:
		case <-time.After(60 * time.Second):
			t.Fatalf("%d of %d writes answered; the others were lost", len(done), callers*writes)
		}
		close(done)
		for err := range done {
			require.NoError(t, err)
		}
		var n int
		require.NoError(t, s.rdb.QueryRowContext(ctx, `SELECT count(*) FROM bots WHERE id LIKE 'm-%'`).Scan(&n))
		require.Equal(t, callers*writes, n)
	})
}

// inEachWriterMode runs f on a store of its own whose writer is alone
// with its data directory, then on one whose writer is shared (WithShared).
func inEachWriterMode(t *testing.T, f func(t *testing.T, s *Store)) {
	for _, tc := range []struct {
		name string
		opts []Option
	}{
		{"alone", nil},
		{"shared", []Option{WithShared()}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := Open(context.Background(), t.TempDir(), tc.opts...)
			require.NoError(t, err)
			defer s.Close()
			f(t, s)
		})
	}
}

// insertBot writes a bot row with the given id (a write for the writer
// tests).
func insertBot(t *wtx, id string) error {
	_, err := t.exec(`INSERT INTO bots (id, name, created_at, updated_at) VALUES (?, 'b', 0, 0)`, id)
	return err
}
