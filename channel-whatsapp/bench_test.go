package whatsapp_test

import (
	"context"
	"testing"

	"github.com/flowgate/flowgate/shared/events"
	whatsappdouble "github.com/flowgate/flowgate/shared/providerdouble/whatsapp"
)

// BenchmarkSend measures how many messages one process pushes through
// Sender.Send into an unlimited double over real loopback HTTP. The double
// runs in the same process, so its CPU is counted too.
func BenchmarkSend(b *testing.B) {
	d, s := setup(b, whatsappdouble.WithoutLog())
	bot := testBot(whatsappdouble.DefaultToken)
	out := inWindow(events.Content{Type: events.ContentText, Text: "Your order #1234 has shipped"})
	b.SetParallelism(16)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := s.Send(context.Background(), bot, out, out.Messages[0]); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
	if got := d.Stats().Accepted; got != int64(b.N) {
		b.Fatalf("double accepted %d of %d", got, b.N)
	}
}
