package orchestrator

import (
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/flowgate/flowgate/shared/bus"
	"github.com/flowgate/flowgate/shared/store"
)

// A run's lock holds back the steps of that run only, and is forgotten
// once nobody holds or waits for it.
func TestRunLocksAreOneRunsEach(t *testing.T) {
	l := newRunLocks()
	unlockA := l.lock("run-a")

	// Other runs go on while run-a is held (a step may hold its run for a
	// flow's http call).
	for _, id := range []string{"run-b", "run-c", "run-d"} {
		done := make(chan struct{})
		go func() { l.lock(id)(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatalf("%s waited for run-a's lock", id)
		}
	}

	// A second step of run-a waits until the first lets go.
	var order []string
	var mu sync.Mutex
	note := func(s string) { mu.Lock(); order = append(order, s); mu.Unlock() }
	second := make(chan struct{})
	go func() {
		unlock := l.lock("run-a")
		note("second step")
		unlock()
		close(second)
	}()
	require.Eventually(t, func() bool {
		l.mu.Lock()
		defer l.mu.Unlock()
		return l.held["run-a"].refs == 2
	}, 10*time.Second, time.Millisecond, "the second step waits")
	note("first step done")
	unlockA()
	<-second
	require.Equal(t, []string{"first step done", "second step"}, order)

	l.mu.Lock()
	defer l.mu.Unlock()
	require.Empty(t, l.held, "no lock kept once unused")
}

// A batch takes all of its runs' locks or none, never waiting: one run
// held by a step and the batch holds nothing; once it is free, the batch
// holds them all (each once), and lets go of what it releases.
func TestRunLocksOfABatch(t *testing.T) {
	l := newRunLocks()
	unlockB := l.lock("b")
	held, ok := l.tryLockAll([]string{"a", "b", "c"})
	require.False(t, ok, "b is held by a step")
	require.Nil(t, held)
	l.mu.Lock()
	require.Equal(t, []string{"b"}, mapKeys(l.held), "a and c were let go")
	l.mu.Unlock()
	unlockB()

	held, ok = l.tryLockAll([]string{"c", "a", "b", "a"})
	require.True(t, ok)
	require.Len(t, held, 3)
	_, ok = l.tryLock("a")
	require.False(t, ok)
	held.release("a")
	unlockA, ok := l.tryLock("a")
	require.True(t, ok, "a released")
	unlockA()
	held.releaseAll()
	l.mu.Lock()
	defer l.mu.Unlock()
	require.Empty(t, l.held)
}

func mapKeys(m map[string]*runLock) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

// A batch that meets a step of one of its runs is retried shortly, and
// never dead-lettered for it.
func TestBusyBatchIsRetriedNotDeadLettered(t *testing.T) {
	o := &Orchestrator{runs: newRunLocks()}
	unlock := o.runs.lock("r-2")
	_, err := o.lockBatch([]store.Run{{ID: "r-1"}, {ID: "r-2"}})
	require.ErrorIs(t, err, errRunsBusy)
	require.True(t, bus.IsTransient(err))
	var retry *bus.RetryAfterError
	require.ErrorAs(t, err, &retry)
	require.Equal(t, 50*time.Millisecond, retry.Wait)
	unlock()
	held, err := o.lockBatch([]store.Run{{ID: "r-1"}, {ID: "r-2"}})
	require.NoError(t, err)
	held.releaseAll()
}
