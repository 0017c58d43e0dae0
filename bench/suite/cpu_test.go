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
