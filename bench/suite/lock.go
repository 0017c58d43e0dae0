package main

import (
	"fmt"
	"strings"
	"time"
)

// The SQLite write lock over a phase. Processes sharing one SQLite data
// directory (the suite's stand-in for MongoDB) write one at a time: the
// time each holds the lock is time the others cannot write, so the holds
// summed over the processes, per run, bound the drain whatever the cores
// (1 s ÷ that sum). Read from each process's
// flowgate_sqlite_write_lock_*_seconds_total before and after the phase.

// lockProc is one process whose write lock is measured: its name and its
// metrics address.
type lockProc struct{ name, addr string }

// lockTimes is one process's counters (seconds). idle, the part of held
// spent waiting for more writes, is read when the build serves it.
type lockTimes struct {
	held, wait, idle float64
	hasIdle          bool
}

type lockMeter struct {
	procs  []lockProc
	before []lockTimes
	err    error // a reading before the phase that failed
}

// lockUse is the write lock over a phase, per unit of work.
type lockUse struct {
	n      int
	procs  []lockProc
	deltas []lockTimes
	err    error
}

func startLocks(procs ...lockProc) *lockMeter {
	m := &lockMeter{procs: procs, before: make([]lockTimes, len(procs))}
	for i, p := range procs {
		var err error
		if m.before[i], err = readLock(p.addr); err != nil && m.err == nil {
			m.err = fmt.Errorf("%s: %w", p.name, err)
		}
	}
	return m
}

func (m *lockMeter) stop(n int) lockUse {
	u := lockUse{n: n, procs: m.procs, deltas: make([]lockTimes, len(m.procs)), err: m.err}
	if u.err != nil {
		return u
	}
	for i, p := range m.procs {
		after, err := readLock(p.addr)
		if err != nil {
			u.err = fmt.Errorf("%s: %w", p.name, err)
			return u
		}
		u.deltas[i] = lockTimes{held: after.held - m.before[i].held, wait: after.wait - m.before[i].wait,
			idle: after.idle - m.before[i].idle, hasIdle: after.hasIdle && m.before[i].hasIdle}
	}
	return u
}

// readLock reads a process's write-lock counters from its /metrics.
func readLock(addr string) (lockTimes, error) {
	mfs, err := scrape(addr)
	if err != nil {
		return lockTimes{}, err
	}
	get := func(name string) (float64, error) {
		mf, ok := mfs[name]
		if !ok || len(mf.GetMetric()) == 0 {
			return 0, fmt.Errorf("no %s", name)
		}
		return mf.GetMetric()[0].GetCounter().GetValue(), nil
	}
	held, err := get("flowgate_sqlite_write_lock_held_seconds_total")
	if err != nil {
		return lockTimes{}, err
	}
	wait, err := get("flowgate_sqlite_write_lock_wait_seconds_total")
	if err != nil {
		return lockTimes{}, err
	}
	t := lockTimes{held: held, wait: wait}
	if idle, err := get("flowgate_sqlite_write_lock_idle_seconds_total"); err == nil {
		t.idle, t.hasIdle = idle, true
	}
	return t, nil
}

// perUnit is seconds as µs per unit of work.
func (u lockUse) perUnit(s float64) float64 {
	if u.n == 0 {
		return 0
	}
	return s / float64(u.n) * 1e6
}

// held is the holds of all the processes per unit of work.
func (u lockUse) held() time.Duration {
	var s float64
	for _, d := range u.deltas {
		s += d.held
	}
	return time.Duration(u.perUnit(s) * float64(time.Microsecond))
}

// bound is the most runs per second the lock allows at these holds.
func (u lockUse) bound() float64 {
	if h := u.held(); h > 0 {
		return float64(time.Second) / float64(h)
	}
	return 0
}

// sentence describes the lock over a phase against its drain rate and the
// raw publish baseline; "" when it was not measured.
func (u lockUse) sentence(what string, drain, raw float64, rawName string) string {
	if u.err != nil {
		return fmt.Sprintf("SQLite write lock over %s: not measured (%v).", what, u.err)
	}
	if u.n == 0 || u.held() <= 0 {
		return ""
	}
	var parts []string
	for i, p := range u.procs {
		idle := ""
		if d := u.deltas[i]; d.hasIdle {
			idle = fmt.Sprintf(" (%.0f µs of it waiting for more writes)", u.perUnit(d.idle))
		}
		parts = append(parts, fmt.Sprintf("the %s held it %.0f µs per run%s and waited %.0f µs for it", p.name, u.perUnit(u.deltas[i].held), idle, u.perUnit(u.deltas[i].wait)))
	}
	s := fmt.Sprintf("SQLite write lock over %s (the processes share one SQLite data directory, the suite's stand-in for MongoDB, and write one at a time): %s. Together %.0f µs per run: the lock allows at most %.0f runs/s",
		what, strings.Join(parts, "; "), float64(u.held())/float64(time.Microsecond), u.bound())
	if raw > 0 {
		s += fmt.Sprintf(", %.2f of the %s", u.bound()/raw, rawName)
	}
	if drain > 0 {
		s += fmt.Sprintf("; the drain reached %.0f runs/s, %.0f %% of that", drain, 100*drain/u.bound())
	}
	return s + "."
}
