// Package testclock gives a test its one clock: a fixed instant that the test
// names, moved by the FLOWGATE_TEST_CLOCK_SHIFT environment variable.
//
// A test that fixes its clock must give the same clock to everything it
// drives (senders, doubles, interpreters). When it forgets one, that component
// falls back to the real clock, and the test passes on the day it was written
// and fails weeks later, when the real clock has moved away from the fixed one.
// CI therefore runs the tests that use this package a second and third time
// with the shift set far into the past and far into the future (see the
// Makefile's test-clock-shift target): a test that mixes the fixed clock with
// the real one fails at once instead of on some later day.
package testclock

import (
	"fmt"
	"os"
	"sync"
	"time"
)

// EnvShift names the environment variable that moves every fixed test clock:
// a Go duration such as "-87600h" (ten years earlier) or "87600h".
const EnvShift = "FLOWGATE_TEST_CLOCK_SHIFT"

var (
	shiftOnce sync.Once
	shift     time.Duration
)

// Shift is the duration read from FLOWGATE_TEST_CLOCK_SHIFT (zero when unset).
// A value that is not a Go duration panics: a guard that silently does
// nothing would defeat its purpose.
func Shift() time.Duration {
	shiftOnce.Do(func() {
		v := os.Getenv(EnvShift)
		if v == "" {
			return
		}
		d, err := time.ParseDuration(v)
		if err != nil {
			panic(fmt.Sprintf("testclock: %s=%q is not a Go duration (e.g. -87600h): %v", EnvShift, v, err))
		}
		shift = d
	})
	return shift
}

// Date is time.Date in UTC, moved by Shift. Tests use it for the fixed instant
// their clock starts at.
func Date(year int, month time.Month, day, hour, min, sec int) time.Time {
	return time.Date(year, month, day, hour, min, sec, 0, time.UTC).Add(Shift())
}

// Clock is a fixed clock that a test may move forward. It is safe for
// concurrent use, so the same clock can be handed to a server and a client.
type Clock struct {
	mu  sync.Mutex
	now time.Time
}

// New returns a clock that stands at t until Advance or Set moves it.
func New(t time.Time) *Clock { return &Clock{now: t} }

// Now is the clock's time; pass the method value (c.Now) as a func() time.Time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// Advance moves the clock forward by d.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// Set moves the clock to t.
func (c *Clock) Set(t time.Time) {
	c.mu.Lock()
	c.now = t
	c.mu.Unlock()
}
