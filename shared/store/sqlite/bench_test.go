package sqlite_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/flowgate/flowgate/shared/store"
	"github.com/flowgate/flowgate/shared/store/sqlite"
	"github.com/flowgate/flowgate/shared/testclock"
)

// Run with:
//
//	go test ./shared/store/sqlite -run '^$' -bench . -benchtime 200000x
//
// Each benchmark measures the store port and then, in the same run and on
// the same schema, a raw-SQL baseline (prepared statements in batched
// transactions), and reports both rates and their ratio.

const benchBatch = 1000

// cpuTime is the process's user+system CPU time. On a shared machine the
// wall-clock rate depends on the neighbours; CPU per operation does not.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// report prints rates and CPU costs of the port and the baseline.
func report(b *testing.B, unit string, n int, port, portCPU, raw time.Duration, rawCPU time.Duration) {
	b.ReportMetric(float64(n)/port.Seconds(), unit+"/s")
	b.ReportMetric(float64(n)/raw.Seconds(), "raw-"+unit+"/s")
	b.ReportMetric(raw.Seconds()/port.Seconds(), "ratio")
	b.ReportMetric(float64(portCPU.Nanoseconds())/float64(n), "cpu-ns/op")
	b.ReportMetric(float64(rawCPU.Nanoseconds())/float64(n), "raw-cpu-ns/op")
}

func benchRun(i int, trigger string) store.Run {
	return store.Run{
		ID: fmt.Sprintf("run-%08d", i), BotID: "bench", TriggerID: trigger, FlowID: "welcome", FlowVersion: 1,
		ContactID: fmt.Sprintf("contact-%08d", i), Channel: "whatsapp", Status: store.RunQueued,
		Data: map[string]any{"name": "Ann", "plan": "pro"}, State: json.RawMessage(`{"pc":0}`),
	}
}

// rawDB opens the store's file with database/sql only: the baseline.
func rawDB(b *testing.B, dir string) *sql.DB {
	b.Helper()
	db, err := sql.Open("sqlite", "file:"+filepath.Join(dir, sqlite.FileName)+
		"?_pragma=busy_timeout(5000)&_pragma=journal_mode(WAL)&_pragma=synchronous(NORMAL)&_txlock=immediate")
	if err != nil {
		b.Fatal(err)
	}
	db.SetMaxOpenConns(1)
	b.Cleanup(func() { db.Close() })
	return db
}

// schemaDB is rawDB on the file of a new store: the store's schema and
// indexes, no rows.
func schemaDB(b *testing.B) *sql.DB {
	b.Helper()
	dir := b.TempDir()
	s, err := sqlite.Open(context.Background(), dir)
	if err != nil {
		b.Fatal(err)
	}
	s.Close()
	return rawDB(b, dir)
}

// rawBatches runs n statements, per transaction, and returns the wall and CPU time.
func rawBatches(b *testing.B, db *sql.DB, q string, n, per int, args func(i int) []any) (time.Duration, time.Duration) {
	b.Helper()
	start, cpu := time.Now(), cpuTime()
	for i := 0; i < n; i += per {
		tx, err := db.Begin()
		if err != nil {
			b.Fatal(err)
		}
		st, err := tx.Prepare(q)
		if err != nil {
			b.Fatal(err)
		}
		for j := i; j < min(i+per, n); j++ {
			if _, err := st.Exec(args(j)...); err != nil {
				b.Fatal(err)
			}
		}
		if err := tx.Commit(); err != nil {
			b.Fatal(err)
		}
	}
	return time.Since(start), cpuTime() - cpu
}

const rawInsert = `INSERT INTO runs (id, bot_id, trigger_id, flow_id, flow_version, contact_id, channel, status, state, data,
	wait_until, error, version, created_at, updated_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)`

// BenchmarkRunInsert: bulk run creation through CreateRuns vs plain
// prepared INSERTs in transactions of the same size.
func BenchmarkRunInsert(b *testing.B) {
	ctx := context.Background()
	s, err := sqlite.Open(ctx, b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	runs := make([]store.Run, b.N)
	for i := range runs {
		runs[i] = benchRun(i, "trigger-port")
	}
	b.ResetTimer()
	cpu := cpuTime()
	for i := 0; i < b.N; i += benchBatch {
		if _, _, err := s.CreateRuns(ctx, runs[i:min(i+benchBatch, b.N)]); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	portCPU := cpuTime() - cpu

	db := schemaDB(b)
	now := time.Now().UnixNano()
	raw, rawCPU := rawBatches(b, db, rawInsert, b.N, benchBatch, func(i int) []any {
		r := runs[i]
		data, _ := json.Marshal(r.Data)
		return []any{r.ID, r.BotID, "trigger-raw", r.FlowID, r.FlowVersion, r.ContactID, r.Channel, r.Status,
			string(r.State), string(data), nil, "", 1, now, now}
	})
	report(b, "runs", b.N, b.Elapsed(), portCPU, raw, rawCPU)
}

// BenchmarkRunStatusUpdate: concurrent UpdateRun calls (each one run, one
// caller waiting for its own result) through the group commit vs plain
// prepared UPDATEs in transactions of 256 from one goroutine.
//
// order=ids: callers take the next run id from a shared counter, so a batch
// updates neighbouring runs, as the baseline does: the ratio is the cost of
// the port. order=owned: caller c owns runs c, c+callers, ...; callers drift
// apart and a batch touches scattered pages (one WAL page per update), the
// pattern of unrelated runs progressing at their own pace.
func BenchmarkRunStatusUpdate(b *testing.B) {
	for _, order := range []string{"ids", "owned"} {
		for _, workers := range []int{64, 512} {
			b.Run(fmt.Sprintf("order=%s/callers=%d", order, workers), func(b *testing.B) {
				benchStatusUpdate(b, workers, order == "owned")
			})
		}
	}
}

func benchStatusUpdate(b *testing.B, workers int, owned bool) {
	ctx := context.Background()
	dir := b.TempDir()
	s, err := sqlite.Open(ctx, dir)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	const nRuns = 20000
	runs := make([]store.Run, nRuns)
	for i := range runs {
		runs[i] = benchRun(i, "trigger")
	}
	for i := 0; i < nRuns; i += benchBatch {
		created, _, err := s.CreateRuns(ctx, runs[i:i+benchBatch])
		if err != nil {
			b.Fatal(err)
		}
		copy(runs[i:], created)
	}
	statuses := []string{store.RunRunning, store.RunWaiting, store.RunRunning, store.RunCompleted}
	b.ResetTimer()
	cpu := cpuTime()
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	versions := make([]atomic.Int64, nRuns)
	for i := range versions {
		versions[i].Store(runs[i].Version)
	}
	var next atomic.Int64
	update := func(i int, status string) error {
		r := runs[i]
		r.Version, r.Status = versions[i].Load(), status
		for {
			u, err := s.UpdateRun(ctx, r)
			if errors.Is(err, store.ErrVersionConflict) {
				// Another caller got to this run first (order=ids, a caller
				// stalled for a whole round): read it again, as a real
				// caller would.
				cur, err := s.GetRun(ctx, r.BotID, r.ID)
				if err != nil {
					return err
				}
				r.Version = cur.Version
				continue
			}
			if err != nil {
				return err
			}
			versions[i].Store(u.Version)
			return nil
		}
	}
	for w := range workers {
		n := b.N / workers
		if w < b.N%workers {
			n++
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := range n {
				i := w + (k*workers)%(nRuns-nRuns%workers) // owned: runs w, w+workers, ...
				if !owned {
					// A run comes round again only after nRuns updates, long
					// after its previous update returned.
					i = int(next.Add(1)-1) % nRuns
				}
				if err := update(i, statuses[k%len(statuses)]); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	b.StopTimer()
	portCPU := cpuTime() - cpu
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}
	db := rawDB(b, dir)
	now := time.Now().UnixNano()
	raw, rawCPU := rawBatches(b, db, `UPDATE runs SET status = ?, version = version + 1, updated_at = ? WHERE id = ?`, b.N, 256,
		func(i int) []any { return []any{statuses[i%len(statuses)], now, runs[i%nRuns].ID} })
	report(b, "updates", b.N, b.Elapsed(), portCPU, raw, rawCPU)
	// A second baseline writes what UpdateRun writes (the whole mutable
	// row), so its ratio isolates the cost of the port itself. Both
	// baselines update runs in id order, as the port's callers roughly do
	// (caller w owns runs w, w+callers, ...), so they touch the same pages.
	data, _ := json.Marshal(runs[0].Data)
	full, _ := rawBatches(b, db, `UPDATE runs SET status = ?, state = ?, data = ?, wait_until = ?, error = ?,
		version = version + 1, updated_at = ? WHERE id = ? AND bot_id = ? AND version = version`, b.N, 256,
		func(i int) []any {
			return []any{statuses[i%len(statuses)], `{"pc":0}`, string(data), nil, "", now, runs[i%nRuns].ID, "bench"}
		})
	b.ReportMetric(float64(b.N)/full.Seconds(), "raw-row-updates/s")
	b.ReportMetric(full.Seconds()/b.Elapsed().Seconds(), "ratio-row")
}

// BenchmarkRunStatusUpdateLoneCaller: one caller updating one run after
// another: the latency of a write when nothing else is going on (the group
// commit must not hold it).
func BenchmarkRunStatusUpdateLoneCaller(b *testing.B) {
	ctx := context.Background()
	s, err := sqlite.Open(ctx, b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	r, _, err := s.CreateRun(ctx, benchRun(0, "trigger"))
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for i := range b.N {
		r.Status = []string{store.RunRunning, store.RunWaiting}[i%2]
		if r, err = s.UpdateRun(ctx, r); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDispatchedRunWrites: the store writes of one dispatched run of
// a one-message flow on the sandbox, as the orchestrator and the sandbox
// worker make them (CreateTrigger, UpsertContacts, CreateRuns,
// InsertMessages, CheckpointTrigger, DeliverSandbox), from 64 concurrent
// callers (the group commit folds them), against the same rows written
// with plain prepared statements in transactions of 64 runs from one
// goroutine: the least SQLite work a run costs here, which bounds what the
// rest of the pipeline may spend (docs/performance.md).
//
//	go test ./shared/store/sqlite -run '^$' -bench DispatchedRunWrites -benchtime 20000x
func BenchmarkDispatchedRunWrites(b *testing.B) {
	ctx := context.Background()
	s := benchStoreWithBot(b)
	spec := json.RawMessage(`{"id":"t","bot_id":"bench","flow_id":"one","audience":{"users":["+15550000000"]},"data":{"name":"Ann"}}`)
	content := json.RawMessage(`{"type":"text","text":"Hi Ann"}`)
	const callers = 64
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, callers)
	b.ResetTimer()
	cpu := cpuTime()
	for range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= b.N {
					return
				}
				if err := portRun(ctx, s, i, spec, content); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	b.StopTimer()
	portCPU := cpuTime() - cpu
	close(errs)
	if err := <-errs; err != nil {
		b.Fatal(err)
	}

	dir := b.TempDir()
	s2, err := sqlite.Open(ctx, dir)
	if err != nil {
		b.Fatal(err)
	}
	s2.Close()
	db := rawDB(b, dir)
	stmts := []string{
		`INSERT INTO triggers (id, bot_id, source, event, flow_id, channel, spec, idempotency_key, status, cursor, version, created_at, updated_at)
			VALUES (?, 'bench', 'dispatch', 'ONE', 'one', 'sandbox', ?, '', 'accepted', '', 1, ?, ?)`,
		`INSERT INTO contacts (id, bot_id, channel, external_id, name, attributes, last_request, created_at, updated_at)
			VALUES (?, 'bench', 'sandbox', ?, 'Ann', '{}', '{"name":"Ann"}', ?, ?)
			ON CONFLICT (bot_id, channel, external_id) DO UPDATE SET last_request = excluded.last_request, updated_at = excluded.updated_at`,
		`INSERT INTO runs (id, bot_id, trigger_id, flow_id, flow_version, contact_id, channel, status, state, data, wait_until, error, version, created_at, updated_at)
			VALUES (?, 'bench', ?, 'one', 1, ?, 'sandbox', 'completed', '{"pc":1}', '{"name":"Ann"}', NULL, '', 1, ?, ?)`,
		`INSERT INTO messages (id, bot_id, run_id, trigger_id, contact_id, channel, to_addr, seq, content, status, provider_message_id, error, created_at, updated_at)
			VALUES (?, 'bench', ?, ?, ?, 'sandbox', ?, 1, ?, 'queued', '', '', ?, ?)`,
		`UPDATE triggers SET status = 'done', cursor = '1', targeted = targeted + 1, runs_created = runs_created + 1,
			version = version + 1, updated_at = ? WHERE id = ? AND bot_id = 'bench' AND version = 1`,
		`INSERT INTO sandbox (message_id, bot_id, run_id, to_addr, content, created_at) VALUES (?, 'bench', ?, ?, ?, ?)
			ON CONFLICT (message_id) DO NOTHING`,
		`UPDATE messages SET status = 'sent', provider_message_id = ?, updated_at = ? WHERE id = ? AND bot_id = 'bench' AND status = 'queued'`,
		`UPDATE triggers SET sent = sent + 1, updated_at = ? WHERE id = ? AND bot_id = 'bench'`,
	}
	start, rawCPU := time.Now(), cpuTime()
	for i := 0; i < b.N; i += callers {
		tx, err := db.Begin()
		if err != nil {
			b.Fatal(err)
		}
		sts := make([]*sql.Stmt, len(stmts))
		for k, q := range stmts {
			if sts[k], err = tx.Prepare(q); err != nil {
				b.Fatal(err)
			}
		}
		for j := i; j < min(i+callers, b.N); j++ {
			now := time.Now().UnixNano()
			tid, cid, rid, to := fmt.Sprintf("raw-t%08d", j), fmt.Sprintf("raw-c%08d", j), fmt.Sprintf("raw-t%08d.c", j), fmt.Sprintf("+1555%07d", j)
			mid := rid + ":1"
			for k, args := range [][]any{
				{tid, string(spec), now, now},
				{cid, to, now, now},
				{rid, tid, cid, now, now},
				{mid, rid, tid, cid, to, string(content), now, now},
				{now, tid},
				{mid, rid, to, string(content), now},
				{"sandbox-" + mid, now, mid},
				{now, tid},
			} {
				if _, err := sts[k].Exec(args...); err != nil {
					b.Fatal(err)
				}
			}
		}
		if err := tx.Commit(); err != nil {
			b.Fatal(err)
		}
	}
	report(b, "runs", b.N, b.Elapsed(), portCPU, time.Since(start), cpuTime()-rawCPU)
}

// portRun makes one dispatched run's store writes through the port.
func portRun(ctx context.Context, s *sqlite.Store, i int, spec, content json.RawMessage) error {
	now := time.Now().UTC()
	tid, to := fmt.Sprintf("t%08d", i), fmt.Sprintf("+1555%07d", i)
	tr, _, err := s.CreateTrigger(ctx, store.Trigger{ID: tid, BotID: "bench", Source: "dispatch", Event: "ONE", FlowID: "one",
		Channel: "sandbox", Spec: spec, Status: store.TriggerAccepted, CreatedAt: now, UpdatedAt: now})
	if err != nil {
		return err
	}
	cs, err := s.UpsertContacts(ctx, []store.ContactUpsert{{BotID: "bench", Channel: "sandbox", ExternalID: to, Name: "Ann",
		LastRequest: map[string]any{"name": "Ann"}, NewID: store.NewContactID(), Now: now}})
	if err != nil {
		return err
	}
	rid := tid + "." + cs[0].ID
	if _, _, err := s.CreateRuns(ctx, []store.Run{{ID: rid, BotID: "bench", TriggerID: tid, FlowID: "one", FlowVersion: 1,
		ContactID: cs[0].ID, Channel: "sandbox", Status: store.RunCompleted, Data: map[string]any{"name": "Ann"},
		State: json.RawMessage(`{"pc":1}`), CreatedAt: now, UpdatedAt: now}}); err != nil {
		return err
	}
	mid := rid + ":1"
	if err := s.InsertMessages(ctx, []store.Message{{ID: mid, BotID: "bench", RunID: rid, TriggerID: tid, ContactID: cs[0].ID,
		Channel: "sandbox", To: to, Seq: 1, Content: content, Status: store.MessageQueued, CreatedAt: now, UpdatedAt: now}}); err != nil {
		return err
	}
	tr.Status, tr.Cursor, tr.UpdatedAt = store.TriggerDone, "1", now
	if _, err := s.CheckpointTrigger(ctx, tr, store.TriggerCounters{Targeted: 1, RunsCreated: 1}); err != nil {
		return err
	}
	return s.DeliverSandbox(ctx, tid, []store.SandboxMessage{{MessageID: mid, BotID: "bench", RunID: rid, To: to, Content: content, CreatedAt: now}})
}

// BenchmarkImportContacts: ImportContacts in batches of benchBatch, of
// contacts that are new (inserted) and then of the same contacts again
// (each merged into the stored one), vs the plain-SQL way of an upsert in
// transactions of the same size: per contact, a SELECT by its key, then an
// INSERT or an UPDATE (prepared statements), which is what the store did
// before its statements took many contacts each.
func BenchmarkImportContacts(b *testing.B) {
	ctx := context.Background()
	at := testclock.Date(2026, 1, 2, 3, 4, 5)
	for _, phase := range []string{"new", "existing"} {
		b.Run(phase, func(b *testing.B) {
			n := b.N
			us := make([]store.ContactUpsert, n)
			for i := range us {
				us[i] = store.ContactUpsert{
					BotID: "bench", Channel: "whatsapp", ExternalID: fmt.Sprintf("+1555%07d", i), NewID: fmt.Sprintf("contact-%08d", i),
					Name: "Ann", Attributes: map[string]any{"plan": "pro"}, Now: at,
				}
			}
			s, err := sqlite.Open(ctx, b.TempDir())
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			importAll := func() {
				for i := 0; i < n; i += benchBatch {
					if _, _, err := s.ImportContacts(ctx, us[i:min(i+benchBatch, n)]); err != nil {
						b.Fatal(err)
					}
				}
			}
			if phase == "existing" {
				importAll()
			}
			b.ResetTimer()
			cpu := cpuTime()
			importAll()
			b.StopTimer()
			portCPU := cpuTime() - cpu

			db := schemaDB(b)
			rawAll := func() (time.Duration, time.Duration) {
				start, cpu := time.Now(), cpuTime()
				for i := 0; i < n; i += benchBatch {
					tx, err := db.Begin()
					if err != nil {
						b.Fatal(err)
					}
					for _, u := range us[i:min(i+benchBatch, n)] {
						var id, attrs string
						err := tx.QueryRow(`SELECT id, attributes FROM contacts WHERE bot_id = ? AND channel = ? AND external_id = ?`,
							u.BotID, u.Channel, u.ExternalID).Scan(&id, &attrs)
						now := u.Now.UnixNano()
						switch {
						case errors.Is(err, sql.ErrNoRows):
							_, err = tx.Exec(`INSERT INTO contacts (id, bot_id, channel, external_id, name, attributes, last_request,
								last_inbound_at, opted_out, unreachable, unreachable_reason, created_at, updated_at)
								VALUES (?,?,?,?,?,?,NULL,NULL,0,0,'',?,?)`, u.NewID, u.BotID, u.Channel, u.ExternalID, u.Name, `{"plan":"pro"}`, now, now)
						case err == nil:
							_, err = tx.Exec(`UPDATE contacts SET name = ?, attributes = ?, updated_at = ? WHERE id = ?`, u.Name, attrs, now, id)
						}
						if err != nil {
							b.Fatal(err)
						}
					}
					if err := tx.Commit(); err != nil {
						b.Fatal(err)
					}
				}
				return time.Since(start), cpuTime() - cpu
			}
			if phase == "existing" {
				rawAll()
			}
			raw, rawCPU := rawAll()
			report(b, "contacts", n, b.Elapsed(), portCPU, raw, rawCPU)
		})
	}
}

// benchStoreWithBot is a new store, closed when b ends, holding bot "bench".
func benchStoreWithBot(b *testing.B) *sqlite.Store {
	b.Helper()
	ctx := context.Background()
	s, err := sqlite.Open(ctx, b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	if err := s.CreateBot(ctx, store.Bot{ID: "bench", Name: "Bench"}); err != nil {
		b.Fatal(err)
	}
	return s
}

// BenchmarkCheckpointTriggers: the checkpoints of dispatched triggers
// (one per run, checkpointBatch per call, as the orchestrator writes a
// trigger batch's) through CheckpointTriggers, vs plain prepared
// version-checked UPDATEs, one per trigger, in transactions of the same
// size.
func BenchmarkCheckpointTriggers(b *testing.B) {
	const checkpointBatch = 24
	ctx := context.Background()
	s := benchStoreWithBot(b)
	trigger := func(i int) store.Trigger {
		return store.Trigger{ID: fmt.Sprintf("t%08d", i), BotID: "bench", Source: "dispatch", Event: "ONE", FlowID: "one",
			Channel: "sandbox", Spec: json.RawMessage(`{"audience":{"users":["+15550000000"]}}`), Status: store.TriggerAccepted}
	}
	cps := make([]store.TriggerCheckpoint, 0, b.N)
	for i := 0; i < b.N; i += 256 {
		ts := make([]store.Trigger, 0, 256)
		for j := i; j < min(i+256, b.N); j++ {
			ts = append(ts, trigger(j))
		}
		created, err := s.CreateTriggers(ctx, ts)
		if err != nil {
			b.Fatal(err)
		}
		for _, c := range created {
			cps = append(cps, store.TriggerCheckpoint{BotID: "bench", ID: c.Trigger.ID, Version: c.Trigger.Version,
				Status: store.TriggerDone, Cursor: `{"after":"1"}`, Delta: store.TriggerCounters{Targeted: 1, RunsCreated: 1}})
		}
	}
	b.ResetTimer()
	cpu := cpuTime()
	for i := 0; i < b.N; i += checkpointBatch {
		errs, err := s.CheckpointTriggers(ctx, cps[i:min(i+checkpointBatch, b.N)])
		if err == nil {
			err = errors.Join(errs...)
		}
		if err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	portCPU := cpuTime() - cpu

	db := schemaDB(b)
	ins, err := db.Prepare(`INSERT INTO triggers (id, bot_id, source, event, flow_id, channel, spec, idempotency_key, status, cursor, version, created_at, updated_at)
		VALUES (?, 'bench', 'dispatch', 'ONE', 'one', 'sandbox', '{}', '', 'accepted', '', 1, 0, 0)`)
	if err != nil {
		b.Fatal(err)
	}
	for i := 0; i < b.N; i++ {
		if _, err := ins.Exec(fmt.Sprintf("t%08d", i)); err != nil {
			b.Fatal(err)
		}
	}
	ins.Close()
	raw, rawCPU := rawBatches(b, db, `UPDATE triggers SET status = 'done', cursor = ?, version = version + 1, updated_at = ?,
		targeted = targeted + 1, runs_created = runs_created + 1 WHERE id = ? AND bot_id = 'bench' AND version = 1`,
		b.N, checkpointBatch, func(i int) []any { return []any{`{"after":"1"}`, time.Now().UnixNano(), fmt.Sprintf("t%08d", i)} })
	report(b, "checkpoints", b.N, b.Elapsed(), portCPU, raw, rawCPU)
}
