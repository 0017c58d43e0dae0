package mongo_test

import (
	"os"
	"testing"
	"time"

	"github.com/flowgate/flowgate/shared/store"
	"github.com/flowgate/flowgate/shared/store/mongo"
	"github.com/flowgate/flowgate/shared/store/storetest"
)

// features are what the Mongo adapter declares to the contract suite: BSON
// dates keep milliseconds, and bulk writes are not transactions.
var features = storetest.Features{TimePrecision: time.Millisecond, AtomicBulk: false}

// TestContractFerretDB runs the contract suite against FerretDB v1 embedded
// in the test process (SQLite handler, temporary directory). Its bulk cases
// are sized by the adapter's commands to FerretDB (FerretBulkLimit updates
// each): FerretDB scans the collection for every update, and the default
// sizes made UpsertContactsInBulk alone take 94 s under -race.
func TestContractFerretDB(t *testing.T) {
	uri := mongo.SharedFerret(t)
	feats := features
	feats.BulkChunk = mongo.FerretBulkLimit
	storetest.Run(t, func(t *testing.T) store.Store { return mongo.OpenTest(t, uri) }, feats)
}

// TestContractMongoDB runs the suite against a real MongoDB when
// FLOWGATE_TEST_MONGODB_URI is set (a replica set, e.g.
// mongodb://localhost:27017/?replicaSet=rs0). Each store uses a database of
// its own named flowgate_test_*.
func TestContractMongoDB(t *testing.T) {
	uri := os.Getenv("FLOWGATE_TEST_MONGODB_URI")
	if uri == "" {
		t.Log("real-MongoDB leg NOT CONFIGURED: set FLOWGATE_TEST_MONGODB_URI to run the contract suite against MongoDB; only FerretDB was tested")
		return
	}
	storetest.Run(t, func(t *testing.T) store.Store { return mongo.OpenTest(t, uri) }, features)
}
