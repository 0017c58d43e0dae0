package channel_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"syscall"
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
	"github.com/flowgate/flowgate/shared/store/sqlite"
)

// The crash test runs the WhatsApp worker in a child process (this test
// binary, re-executed) so that it can be killed with SIGKILL.
const (
	envChild = "FLOWGATE_CRASH_CHILD"
	envNATS  = "FLOWGATE_CRASH_NATS"
	envStore = "FLOWGATE_CRASH_STORE"
)

func TestMain(m *testing.M) {
	if os.Getenv(envChild) == "1" {
		if err := crashChild(); err != nil {
			fmt.Fprintln(os.Stderr, "crash child:", err)
			os.Exit(2)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// crashChild is a WhatsApp worker process: the production runner, pacer
// and sender on a NATS server and store given by the parent.
func crashChild() error {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	b, err := bus.Connect(ctx, os.Getenv(envNATS), bus.Config{Source: "/crash-child", Logger: log})
	if err != nil {
		return err
	}
	defer b.Close()
	st, err := sqlite.Open(ctx, os.Getenv(envStore))
	if err != nil {
		return err
	}
	defer st.Close()
	p, err := pacer.New(ctx, b.JetStream(), pacer.Config{Channel: events.ChannelWhatsApp, Logger: log})
	if err != nil {
		return err
	}
	s, err := whatsapp.NewSender()
	if err != nil {
		return err
	}
	r, err := channel.NewRunner(channel.RunnerConfig{}, s, b, st, p, log)
	if err != nil {
		return err
	}
	return r.Run(ctx)
}

type child struct {
	cmd *exec.Cmd
}

func startChild(t *testing.T, natsURL, storeDir string) *child {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), envChild+"=1", envNATS+"="+natsURL, envStore+"="+storeDir)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	require.NoError(t, cmd.Start())
	c := &child{cmd: cmd}
	t.Cleanup(func() { _ = c.cmd.Process.Kill(); _, _ = c.cmd.Process.Wait() })
	return c
}

func (c *child) kill(t *testing.T) {
	t.Helper()
	require.NoError(t, c.cmd.Process.Signal(syscall.SIGKILL))
	_ = c.cmd.Wait()
}

// sentIDs are the ids of the messages the store records as accepted.
func sentIDs(t *testing.T, dir string, runs int) int {
	t.Helper()
	ctx := context.Background()
	st, err := sqlite.Open(ctx, dir)
	require.NoError(t, err)
	defer st.Close()
	n := 0
	for r := range runs {
		ms, err := st.ListRunMessages(ctx, "crash", fmt.Sprintf("run-%05d", r))
		require.NoError(t, err)
		for _, m := range ms {
			if m.Status != events.StatusQueued {
				n++
			}
		}
	}
	return n
}

// acceptedBodies counts the double's accepted messages by text body (the
// Flowgate message id).
func acceptedBodies(d *whatsappdouble.Server) map[string]int {
	out := map[string]int{}
	for _, a := range d.Accepted() {
		var p struct {
			Text struct {
				Body string `json:"body"`
			} `json:"text"`
		}
		_ = json.Unmarshal(a.Payload, &p)
		out[p.Text.Body]++
	}
	return out
}

// A worker killed with SIGKILL twice in the middle of 5,000 sends: after
// restarts every message is accepted by the provider, and the only
// duplicates are messages that were in flight at a kill (accepted by the
// provider, not yet recorded as sent).
func TestWorkerKilledMidBroadcastSendsEachMessageOnce(t *testing.T) {
	// 5,000 messages in bundles of one. A killed worker's unacked bundles
	// (up to the consumer's MaxAckPending, 1,000) come back only after
	// AckWait (60 s): single-message bundles let the restarted worker go on
	// with the rest meanwhile.
	const runs, perRun = 5000, 1
	const total = runs * perRun
	nats, err := bus.StartEmbedded(bus.EmbeddedConfig{StoreDir: t.TempDir(), Listen: "127.0.0.1:-1"})
	require.NoError(t, err)
	defer nats.Shutdown()
	d := whatsappdouble.New()
	defer d.Close()
	ctx := context.Background()

	storeDir := t.TempDir()
	st, err := sqlite.Open(ctx, storeDir)
	require.NoError(t, err)
	now := time.Now().UTC()
	require.NoError(t, st.CreateBot(ctx, store.Bot{ID: "crash", Name: "crash", CreatedAt: now, Channels: store.ChannelAccounts{
		WhatsApp: &store.WhatsAppAccount{PhoneNumberID: "106540352242922", AccessToken: whatsappdouble.DefaultToken,
			APIBase: d.APIBase(), RatePerSecond: 1000}}}))
	b, err := bus.Connect(ctx, nats.ClientURL(), bus.Config{Source: "/crash-parent"})
	require.NoError(t, err)
	defer b.Close()
	for r := range runs {
		runID := fmt.Sprintf("run-%05d", r)
		to := fmt.Sprintf("+3161%07d", r)
		last := now
		out := events.Outbound{BotID: "crash", RunID: runID, ContactID: "c" + runID, Channel: events.ChannelWhatsApp, To: to, LastInboundAt: &last}
		var recs []store.Message
		for i := 1; i <= perRun; i++ {
			id := fmt.Sprintf("%s:%d", runID, i)
			c := events.Content{Type: events.ContentText, Text: id}
			raw, _ := json.Marshal(c)
			out.Messages = append(out.Messages, events.OutboundMessage{ID: id, Seq: i, Content: c})
			recs = append(recs, store.Message{ID: id, BotID: "crash", RunID: runID, ContactID: out.ContactID,
				Channel: events.ChannelWhatsApp, To: to, Seq: i, Content: raw, Status: events.StatusQueued, CreatedAt: now})
		}
		require.NoError(t, st.InsertMessages(ctx, recs))
		ev, err := bus.NewEvent("out:"+out.Messages[0].ID, events.TypeOutbound, out.ContactID, out)
		require.NoError(t, err)
		_, err = b.Publish(ctx, events.OutboundSubject(events.ChannelWhatsApp, "crash"), ev)
		require.NoError(t, err)
	}
	require.NoError(t, st.Close())

	var inFlight []int
	for _, killAt := range []int{1500, 3500} {
		c := startChild(t, nats.ClientURL(), storeDir)
		require.Eventually(t, func() bool { return d.Stats().Accepted >= int64(killAt) }, 60*time.Second, time.Millisecond, "double: %+v", d.Stats())
		c.kill(t)
		time.Sleep(200 * time.Millisecond) // requests the double was still answering
		accepted := len(acceptedBodies(d))
		recorded := sentIDs(t, storeDir, runs)
		require.GreaterOrEqual(t, accepted, recorded, "nothing is recorded as sent that the provider did not accept")
		inFlight = append(inFlight, accepted-recorded)
	}
	c := startChild(t, nats.ClientURL(), storeDir)
	require.Eventually(t, func() bool { return len(acceptedBodies(d)) == total }, 150*time.Second, 50*time.Millisecond)
	// The bundles stranded by the kills come back after AckWait; they are
	// recorded as sent, so they are skipped, not sent again. Wait for them.
	require.Eventually(t, func() bool { return pendingOutbound(t, b) == 0 }, 150*time.Second, 100*time.Millisecond)
	c.kill(t)

	bodies := acceptedBodies(d)
	dups := 0
	for _, n := range bodies {
		dups += n - 1
	}
	t.Logf("%d messages, 2 SIGKILLs: accepted-but-unrecorded at the kills %v, duplicates sent %d (total accepted %d)",
		total, inFlight, dups, len(d.Accepted()))
	require.Len(t, bodies, total, "every message reached the provider")
	// WhatsApp's send has no idempotency key: a message the provider
	// accepted whose "sent" record was not yet durable at the kill is sent
	// again. Those are the only duplicates, at most one per sender
	// goroutine (RunnerConfig.Workers = 64) per kill.
	require.LessOrEqual(t, dups, inFlight[0]+inFlight[1], "the only duplicates are the sends in flight at a kill")
	for _, n := range inFlight {
		require.LessOrEqual(t, n, 64, "at most one per concurrent sender")
	}
	require.Equal(t, total, sentIDs(t, storeDir, runs), "every message is recorded as sent")
}

// pendingOutbound is how many bundles the WhatsApp consumer has not acked.
func pendingOutbound(t *testing.T, b *bus.Bus) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := b.JetStream().Consumer(ctx, bus.StreamOutbound, bus.OutboundConsumer(events.ChannelWhatsApp).Durable)
	require.NoError(t, err)
	info, err := c.Info(ctx)
	require.NoError(t, err)
	return int(info.NumPending) + info.NumAckPending
}
