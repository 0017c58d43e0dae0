package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/flowgate/flowgate/shared/store"
)

// errClosed is returned for writes submitted after Close.
var errClosed = fmt.Errorf("%w: sqlite store closed", store.ErrUnavailable)

// op is one caller's write. fn runs inside the batch transaction; its error
// is that caller's result and does not affect the other operations.
type op struct {
	ctx    context.Context
	atomic bool // run fn inside a savepoint (fn issues more than one write)
	fn     func(*wtx) error
	done   chan error
}

// writer is the group commit: the only goroutine that writes. It takes every
// operation queued (waiting up to maxWait after the first for more, at most
// maxOps), runs them in one IMMEDIATE transaction and tells each caller its
// own result once the transaction committed. Callers return only after the
// commit, so an acknowledged write is in the WAL.
type writer struct {
	conn    *sql.Conn
	stmts   map[string]*sql.Stmt
	ops     chan *op
	maxWait time.Duration
	maxOps  int

	mu      sync.RWMutex
	closed  bool
	stopped chan struct{}
	batch   []*op
	results []error
}

func newWriter(ctx context.Context, db *sql.DB, maxWait time.Duration, maxOps int) (*writer, error) {
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
		stopped: make(chan struct{}),
		batch:   make([]*op, 0, maxOps),
		results: make([]error, 0, maxOps),
	}
	go w.loop()
	return w, nil
}

// do submits fn and waits for its result. A caller whose context ends before
// its operation started gets ctx.Err() and nothing is written; once the
// operation is in a batch, do waits for the commit so that the answer is true.
func (w *writer) do(ctx context.Context, atomic bool, fn func(*wtx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	o := &op{ctx: ctx, atomic: atomic, fn: fn, done: make(chan error, 1)}
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
		first, ok := <-w.ops
		if !ok {
			return
		}
		batch := w.collect(append(w.batch[:0], first))
		w.commit(batch)
		clear(batch)
	}
}

// collect adds queued operations to batch until it holds maxOps, the queue
// stays empty for the rest of maxWait, or the queue is closed.
func (w *writer) collect(batch []*op) []*op {
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for len(batch) < w.maxOps {
		select {
		case o, ok := <-w.ops:
			if !ok {
				return batch
			}
			batch = append(batch, o)
			continue
		default:
		}
		if w.maxWait <= 0 {
			return batch
		}
		if timer == nil {
			timer = time.NewTimer(w.maxWait)
		}
		select {
		case o, ok := <-w.ops:
			if !ok {
				return batch
			}
			batch = append(batch, o)
		case <-timer.C:
			return batch
		}
	}
	return batch
}

func (w *writer) commit(batch []*op) {
	ctx := context.Background()
	results := w.results[:0]
	fail := func(err error) {
		for _, o := range batch {
			o.done <- err
		}
	}
	if _, err := w.conn.ExecContext(ctx, "BEGIN IMMEDIATE"); err != nil {
		fail(fmt.Errorf("%w: begin: %v", store.ErrUnavailable, err))
		return
	}
	t := &wtx{w: w}
	for _, o := range batch {
		if err := o.ctx.Err(); err != nil {
			results = append(results, err)
			continue
		}
		if !o.atomic {
			results = append(results, o.fn(t))
			continue
		}
		if _, err := t.exec("SAVEPOINT op"); err != nil {
			w.rollback()
			fail(fmt.Errorf("%w: savepoint: %v", store.ErrUnavailable, err))
			return
		}
		err := o.fn(t)
		if err != nil {
			if _, rerr := t.exec("ROLLBACK TO op"); rerr != nil {
				w.rollback()
				fail(fmt.Errorf("%w: rollback to savepoint: %v", store.ErrUnavailable, rerr))
				return
			}
		}
		if _, rerr := t.exec("RELEASE op"); rerr != nil {
			w.rollback()
			fail(fmt.Errorf("%w: release savepoint: %v", store.ErrUnavailable, rerr))
			return
		}
		results = append(results, err)
	}
	if _, err := w.conn.ExecContext(ctx, "COMMIT"); err != nil {
		w.rollback()
		fail(fmt.Errorf("%w: commit: %v", store.ErrUnavailable, err))
		return
	}
	for i, o := range batch {
		o.done <- results[i]
	}
	clear(results)
	w.results = results[:0]
}

func (w *writer) rollback() {
	_, _ = w.conn.ExecContext(context.Background(), "ROLLBACK")
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
type wtx struct{ w *writer }

func (t *wtx) exec(q string, args ...any) (sql.Result, error) {
	st, err := t.w.stmt(q)
	if err != nil {
		return nil, err
	}
	return st.ExecContext(context.Background(), args...)
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
