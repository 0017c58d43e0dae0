package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"github.com/flowgate/flowgate/shared/store"
)

// The write lock, for processes that share a data directory. SQLite lets
// one connection write at a time, across processes: the time a writer
// holds the lock is time every other process's writes wait, so the sum of
// the holds per unit of work bounds what processes sharing a database can
// do together, whatever the cores (docs/performance.md). A held rate near
// 1 (seconds per second, summed over the processes) says the lock is the
// bottleneck; a waited rate says how much a process loses to the others.
var (
	lockWaitSeconds = promauto.NewCounter(prometheus.CounterOpts{
		Name: "flowgate_sqlite_write_lock_wait_seconds_total",
		Help: "Time this process's store writer waited for SQLite's write lock (BEGIN IMMEDIATE): the lock was held by another process sharing the data directory (or its checkpoint).",
	})
	lockHeldSeconds = promauto.NewCounter(prometheus.CounterOpts{
		Name: "flowgate_sqlite_write_lock_held_seconds_total",
		Help: "Time this process's store writer held SQLite's write lock: from BEGIN IMMEDIATE to the end of COMMIT or ROLLBACK. Other processes sharing the data directory cannot write meanwhile.",
	})
	lockIdleSeconds = promauto.NewCounter(prometheus.CounterOpts{
		Name: "flowgate_sqlite_write_lock_idle_seconds_total",
		Help: "Part of flowgate_sqlite_write_lock_held_seconds_total this process's store writer spent waiting for more writes to join its open transaction (the group commit's linger). A process sharing its data directory gathers its writes before it takes the lock instead (sqlite.WithShared), so this stays near zero there.",
	})
	writeTransactions = promauto.NewCounter(prometheus.CounterOpts{
		Name: "flowgate_sqlite_write_transactions_total",
		Help: "Write transactions of this process's store writer (each a group commit of one or more writes).",
	})
)

// errClosed is returned for writes submitted after Close.
var errClosed = fmt.Errorf("%w: sqlite store closed", store.ErrUnavailable)

// op is one caller's write. fn runs inside a transaction; its error is that
// caller's result.
//
// A shared op (solo=false) runs in a batch with others and must issue at most
// one modifying statement, so that SQLite's statement atomicity makes it all
// or nothing without a savepoint, or wrap several in wtx.atomic (a
// savepoint); its error does not affect the others.
// A solo op (bulk writes, multi-statement changes) gets a transaction of its
// own, rolled back entirely if fn fails.
type op struct {
	ctx  context.Context
	solo bool
	fn   func(*wtx) error
	done chan error
}

// writer is the group commit: the only goroutine that writes. It runs the
// operations queued (lingering briefly for more, see commitBatch) in one
// IMMEDIATE transaction and tells each caller its own result once the
// transaction committed. Callers return only after the commit, so an
// acknowledged write is in the WAL and survives the process being killed.
type writer struct {
	conn    *sql.Conn
	stmts   map[string]*sql.Stmt
	ops     chan *op
	maxWait time.Duration
	maxOps  int
	// shared: other processes write to the database too. The writer then
	// gathers a batch before it takes the write lock and runs it without
	// waiting for more, so that it never holds the lock idle while another
	// process waits for it.
	shared bool

	mu      sync.RWMutex
	closed  bool
	stopped chan struct{}
	pending *op // a solo op met while collecting a batch: it goes next
	// lastBatch is the size of the previous batch: how many callers may be
	// about to write again.
	lastBatch int
	batch     []*op
	results   []error
	timer     *time.Timer
	// heldSince is when the open transaction took the write lock; locked
	// says a transaction is open.
	heldSince time.Time
	locked    bool
	// commits counts the transactions committed (tests).
	commits atomic.Int64
	// unsafeShared counts the shared operations that ran more than one
	// modifying statement outside a savepoint: each of them could have
	// had its first half committed without the rest (tests assert none).
	unsafeShared atomic.Int64
}

func newWriter(ctx context.Context, db *sql.DB, maxWait time.Duration, maxOps int, shared bool) (*writer, error) {
	conn, err := db.Conn(ctx)
	if err != nil {
		return nil, fmt.Errorf("sqlite: writer connection: %w", err)
	}
	w := &writer{
		conn:    conn,
		stmts:   map[string]*sql.Stmt{},
		ops:     make(chan *op, 4*maxOps),
		maxWait: maxWait,
		maxOps:  maxOps,
		shared:  shared,
		stopped: make(chan struct{}),
		batch:   make([]*op, 0, maxOps),
		results: make([]error, 0, maxOps),
		timer:   time.NewTimer(time.Hour),
	}
	w.timer.Stop()
	go w.loop()
	return w, nil
}

// do submits fn and waits for its result. A caller whose context ends before
// its operation started gets ctx.Err() and nothing is written; once the
// operation is in a batch, do waits for the commit so that the answer is true.
func (w *writer) do(ctx context.Context, solo bool, fn func(*wtx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	o := &op{ctx: ctx, solo: solo, fn: fn, done: make(chan error, 1)}
	w.mu.RLock()
	if w.closed {
		w.mu.RUnlock()
		return errClosed
	}
	select {
	case w.ops <- o:
	case <-ctx.Done():
		w.mu.RUnlock()
		return ctx.Err()
	}
	w.mu.RUnlock()
	return <-o.done
}

// sharedMaxRows is the most rows an all-or-nothing write may carry and
// still join a batch (in a savepoint); larger ones get a transaction of
// their own, so that a bulk write does not hold other callers' commit.
const sharedMaxRows = 64

// doAll submits fn, which writes rows records all or nothing: a small
// write joins the batch inside a savepoint (rolled back alone if fn fails),
// a bulk one runs solo. A dispatch's contact upsert and run insert used to
// run solo: each was a commit (an fsync) of its own, and each ended the
// batch being collected.
func (w *writer) doAll(ctx context.Context, rows int, fn func(*wtx) error) error {
	if rows > sharedMaxRows {
		return w.do(ctx, true, fn)
	}
	return w.do(ctx, false, func(t *wtx) error { return t.atomic(func() error { return fn(t) }) })
}

func (w *writer) close() error {
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return nil
	}
	w.closed = true
	close(w.ops)
	w.mu.Unlock()
	<-w.stopped
	for _, st := range w.stmts {
		st.Close()
	}
	return w.conn.Close()
}

func (w *writer) loop() {
	defer close(w.stopped)
	for {
		first := w.pending
		w.pending = nil
		if first == nil {
			var ok bool
			if first, ok = <-w.ops; !ok {
				return
			}
		}
		if first.solo {
			w.commitSolo(first)
			continue
		}
		w.commitBatch(first)
	}
}

// next returns the next shared operation for the open batch, or nil when the
// batch should be committed: no operation arrived within gap (or before
// deadline), a solo operation is next (it is kept in pending), or the queue
// is closed.
func (w *writer) next(gap time.Duration, deadline time.Time, expectMore bool) *op {
	if w.pending != nil {
		// A solo operation met while gathering (a shared writer) is next:
		// the batch ends here. Taking another operation now would put it
		// before that one, and a second solo one would replace it in
		// pending and lose it (its caller never answered).
		return nil
	}
	var o *op
	var ok bool
	select {
	case o, ok = <-w.ops:
	default:
		wait := min(gap, time.Until(deadline))
		if !expectMore || w.maxWait <= 0 || wait <= 0 {
			return nil
		}
		idleSince := time.Now()
		w.timer.Reset(wait)
		select {
		case o, ok = <-w.ops:
			w.timer.Stop()
		case <-w.timer.C:
		}
		if w.locked {
			lockIdleSeconds.Add(time.Since(idleSince).Seconds())
		}
	}
	if !ok {
		return nil
	}
	if o.solo {
		w.pending = o
		return nil
	}
	return o
}

// commitBatch opens a transaction, runs first and every shared operation
// that follows as it arrives, and commits when the batch holds maxOps, or
// the queue is empty and the batch is as large as the previous one, or no
// operation arrived for a short gap (maxWait/8), or maxWait has passed since
// the first one, or a solo operation or the end of the queue is met.
// Running each operation as soon as it arrives keeps the writer busy while
// the callers woken by the previous commit prepare their next write; the
// gap lets those writes join this batch.
//
// A shared writer waits for the batch the same way but before it opens
// the transaction, then runs it and whatever queued meanwhile without
// waiting: the write lock is held only while statements run, never while
// the writer lingers (other processes wait for that lock).
func (w *writer) commitBatch(first *op) {
	batch, results := append(w.batch[:0], first), w.results[:0]
	defer func() {
		clear(batch)
		clear(results)
		w.batch, w.results = batch[:0], results[:0]
	}()
	fail := func(err error) {
		for _, o := range batch {
			o.done <- err
		}
	}
	deadline := time.Now().Add(w.maxWait)
	gap := max(w.maxWait/8, 50*time.Microsecond)
	// Wait for more only while the batch is smaller than the last one:
	// callers answered by the last commit are likely on their way. A lone
	// caller is never held, and callers that all came back are committed
	// at once.
	expectMore := func() bool { return len(batch) < w.lastBatch }
	if w.shared {
		for len(batch) < w.maxOps {
			o := w.next(gap, deadline, expectMore())
			if o == nil {
				break
			}
			batch = append(batch, o)
		}
		expectMore = func() bool { return false }
	}
	if err := w.begin(); err != nil {
		fail(err)
		return
	}
	t := &wtx{w: w}
	for i := 0; ; i++ {
		o := batch[i]
		err := o.ctx.Err()
		if err == nil {
			var panicked bool
			t.mods = 0
			panicked, err = run(o, t)
			if t.mods > 1 {
				w.unsafeShared.Add(1)
			}
			if panicked {
				// The transaction may hold half of that write: drop the batch.
				w.rollback()
				fail(err)
				return
			}
		}
		results = append(results, err)
		if i+1 < len(batch) {
			continue // gathered before the lock
		}
		if len(batch) >= w.maxOps {
			break
		}
		if o = w.next(gap, deadline, expectMore()); o == nil {
			break
		}
		batch = append(batch, o)
	}
	w.lastBatch = len(batch)
	if err := w.commitTx(); err != nil {
		fail(err)
		return
	}
	for i, o := range batch {
		o.done <- results[i]
	}
}

func (w *writer) begin() error {
	start := time.Now()
	_, err := w.conn.ExecContext(context.Background(), "BEGIN IMMEDIATE")
	w.heldSince = time.Now()
	lockWaitSeconds.Add(w.heldSince.Sub(start).Seconds())
	if err != nil {
		return fmt.Errorf("%w: begin: %v", store.ErrUnavailable, err)
	}
	w.locked = true
	writeTransactions.Inc()
	return nil
}

// released counts the time the transaction ending now held the lock.
func (w *writer) released() {
	w.locked = false
	lockHeldSeconds.Add(time.Since(w.heldSince).Seconds())
}

func (w *writer) commitTx() error {
	if _, err := w.conn.ExecContext(context.Background(), "COMMIT"); err != nil {
		w.rollback()
		return fmt.Errorf("%w: commit: %v", store.ErrUnavailable, err)
	}
	w.released()
	w.commits.Add(1)
	return nil
}

func (w *writer) commitSolo(o *op) {
	if err := o.ctx.Err(); err != nil {
		o.done <- err
		return
	}
	if err := w.begin(); err != nil {
		o.done <- err
		return
	}
	if _, err := run(o, &wtx{w: w}); err != nil {
		w.rollback()
		o.done <- err
		return
	}
	o.done <- w.commitTx()
}

// run calls o.fn and turns a panic (a bug) into an error for its caller, so
// that the writer goroutine and the process survive it.
func run(o *op, t *wtx) (panicked bool, err error) {
	defer func() {
		if r := recover(); r != nil {
			panicked, err = true, fmt.Errorf("sqlite: store write panicked: %v", r)
		}
	}()
	return false, o.fn(t)
}

func (w *writer) rollback() {
	_, _ = w.conn.ExecContext(context.Background(), "ROLLBACK")
	w.released()
}

func (w *writer) stmt(q string) (*sql.Stmt, error) {
	if st, ok := w.stmts[q]; ok {
		return st, nil
	}
	st, err := w.conn.PrepareContext(context.Background(), q)
	if err != nil {
		return nil, err
	}
	w.stmts[q] = st
	return st, nil
}

// wtx is the open batch transaction as seen by one operation.
type wtx struct {
	w *writer
	// depth is how many savepoints (atomic) are open; mods counts the
	// modifying statements run outside any (see writer.unsafeShared).
	depth, mods int
}

func (t *wtx) exec(q string, args ...any) (sql.Result, error) {
	if t.depth == 0 {
		t.mods++
	}
	st, err := t.w.stmt(q)
	if err != nil {
		return nil, err
	}
	return st.ExecContext(context.Background(), args...)
}

// execOnce runs q without keeping it prepared (for statements whose text
// varies, which would fill the statement cache).
func (t *wtx) execOnce(q string, args ...any) (sql.Result, error) {
	if t.depth == 0 {
		t.mods++
	}
	return t.w.conn.ExecContext(context.Background(), q, args...)
}

// execAffected runs q and returns the number of rows it changed.
func (t *wtx) execAffected(q string, args ...any) (int64, error) {
	res, err := t.exec(q, args...)
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}

func (t *wtx) queryRow(q string, args ...any) *sql.Row {
	st, err := t.w.stmt(q)
	if err != nil {
		// Surface the prepare error through Row.Scan.
		return t.w.conn.QueryRowContext(context.Background(), q, args...)
	}
	return st.QueryRowContext(context.Background(), args...)
}

func (t *wtx) query(q string, args ...any) (*sql.Rows, error) {
	st, err := t.w.stmt(q)
	if err != nil {
		return nil, err
	}
	return st.QueryContext(context.Background(), args...)
}

// exists reports whether q (a SELECT 1 ...) finds a row.
func (t *wtx) exists(q string, args ...any) (bool, error) {
	var one int
	err := t.queryRow(q, args...).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	return err == nil, err
}

// atomic runs fn, an operation of several modifying statements, inside a
// savepoint of the batch transaction: if fn fails, what it changed is
// rolled back and the batch goes on without it.
func (t *wtx) atomic(fn func() error) error {
	t.depth++
	defer func() { t.depth-- }()
	if _, err := t.exec("SAVEPOINT op"); err != nil {
		return err
	}
	if err := fn(); err != nil {
		if _, rerr := t.exec("ROLLBACK TO op"); rerr != nil {
			return errors.Join(err, rerr)
		}
		_, _ = t.exec("RELEASE op")
		return err
	}
	_, err := t.exec("RELEASE op")
	return err
}

// UnsafeSharedWrites is how many writes that shared a group commit ran
// more than one modifying statement outside a savepoint since Open: each
// could have had its first half committed without the rest. It is a
// programming error; the tests' stores (sqlitetest) assert it stays zero.
func (s *Store) UnsafeSharedWrites() int64 { return s.w.unsafeShared.Load() }
