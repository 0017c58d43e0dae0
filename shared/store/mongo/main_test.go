package mongo

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/flowgate/flowgate/shared/store/mongo/ferret"
)

// One FerretDB server serves the whole test binary: starting one per test
// would dominate the run time. Every store gets a database of its own.
var (
	ferretOnce sync.Once
	ferretURI  string
	ferretErr  error
	ferretStop func()
	dbSeq      atomic.Int64
)

// quiet keeps the stores' info logs (e.g. "no TTL indexes") out of test output.
var quiet = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))

func TestMain(m *testing.M) {
	if os.Getenv(crashChildEnv) != "" {
		crashChild() // the child process of TestKilledClientLosesNoAcknowledgedWrite
		return
	}
	code := m.Run()
	if ferretStop != nil {
		ferretStop()
	}
	os.Exit(code)
}

// sharedFerret starts the shared FerretDB server on first use.
func sharedFerret(t testing.TB) string {
	t.Helper()
	ferretOnce.Do(func() {
		dir, err := os.MkdirTemp("", "flowgate-ferret-")
		if err != nil {
			ferretErr = err
			return
		}
		var stop func()
		ferretURI, stop, ferretErr = ferret.Start(context.Background(), dir)
		ferretStop = func() {
			if stop != nil {
				stop()
			}
			os.RemoveAll(dir)
		}
	})
	if ferretErr != nil {
		t.Fatalf("start FerretDB: %v", ferretErr)
	}
	return ferretURI
}

// openTest opens a store on a fresh database at uri, closed at the end of t.
func openTest(t testing.TB, uri string, opts ...Option) *Store {
	t.Helper()
	db := fmt.Sprintf("flowgate_test_%d_%d", time.Now().UnixNano()%1e9, dbSeq.Add(1))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	// FerretDB runs inside this test binary, so under -race, on a CI
	// machine running every package at once, a bulk write of a few hundred
	// contacts has taken over the adapter's default 30 s per operation (the
	// 150-contact ImportContacts of UpsertContactsInBulk, 2026-12-07). The
	// tests give each operation more time; a caller's own WithTimeout wins.
	s, err := Open(ctx, uri, db, append([]Option{WithLogger(quiet), WithTimeout(3 * time.Minute)}, opts...)...)
	if err != nil {
		t.Fatalf("open %s: %v", db, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		_ = s.db.Drop(ctx)
		_ = s.Close()
	})
	return s
}
