package main

import (
	"os/exec"
	"syscall"
	"testing"
	"time"
)

// rusage is this process's user + system CPU time, as getrusage(2) says
// (microseconds: an independent reading of what /proc/self/stat counts in
// ticks).
func rusage(t *testing.T) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		t.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// TestCPUMeterCountsEachProcess: a phase in which this process spins until
// getrusage says it used 300 ms more, while a child process sleeps, counts
// that for this process (to the 10 ms tick), next to nothing for the
// child, and the machine as busy. Spinning by CPU time, not wall time,
// keeps it true on a loaded machine.
func TestCPUMeterCountsEachProcess(t *testing.T) {
	child := exec.Command("sleep", "5")
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = child.Process.Kill(); _ = child.Wait() })
	r0 := rusage(t)
	m := startCPU(cpuProc{name: "self"}, cpuProc{name: "sleeper", pid: child.Process.Pid})
	x := 0
	for rusage(t)-r0 < 300*time.Millisecond {
		x++
	}
	u := m.stop(3, "units")
	used := rusage(t) - r0
	if len(u.perUnit) != 2 || u.names[0] != "self" || u.names[1] != "sleeper" {
		t.Fatalf("use: %+v", u)
	}
	self, sleeper := u.perUnit[0]*3, u.perUnit[1]*3
	// Two readings of /proc/self/stat in 10 ms ticks, bracketed by the
	// getrusage readings, and the division by 3 and back.
	if self < used-30*time.Millisecond || self > used+30*time.Millisecond {
		t.Errorf("this process: the meter counted %v, getrusage %v (%d spins)", self, used, x)
	}
	if sleeper > 50*time.Millisecond {
		t.Errorf("a sleeping process: %v of CPU", sleeper)
	}
	if u.busy <= 0 || u.busy > 1 || u.cores < 1 {
		t.Errorf("machine: busy %v of %d cores", u.busy, u.cores)
	}
	if got := u.total(); got != u.perUnit[0]+u.perUnit[1] {
		t.Errorf("total %v", got)
	}
	if b := u.bound(); b <= 0 {
		t.Errorf("bound %v", b)
	}
}

// A process that is gone counts nothing rather than failing the phase.
func TestCPUOfAGoneProcessIsZero(t *testing.T) {
	c := exec.Command("true")
	if err := c.Run(); err != nil {
		t.Fatal(err)
	}
	if got := procCPU(c.Process.Pid); got != 0 {
		t.Fatalf("exited process: %v", got)
	}
	if got := procCPU(0); got <= 0 {
		t.Fatalf("this process: %v", got)
	}
}

// The table row: blank where a process was not counted, the nodes of a
// cluster summed in one column.
func TestCPULineLeavesUncountedProcessesBlank(t *testing.T) {
	u := cpuUse{unit: "runs", n: 10, names: []string{"ingress", "orchestrator"},
		perUnit: []time.Duration{100 * time.Microsecond, 250 * time.Microsecond}, busy: 0.5, cores: 2}
	got := cpuLine("phase", u, []string{"load generator", "ingress", "orchestrator"})
	want := "| phase | 10 runs | | 100 | 250 | 350 | 50% | 5714/s |"
	if got != want {
		t.Fatalf("got  %s\nwant %s", got, want)
	}
	// A cluster's nodes share a column: their costs add up.
	u = cpuUse{unit: "publishes", n: 4, names: []string{"nats-server", "nats-server", "nats-server"},
		perUnit: []time.Duration{10 * time.Microsecond, 20 * time.Microsecond, 30 * time.Microsecond}, busy: 0.25, cores: 2}
	got = cpuLine("cluster", u, []string{"nats-server", "ingress"})
	want = "| cluster | 4 publishes | 60 | | 60 | 25% | 33333/s |"
	if got != want {
		t.Fatalf("got  %s\nwant %s", got, want)
	}
}

// TestMergeCPUWeighsEachPhaseByItsWork: two phases of the same processes
// merge into CPU per unit over all their units (not the mean of the two
// per-unit figures) and busy over all their time.
func TestMergeCPUWeighsEachPhaseByItsWork(t *testing.T) {
	a := cpuUse{unit: "triggers", n: 100, names: []string{"x", "y"}, perUnit: []time.Duration{10 * time.Microsecond, 30 * time.Microsecond}, busy: 0.5, cores: 2, wall: time.Second}
	b := cpuUse{unit: "triggers", n: 300, names: []string{"x", "y"}, perUnit: []time.Duration{50 * time.Microsecond, 30 * time.Microsecond}, busy: 1, cores: 2, wall: 3 * time.Second}
	m := mergeCPU([]cpuUse{a, b})
	if m.n != 400 || m.wall != 4*time.Second || m.unit != "triggers" || m.cores != 2 {
		t.Fatalf("merged %+v", m)
	}
	// x: (100×10 + 300×50) / 400 = 40 µs; y: 30 µs.
	if m.perUnit[0] != 40*time.Microsecond || m.perUnit[1] != 30*time.Microsecond {
		t.Fatalf("per unit %v, want [40µs 30µs]", m.perUnit)
	}
	if m.busy != 0.875 { // (0.5×1 s + 1×3 s) / 4 s
		t.Fatalf("busy %v, want 0.875", m.busy)
	}
	if z := mergeCPU(nil); z.n != 0 || z.total() != 0 {
		t.Fatalf("merge of nothing: %+v", z)
	}
}

// TestAloneRatiosTakeTheMedianOfTurns: each turn's ratio, in order, and
// their median; a turn whose raw publish did nothing is left out.
func TestAloneRatiosTakeTheMedianOfTurns(t *testing.T) {
	ratios, median := aloneRatios([]aloneRound{{raw: 100, alone: 300}, {raw: 200, alone: 300}, {raw: 100, alone: 200}})
	if len(ratios) != 3 || ratios[0] != 3 || ratios[1] != 1.5 || ratios[2] != 2 || median != 2 {
		t.Fatalf("ratios %v median %v, want [3 1.5 2] and 2", ratios, median)
	}
	if _, median := aloneRatios([]aloneRound{{raw: 100, alone: 300}, {raw: 100, alone: 100}, {raw: 0, alone: 500}}); median != 2 {
		t.Fatalf("median of 3 and 1 (a turn without raw publishes left out): %v, want 2", median)
	}
	if r, m := aloneRatios(nil); r != nil || m != 0 {
		t.Fatalf("no turns: %v %v", r, m)
	}
}

// TestMergeResultsKeepsEveryRequest: phases merged count every request
// and their time added, so the rate is over all of them.
func TestMergeResultsKeepsEveryRequest(t *testing.T) {
	t0 := time.Unix(0, 0)
	a := result{name: "p", samples: []sample{{at: t0.Add(2 * time.Second), ok: true}, {at: t0, ok: false}}, errors: 1, duration: time.Second}
	b := result{name: "p", samples: []sample{{at: t0.Add(time.Second), ok: true}}, duration: time.Second}
	m := mergeResults([]result{a, b})
	if m.okCount() != 2 || m.errors != 1 || m.duration != 2*time.Second || m.rate() != 1 {
		t.Fatalf("merged %+v", m)
	}
	for i := 1; i < len(m.samples); i++ {
		if m.samples[i].at.Before(m.samples[i-1].at) {
			t.Fatalf("samples out of order: %v", m.samples)
		}
	}
}

// TestRoundsTextPairsEachRoundWithItsRatio: each round with its own ratio,
// a round without raw publishes left out of the text as of the median.
func TestRoundsTextPairsEachRoundWithItsRatio(t *testing.T) {
	text, median, ok := roundsText([]aloneRound{{raw: 0, alone: 500}, {raw: 100, alone: 300}, {raw: 200, alone: 300}})
	if !ok || median != 2.25 || text != "100/s and 300/s (3.00); 200/s and 300/s (1.50)" {
		t.Fatalf("%q %v %v", text, median, ok)
	}
	if _, _, ok := roundsText(nil); ok {
		t.Fatal("no rounds: ok")
	}
}
