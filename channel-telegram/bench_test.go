package telegram_test

import (
	"context"
	"strconv"
	"sync/atomic"
	"testing"

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
	if got := f.double.Counters().Accepted; got != int64(b.N) {
		b.Fatalf("double accepted %d of %d", got, b.N)
	}
}
