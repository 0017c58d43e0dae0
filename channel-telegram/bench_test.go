//go:build unix

package telegram_test

import (
	"context"
	"strconv"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/flowgate/flowgate/shared/events"
	telegramdouble "github.com/flowgate/flowgate/shared/providerdouble/telegram"
)

// BenchmarkSend measures how many messages one Sender pushes into an
// unlimited double over loopback HTTP, with 64 concurrent sends.
func BenchmarkSend(b *testing.B) {
	f := newFixture(b, telegramdouble.WithUnlimited())
	content := events.Content{Type: events.ContentButtons, Text: "Your order shipped", Buttons: []events.Button{{ID: "track", Title: "Track"}}}
	var n atomic.Int64
	b.SetParallelism(32) // × GOMAXPROCS goroutines
	b.ReportAllocs()
	cpu0 := cpuTime()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := n.Add(1)
			out := events.Outbound{BotID: "acme", To: strconv.FormatInt(1000+i, 10)}
			if _, err := f.sender.Send(context.Background(), f.bot, out, events.OutboundMessage{ID: strconv.FormatInt(i, 10), Content: content}); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
	// The machine is shared: CPU per message (sender and double together,
	// both in this process) says what a dedicated core would achieve.
	b.ReportMetric(float64((cpuTime()-cpu0).Microseconds())/float64(b.N), "cpu-µs/msg")
	if got := f.double.Counters().Accepted; got != int64(b.N) {
		b.Fatalf("double accepted %d of %d", got, b.N)
	}
}

// cpuTime is the process's user+system CPU time so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
