package app_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/flowgate/flowgate/cmd/flowgate/app"
	"github.com/flowgate/flowgate/shared/bus"
	"github.com/flowgate/flowgate/shared/bus/bustest"
	"github.com/flowgate/flowgate/shared/store"
)

// faultyStore fails every write with store.ErrUnavailable while broken, as
// a full disk or a lost primary does; reads go on working.
type faultyStore struct {
	store.Store
	broken atomic.Bool
	// flowsGone makes every flow look deleted (GetFlow: not found).
	flowsGone atomic.Bool
	// refused counts the writes refused.
	refused atomic.Int64
	mu      sync.Mutex
	// failedTriggers counts CreateTrigger calls refused, by trigger id.
	failedTriggers map[string]int
}

func newFaultyStore() *faultyStore { return &faultyStore{failedTriggers: map[string]int{}} }

func (f *faultyStore) fail() error {
	if f.broken.Load() {
		f.refused.Add(1)
		return fmt.Errorf("%w: injected: disk full", store.ErrUnavailable)
	}
	return nil
}

func (f *faultyStore) minTriggerFailures(ids []string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	least := -1
	for _, id := range ids {
		if n := f.failedTriggers[id]; least < 0 || n < least {
			least = n
		}
	}
	return least
}

func (f *faultyStore) GetFlow(ctx context.Context, botID, flowID string, version int) (store.Flow, error) {
	if f.flowsGone.Load() {
		return store.Flow{}, fmt.Errorf("%w: flow %s (injected)", store.ErrNotFound, flowID)
	}
	return f.Store.GetFlow(ctx, botID, flowID, version)
}

func (f *faultyStore) PingWrite(ctx context.Context) error {
	if err := f.fail(); err != nil {
		return err
	}
	return f.Store.(store.WriteProber).PingWrite(ctx)
}

func (f *faultyStore) CreateTrigger(ctx context.Context, t store.Trigger) (store.Trigger, bool, error) {
	if err := f.fail(); err != nil {
		f.mu.Lock()
		f.failedTriggers[t.ID]++
		f.mu.Unlock()
		return store.Trigger{}, false, err
	}
	return f.Store.CreateTrigger(ctx, t)
}

func (f *faultyStore) UpdateTrigger(ctx context.Context, t store.Trigger) (store.Trigger, error) {
	if err := f.fail(); err != nil {
		return store.Trigger{}, err
	}
	return f.Store.UpdateTrigger(ctx, t)
}

func (f *faultyStore) UpsertContact(ctx context.Context, u store.ContactUpsert) (store.Contact, bool, error) {
	if err := f.fail(); err != nil {
		return store.Contact{}, false, err
	}
	return f.Store.UpsertContact(ctx, u)
}

func (f *faultyStore) UpsertContacts(ctx context.Context, us []store.ContactUpsert) ([]store.Contact, error) {
	if err := f.fail(); err != nil {
		return nil, err
	}
	return f.Store.UpsertContacts(ctx, us)
}

func (f *faultyStore) CreateRun(ctx context.Context, r store.Run) (store.Run, bool, error) {
	if err := f.fail(); err != nil {
		return store.Run{}, false, err
	}
	return f.Store.CreateRun(ctx, r)
}

func (f *faultyStore) CreateRuns(ctx context.Context, rs []store.Run) ([]store.Run, []bool, error) {
	if err := f.fail(); err != nil {
		return nil, nil, err
	}
	return f.Store.CreateRuns(ctx, rs)
}

func (f *faultyStore) UpdateRun(ctx context.Context, r store.Run) (store.Run, error) {
	if err := f.fail(); err != nil {
		return store.Run{}, err
	}
	return f.Store.UpdateRun(ctx, r)
}

func (f *faultyStore) UpdateRuns(ctx context.Context, rs []store.Run) ([]int, error) {
	if err := f.fail(); err != nil {
		return nil, err
	}
	return f.Store.UpdateRuns(ctx, rs)
}

func (f *faultyStore) InsertMessages(ctx context.Context, ms []store.Message) error {
	if err := f.fail(); err != nil {
		return err
	}
	return f.Store.InsertMessages(ctx, ms)
}

func (f *faultyStore) IncrTriggerCounters(ctx context.Context, botID, triggerID string, d store.TriggerCounters) error {
	if err := f.fail(); err != nil {
		return err
	}
	return f.Store.IncrTriggerCounters(ctx, botID, triggerID, d)
}

func (f *faultyStore) SetLastRequest(ctx context.Context, botID string, ids []string, data map[string]any, at time.Time) error {
	if err := f.fail(); err != nil {
		return err
	}
	return f.Store.SetLastRequest(ctx, botID, ids, data, at)
}

func (f *faultyStore) AppendSandbox(ctx context.Context, ms ...store.SandboxMessage) error {
	if err := f.fail(); err != nil {
		return err
	}
	return f.Store.AppendSandbox(ctx, ms...)
}

// TestStoreOutageLosesNoAcceptedTrigger: triggers accepted while the store
// refuses every write are retried for longer than the consumer's
// MaxDeliver allows (each one is refused more than 10 times), /readyz
// answers 503 during the outage, nothing is dead-lettered, and every
// trigger runs exactly once after it.
func TestStoreOutageLosesNoAcceptedTrigger(t *testing.T) {
	faulty := newFaultyStore()
	d, c := startDevWith(t, app.Config{DataDir: t.TempDir(), NoDemo: true, RetryBackoff: 100 * time.Millisecond,
		WrapStore: func(st store.Store) store.Store { faulty.Store = st; return faulty }})
	defer func() { require.NoError(t, d.Stop()) }()
	key := setupAcme(c)
	ready := func() int { code, _ := c.call("GET", "/readyz", "", ""); return code }
	require.Equal(t, 200, ready())

	faulty.broken.Store(true)
	require.Eventually(t, func() bool { return ready() == 503 }, 30*time.Second, 20*time.Millisecond,
		"/readyz says the store cannot be written")
	const n = 60
	ids := make([]string, 0, n)
	for i := range n {
		out := c.must("POST", "/v1/bots/acme/dispatch/WELCOME_NEW_USER", key,
			fmt.Sprintf(`{"from":"+1555%07d","name":"User %d","plan":"Basic"}`, i, i), 202)
		ids = append(ids, out["trigger_id"].(string))
	}
	// Every trigger is refused more often than MaxDeliver (10) deliveries:
	// before, this dead-lettered them all.
	require.Eventually(t, func() bool { return faulty.minTriggerFailures(ids) > 12 }, 2*time.Minute, 50*time.Millisecond,
		"each trigger was retried past MaxDeliver")
	require.Equal(t, 503, ready(), "still unready while writes fail")

	faulty.broken.Store(false)
	require.Eventually(t, func() bool { return ready() == 200 }, 30*time.Second, 20*time.Millisecond, "ready again")
	ctx := context.Background()
	require.Eventually(t, func() bool {
		runs, _, err := d.Store.ListRuns(ctx, store.RunFilter{BotID: "acme", Limit: 1000})
		return err == nil && len(runs) == n
	}, 60*time.Second, 50*time.Millisecond, "every accepted trigger ran after the outage")
	require.Eventually(t, func() bool {
		for _, id := range ids {
			tr, err := d.Store.GetTrigger(ctx, "acme", id)
			if err != nil || tr.Status != store.TriggerDone {
				return false
			}
		}
		return true
	}, 60*time.Second, 50*time.Millisecond, "every trigger is done")
	dlq, err := d.Bus.JetStream().Stream(ctx, bus.StreamDLQ)
	require.NoError(t, err)
	require.Zero(t, dlq.CachedInfo().State.Msgs, "nothing was dead-lettered")
	runs, _, err := d.Store.ListRuns(ctx, store.RunFilter{BotID: "acme", Limit: 1000})
	require.NoError(t, err)
	require.Len(t, runs, n, "exactly one run per trigger")
}

// TestDeadLetterReplayRunsOnce: a trigger whose flow is missing when it is
// handled is dead-lettered (a permanent error); once the flow is back, `flowgate
// dlq replay --all` runs it, exactly once, and a second replay finds
// nothing to replay.
func TestDeadLetterReplayRunsOnce(t *testing.T) {
	faulty := newFaultyStore()
	d, c := startDevWith(t, app.Config{DataDir: t.TempDir(), NoDemo: true,
		WrapStore: func(st store.Store) store.Store { faulty.Store = st; return faulty }})
	defer func() { require.NoError(t, d.Stop()) }()
	key := setupAcme(c)
	c.must("PUT", "/v1/bots/acme/flows/later", key, `{"steps":[{"id":"hi","type":"send","text":"Hi {{ name }}"}]}`, 200)
	c.must("PUT", "/v1/bots/acme/events/LATER", key, `{"flow":"later"}`, 201)
	faulty.flowsGone.Store(true) // the fault: the flow is missing when the trigger is handled
	out := c.must("POST", "/v1/bots/acme/dispatch/LATER", key, `{"from":"15550001111","name":"Ann"}`, 202)
	triggerID := out["trigger_id"].(string)

	ctx := context.Background()
	dlq := app.DLQClient{URL: c.base, Key: "e2e-admin-key-0123456789"}
	var list []bus.DeadLetter
	require.Eventually(t, func() bool {
		var err error
		list, _, err = dlq.List(ctx, 0, 10)
		return err == nil && len(list) == 1
	}, 30*time.Second, 20*time.Millisecond, "the trigger is dead-lettered")
	require.Equal(t, triggerID, list[0].EventID)
	require.Equal(t, "orchestrator-triggers", list[0].Consumer)
	require.Contains(t, list[0].Reason, "not found")

	// Only the admin key sees the dead letters.
	code, _ := c.call("GET", "/v1/admin/dlq", key, "")
	require.Equal(t, 403, code)
	code, _ = c.call("GET", "/v1/admin/dlq", "", "")
	require.Equal(t, 401, code)
	code, _ = c.call("GET", "/v1/admin/dlq/abc", dlq.Key, "")
	require.Equal(t, 400, code)
	code, _ = c.call("POST", "/v1/admin/dlq/99999/replay", dlq.Key, "")
	require.Equal(t, 404, code)

	var stdout, stderr strings.Builder
	require.NoError(t, app.DLQCommand(ctx, []string{"show", fmt.Sprint(list[0].Seq), "--url", c.base, "--key", dlq.Key}, &stdout, &stderr))
	require.Contains(t, stdout.String(), `"event_id": "`+triggerID+`"`)
	require.Contains(t, stdout.String(), `"15550001111"`, "show has the payload")
	stdout.Reset()
	require.NoError(t, app.DLQCommand(ctx, []string{"list", "--url", c.base, "--key", dlq.Key}, &stdout, &stderr))
	require.Contains(t, stdout.String(), triggerID)

	// The fault is fixed, then the dead letter replayed.
	faulty.flowsGone.Store(false)
	stdout.Reset()
	require.NoError(t, app.DLQCommand(ctx, []string{"replay", "--all", "--url", c.base, "--key", dlq.Key}, &stdout, &stderr))
	require.Contains(t, stdout.String(), fmt.Sprintf("replayed %d to flowgate.trigger.acme", list[0].Seq))
	require.Eventually(t, func() bool {
		tr, err := d.Store.GetTrigger(ctx, "acme", triggerID)
		return err == nil && tr.Status == store.TriggerDone
	}, 30*time.Second, 20*time.Millisecond, "the replayed trigger ran")
	require.Eventually(t, func() bool { return len(c.sandbox("acme", key, "15550001111")) == 1 }, 30*time.Second, 20*time.Millisecond)

	// Replaying again finds nothing: the dead letter is gone.
	err := app.DLQCommand(ctx, []string{"replay", fmt.Sprint(list[0].Seq), "--url", c.base, "--key", dlq.Key}, &stdout, &stderr)
	require.ErrorContains(t, err, "404")
	left, _, err := dlq.List(ctx, 0, 10)
	require.NoError(t, err)
	require.Empty(t, left)
	time.Sleep(500 * time.Millisecond)
	runs, _, err := d.Store.ListRuns(ctx, store.RunFilter{BotID: "acme", Limit: 1000})
	require.NoError(t, err)
	require.Len(t, runs, 1, "exactly one run")
	require.Equal(t, []string{"Hi Ann"}, texts(c.sandbox("acme", key, "15550001111")), "exactly one message")
}

// TestFanOutResumesWithinSecondsAfterSIGKILL: `flowgate dev` on a NATS
// server of its own (fsync on every write) is killed with SIGKILL during a
// 30,000-contact broadcast's fan-out and
// started again; the restarted
// orchestrator resumes the fan-out within seconds (the trigger consumer's
// AckWait is 4 s; it was 30 s), and the broadcast still ends with exactly
// one run per contact.
func TestFanOutResumesWithinSecondsAfterSIGKILL(t *testing.T) {
	n := 30_000
	if v := os.Getenv("FLOWGATE_TAKEOVER_CONTACTS"); v != "" {
		var err error
		n, err = strconv.Atoi(v)
		require.NoError(t, err)
	}
	bin := buildFlowgate(t)
	dir := t.TempDir()
	addr := freeAddr(t)
	// NATS runs in the test process and survives the kill, as a deployed
	// nats-server does: only the services die (a dev process with its
	// embedded server would take the pending state down with it). It
	// fsyncs every write, as deploy/nats/nats.conf does.
	nats := bustest.Embedded(t, bustest.Listening, func(c *bus.EmbeddedConfig) { c.SyncAlways = true })
	t.Setenv("FLOWGATE_NATS_URL", nats.ClientURL())
	p := startChild(t, bin, dir, addr)
	key := p.massBot()
	var csv strings.Builder
	csv.WriteString("channel,external_id,name\n")
	for i := range n {
		fmt.Fprintf(&csv, "sandbox,user-%07d,User %d\n", i, i)
	}
	csvPath := filepath.Join(t.TempDir(), "contacts.csv")
	require.NoError(t, os.WriteFile(csvPath, []byte(csv.String()), 0o600))
	sum, err := app.ImportContactsFile(context.Background(), csvPath, app.ImportOptions{URL: p.base, Bot: "mass", Key: key})
	require.NoError(t, err)
	require.Equal(t, n, sum.Created)

	code, b := p.call("POST", "/v1/bots/mass/triggers", key, `{"flow":"hello","channel":"sandbox","audience":{"everyone":true}}`)
	require.Equal(t, 202, code, string(b))
	var acc struct {
		TriggerID string `json:"trigger_id"`
	}
	require.NoError(t, json.Unmarshal(b, &acc))
	id := acc.TriggerID
	require.Eventually(t, func() bool {
		st, ok := p.trigger("mass", key, id)
		return ok && st.Counters.RunsCreated >= int64(n/4)
	}, 5*time.Minute, 20*time.Millisecond, "the fan-out did not reach 25%")
	st, _ := p.trigger("mass", key, id)
	require.NotEqual(t, "done", st.Status, "the fan-out finished before the kill: nothing was tested")
	p.kill()
	p = startChild(t, bin, dir, addr)
	restarted := time.Now()
	atRestart, _ := p.trigger("mass", key, id)
	require.Eventually(t, func() bool {
		st, ok := p.trigger("mass", key, id)
		return ok && (st.Counters.RunsCreated > atRestart.Counters.RunsCreated || st.Status == "done")
	}, 60*time.Second, 20*time.Millisecond, "the fan-out did not resume")
	resumed := time.Since(restarted)
	t.Logf("killed at %d runs of %d; fan-out resumed %s after the restarted process was ready",
		st.Counters.RunsCreated, n, resumed.Round(10*time.Millisecond))
	// 4 s AckWait plus a loaded machine's slack; the 30 s of before fail it.
	require.Less(t, resumed, 15*time.Second, "the fan-out resumes within seconds, not after a 30 s AckWait")

	var final triggerStatus
	require.Eventually(t, func() bool {
		st, ok := p.trigger("mass", key, id)
		final = st
		return ok && st.Status == "done"
	}, 5*time.Minute, 100*time.Millisecond, "the fan-out did not finish")
	require.Equal(t, int64(n), final.Counters.RunsCreated, "exactly one run per contact")
	p.stop()
}

// TestStoreOutageDuringBroadcast: the store refuses writes in the middle of
// a broadcast's fan-out for longer than the trigger consumer's MaxDeliver
// allows; the fan-out waits, resumes from its checkpoint once the store is
// back, and ends with exactly one run per contact and nothing dead-lettered.
func TestStoreOutageDuringBroadcast(t *testing.T) {
	faulty := newFaultyStore()
	d, c := startDevWith(t, app.Config{DataDir: t.TempDir(), NoDemo: true, RetryBackoff: 100 * time.Millisecond,
		WrapStore: func(st store.Store) store.Store { faulty.Store = st; return faulty }})
	defer func() { require.NoError(t, d.Stop()) }()
	key := setupAcme(c)
	const n = 6000
	c.importCSV("acme", key, sandboxCSV(n, "b", "plan", "Basic"))

	acc := c.must("POST", "/v1/bots/acme/triggers", key, `{"flow":"welcome","channel":"sandbox","audience":{"everyone":true}}`, 202)
	id := acc["trigger_id"].(string)
	ctx := context.Background()
	require.Eventually(t, func() bool {
		tr, err := d.Store.GetTrigger(ctx, "acme", id)
		return err == nil && tr.Counters.RunsCreated >= 1000
	}, 60*time.Second, 5*time.Millisecond, "the fan-out started")
	faulty.broken.Store(true)
	tr, err := d.Store.GetTrigger(ctx, "acme", id)
	require.NoError(t, err)
	require.NotEqual(t, store.TriggerDone, tr.Status, "the fan-out finished before the outage: nothing was tested")
	// Long enough for the trigger's message to go past MaxDeliver (10
	// deliveries at a 100 ms backoff cap): refusals keep coming.
	require.Eventually(t, func() bool { return faulty.refused.Load() >= 200 }, 2*time.Minute, 20*time.Millisecond)
	time.Sleep(3 * time.Second)
	faulty.broken.Store(false)

	require.Eventually(t, func() bool {
		tr, err := d.Store.GetTrigger(ctx, "acme", id)
		return err == nil && tr.Status == store.TriggerDone
	}, 2*time.Minute, 50*time.Millisecond, "the fan-out finished after the outage")
	tr, err = d.Store.GetTrigger(ctx, "acme", id)
	require.NoError(t, err)
	require.EqualValues(t, n, tr.Counters.Targeted)
	require.EqualValues(t, n, tr.Counters.RunsCreated, "exactly one run per contact")
	dlq, err := d.Bus.JetStream().Stream(ctx, bus.StreamDLQ)
	require.NoError(t, err)
	require.Zero(t, dlq.CachedInfo().State.Msgs, "nothing was dead-lettered")
	t.Logf("%d writes refused during the outage", faulty.refused.Load())
}
