package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"time"

	"github.com/flowgate/flowgate/shared/store"

	_ "modernc.org/sqlite" // registers the "sqlite" driver (pure Go, static binary)
)

// FileName is the database file created inside the data directory.
const FileName = "flowgate.db"

// Store is the SQLite implementation of store.Store.
type Store struct {
	path string
	rdb  *sql.DB // readers (WAL lets them run beside the writer)
	wdb  *sql.DB // one connection, owned by w
	cdb  *sql.DB // one connection, for checkpoints
	// rstmts caches the reads' prepared statements (query text → *sql.Stmt):
	// parsing SQL was several per cent of a busy process's CPU.
	rstmts sync.Map
	w      *writer
	opts   options

	stopRetention   context.CancelFunc
	retentionDone   chan struct{}
	stopCheckpoints context.CancelFunc
	checkpointsDone chan struct{}
	closeOnce       sync.Once
	closeErr        error
}

var _ store.Store = (*Store)(nil)

// Option configures Open.
type Option func(*options) error

type options struct {
	maxWait      time.Duration
	maxOps       int
	retention    time.Duration
	retainEvery  time.Duration
	synchronous  string
	readConns    int
	logger       *slog.Logger
	busyTimeout  time.Duration
	expireChunk  int
	writeBacklog int
	writerCache  int // KiB
	shared       bool
}

func (o *options) setDefaults() {
	o.maxWait = 2 * time.Millisecond
	o.maxOps = 256
	o.synchronous = "NORMAL"
	o.readConns = max(4, runtime.GOMAXPROCS(0))
	o.logger = slog.Default()
	o.busyTimeout = 5 * time.Second
	o.expireChunk = 5000
	o.writerCache = 32000
}

// SharedWriterCacheKiB is the writer's page cache for a process that
// shares its data directory with other Flowgate processes (the services
// run apart, as `flowgate ingress`, `orchestrator` and `channel` do).
// Whenever another process has written, SQLite empties a connection's page
// cache before its next transaction, under the write lock: the pages the
// writer had loaded are freed, and with a large cache they were freed back
// to the kernel (madvise, TLB shootdowns on every core). A cache this size
// stays within what the allocator keeps for reuse. Measured on the
// two-core machine (docs/performance.md, 2026-12-06): the deployed
// pipeline's drain 3,038–3,389 runs/s against 2,357–2,398 with 32 MB,
// 263–290 µs of write lock per run against 373–384.
const SharedWriterCacheKiB = 1000

// WithWriterCache sets the page cache of the writer connection, in KiB
// (PRAGMA cache_size; default 32,000: a process alone with its data
// directory, as `flowgate dev`, keeps its hot pages). A process sharing
// the directory with others should use SharedWriterCacheKiB.
func WithWriterCache(kib int) Option {
	return func(o *options) error {
		if kib < 100 {
			return fmt.Errorf("sqlite: WithWriterCache(%d): want at least 100 KiB", kib)
		}
		o.writerCache = kib
		return nil
	}
}

// WithShared says that other processes write to the data directory too
// (the services run apart, as `flowgate ingress`, `orchestrator` and
// `channel` do): the writer keeps a page cache of SharedWriterCacheKiB
// (a later WithWriterCache overrides it), and its group commit gathers
// each batch before it takes SQLite's write lock, so that it never holds
// the lock while it waits for more writes (the other processes wait for
// the lock meanwhile; see flowgate_sqlite_write_lock_idle_seconds_total).
func WithShared() Option {
	return func(o *options) error {
		o.shared = true
		o.writerCache = SharedWriterCacheKiB
		return nil
	}
}

// WithGroupCommit sets how small writes (run and message status changes,
// counters, single creates) are batched: one transaction holds at most
// maxOps operations and stays open at most about maxWait after its first
// one. Within that, the writer takes whatever is queued and waits briefly
// (maxWait/8) for more only while the batch is smaller than the previous
// one. Defaults: 2ms, 256. maxWait 0 never waits.
func WithGroupCommit(maxWait time.Duration, maxOps int) Option {
	return func(o *options) error {
		if maxWait < 0 || maxOps < 1 {
			return fmt.Errorf("sqlite: WithGroupCommit(%v, %d): need maxWait >= 0 and maxOps >= 1", maxWait, maxOps)
		}
		o.maxWait, o.maxOps = maxWait, maxOps
		return nil
	}
}

// WithRetention deletes runs in a final status (and their messages) once they
// have not changed for d. A goroutine runs ExpireBefore every d/4 (between
// 10ms and 1h) until Close.
func WithRetention(d time.Duration) Option {
	return func(o *options) error {
		if d <= 0 {
			return fmt.Errorf("sqlite: WithRetention(%v): must be positive", d)
		}
		o.retention = d
		o.retainEvery = min(max(d/4, 10*time.Millisecond), time.Hour)
		return nil
	}
}

// WithSynchronous sets PRAGMA synchronous: "NORMAL" (default; in WAL mode a
// killed process loses no committed transaction, a power loss may lose the
// last ones) or "FULL" (fsync on every commit).
func WithSynchronous(mode string) Option {
	return func(o *options) error {
		switch mode {
		case "NORMAL", "FULL", "EXTRA":
			o.synchronous = mode
			return nil
		}
		return fmt.Errorf("sqlite: WithSynchronous(%q): want NORMAL, FULL or EXTRA", mode)
	}
}

// WithLogger sets the logger for background work (retention).
func WithLogger(l *slog.Logger) Option {
	return func(o *options) error {
		if l == nil {
			return errors.New("sqlite: WithLogger(nil)")
		}
		o.logger = l
		return nil
	}
}

// Open opens (creating if needed) the store in dir/flowgate.db and migrates
// its schema. Opening an existing store is harmless.
func Open(ctx context.Context, dir string, opts ...Option) (*Store, error) {
	var o options
	o.setDefaults()
	for _, opt := range opts {
		if err := opt(&o); err != nil {
			return nil, err
		}
	}
	if dir == "" {
		return nil, errors.New("sqlite: Open: empty data directory")
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("sqlite: create data directory: %w", err)
	}
	path := filepath.Join(dir, FileName)
	dsn := func(extra ...string) string {
		q := url.Values{}
		q.Add("_pragma", fmt.Sprintf("busy_timeout(%d)", o.busyTimeout.Milliseconds()))
		q.Add("_pragma", "journal_mode(WAL)")
		q.Add("_pragma", "synchronous("+o.synchronous+")")
		q.Add("_pragma", "foreign_keys(OFF)")
		for _, e := range extra {
			q.Add("_pragma", e)
		}
		return "file:" + (&url.URL{Path: path}).EscapedPath() + "?" + q.Encode()
	}
	// The writer's transactions begin IMMEDIATE: they take the write lock
	// at BEGIN, waiting busy_timeout for it. A deferred transaction that
	// reads first and then writes cannot wait for a lock upgrade — SQLite
	// answers SQLITE_BUSY at once — which made processes sharing a data
	// directory fail at start ("database is locked" during the schema set-up).
	// The writer does not checkpoint (wal_autocheckpoint 0): copying the
	// WAL back into the database was half of its commit time under load.
	// A checkpointer on its own connection does it beside the writer.
	wdb, err := sql.Open("sqlite", dsn(fmt.Sprintf("cache_size(-%d)", o.writerCache), "temp_store(MEMORY)", "wal_autocheckpoint(0)")+"&_txlock=immediate")
	if err != nil {
		return nil, fmt.Errorf("sqlite: open %s: %w", path, err)
	}
	wdb.SetMaxOpenConns(1)
	wdb.SetMaxIdleConns(1)
	wdb.SetConnMaxLifetime(0)
	wdb.SetConnMaxIdleTime(0)
	if err := migrate(ctx, wdb); err != nil {
		wdb.Close()
		return nil, err
	}
	rdb, err := sql.Open("sqlite", dsn("query_only(1)"))
	if err != nil {
		wdb.Close()
		return nil, fmt.Errorf("sqlite: open %s: %w", path, err)
	}
	rdb.SetMaxOpenConns(o.readConns)
	rdb.SetMaxIdleConns(o.readConns)
	rdb.SetConnMaxIdleTime(0)
	w, err := newWriter(ctx, wdb, o.maxWait, o.maxOps, o.shared)
	if err != nil {
		rdb.Close()
		wdb.Close()
		return nil, err
	}
	cdb, err := sql.Open("sqlite", dsn())
	if err != nil {
		w.close()
		rdb.Close()
		wdb.Close()
		return nil, fmt.Errorf("sqlite: open %s: %w", path, err)
	}
	cdb.SetMaxOpenConns(1)
	cdb.SetMaxIdleConns(1)
	cdb.SetConnMaxIdleTime(0)
	s := &Store{path: path, rdb: rdb, wdb: wdb, cdb: cdb, w: w, opts: o}
	cctx, stopCheckpoints := context.WithCancel(context.Background())
	s.stopCheckpoints = stopCheckpoints
	s.checkpointsDone = make(chan struct{})
	go s.checkpoints(cctx)
	if o.retention > 0 {
		rctx, cancel := context.WithCancel(context.Background())
		s.stopRetention = cancel
		s.retentionDone = make(chan struct{})
		go s.retain(rctx)
	}
	return s, nil
}

// Path is the database file.
func (s *Store) Path() string { return s.path }

// Ping reports whether the database answers.
func (s *Store) Ping(ctx context.Context) error {
	var one int
	if err := s.rdb.QueryRowContext(ctx, "SELECT 1").Scan(&one); err != nil {
		return fmt.Errorf("%w: %v", store.ErrUnavailable, err)
	}
	return nil
}

// Close stops retention, commits queued writes and closes the database.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		if s.stopRetention != nil {
			s.stopRetention()
			<-s.retentionDone
		}
		err := s.w.close()
		s.stopCheckpoints()
		<-s.checkpointsDone
		s.rstmts.Range(func(_, st any) bool { st.(*sql.Stmt).Close(); return true })
		err = errors.Join(err, s.cdb.Close(), s.rdb.Close(), s.wdb.Close())
		s.closeErr = err
	})
	return s.closeErr
}

// rstmt returns the prepared statement of a read, preparing it on first use.
// Only constant query texts come here (the cache never shrinks).
func (s *Store) rstmt(ctx context.Context, q string) (*sql.Stmt, error) {
	if st, ok := s.rstmts.Load(q); ok {
		return st.(*sql.Stmt), nil
	}
	st, err := s.rdb.PrepareContext(ctx, q)
	if err != nil {
		return nil, err
	}
	if prev, loaded := s.rstmts.LoadOrStore(q, st); loaded {
		st.Close()
		return prev.(*sql.Stmt), nil
	}
	return st, nil
}

// qrow runs a single-row read through its prepared statement.
func (s *Store) qrow(ctx context.Context, q string, args ...any) *sql.Row {
	st, err := s.rstmt(ctx, q)
	if err != nil {
		return s.rdb.QueryRowContext(ctx, q, args...) // surfaces the error through Scan
	}
	return st.QueryRowContext(ctx, args...)
}

// qrows runs a read through its prepared statement.
func (s *Store) qrows(ctx context.Context, q string, args ...any) (*sql.Rows, error) {
	st, err := s.rstmt(ctx, q)
	if err != nil {
		return nil, err
	}
	return st.QueryContext(ctx, args...)
}

// Checkpoint pacing: a passive checkpoint every checkpointEvery; when the
// WAL still holds more than checkpointRestartFrames pages after one
// (readers kept it from finishing), a RESTART checkpoint, which waits for
// them, keeps the file from growing without bound.
const (
	checkpointEvery         = 100 * time.Millisecond
	checkpointRestartFrames = 64 * 1024 // 256 MiB of 4 KiB pages
)

// checkpoints copies the WAL back into the database beside the writer
// until ctx ends. Closing the store's last connection checkpoints the rest.
func (s *Store) checkpoints(ctx context.Context) {
	defer close(s.checkpointsDone)
	t := time.NewTicker(checkpointEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		var busy, logFrames, done int
		err := s.cdb.QueryRowContext(ctx, "PRAGMA wal_checkpoint(PASSIVE)").Scan(&busy, &logFrames, &done)
		if err != nil {
			continue // the next tick tries again
		}
		if logFrames-done > checkpointRestartFrames {
			_ = s.cdb.QueryRowContext(ctx, "PRAGMA wal_checkpoint(RESTART)").Scan(&busy, &logFrames, &done)
		}
	}
}

func (s *Store) retain(ctx context.Context) {
	defer close(s.retentionDone)
	t := time.NewTicker(s.opts.retainEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			n, err := s.ExpireBefore(ctx, now.Add(-s.opts.retention))
			if err != nil && ctx.Err() == nil {
				s.opts.logger.Warn("store retention failed", "err", err)
			} else if n > 0 {
				s.opts.logger.Info("store retention expired runs", "runs", n)
			}
		}
	}
}

// runKey is the expression of the runs_contact_key index; queries must
// spell it exactly so for the index to be used.
const runKey = `(CASE WHEN trigger_id = '' THEN 'r:' || id ELSE 't:' || trigger_id END)`

// schema is applied on every open; every statement is idempotent.
var schema = []string{
	`CREATE TABLE IF NOT EXISTS bots (
		id TEXT PRIMARY KEY,
		name TEXT NOT NULL,
		channels TEXT,
		created_at INTEGER NOT NULL,
		updated_at INTEGER NOT NULL)`,
	`CREATE TABLE IF NOT EXISTS api_keys (
		id TEXT PRIMARY KEY,
		bot_id TEXT NOT NULL,
		hash TEXT NOT NULL UNIQUE,
		prefix TEXT NOT NULL,
		created_at INTEGER NOT NULL,
		revoked INTEGER NOT NULL DEFAULT 0)`,
	`CREATE TABLE IF NOT EXISTS flows (
		bot_id TEXT NOT NULL,
		id TEXT NOT NULL,
		version INTEGER NOT NULL,
		definition TEXT NOT NULL,
		created_at INTEGER NOT NULL,
		PRIMARY KEY (bot_id, id, version)) WITHOUT ROWID`,
	`CREATE TABLE IF NOT EXISTS events (
		bot_id TEXT NOT NULL,
		name TEXT NOT NULL,
		flow_id TEXT NOT NULL,
		token_hash TEXT NOT NULL,
		created_at INTEGER NOT NULL,
		updated_at INTEGER NOT NULL,
		PRIMARY KEY (bot_id, name))`,
	`CREATE INDEX IF NOT EXISTS events_token ON events (bot_id, token_hash)`,
	`CREATE TABLE IF NOT EXISTS contacts (
		id TEXT PRIMARY KEY,
		bot_id TEXT NOT NULL,
		channel TEXT NOT NULL,
		external_id TEXT NOT NULL,
		name TEXT NOT NULL,
		attributes TEXT,
		last_request TEXT,
		last_inbound_at INTEGER,
		opted_out INTEGER NOT NULL DEFAULT 0,
		unreachable INTEGER NOT NULL DEFAULT 0,
		unreachable_reason TEXT NOT NULL DEFAULT '',
		created_at INTEGER NOT NULL,
		updated_at INTEGER NOT NULL)`,
	`CREATE UNIQUE INDEX IF NOT EXISTS contacts_key ON contacts (bot_id, channel, external_id)`,
	`CREATE INDEX IF NOT EXISTS contacts_bot_id ON contacts (bot_id, id)`,
	`CREATE INDEX IF NOT EXISTS contacts_bot_channel_id ON contacts (bot_id, channel, id)`,
	`CREATE TABLE IF NOT EXISTS triggers (
		id TEXT PRIMARY KEY,
		bot_id TEXT NOT NULL,
		source TEXT NOT NULL,
		event TEXT NOT NULL,
		flow_id TEXT NOT NULL,
		channel TEXT NOT NULL,
		spec TEXT,
		idempotency_key TEXT NOT NULL,
		status TEXT NOT NULL,
		cursor TEXT NOT NULL,
		targeted INTEGER NOT NULL DEFAULT 0,
		runs_created INTEGER NOT NULL DEFAULT 0,
		sent INTEGER NOT NULL DEFAULT 0,
		delivered INTEGER NOT NULL DEFAULT 0,
		failed INTEGER NOT NULL DEFAULT 0,
		skipped INTEGER NOT NULL DEFAULT 0,
		skip_reasons TEXT,
		version INTEGER NOT NULL,
		created_at INTEGER NOT NULL,
		updated_at INTEGER NOT NULL)`,
	`CREATE TABLE IF NOT EXISTS runs (
		id TEXT PRIMARY KEY,
		bot_id TEXT NOT NULL,
		trigger_id TEXT NOT NULL,
		flow_id TEXT NOT NULL,
		flow_version INTEGER NOT NULL,
		contact_id TEXT NOT NULL,
		channel TEXT NOT NULL,
		status TEXT NOT NULL,
		state TEXT,
		data TEXT,
		wait_until INTEGER,
		error TEXT NOT NULL,
		version INTEGER NOT NULL,
		created_at INTEGER NOT NULL,
		updated_at INTEGER NOT NULL)`,
	// One index serves both "one run per trigger + contact" and "the runs of
	// a contact": runs without a trigger are keyed by their own id. Every
	// index costs insert throughput, so runs have only three.
	`DROP INDEX IF EXISTS runs_trigger_contact`,
	`DROP INDEX IF EXISTS runs_contact`,
	`CREATE UNIQUE INDEX IF NOT EXISTS runs_contact_key ON runs (contact_id, ` + runKey + `)`,
	`CREATE INDEX IF NOT EXISTS runs_bot_created ON runs (bot_id, created_at, id)`,
	`CREATE INDEX IF NOT EXISTS runs_waiting ON runs (wait_until) WHERE status = 'waiting'`,
	`CREATE TABLE IF NOT EXISTS messages (
		id TEXT PRIMARY KEY,
		bot_id TEXT NOT NULL,
		run_id TEXT NOT NULL,
		trigger_id TEXT NOT NULL,
		contact_id TEXT NOT NULL,
		channel TEXT NOT NULL,
		to_addr TEXT NOT NULL,
		seq INTEGER NOT NULL,
		content TEXT,
		status TEXT NOT NULL,
		provider_message_id TEXT NOT NULL,
		error TEXT NOT NULL,
		created_at INTEGER NOT NULL,
		updated_at INTEGER NOT NULL)`,
	`CREATE INDEX IF NOT EXISTS messages_run ON messages (run_id, seq)`,
	tombstoneSchema,
	`CREATE INDEX IF NOT EXISTS messages_provider ON messages (bot_id, provider_message_id) WHERE provider_message_id <> ''`,
	`CREATE TABLE IF NOT EXISTS sandbox (
		seq INTEGER PRIMARY KEY AUTOINCREMENT,
		message_id TEXT NOT NULL UNIQUE,
		bot_id TEXT NOT NULL,
		run_id TEXT NOT NULL,
		to_addr TEXT NOT NULL,
		content TEXT,
		created_at INTEGER NOT NULL)`,
	`CREATE INDEX IF NOT EXISTS sandbox_bot_to ON sandbox (bot_id, to_addr, seq)`,
	`CREATE INDEX IF NOT EXISTS sandbox_bot ON sandbox (bot_id, seq)`,
}

// column is a column added to a table after its CREATE TABLE shipped:
// SQLite has no ADD COLUMN IF NOT EXISTS, so migrate adds it when missing.
type column struct{ table, name, decl string }

// addColumns are applied after schema, in order.
var addColumns = []column{
	{"messages", "lane", "TEXT NOT NULL DEFAULT ''"}, // delivery lane (high, bulk)
	// A step's claim on a run (ClaimRuns): who, until when (ns), and on
	// which version (a write that did not end the claim outdates it).
	{"runs", "claim_by", "TEXT NOT NULL DEFAULT ''"},
	{"runs", "claim_until", "INTEGER"},
	{"runs", "claim_version", "INTEGER"},
}

func migrate(ctx context.Context, db *sql.DB) error {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("sqlite: migrate: %w", err)
	}
	defer tx.Rollback() //nolint:errcheck // after Commit this is a no-op
	for _, q := range schema {
		if _, err := tx.ExecContext(ctx, q); err != nil {
			return fmt.Errorf("sqlite: migrate: %w\n%s", err, q)
		}
	}
	for _, col := range addColumns {
		var n int
		if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM pragma_table_info(?) WHERE name = ?`, col.table, col.name).Scan(&n); err != nil {
			return fmt.Errorf("sqlite: migrate: %w", err)
		}
		if n == 0 {
			q := "ALTER TABLE " + col.table + " ADD COLUMN " + col.name + " " + col.decl
			if _, err := tx.ExecContext(ctx, q); err != nil {
				return fmt.Errorf("sqlite: migrate: %w\n%s", err, q)
			}
		}
	}
	if _, err := tx.ExecContext(ctx, "PRAGMA user_version = 2"); err != nil {
		return fmt.Errorf("sqlite: migrate: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("sqlite: migrate: %w", err)
	}
	return nil
}
