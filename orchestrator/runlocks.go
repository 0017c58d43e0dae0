package orchestrator

import (
	"hash/maphash"
	"sync"
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
// The locks are striped: unrelated runs that share a stripe wait for each
// other for one commit at most.
type runLocks struct {
	seed    maphash.Seed
	stripes [1024]sync.Mutex
}

func newRunLocks() *runLocks { return &runLocks{seed: maphash.MakeSeed()} }

// lock locks the run's stripe and returns its unlock.
func (l *runLocks) lock(runID string) (unlock func()) {
	m := &l.stripes[maphash.String(l.seed, runID)%uint64(len(l.stripes))]
	m.Lock()
	return m.Unlock
}
