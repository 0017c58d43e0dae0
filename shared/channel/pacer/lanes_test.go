package pacer_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	whatsapp "github.com/flowgate/flowgate/channel-whatsapp"
	"github.com/flowgate/flowgate/shared/bus"
	"github.com/flowgate/flowgate/shared/channel"
	"github.com/flowgate/flowgate/shared/channel/pacer"
	"github.com/flowgate/flowgate/shared/events"
	whatsappdouble "github.com/flowgate/flowgate/shared/providerdouble/whatsapp"
	"github.com/flowgate/flowgate/shared/store"
)

func waBot(t *testing.T, w *workers, d *whatsappdouble.Server, id, phoneID string, rate float64) {
	t.Helper()
	require.NoError(t, w.st.CreateBot(context.Background(), store.Bot{ID: id, Name: id, CreatedAt: time.Now().UTC(),
		Channels: store.ChannelAccounts{WhatsApp: &store.WhatsAppAccount{
			PhoneNumberID: phoneID, AccessToken: whatsappdouble.DefaultToken, APIBase: d.APIBase(), RatePerSecond: rate}}}))
}

func waSender(t *testing.T) func(int) channel.Sender {
	return func(int) channel.Sender {
		s, err := whatsapp.NewSender()
		require.NoError(t, err)
		return s
	}
}

func numbers(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("+%s%07d", prefix, i)
	}
	return out
}

// acceptedFrom counts the double's acceptances from one number.
func acceptedFrom(d *whatsappdouble.Server, phoneID string) int {
	n := 0
	for _, a := range d.Accepted() {
		if a.PhoneNumberID == phoneID {
			n++
		}
	}
	return n
}

func acceptedTo(d *whatsappdouble.Server, to string) bool {
	for _, a := range d.Accepted() {
		if a.To == to {
			return true
		}
	}
	return false
}

func dlqSize(t *testing.T, b *bus.Bus) uint64 {
	t.Helper()
	n, err := b.Queued(context.Background(), bus.StreamDLQ, events.SubjectDLQ+".>")
	require.NoError(t, err)
	return n
}

// One bot's paced backlog holds up neither another bot's messages nor the
// same bot's high-priority ones: with bot A's 300 bulk messages queued at
// 20/s (15 s of sending) ahead of them in the stream, bot B's message and
// bot A's high-lane message reach the provider while A's backlog is still
// large. Two worker replicas. (Latency figures: bench/fairness.)
func TestBacklogOfOneBotDoesNotHoldUpOthers(t *testing.T) {
	for _, replicas := range []int{1, 2} {
		t.Run(fmt.Sprintf("replicas=%d", replicas), func(t *testing.T) {
			d := whatsappdouble.New()
			t.Cleanup(d.Close)
			w := newWorkers(t, replicas)
			const phoneA, phoneB = "100000000000001", "100000000000002"
			waBot(t, w, d, "bota", phoneA, 20)
			waBot(t, w, d, "botb", phoneB, 1000)
			const backlog = 300
			w.enqueueLane("bota", events.ChannelWhatsApp, events.LaneBulk, "a-bulk", numbers("3460", backlog))
			w.runWith(channel.RunnerConfig{}, whatsapp.Provider.PacerConfig(), waSender(t))
			// A's broadcast is under way.
			require.Eventually(t, func() bool { return acceptedFrom(d, phoneA) >= 5 }, 30*time.Second, 10*time.Millisecond)
			w.enqueueLane("botb", events.ChannelWhatsApp, events.LaneHigh, "b-one", []string{"+31600000001"})
			w.enqueueLane("bota", events.ChannelWhatsApp, events.LaneHigh, "a-one", []string{"+31600000002"})
			require.Eventually(t, func() bool {
				return acceptedTo(d, "+31600000001") && acceptedTo(d, "+31600000002")
			}, 60*time.Second, 10*time.Millisecond)
			sentA := acceptedFrom(d, phoneA)
			t.Logf("bot B's message and bot A's high-lane message sent while A had sent %d of its %d bulk messages", sentA-1, backlog)
			require.Less(t, sentA, backlog-100, "both went out while A's backlog was still large")
			// The broadcast finishes, each message once.
			require.Eventually(t, func() bool { return acceptedFrom(d, phoneA) >= backlog+1 }, 60*time.Second, 50*time.Millisecond)
			seen := map[string]int{}
			for _, a := range d.Accepted() {
				seen[a.To]++
			}
			require.Len(t, seen, backlog+2)
			for to, n := range seen {
				require.Equal(t, 1, n, to)
			}
			require.Zero(t, dlqSize(t, w.buses[0]))
		})
	}
}

// Waiting is not failing: an account paced at 1/s with a backlog of 30 s
// of sending, a pacer MaxWait of 100 ms, a consumer AckWait of 2 s and
// MaxDeliver 2 (in production 20 s, 60 s and 20: the backlog here is 300
// MaxWaits and 15 AckWaits long, as a backlog of hours is in production).
// Every message is sent once and nothing is dead-lettered: a paced
// backlog waits in the stream, and a handler waiting for a far pacing
// slot keeps its bundle.
func TestPacedBacklogIsNeverDeadLettered(t *testing.T) {
	d := whatsappdouble.New()
	t.Cleanup(d.Close)
	w := newWorkers(t, 2)
	const phone = "100000000000003"
	waBot(t, w, d, "slow", phone, 1)
	const backlog = 30
	w.enqueueLane("slow", events.ChannelWhatsApp, events.LaneBulk, "slow", numbers("3461", backlog))
	w.runWith(channel.RunnerConfig{AckWait: 2 * time.Second, MaxDeliver: 2},
		func() pacer.Config {
			c := whatsapp.Provider.PacerConfig()
			c.MaxWait = 100 * time.Millisecond
			return c
		}(), waSender(t))
	require.Eventually(t, func() bool { return acceptedFrom(d, phone) >= backlog }, 3*time.Minute, 100*time.Millisecond)
	time.Sleep(3 * time.Second) // AckWait: anything redelivered would be sent by now
	seen := map[string]int{}
	for _, a := range d.Accepted() {
		seen[a.To]++
	}
	require.Len(t, seen, backlog)
	for to, n := range seen {
		require.Equal(t, 1, n, "%s sent once", to)
	}
	require.Zero(t, dlqSize(t, w.buses[0]), "nothing dead-lettered")
	n, err := w.buses[0].Queued(context.Background(), bus.StreamOutbound, events.SubjectOutbound+".>")
	require.NoError(t, err)
	require.Zero(t, n, "every bundle acked")
}
