package main

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// The lock meter reads each process's counters before and after a phase
// and reports the holds summed over the processes per run, and the rate
// they allow.
func TestLockMeterSumsTheHoldsPerRun(t *testing.T) {
	serve := func(held, wait, idle float64) *httptest.Server {
		var reads atomic.Int64 // the first read is before the phase
		return httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			n := float64(min(reads.Add(1)-1, 1))
			fmt.Fprintf(w, "# TYPE flowgate_sqlite_write_lock_held_seconds_total counter\nflowgate_sqlite_write_lock_held_seconds_total %g\n", 5+n*held)
			fmt.Fprintf(w, "# TYPE flowgate_sqlite_write_lock_wait_seconds_total counter\nflowgate_sqlite_write_lock_wait_seconds_total %g\n", 1+n*wait)
			if idle > 0 {
				fmt.Fprintf(w, "# TYPE flowgate_sqlite_write_lock_idle_seconds_total counter\nflowgate_sqlite_write_lock_idle_seconds_total %g\n", 2+n*idle)
			}
		}))
	}
	orch, worker := serve(3, 1, 0.5), serve(1, 2, 0)
	defer orch.Close()
	defer worker.Close()
	addr := func(s *httptest.Server) string { return strings.TrimPrefix(s.URL, "http://") }
	m := startLocks(lockProc{"orchestrator", addr(orch)}, lockProc{"sandbox worker", addr(worker)})
	u := m.stop(10000)
	if u.err != nil {
		t.Fatal(u.err)
	}
	// 3 s + 1 s held over 10,000 runs: 400 µs per run, 2,500 runs/s.
	if got := u.held(); got != 400*time.Microsecond {
		t.Fatalf("held per run %v, want 400µs", got)
	}
	if got := u.bound(); got < 2499 || got > 2501 {
		t.Fatalf("bound %.1f, want 2500", got)
	}
	s := u.sentence("the drain", 2000, 5000, "raw publish")
	for _, want := range []string{"the orchestrator held it 300 µs per run (50 µs of it waiting for more writes) and waited 100 µs", "the sandbox worker held it 100 µs per run and waited 200 µs", "Together 400 µs per run", "at most 2500 runs/s, 0.50 of the raw publish", "2000 runs/s, 80 % of that"} {
		if !strings.Contains(s, want) {
			t.Errorf("sentence lacks %q:\n%s", want, s)
		}
	}
}

// A process that does not serve the counters (an older build, a store
// that is not SQLite) is reported as not measured, not as a zero.
func TestLockMeterWithoutTheCountersSaysSo(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, "# TYPE other_total counter\nother_total 1")
	}))
	defer srv.Close()
	u := startLocks(lockProc{"orchestrator", strings.TrimPrefix(srv.URL, "http://")}).stop(100)
	if u.err == nil {
		t.Fatal("no error for a process without the counters")
	}
	if s := u.sentence("the drain", 1, 1, "raw publish"); !strings.Contains(s, "not measured") {
		t.Fatalf("sentence %q", s)
	}
}
