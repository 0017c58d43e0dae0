package orchestrator

import (
	"slices"
	"sync"

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
	e := l.held[runID]
	if e == nil {
		e = &runLock{}
		l.held[runID] = e
	}
	e.refs++
	l.mu.Unlock()
	e.Lock()
	return func() {
		e.Unlock()
		l.mu.Lock()
		if e.refs--; e.refs == 0 {
			delete(l.held, runID)
		}
		l.mu.Unlock()
	}
}

// lockAll locks several runs (a batch being started) and returns their
// unlock. They are locked in the order of their ids, so two callers
// locking overlapping sets cannot each hold what the other waits for; a
// caller holding them may lock one run more (a step of a run outside the
// set: supersede), since a single step never waits for a second lock.
func (l *runLocks) lockAll(runIDs []string) (unlock func()) {
	ids := slices.Clone(runIDs)
	slices.Sort(ids)
	ids = slices.Compact(ids)
	unlocks := make([]func(), len(ids))
	for i, id := range ids {
		unlocks[i] = l.lock(id)
	}
	return func() {
		for i := len(unlocks) - 1; i >= 0; i-- {
			unlocks[i]()
		}
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
