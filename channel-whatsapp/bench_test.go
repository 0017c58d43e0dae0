package whatsapp_test

import (
	"context"
	"fmt"
	"testing"

	whatsapp "github.com/flowgate/flowgate/channel-whatsapp"
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

// BenchmarkParseWebhook parses a POST with the documented maximum of 1,000
// updates (500 messages, 500 statuses): the ingress must answer Meta fast.
func BenchmarkParseWebhook(b *testing.B) {
	n := whatsappdouble.NewNotification(phoneID)
	for i := range 500 {
		n.AddMessage("U", whatsappdouble.TextMessage(fmt.Sprintf("3161%07d", i), fmt.Sprintf("wamid.in%d", i), "hello there", now))
		n.AddStatus(whatsappdouble.StatusUpdate(fmt.Sprintf("wamid.out%d", i), "delivered", "31612345678", now))
	}
	body, _ := whatsappdouble.SignedWebhook("s", n)
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := whatsapp.ParseWebhook("acme", body); err != nil {
			b.Fatal(err)
		}
	}
}
