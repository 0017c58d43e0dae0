package main

import (
	"fmt"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"
)

// clockTick is Linux's USER_HZ, the unit of /proc/*/stat's CPU times: 100
// on every architecture Go supports on Linux (the kernel's ABI, not the
// configured HZ).
const clockTick = 10 * time.Millisecond

// cpuProc is one process whose CPU time a phase counts.
type cpuProc struct {
	name string
	pid  int // 0: this process (the load generator)
}

// cpuMeter counts the CPU time of processes and the machine over a phase.
type cpuMeter struct {
	procs       []cpuProc
	start       []time.Duration
	busy, total time.Duration
	at          time.Time
}

// cpuUse is what a phase cost: CPU time per unit of work, by process, and
// how busy the machine's cores were.
type cpuUse struct {
	unit    string
	n       int
	names   []string
	perUnit []time.Duration // one per process, same order as names
	// busy is the machine's busy fraction of all its cores over the phase
	// (/proc/stat: everything but idle and iowait), cores its core count.
	busy  float64
	cores int
	wall  time.Duration
}

// total is the CPU time per unit of all the counted processes.
func (u cpuUse) total() time.Duration {
	var t time.Duration
	for _, d := range u.perUnit {
		t += d
	}
	return t
}

// sum is the CPU time per unit of the processes named name.
func (u cpuUse) sum(name string) time.Duration {
	var t time.Duration
	for i, n := range u.names {
		if n == name {
			t += u.perUnit[i]
		}
	}
	return t
}

// bound is the rate the machine's cores would allow if the counted
// processes had all of them and cost the same per unit: cores / total.
func (u cpuUse) bound() float64 {
	if u.total() <= 0 {
		return 0
	}
	return float64(u.cores) * float64(time.Second) / float64(u.total())
}

func startCPU(procs ...cpuProc) *cpuMeter {
	m := &cpuMeter{procs: procs, at: time.Now()}
	for _, p := range procs {
		m.start = append(m.start, procCPU(p.pid))
	}
	m.busy, m.total = machineCPU()
	return m
}

// stop ends the phase: n units of work were done. It reads the counters
// again and changes nothing, so one meter may be stopped at the end of
// several phases that began together.
func (m *cpuMeter) stop(n int, unit string) cpuUse {
	u := cpuUse{unit: unit, n: n, cores: runtime.NumCPU(), wall: time.Since(m.at)}
	for i, p := range m.procs {
		u.names = append(u.names, p.name)
		used := procCPU(p.pid) - m.start[i]
		per := time.Duration(0)
		if n > 0 {
			per = used / time.Duration(n)
		}
		u.perUnit = append(u.perUnit, per)
	}
	busy, total := machineCPU()
	if dt := total - m.total; dt > 0 {
		u.busy = float64(busy-m.busy) / float64(dt)
	}
	return u
}

// procCPU is a process's user + system CPU time so far (0 when it cannot
// be read, e.g. the process has exited).
func procCPU(pid int) time.Duration {
	path := "/proc/self/stat"
	if pid > 0 {
		path = "/proc/" + strconv.Itoa(pid) + "/stat"
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	// The command name (field 2) may hold spaces: fields count from the
	// last ')'. utime and stime are fields 14 and 15.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * clockTick
}

// machineCPU is the machine's busy and total CPU time so far, all cores.
func machineCPU() (busy, total time.Duration) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 6 || f[0] != "cpu" {
		return 0, 0
	}
	var sum, idle int64
	for i, v := range f[1:] {
		if i >= 8 { // guest times are already in user and nice
			break
		}
		n, _ := strconv.ParseInt(v, 10, 64)
		sum += n
		if i == 3 || i == 4 { // idle, iowait
			idle += n
		}
	}
	return time.Duration(sum-idle) * clockTick, time.Duration(sum) * clockTick
}

// cpuLine is one phase's row of the CPU table: µs per unit for each of
// cols, summed over the processes of that name (a cluster's nodes), blank
// where the phase did not count that process.
func cpuLine(what string, u cpuUse, cols []string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "| %s | %d %s |", what, u.n, u.unit)
	for _, c := range cols {
		cell := " "
		if slices.Contains(u.names, c) {
			cell = fmt.Sprintf(" %.0f ", float64(u.sum(c))/float64(time.Microsecond))
		}
		b.WriteString(cell + "|")
	}
	fmt.Fprintf(&b, " %.0f | %.0f%% | %.0f/s |", float64(u.total())/float64(time.Microsecond), 100*u.busy, u.bound())
	return b.String()
}

// mergeCPU is the phases us (the same processes, in the same order) as
// one: CPU per unit over all their units, busy over all their time.
func mergeCPU(us []cpuUse) cpuUse {
	if len(us) == 0 {
		return cpuUse{}
	}
	m := cpuUse{unit: us[0].unit, names: us[0].names, cores: us[0].cores}
	used := make([]time.Duration, len(m.names))
	var busy float64
	for _, u := range us {
		m.n += u.n
		m.wall += u.wall
		busy += u.busy * u.wall.Seconds()
		for i, per := range u.perUnit {
			used[i] += per * time.Duration(u.n)
		}
	}
	for _, t := range used {
		per := time.Duration(0)
		if m.n > 0 {
			per = t / time.Duration(m.n)
		}
		m.perUnit = append(m.perUnit, per)
	}
	if m.wall > 0 {
		m.busy = busy / m.wall.Seconds()
	}
	return m
}
