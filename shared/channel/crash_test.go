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
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	whatsapp "github.com/flowgate/flowgate/channel-whatsapp"
	"github.com/flowgate/flowgate/shared/bus"
	"github.com/flowgate/flowgate/shared/bus/bustest"
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
	// envInFlight is the child runner's MaxInFlightPerAccount (unset: 0,
	// the default).
	envInFlight = "FLOWGATE_CRASH_MAX_IN_FLIGHT"
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
	// The production defaults, but for the in-flight limit the parent
	// may set.
	var cfg channel.RunnerConfig
	if v := os.Getenv(envInFlight); v != "" {
		if cfg.MaxInFlightPerAccount, err = strconv.Atoi(v); err != nil {
			return err
		}
	}
	r, err := channel.NewRunner(cfg, channel.RunnerDeps{Sender: s, Bus: b, Store: st, Pacer: p, Logger: log})
	if err != nil {
		return err
	}
	return r.Run(ctx)
}

type child struct {
	cmd     *exec.Cmd
	started time.Time
	killed  time.Time
}

func startChild(t *testing.T, natsURL, storeDir string, env ...string) *child {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(append(os.Environ(), envChild+"=1", envNATS+"="+natsURL, envStore+"="+storeDir), env...)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	c := &child{cmd: cmd, started: time.Now()}
	require.NoError(t, cmd.Start())
	t.Cleanup(func() { _ = c.cmd.Process.Kill(); _, _ = c.cmd.Process.Wait() })
	return c
}

func (c *child) kill(t *testing.T) {
	t.Helper()
	c.killed = time.Now()
	require.NoError(t, c.cmd.Process.Signal(syscall.SIGKILL))
	_ = c.cmd.Wait()
}

// recordedSends maps each message the store records as sent to the
// provider message id recorded with it.
func recordedSends(t *testing.T, dir string, runs int) map[string]string {
	t.Helper()
	ctx := context.Background()
	st, err := sqlite.Open(ctx, dir)
	require.NoError(t, err)
	defer st.Close()
	out := map[string]string{}
	for r := range runs {
		ms, err := st.ListRunMessages(ctx, "crash", fmt.Sprintf("run-%05d", r))
		require.NoError(t, err)
		for _, m := range ms {
			if m.Status != events.StatusQueued {
				out[m.ID] = m.ProviderMessageID
			}
		}
	}
	return out
}

// acceptance is one send the double accepted: the Flowgate message id (the
// text body) and the double's log entry.
type acceptance struct {
	msg string
	whatsappdouble.AcceptedMessage
}

func acceptances(d *whatsappdouble.Server) []acceptance {
	var out []acceptance
	for _, a := range d.Accepted() {
		var p struct {
			Text struct {
				Body string `json:"body"`
			} `json:"text"`
		}
		_ = json.Unmarshal(a.Payload, &p)
		out = append(out, acceptance{msg: p.Text.Body, AcceptedMessage: a})
	}
	return out
}

// killStats is what the double and the store say about one kill.
type killStats struct {
	// inFlight are the messages the double accepted from the killed
	// process that the store did not record as sent right after the kill:
	// request sent, answer not (yet) recorded.
	inFlight map[string]bool
	// Of those, by the double's clock: answered before the kill (the
	// record was not stored yet), received before but answered after the
	// kill, and received after the kill (written to the socket by the
	// worker just before it died, read by the double afterwards).
	answeredBefore, answeredAfter, receivedAfter int
}

func (k killStats) String() string {
	return fmt.Sprintf("in flight %d (answered before the kill, not yet recorded: %d; request open at the kill: %d; request read by the double after the kill: %d)",
		len(k.inFlight), k.answeredBefore, k.answeredAfter, k.receivedAfter)
}

// The three crash tests run in parallel: each waits for the consumer's
// AckWait (bus.OutboundAckWait) to give back what its killed workers had
// fetched.

// A worker killed with SIGKILL three times in the middle of 5,000 sends at
// 1,000 messages/s (WhatsApp's top tier), with the runner's default
// in-flight limit: after restarts every message is accepted by the
// provider, and the duplicates are exactly the messages in flight at a kill
// (accepted by the provider, not yet recorded as sent), each once per kill,
// at most MaxInFlightPerAccount per kill.
func TestWorkerKilledMidBroadcastSendsEachMessageOnce(t *testing.T) {
	t.Parallel()
	kills := crashTest(t, 5000, []int{1250, 2500, 3750}, 0, 1000)
	for _, k := range kills {
		require.LessOrEqual(t, len(k.inFlight), channel.DefaultMaxInFlightPerAccount, "at most MaxInFlightPerAccount in flight per account")
	}
}

// The same without pacing (an account rate far above what the process can
// send): every sender is busy, so the in-flight limit is what bounds the
// duplicates of a kill.
func TestWorkerKilledAtFullSpeedDuplicatesAtMostInFlightLimit(t *testing.T) {
	t.Parallel()
	kills := crashTest(t, 5000, []int{1500, 3500}, 0, 1e6)
	for _, k := range kills {
		require.LessOrEqual(t, len(k.inFlight), channel.DefaultMaxInFlightPerAccount, "at most MaxInFlightPerAccount in flight per account")
	}
}

// With MaxInFlightPerAccount 1 a kill duplicates at most one message, also
// at full speed.
func TestWorkerKilledWithInFlightOneDuplicatesAtMostOnePerKill(t *testing.T) {
	t.Parallel()
	kills := crashTest(t, 1500, []int{400, 1000}, 1, 1e6)
	for _, k := range kills {
		require.LessOrEqual(t, len(k.inFlight), 1, "one in flight per account")
	}
}

// crashTest queues total single-message bundles for one WhatsApp number
// paced at rate, runs a worker child process (MaxInFlightPerAccount
// inflight, 0 = the default) and kills it with SIGKILL once the double has accepted each of
// killAt, restarting it after each kill, until every message is sent. It
// checks the exactly-once accounting and returns what each kill left in
// flight.
func crashTest(t *testing.T, total int, killAt []int, inflight int, rate float64) []killStats {
	// Bundles of one message: a killed worker's unacked bundles (up to
	// its prefetch) come back only after AckWait, and single-message
	// bundles let the restarted worker go on with the rest meanwhile.
	runs := total
	nats := bustest.Embedded(t, bustest.Listening)
	d := whatsappdouble.New()
	defer d.Close()
	ctx := context.Background()
	var env []string
	if inflight != 0 {
		env = append(env, envInFlight+"="+strconv.Itoa(inflight))
	}

	storeDir := t.TempDir()
	st, err := sqlite.Open(ctx, storeDir)
	require.NoError(t, err)
	now := time.Now().UTC()
	require.NoError(t, st.CreateBot(ctx, store.Bot{ID: "crash", Name: "crash", CreatedAt: now, Channels: store.ChannelAccounts{
		WhatsApp: &store.WhatsAppAccount{PhoneNumberID: "106540352242922", AccessToken: whatsappdouble.DefaultToken,
			APIBase: d.APIBase(), RatePerSecond: rate}}}))
	b, err := bus.Connect(ctx, nats.ClientURL(), bus.Config{Source: "/crash-parent"})
	require.NoError(t, err)
	defer b.Close()
	for r := range runs {
		runID := fmt.Sprintf("run-%05d", r)
		to := fmt.Sprintf("+3161%07d", r)
		last := now
		id := runID + ":1"
		c := events.Content{Type: events.ContentText, Text: id}
		raw, _ := json.Marshal(c)
		out := events.Outbound{BotID: "crash", RunID: runID, ContactID: "c" + runID, Channel: events.ChannelWhatsApp, To: to, LastInboundAt: &last,
			Messages: []events.OutboundMessage{{ID: id, Seq: 1, Content: c}}}
		require.NoError(t, st.InsertMessages(ctx, []store.Message{{ID: id, BotID: "crash", RunID: runID, ContactID: out.ContactID,
			Channel: events.ChannelWhatsApp, To: to, Seq: 1, Content: raw, Status: events.StatusQueued, CreatedAt: now}}))
		ev, err := bus.NewEvent("out:"+id, events.TypeOutbound, out.ContactID, out)
		require.NoError(t, err)
		_, err = b.Publish(ctx, events.OutboundSubject(events.ChannelWhatsApp, "crash", events.LaneBulk), ev)
		require.NoError(t, err)
	}
	require.NoError(t, st.Close())

	var children []*child
	var snapshots []map[string]string // the store's sent records right after each kill
	for _, at := range killAt {
		c := startChild(t, nats.ClientURL(), storeDir, env...)
		children = append(children, c)
		require.Eventually(t, func() bool { return d.Stats().Accepted >= int64(at) }, 60*time.Second, time.Millisecond, "double: %+v", d.Stats())
		c.kill(t)
		time.Sleep(200 * time.Millisecond) // requests the double was still reading or answering
		snapshots = append(snapshots, recordedSends(t, storeDir, runs))
	}
	c := startChild(t, nats.ClientURL(), storeDir, env...)
	children = append(children, c)
	require.Eventually(t, func() bool { return len(recordedSends(t, storeDir, runs)) == total }, 150*time.Second, 100*time.Millisecond)
	// The bundles stranded by the kills come back after AckWait; they are
	// recorded as sent, so they are skipped, not sent again. Wait for them.
	require.Eventually(t, func() bool { return pendingOutbound(t, b) == 0 }, 150*time.Second, 100*time.Millisecond)
	// What the last kill stranded came back one AckWait after the killed
	// process's last heartbeat (at most a quarter of it before the kill):
	// with the former 60 s that was 45 to 60 s after the kill.
	lastKill := children[len(killAt)-1].killed
	sinceKill := time.Since(lastKill)
	t.Logf("every bundle done %.1f s after the last kill (AckWait %s)", sinceKill.Seconds(), bus.OutboundAckWait)
	require.Less(t, sinceKill, bus.OutboundAckWait+20*time.Second, "a killed worker's bundles are taken over one AckWait after the kill")
	c.kill(t)

	recorded := recordedSends(t, storeDir, runs)
	require.Len(t, recorded, total, "every message is recorded as sent")
	all := acceptances(d)
	// What each kill left in flight: the killed process's acceptances
	// (received between its start and the next process's start, so also
	// requests the double read after the kill) that the store did not
	// record as sent right after the kill.
	kills := make([]killStats, len(snapshots))
	for i := range kills {
		k := killStats{inFlight: map[string]bool{}}
		c, next := children[i], children[i+1]
		for _, a := range all {
			if a.Received.Before(c.started) || !a.Received.Before(next.started) {
				continue // another process's
			}
			if _, ok := snapshots[i][a.msg]; ok {
				continue
			}
			require.False(t, k.inFlight[a.msg], "%s accepted twice by one process", a.msg)
			k.inFlight[a.msg] = true
			switch {
			case a.Received.After(c.killed):
				k.receivedAfter++
			case a.Answered.IsZero() || a.Answered.After(c.killed):
				k.answeredAfter++
			default:
				k.answeredBefore++
			}
		}
		kills[i] = k
	}
	count := map[string]int{}
	issued := map[string]string{} // wamid -> message
	for _, a := range all {
		count[a.msg]++
		issued[a.WAMID] = a.msg
	}
	require.Len(t, count, total, "every message reached the provider")
	for msg, wamid := range recorded {
		require.Equal(t, msg, issued[wamid], "%s is recorded with a provider id the double issued for it", msg)
	}
	// Exactly once, apart from the kills: a message is accepted once, plus
	// once for every kill that found it in flight; so the duplicated
	// messages are exactly those in flight at a kill.
	dups := 0
	for msg, n := range count {
		inFlightAt := 0
		for _, k := range kills {
			if k.inFlight[msg] {
				inFlightAt++
			}
		}
		require.Equal(t, 1+inFlightAt, n, "%s: accepted %d times, in flight at %d kills", msg, n, inFlightAt)
		dups += n - 1
	}
	summary := make([]string, len(kills))
	for i, k := range kills {
		summary[i] = fmt.Sprintf("kill %d: %s", i+1, k)
	}
	limit := "default"
	if inflight != 0 {
		limit = strconv.Itoa(inflight)
	}
	t.Logf("%d messages at %v/s, %d SIGKILLs, max in flight per account %s: %s; duplicates sent %d (total accepted %d)",
		total, rate, len(kills), limit, strings.Join(summary, "; "), dups, len(d.Accepted()))
	return kills
}

// pendingOutbound is how many WhatsApp bundles the stream still holds
// (work queue: a bundle leaves when its consumer acks it).
func pendingOutbound(t *testing.T, b *bus.Bus) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	n, err := b.Queued(ctx, bus.StreamOutbound, events.SubjectOutbound+"."+events.ChannelWhatsApp+".>")
	require.NoError(t, err)
	return int(n)
}
