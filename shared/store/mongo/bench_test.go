package mongo

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/flowgate/flowgate/shared/store"
)

// Benchmarks against FerretDB measure COMPATIBILITY ONLY: FerretDB v1 on
// SQLite rewrites whole documents and scans collections on updates, and the
// adapter serialises updates on it. They show that the code paths work at
// volume and what the adapter adds over the raw driver on the same server;
// they say nothing about MongoDB throughput.
//
//	go test -run '^$' -bench . -benchtime 2000x ./shared/store/mongo
//
// Each reports runs/s (or updates/s) and the ratio to the raw driver doing
// the same writes on the same server.

const benchChunk = 500

func benchRuns(prefix string, n int) []store.Run {
	rs := make([]store.Run, n)
	for i := range rs {
		rs[i] = store.Run{ID: fmt.Sprintf("%s-%07d", prefix, i), BotID: bot, TriggerID: prefix, FlowID: "f1", FlowVersion: 1,
			ContactID: fmt.Sprintf("c%07d", i), Channel: "whatsapp", Status: store.RunQueued,
			Data: map[string]any{"name": "Ann", "order": 1234.0}}
	}
	return rs
}

// BenchmarkCompatOnlyFerretDBCreateRuns inserts b.N runs through
// CreateRuns in chunks of 500, then the same number of equivalent documents
// with raw InsertMany.
func BenchmarkCompatOnlyFerretDBCreateRuns(b *testing.B) {
	s := openTest(b, sharedFerret(b))
	ctx := context.Background()
	rs := benchRuns("tr", b.N)
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < len(rs); i += benchChunk {
		if _, _, err := s.CreateRuns(ctx, rs[i:min(i+benchChunk, len(rs))]); err != nil {
			b.Fatal(err)
		}
	}
	adapter := time.Since(start)
	b.StopTimer()

	// The baseline writes the same documents into the same collection
	// (same indexes) with the driver alone.
	raw := s.runs
	docs := make([]any, len(rs))
	for i, r := range benchRuns("raw", b.N) {
		docs[i] = bson.D{{Key: "_id", Value: r.ID}, {Key: "bot_id", Value: r.BotID}, {Key: "trigger_id", Value: r.TriggerID},
			{Key: "flow_id", Value: r.FlowID}, {Key: "flow_version", Value: r.FlowVersion}, {Key: "contact_id", Value: r.ContactID},
			{Key: "channel", Value: r.Channel}, {Key: "status", Value: r.Status}, {Key: "data", Value: `{"name":"Ann","order":1234}`},
			{Key: "error", Value: ""}, {Key: "version", Value: int64(1)}, {Key: "created_at", Value: time.Now()},
			{Key: "updated_at", Value: time.Now()}, {Key: "run_key", Value: "t:" + r.TriggerID}}
	}
	start = time.Now()
	for i := 0; i < len(docs); i += benchChunk {
		if _, err := raw.InsertMany(ctx, docs[i:min(i+benchChunk, len(docs))], options.InsertMany().SetOrdered(false)); err != nil {
			b.Fatal(err)
		}
	}
	baseline := time.Since(start)
	report(b, "runs", adapter, baseline)
}

// BenchmarkCompatOnlyFerretDBUpdateRun updates run statuses from 64
// goroutines through the group commit, b.N updates over a set of 500 runs,
// then the same number of raw versioned updates in bulks of 256.
func BenchmarkCompatOnlyFerretDBUpdateRun(b *testing.B) {
	s := openTest(b, sharedFerret(b))
	ctx := context.Background()
	rs := benchRuns("tu", benchChunk)
	created, _, err := s.CreateRuns(ctx, rs)
	if err != nil {
		b.Fatal(err)
	}
	const workers = 64
	var next atomic.Int64
	var wg sync.WaitGroup
	batches0, ops0 := s.runWriter.batches.Load(), s.runWriter.ops.Load()
	b.ResetTimer()
	start := time.Now()
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Worker w owns runs w, w+64, …: no two workers race for a run.
			var mine []store.Run
			for i := w; i < len(created); i += workers {
				mine = append(mine, created[i])
			}
			for k := 0; next.Add(1) <= int64(b.N); k++ {
				r := &mine[k%len(mine)]
				r.Status = []string{store.RunRunning, store.RunWaiting}[k%2]
				u, err := s.UpdateRun(ctx, *r)
				if err != nil {
					b.Error(err)
					return
				}
				*r = u
			}
		}()
	}
	wg.Wait()
	adapter := time.Since(start)
	b.StopTimer()
	if n := s.runWriter.batches.Load() - batches0; n > 0 {
		b.ReportMetric(float64(s.runWriter.ops.Load()-ops0)/float64(n), "ops/batch")
	}

	// The baseline makes the same versioned updates of the same runs with
	// the driver alone, in bulks of ferretBulkLimit.
	versions := make(map[string]int64, len(created))
	for _, r := range created {
		got, err := s.GetRun(ctx, bot, r.ID)
		if err != nil {
			b.Fatal(err)
		}
		versions[r.ID] = got.Version
	}
	raw := s.runs
	start = time.Now()
	for done := 0; done < b.N; {
		n := min(ferretBulkLimit, b.N-done) // more deadlocks FerretDB v1
		models := make([]mongo.WriteModel, n)
		for j := range n {
			id := created[(done+j)%len(created)].ID
			v := versions[id]
			versions[id] = v + 1
			models[j] = mongo.NewUpdateOneModel().
				SetFilter(bson.D{{Key: "_id", Value: id}, {Key: "bot_id", Value: bot}, {Key: "version", Value: v}}).
				SetUpdate(bson.D{{Key: "$set", Value: bson.D{{Key: "status", Value: store.RunRunning}, {Key: "error", Value: ""},
					{Key: "version", Value: v + 1}, {Key: "updated_at", Value: time.Now()}, {Key: "data", Value: `{"name":"Ann","order":1234}`}}}})
		}
		res, err := raw.BulkWrite(ctx, models, options.BulkWrite().SetOrdered(false))
		if err != nil {
			b.Fatal(err)
		}
		if res.MatchedCount != int64(n) {
			b.Fatalf("raw bulk matched %d of %d", res.MatchedCount, n)
		}
		done += n
	}
	baseline := time.Since(start)
	report(b, "updates", adapter, baseline)
}

func report(b *testing.B, what string, adapter, baseline time.Duration) {
	b.ReportMetric(float64(b.N)/adapter.Seconds(), what+"/s")
	b.ReportMetric(float64(b.N)/baseline.Seconds(), "raw-"+what+"/s")
	b.ReportMetric(baseline.Seconds()/adapter.Seconds(), "ratio-to-raw")
}
