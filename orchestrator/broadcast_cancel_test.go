package orchestrator

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/flowgate/flowgate/shared/bus"
	"github.com/flowgate/flowgate/shared/events"
	"github.com/flowgate/flowgate/shared/store"
)

// cancelTrigger does what POST /v1/bots/{bot}/triggers/{id}/cancel does;
// it reports false when the trigger was done first.
func (r *rig) cancelTrigger(id string) bool {
	r.t.Helper()
	ctx := context.Background()
	deadline := time.Now().Add(5 * time.Minute)
	for {
		tr, err := r.store.GetTrigger(ctx, testBot, id)
		if errors.Is(err, store.ErrNotFound) {
			require.True(r.t, time.Now().Before(deadline), "trigger %s never taken by the orchestrator", id)
			time.Sleep(time.Millisecond) // not taken by the orchestrator yet
			continue
		}
		require.NoError(r.t, err)
		if tr.Status == store.TriggerDone {
			return false
		}
		tr.Status = store.TriggerCancelled
		if _, err = r.store.UpdateTrigger(ctx, tr); !errors.Is(err, store.ErrVersionConflict) {
			require.NoError(r.t, err)
			return true
		}
	}
}

// triggersIdle waits until the orchestrator has finished with every
// trigger message: its fan-outs have returned.
func (r *rig) triggersIdle() {
	r.t.Helper()
	// The triggers stream is a work queue: a trigger leaves it when the
	// orchestrator acks it, after its handler returned (a fan-out's next
	// part is published before the part under way is acked). The
	// consumer's NumPending is no test: the server counts a message just
	// stored into it asynchronously, so a consumer can look idle before it
	// has seen a trigger published a moment ago.
	require.Eventually(r.t, func() bool {
		s, err := r.bus.JetStream().Stream(context.Background(), bus.StreamTriggers)
		if err != nil {
			return false
		}
		info, err := s.Info(context.Background())
		return err == nil && info.State.Msgs == 0
	}, 5*time.Minute, 10*time.Millisecond, "the fan-out never returned")
}

// bundles takes the outbound bundles out of the stream (a work queue: a
// reader acks them away), alone or sharing a message: the messages channel
// workers would deliver.
func (r *rig) bundles() []events.Outbound {
	r.t.Helper()
	ctx := context.Background()
	s, err := r.bus.JetStream().Stream(ctx, bus.StreamOutbound)
	require.NoError(r.t, err)
	info, err := s.Info(ctx)
	require.NoError(r.t, err)
	var out []events.Outbound
	if info.State.Msgs == 0 {
		return out
	}
	c, err := s.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{Durable: "test-reader", AckPolicy: jetstream.AckExplicitPolicy})
	require.NoError(r.t, err)
	defer func() { require.NoError(r.t, s.DeleteConsumer(ctx, "test-reader")) }()
	for read := 0; read < int(info.State.Msgs); {
		// Ask for no more than the stream holds: a fetch of more waits out
		// its MaxWait.
		batch, err := c.Fetch(min(1000, int(info.State.Msgs)-read), jetstream.FetchMaxWait(30*time.Second))
		require.NoError(r.t, err)
		n := 0
		for m := range batch.Messages() {
			n++
			out = append(out, unpack(r.t, m.Headers(), m.Data())...)
			require.NoError(r.t, m.DoubleAck(ctx))
		}
		require.NoError(r.t, batch.Error())
		require.NotZero(r.t, n, "the stream holds %d messages; read %d", info.State.Msgs, read)
		read += n
	}
	return out
}

// checkStoppedFanOut checks a broadcast that was stopped part-way: every
// stored run was started, every published message has its stored run (one
// message per run), and the trigger's counters equal the stored runs. It
// returns the runs and the trigger.
func (r *rig) checkStoppedFanOut(rep int, id string) ([]store.Run, store.Trigger) {
	t := r.t
	t.Helper()
	runs := r.runs(id)
	stored := make(map[string]bool, len(runs))
	for _, run := range runs {
		stored[run.ID] = true
		require.NotEqual(t, store.RunCreated, run.Status, "rep %d: run %s was stored but never started", rep, run.ID)
	}
	published := r.bundles()
	for _, b := range published {
		require.Equal(t, id, b.TriggerID)
		require.True(t, stored[b.RunID], "rep %d: message of run %s published, run not stored", rep, b.RunID)
	}
	require.Len(t, published, len(runs), "rep %d: one message per stored run", rep)
	tr, err := r.store.GetTrigger(context.Background(), testBot, id)
	require.NoError(t, err)
	require.Equal(t, int64(len(runs)), tr.Counters.RunsCreated, "rep %d: counters equal the stored runs", rep)
	return runs, tr
}

// TestBroadcastCancelAtRandomMoments cancels a 10,000-contact broadcast at
// a random moment, 20 times: whenever the cancel lands (before the fan-out,
// while a batch publishes its messages, while it stores its runs, at a
// checkpoint), every message published has a stored run, and the trigger's
// counters equal the stored runs.
func TestBroadcastCancelAtRandomMoments(t *testing.T) {
	contacts, reps := 10_000, 20
	if raceEnabled {
		contacts = 1_000 // still 20 moments; each fan-out has two batches at once
	}
	batch := contacts / 10
	r := newRig(t, Config{FanOutBatch: batch}, nil)
	cs := make([]contactSpec, contacts)
	for i := range cs {
		cs[i] = contactSpec{channel: events.ChannelSandbox, id: fmt.Sprintf("c%05d", i)}
	}
	r.addContacts(cs)

	// One broadcast to the end gives the scale of the random moments (the
	// machine's speed, not an assertion).
	start := time.Now()
	id := r.trigger(events.Trigger{ID: "full", Audience: events.Audience{Everyone: true}})
	r.waitStatus(id, store.TriggerDone, 10*time.Minute)
	full := time.Since(start)
	r.triggersIdle()
	require.Len(t, r.bundles(), contacts)
	require.Len(t, r.runs(id), contacts)

	seed := time.Now().UnixNano()
	t.Logf("full fan-out %v; seed %d", full, seed)
	rnd := rand.New(rand.NewPCG(uint64(seed), 0))
	stoppedPartway := 0
	for rep := range reps {
		id := r.trigger(events.Trigger{ID: fmt.Sprintf("cancel-%d", rep), Audience: events.Audience{Everyone: true}})
		time.Sleep(time.Duration(rnd.Int64N(int64(full))))
		cancelled := r.cancelTrigger(id)
		r.triggersIdle()

		runs, tr := r.checkStoppedFanOut(rep, id)
		require.Equal(t, tr.Counters.RunsCreated+tr.Counters.Skipped, tr.Counters.Targeted, "rep %d", rep)
		if cancelled {
			require.Equal(t, store.TriggerCancelled, tr.Status)
			if len(runs) < contacts {
				stoppedPartway++
			}
		} else {
			require.Len(t, runs, contacts)
		}
		t.Logf("rep %d: cancelled=%v runs=%d", rep, cancelled, len(runs))
	}
	require.NotZero(t, stoppedPartway, "some cancel stopped a fan-out part-way")
}

// TestBroadcastCrashRightAfterCancel: the broadcast is cancelled, and at
// once the orchestrator "crashes" (its handler stops, as a SIGKILL would
// stop it) between publishing a batch's messages and storing the batch's
// runs. The redelivered trigger is cancelled, so its fan-out does not go
// on, but the batch under way at the crash must end as a batch under way
// at a cancel does: every published message has its stored, started run,
// and the counters equal the stored runs. Three times, at different
// moments of the fan-out.
func TestBroadcastCrashRightAfterCancel(t *testing.T) {
	contacts := 4_000
	if raceEnabled {
		contacts = 1_000
	}
	batch := contacts / 10
	var (
		calls   atomic.Int64
		crashAt atomic.Int64
		crashed atomic.Bool
		r       *rig
	)
	crash := eachPublishedRun(func(runID string) error {
		if calls.Add(1) != crashAt.Load() {
			return nil
		}
		// Cancel, as POST .../cancel does, then die.
		ctx := context.Background()
		trigID, _, _ := strings.Cut(runID, ".")
		for {
			tr, err := r.store.GetTrigger(ctx, testBot, trigID)
			if err != nil {
				return err
			}
			tr.Status = store.TriggerCancelled
			if _, err := r.store.UpdateTrigger(ctx, tr); !errors.Is(err, store.ErrVersionConflict) {
				if err != nil {
					return err
				}
				break
			}
		}
		crashed.Store(true)
		return errors.New("simulated crash after publishing, before storing the runs")
	})
	r = newRig(t, Config{FanOutBatch: batch}, func(st Store, b Bus) (Store, Bus) {
		return st, &faultyBus{Bus: b, afterPublish: crash}
	})
	cs := make([]contactSpec, contacts)
	for i := range cs {
		cs[i] = contactSpec{channel: events.ChannelSandbox, id: fmt.Sprintf("c%05d", i)}
	}
	r.addContacts(cs)
	// In the first batch, in the middle, and late in the fan-out (not in
	// the last two batches: those may finish the broadcast).
	for rep, at := range []int{batch / 2, 4*batch + 7, 7*batch + 1} {
		calls.Store(0)
		crashed.Store(false)
		crashAt.Store(int64(at))
		id := r.trigger(events.Trigger{ID: fmt.Sprintf("crash-%d", rep), Audience: events.Audience{Everyone: true}})
		require.Eventually(t, crashed.Load, 5*time.Minute, time.Millisecond, "rep %d: the crash happened", rep)
		r.triggersIdle()

		runs, tr := r.checkStoppedFanOut(rep, id)
		require.Equal(t, store.TriggerCancelled, tr.Status)
		require.Less(t, len(runs), contacts, "rep %d: the cancel stopped the fan-out part-way", rep)
		require.GreaterOrEqual(t, len(runs), at, "rep %d: the batch under way at the crash finished", rep)
		t.Logf("rep %d: crash at the %dth published run; %d runs", rep, at, len(runs))
	}
}

// TestCancelledTriggerRedeliveryWritesNoContact: a cancelled users-list
// trigger is redelivered (its fan-out had crashed after recording one
// contact's first message). The redelivery starts that contact's run and
// writes nothing else: the users who were never reached are not created,
// and the contacts that exist keep their data (no last_request, no
// attributes from the cancelled trigger).
func TestCancelledTriggerRedeliveryWritesNoContact(t *testing.T) {
	r := newRig(t, Config{FanOutBatch: 5}, nil)
	ctx := context.Background()
	var existing, missing []string
	var cs []contactSpec
	for i := range 5 {
		existing = append(existing, fmt.Sprintf("u%02d", i))
		missing = append(missing, fmt.Sprintf("n%02d", i))
		cs = append(cs, contactSpec{channel: events.ChannelSandbox, id: existing[i], attrs: map[string]any{"plan": "free"}})
	}
	r.addContacts(cs)
	before := map[string]store.Contact{}
	for _, id := range existing {
		c, err := r.store.GetContactByExternalID(ctx, testBot, events.ChannelSandbox, id)
		require.NoError(t, err)
		before[id] = c
	}

	// The state a crash left: the trigger stored and then cancelled, no
	// checkpoint, and the first message of u02's run recorded.
	trig := events.Trigger{ID: "cx", BotID: testBot, FlowID: "hello", Source: "native", Channel: events.ChannelSandbox,
		Audience:   events.Audience{Users: append(append([]string{}, existing...), missing...)},
		Data:       map[string]any{"order": "A-1"},
		Attributes: map[string]any{"plan": "pro"},
	}
	spec, err := json.Marshal(trig)
	require.NoError(t, err)
	now := time.Now().UTC()
	stored, _, err := r.store.CreateTrigger(ctx, store.Trigger{ID: trig.ID, BotID: testBot, Source: "native", FlowID: "hello",
		Channel: events.ChannelSandbox, Spec: spec, Status: store.TriggerAccepted, CreatedAt: now, UpdatedAt: now})
	require.NoError(t, err)
	stored.Status = store.TriggerCancelled
	_, err = r.store.UpdateTrigger(ctx, stored)
	require.NoError(t, err)
	u02 := before["u02"]
	runID := RunID(trig.ID, u02.ID)
	require.NoError(t, r.store.InsertMessages(ctx, []store.Message{{ID: MessageID(runID, 1), BotID: testBot, RunID: runID,
		TriggerID: trig.ID, ContactID: u02.ID, Channel: events.ChannelSandbox, Seq: 1, Status: events.StatusQueued,
		Content: []byte(`{"type":"text","text":"Hi Nu02"}`), CreatedAt: now, UpdatedAt: now}}))

	r.trigger(trig) // the redelivery
	r.triggersIdle()

	runs := r.runs(trig.ID)
	require.Len(t, runs, 1, "only the run whose message was recorded")
	require.Equal(t, runID, runs[0].ID)
	require.NotEqual(t, store.RunCreated, runs[0].Status)
	for _, id := range missing {
		_, err := r.store.GetContactByExternalID(ctx, testBot, events.ChannelSandbox, id)
		require.ErrorIs(t, err, store.ErrNotFound, "user %s of the cancelled trigger was created", id)
	}
	for _, id := range existing {
		c, err := r.store.GetContactByExternalID(ctx, testBot, events.ChannelSandbox, id)
		require.NoError(t, err)
		require.Equal(t, before[id].LastRequest, c.LastRequest, "contact %s: last_request written", id)
		require.Equal(t, "free", c.Attributes["plan"], "contact %s: attributes written", id)
		require.Equal(t, before[id].UpdatedAt, c.UpdatedAt, "contact %s: updated", id)
	}
	tr, err := r.store.GetTrigger(ctx, testBot, trig.ID)
	require.NoError(t, err)
	require.Equal(t, store.TriggerCancelled, tr.Status)
	require.Equal(t, int64(1), tr.Counters.RunsCreated)
}
