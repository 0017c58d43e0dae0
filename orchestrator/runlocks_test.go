package orchestrator

import (
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
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

// Batches locking overlapping sets of runs, in any order, all get through.
func TestRunLocksOfOverlappingBatches(t *testing.T) {
	l := newRunLocks()
	sets := [][]string{{"a", "b", "c"}, {"c", "b", "a"}, {"b", "d", "a", "b"}, {"d", "c"}}
	var wg sync.WaitGroup
	for i := range 200 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			l.lockAll(sets[i%len(sets)])()
		}()
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("batches deadlocked")
	}
	require.Empty(t, l.held)
}
