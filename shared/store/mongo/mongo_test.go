package mongo_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/flowgate/flowgate/shared/store"
	"github.com/flowgate/flowgate/shared/store/mongo"
	"github.com/flowgate/flowgate/shared/store/mongo/ferret"
	"github.com/flowgate/flowgate/shared/store/storetest"
)

// quiet keeps the stores' info logs (e.g. "no TTL indexes") out of test output.
var quiet = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))

// features are what the Mongo adapter declares to the contract suite: BSON
// dates keep milliseconds, and bulk writes are not transactions.
var features = storetest.Features{TimePrecision: time.Millisecond, AtomicBulk: false}

// One FerretDB server serves the whole test binary: starting one per test
// would dominate the run time.
var (
	ferretOnce sync.Once
	ferretURI  string
	ferretErr  error
	ferretStop func()
	dbSeq      atomic.Int64
)

func TestMain(m *testing.M) {
	code := m.Run()
	if ferretStop != nil {
		ferretStop()
	}
	os.Exit(code)
}

// ferretURIFor starts the shared FerretDB server on first use.
func ferretURIFor(t testing.TB) string {
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

// openAt opens a store on a database of its own, closed at the end of t.
func openAt(t testing.TB, uri string, opts ...mongo.Option) *mongo.Store {
	t.Helper()
	db := fmt.Sprintf("flowgate_test_%d_%d", time.Now().UnixNano()%1e9, dbSeq.Add(1))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	opts = append([]mongo.Option{mongo.WithLogger(quiet)}, opts...)
	s, err := mongo.Open(ctx, uri, db, opts...)
	if err != nil {
		t.Fatalf("open %s: %v", db, err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func TestContractFerretDB(t *testing.T) {
	uri := ferretURIFor(t)
	storetest.Run(t, func(t *testing.T) store.Store { return openAt(t, uri) }, features)
}

// TestContractMongoDB runs the suite against a real MongoDB when
// FLOWGATE_TEST_MONGODB_URI is set (a replica set, e.g.
// mongodb://localhost:27017/?replicaSet=rs0).
func TestContractMongoDB(t *testing.T) {
	uri := os.Getenv("FLOWGATE_TEST_MONGODB_URI")
	if uri == "" {
		t.Log("real-MongoDB leg NOT CONFIGURED: set FLOWGATE_TEST_MONGODB_URI to run the contract suite against MongoDB; only FerretDB was tested")
		return
	}
	storetest.Run(t, func(t *testing.T) store.Store { return openAt(t, uri) }, features)
}
