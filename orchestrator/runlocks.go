package orchestrator

import (
	"errors"
	"sync"
	"time"

	"github.com/flowgate/flowgate/shared/bus"
	"github.com/flowgate/flowgate/shared/store"
)

// runLocks serialize the steps of one run within this process. A step
// publishes its effects (the run's messages, its status change) before it
// stores the run's new state (commit), so two steps of one run taken side
// by side — a reply and a cancel, a reply and its timer — would both
// publish, and the one that then loses the version check would have sent
// a message and announced a status for a change that never happened (and,
// sharing the winner's message ids, could even take the place of the
// winner's message). Under its run's lock a step reads the run again and
// goes on only if the run is still as the step found it (advanceFrom).
//
// A lock is one run's, never shared with another: a step may hold it for
// as long as a flow's http call takes, and no other run may wait for that.
type runLocks struct {
	mu   sync.Mutex
	held map[string]*runLock
}

type runLock struct {
	sync.Mutex
	refs int // steps holding or waiting for it
}

func newRunLocks() *runLocks { return &runLocks{held: map[string]*runLock{}} }

// lock locks the run and returns its unlock.
func (l *runLocks) lock(runID string) (unlock func()) {
	l.mu.Lock()
	e := l.entry(runID)
	e.refs++
	l.mu.Unlock()
	e.Lock()
	return l.unlocker(runID, e)
}

// entry is the run's lock, made if nobody holds or waits for it; l.mu is
// held.
func (l *runLocks) entry(runID string) *runLock {
	e := l.held[runID]
	if e == nil {
		e = &runLock{}
		l.held[runID] = e
	}
	return e
}

func (l *runLocks) unlocker(runID string, e *runLock) func() {
	return func() {
		e.Unlock()
		l.mu.Lock()
		if e.refs--; e.refs == 0 {
			delete(l.held, runID)
		}
		l.mu.Unlock()
	}
}

// heldRuns are the locks a batch holds, by run id.
type heldRuns map[string]func()

// tryLockAll locks every run of ids, or none (ok false) if a step or
// another batch holds one of them. A batch never waits for a run's lock
// while holding others: it holds them through supersede, where it waits
// for a waiting run's step, and two batches waiting so for each other's
// runs would wait for ever.
func (l *runLocks) tryLockAll(ids []string) (held heldRuns, ok bool) {
	held = make(heldRuns, len(ids))
	for _, id := range ids {
		if _, dup := held[id]; dup {
			continue
		}
		unlock, ok := l.tryLock(id)
		if !ok {
			held.releaseAll()
			return nil, false
		}
		held[id] = unlock
	}
	return held, true
}

// tryLock locks the run if nobody holds it.
func (l *runLocks) tryLock(runID string) (unlock func(), ok bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	e := l.entry(runID)
	if !e.TryLock() {
		return nil, false
	}
	e.refs++
	return l.unlocker(runID, e), true
}

// release unlocks one run of the batch (one it does not start).
func (h heldRuns) release(runID string) {
	if unlock, ok := h[runID]; ok {
		delete(h, runID)
		unlock()
	}
}

func (h heldRuns) releaseAll() {
	for id := range h {
		h.release(id)
	}
}

// runIDs are the ids of rs.
func runIDs(rs []store.Run) []string {
	ids := make([]string, len(rs))
	for i, r := range rs {
		ids[i] = r.ID
	}
	return ids
}

// errRunsBusy: a run of a batch being started again is being stepped.
var errRunsBusy = errors.New("a run of the batch is being stepped; the batch is retried")

// lockBatch locks the runs of a batch that an earlier attempt may have
// stored, before they are read (CreateRuns) and until they are started:
// a step of one of them meanwhile (a cancel through the API) would
// otherwise cancel the created run while the start goes out and loses its
// write. If a step holds one of them, the batch is retried shortly.
func (o *Orchestrator) lockBatch(rs []store.Run) (heldRuns, error) {
	held, ok := o.runs.tryLockAll(runIDs(rs))
	if !ok {
		// Transient: however often it meets a step, the batch is not
		// dead-lettered for it.
		return nil, bus.Transient(bus.RetryAfter(errRunsBusy, 50*time.Millisecond))
	}
	return held, nil
}

// keepCreated lets go of the runs read as already started (runs, as
// CreateRuns returned them for rs): the batch does not start them, and
// holding a waiting run's lock through supersede could make two batches
// wait for each other. It keeps the created ones.
func (h heldRuns) keepCreated(rs, runs []store.Run) {
	for i := range runs {
		if runs[i].Status != store.RunCreated {
			h.release(rs[i].ID)
		}
	}
}
