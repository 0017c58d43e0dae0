package testclock

import (
	"sync"
	"testing"
	"time"
)

func TestDateIsUTCAndShifted(t *testing.T) {
	got := Date(2026, 11, 21, 12, 0, 0)
	want := time.Date(2026, 11, 21, 12, 0, 0, 0, time.UTC).Add(Shift())
	if !got.Equal(want) || got.Location() != time.UTC {
		t.Fatalf("Date = %v, want %v in UTC", got, want)
	}
}

func TestClockAdvanceAndSet(t *testing.T) {
	start := Date(2026, 1, 1, 0, 0, 0)
	c := New(start)
	var wg sync.WaitGroup
	for i := 0; i < 10; i++ {
		wg.Add(1)
		go func() { defer wg.Done(); c.Advance(time.Second) }()
	}
	wg.Wait()
	if got := c.Now().Sub(start); got != 10*time.Second {
		t.Fatalf("advanced %v, want 10s", got)
	}
	c.Set(start)
	if !c.Now().Equal(start) {
		t.Fatalf("Set did not move the clock")
	}
}
