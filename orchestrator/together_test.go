package orchestrator

import (
	"encoding/json"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/flowgate/flowgate/shared/bus"
	"github.com/flowgate/flowgate/shared/events"
	"github.com/flowgate/flowgate/shared/store"
)

// batchMessage is a trigger batch of one-user (or list) triggers of the
// ask flow, as the ingress's group commit publishes it.
func (u *unit) batchMessage(id string, audiences map[string][]string, order []string) bus.Message {
	u.t.Helper()
	var b events.TriggerBatch
	for _, tid := range order {
		raw, err := json.Marshal(events.Trigger{ID: tid, BotID: unitBot, FlowID: "ask", Channel: events.ChannelSandbox,
			Source: "dispatch", Audience: events.Audience{Users: audiences[tid]}, Data: map[string]any{"from": tid}})
		require.NoError(u.t, err)
		b.Triggers = append(b.Triggers, raw)
	}
	ev, err := bus.NewEvent(id, events.TypeTriggerBatch, unitBot, b)
	require.NoError(u.t, err)
	return bus.Message{Event: ev, Delivered: 1}
}

func count(ws []string, name string) int {
	n := 0
	for _, w := range ws {
		if w == name {
			n++
		}
	}
	return n
}

// TestTriggersStartedTogether: the fresh one-user triggers of a batch start
// together, with one contact upsert, one message insert and one run insert
// for all of them, and end as each would alone: a user's earlier waiting
// run is superseded, a user named twice in the batch gets the later
// trigger's run (which supersedes the earlier one's), an opted-out user and
// an invalid id are counted skipped, a list trigger goes its own way. A
// redelivery changes nothing.
func TestTriggersStartedTogether(t *testing.T) {
	u := newUnit(t)
	old := u.dispatch("bob", nil)
	require.Equal(t, store.RunWaiting, old.Status)
	yes := true
	_, _, err := u.raw.UpsertContact(u.ctx, store.ContactUpsert{BotID: unitBot, Channel: events.ChannelSandbox,
		ExternalID: "olga", OptedOut: &yes, NewID: store.NewContactID()})
	require.NoError(t, err)
	u.store.writes()

	aud := map[string][]string{"t1": {"ann"}, "t2": {"bob"}, "t3": {"ann"}, "t4": {"cid", "dan"}, "t5": {"olga"}, "t6": {""}}
	m := u.batchMessage("batch:t1", aud, []string{"t1", "t2", "t3", "t4", "t5", "t6"})
	require.NoError(t, u.o.handleTrigger(u.ctx, m))
	ws := u.store.writes()
	t.Logf("writes: %v", ws)
	// Together: t1, t2, t5, t6 (one upsert, insert of messages, insert of
	// runs); alone after them: t3 (ann again) and t4 (a list).
	require.Equal(t, 3, count(ws, "UpsertContacts"), "one for the four together, one each for t3 and t4")
	require.Equal(t, 3, count(ws, "CreateRuns"))
	require.Equal(t, 3, count(ws, "InsertMessages"))
	require.Equal(t, 1, count(ws, "CheckpointTriggers"), "one for the four together")
	require.Equal(t, 2, count(ws, "CheckpointTrigger"), "one each for t3 and t4")
	require.Equal(t, "UpsertContacts", ws[0])

	ann, bob := u.contact("ann"), u.contact("bob")
	require.Equal(t, store.RunCancelled, u.run(RunID("t1", ann.ID)).Status, "superseded by t3, the later trigger for ann")
	require.Equal(t, store.RunWaiting, u.run(RunID("t3", ann.ID)).Status)
	require.Equal(t, store.RunCancelled, u.run(old.ID).Status, "bob's earlier run superseded")
	require.Equal(t, store.RunWaiting, u.run(RunID("t2", bob.ID)).Status)
	for _, user := range []string{"cid", "dan"} {
		require.Equal(t, store.RunWaiting, u.run(RunID("t4", u.contact(user).ID)).Status)
	}
	require.Equal(t, map[string]any{"from": "t2"}, bob.LastRequest)
	for tid, want := range map[string]store.TriggerCounters{
		"t1": {Targeted: 1, RunsCreated: 1}, "t2": {Targeted: 1, RunsCreated: 1}, "t3": {Targeted: 1, RunsCreated: 1},
		"t4": {Targeted: 2, RunsCreated: 2},
		"t5": {Targeted: 1, Skipped: 1, SkipReasons: map[string]int64{SkipOptedOut: 1}},
		"t6": {Targeted: 1, Skipped: 1, SkipReasons: map[string]int64{SkipInvalidUser: 1}},
	} {
		tr, err := u.raw.GetTrigger(u.ctx, unitBot, tid)
		require.NoError(t, err)
		require.Equal(t, store.TriggerDone, tr.Status, tid)
		got := tr.Counters
		got.Sent, got.Delivered, got.Failed = 0, 0, 0
		if len(got.SkipReasons) == 0 {
			got.SkipReasons = nil
		}
		require.Equal(t, want, got, tid)
	}
	outbound := u.streamIDs(bus.StreamOutbound)
	require.Len(t, u.bundleIDs(), 6, "one bundle per run started: bob's earlier run, t1, t2, t3, two of t4")
	require.Len(t, outbound, 4, "bob's earlier run, t1 and t2 (started together) in one message, t3, and t4's two (a list, started together in the bulk lane) in one message")

	m.Delivered++
	require.NoError(t, u.o.handleTrigger(u.ctx, m))
	require.Equal(t, outbound, u.streamIDs(bus.StreamOutbound), "a redelivery publishes nothing new")
	require.Len(t, u.messages(RunID("t2", bob.ID)), 1)
}

// TestTriggersStartedTogetherFailThenRedelivery: a write of the batch
// started together fails (as a crash there would leave it); the batch is
// redelivered and each trigger, stored and no longer fresh, is redone
// alone: every run once, every message once, every bundle once alone in
// its stream (and once more in the batch, when that was published before
// the failure: the channel worker skips messages sent).
func TestTriggersStartedTogetherFailThenRedelivery(t *testing.T) {
	for _, step := range []string{"UpsertContacts", "InsertMessages", "CreateRuns", "CheckpointTriggers"} {
		t.Run(step, func(t *testing.T) {
			u := newUnit(t)
			aud := map[string][]string{"a1": {"ann"}, "a2": {"bob"}, "a3": {"cid"}}
			m := u.batchMessage("batch:a1", aud, []string{"a1", "a2", "a3"})
			u.failOnce(step)
			err := u.o.handleTrigger(u.ctx, m)
			require.Error(t, err)
			var perm *bus.PermanentError
			require.NotErrorAs(t, err, &perm, "the batch is retried, not dead-lettered")
			m.Delivered++
			require.NoError(t, u.o.handleTrigger(u.ctx, m))
			for tid, user := range map[string]string{"a1": "ann", "a2": "bob", "a3": "cid"} {
				id := RunID(tid, u.contact(user).ID)
				require.Equal(t, store.RunWaiting, u.run(id).Status)
				require.Len(t, u.messages(id), 1)
				tr, err := u.raw.GetTrigger(u.ctx, unitBot, tid)
				require.NoError(t, err)
				require.Equal(t, store.TriggerDone, tr.Status)
				require.EqualValues(t, 1, tr.Counters.RunsCreated, tid)
			}
			// Each run's bundle once alone (the redelivery); the batch
			// published before the failure, if any, carries them all once
			// more: the channel worker skips what was sent.
			ids := u.bundleIDs()
			want := []string{}
			for tid, user := range map[string]string{"a1": "ann", "a2": "bob", "a3": "cid"} {
				want = append(want, "out:"+MessageID(RunID(tid, u.contact(user).ID), 1))
			}
			switch len(ids) {
			case 3:
				require.ElementsMatch(t, want, ids)
			case 6:
				require.ElementsMatch(t, want, ids[:3], "the batch")
				require.ElementsMatch(t, want, ids[3:], "alone")
			default:
				t.Fatalf("bundles in the stream: %v", ids)
			}
		})
	}
}

// TestTriggersStartedTogetherOneCancelledBeforeTheCheckpoint: a trigger of
// the batch is cancelled while its run starts, before the triggers'
// checkpoints are written together. Its checkpoint is refused for its
// version and the others are written: it stays cancelled, with its run
// counted, and the batch succeeds (nothing to retry).
func TestTriggersStartedTogetherOneCancelledBeforeTheCheckpoint(t *testing.T) {
	u := newUnit(t)
	aud := map[string][]string{"c1": {"ann"}, "c2": {"bob"}, "c3": {"cid"}}
	m := u.batchMessage("batch:c1", aud, []string{"c1", "c2", "c3"})
	u.store.onceBefore("CheckpointTriggers", func() {
		tr, err := u.raw.GetTrigger(u.ctx, unitBot, "c2")
		require.NoError(t, err)
		tr.Status = store.TriggerCancelled
		_, err = u.raw.UpdateTrigger(u.ctx, tr)
		require.NoError(t, err)
	})
	require.NoError(t, u.o.handleTrigger(u.ctx, m))
	ws := u.store.writes()
	require.Equal(t, 1, count(ws, "CheckpointTriggers"), "writes: %v", ws)
	require.Zero(t, count(ws, "CheckpointTrigger"), "writes: %v", ws)
	for tid, status := range map[string]string{"c1": store.TriggerDone, "c2": store.TriggerCancelled, "c3": store.TriggerDone} {
		tr, err := u.raw.GetTrigger(u.ctx, unitBot, tid)
		require.NoError(t, err)
		require.Equal(t, status, tr.Status, tid)
		require.EqualValues(t, 1, tr.Counters.Targeted, tid)
		require.EqualValues(t, 1, tr.Counters.RunsCreated, tid)
	}
	require.Equal(t, store.RunWaiting, u.run(RunID("c2", u.contact("bob").ID)).Status, "the run started before the cancel")
}

// gathered handles the trigger batches ms as if they had come while a
// launch was under way: the one launch slot is held (launchGroups.groups =
// 1) until each batch, in order, has queued its fresh one-user triggers,
// then released. It returns each batch's handler error.
func (u *unit) gathered(ms ...bus.Message) []error {
	u.t.Helper()
	g := u.o.launches
	queued := make(chan int, len(ms))
	g.mu.Lock()
	g.groups, g.running = 1, 1 // the slot held, as by a launch under way
	g.queued = func(n int) { queued <- n }
	g.mu.Unlock()
	errs := make([]error, len(ms))
	var wg sync.WaitGroup
	for i, m := range ms {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = u.o.handleTrigger(u.ctx, m)
		}()
		select {
		case n := <-queued:
			require.Equal(u.t, i+1, n, "batches queued")
		case <-time.After(10 * time.Second):
			u.t.Fatalf("batch %d never queued its triggers", i)
		}
	}
	go g.run() // the slot's launch done: the next one takes what waits
	wg.Wait()
	waitSlotsFree(u.t, g)
	g.mu.Lock()
	require.Empty(u.t, g.queue)
	g.queued = nil
	g.mu.Unlock()
	return errs
}

// TestLaunchGroupsGatherBatches: trigger batches that arrive while a
// launch is under way start together in the next one: one contact upsert,
// one run insert, one checkpoint write, and their bundles share one
// outbound message. A batch naming a user of the group waits for the next
// launch, and what queued after it waits with it; the user's later trigger
// then supersedes the earlier run as it would alone.
func TestLaunchGroupsGatherBatches(t *testing.T) {
	u := newUnit(t)
	aud := map[string][]string{"g1": {"ann"}, "g2": {"bob"}, "g3": {"cid"}, "g4": {"ann"}, "g5": {"dan"}}
	ms := []bus.Message{
		u.batchMessage("batch:g1", aud, []string{"g1", "g2"}),
		u.batchMessage("batch:g3", aud, []string{"g3"}),
		u.batchMessage("batch:g4", aud, []string{"g4"}),
		u.batchMessage("batch:g5", aud, []string{"g5"}),
	}
	u.store.writes()
	for i, err := range u.gathered(ms...) {
		require.NoError(t, err, "batch %d", i)
	}
	ws := u.store.writes()
	t.Logf("writes: %v", ws)
	require.Equal(t, 2, count(ws, "UpsertContacts"), "[g1 g2 g3], then [g4 g5]: %v", ws)
	require.Equal(t, 2, count(ws, "CreateRuns"))
	require.Equal(t, 2, count(ws, "InsertMessages"))
	require.Equal(t, 2, count(ws, "CheckpointTriggers"))
	require.Zero(t, count(ws, "CheckpointTrigger"))

	ann := u.contact("ann")
	require.Equal(t, store.RunCancelled, u.run(RunID("g1", ann.ID)).Status, "superseded by g4, ann's later trigger")
	runs := map[string]string{"g2": "bob", "g3": "cid", "g4": "ann", "g5": "dan"}
	for tid, user := range runs {
		require.Equal(t, store.RunWaiting, u.run(RunID(tid, u.contact(user).ID)).Status, tid)
	}
	for _, tid := range []string{"g1", "g2", "g3", "g4", "g5"} {
		tr, err := u.raw.GetTrigger(u.ctx, unitBot, tid)
		require.NoError(t, err)
		require.Equal(t, store.TriggerDone, tr.Status, tid)
		require.EqualValues(t, 1, tr.Counters.RunsCreated, tid)
	}
	// One outbound message per launch, each with its runs' bundles.
	bundles := func(tids ...string) []string {
		var ids []string
		for _, tid := range tids {
			user := map[string]string{"g1": "ann", "g2": "bob", "g3": "cid", "g4": "ann", "g5": "dan"}[tid]
			ids = append(ids, "out:"+MessageID(RunID(tid, u.contact(user).ID), 1))
		}
		return ids
	}
	var got [][]string
	for _, m := range u.streamMsgs(bus.StreamOutbound) {
		var ids []string
		for _, b := range unpack(t, m.Header, m.Data) {
			ids = append(ids, events.OutboundID(b))
		}
		got = append(got, ids)
	}
	require.Len(t, got, 2, "outbound messages: %v", got)
	require.ElementsMatch(t, bundles("g1", "g2", "g3"), got[0])
	require.ElementsMatch(t, bundles("g4", "g5"), got[1])
}

// TestLaunchGroupsFailTogether: a launch carrying several batches fails
// half-way; every batch of it fails (to be redelivered, not dead-lettered),
// and each redelivery, alone, starts its triggers' runs once.
func TestLaunchGroupsFailTogether(t *testing.T) {
	for _, step := range []string{"UpsertContacts", "InsertMessages", "CreateRuns", "CheckpointTriggers"} {
		t.Run(step, func(t *testing.T) {
			u := newUnit(t)
			aud := map[string][]string{"f1": {"ann"}, "f2": {"bob"}, "f3": {"cid"}}
			ms := []bus.Message{
				u.batchMessage("batch:f1", aud, []string{"f1", "f2"}),
				u.batchMessage("batch:f3", aud, []string{"f3"}),
			}
			u.failOnce(step)
			for i, err := range u.gathered(ms...) {
				require.Error(t, err, "batch %d", i)
				var perm *bus.PermanentError
				require.NotErrorAs(t, err, &perm, "batch %d is retried, not dead-lettered", i)
			}
			for _, m := range ms {
				m.Delivered++
				require.NoError(t, u.o.handleTrigger(u.ctx, m))
			}
			for tid, user := range map[string]string{"f1": "ann", "f2": "bob", "f3": "cid"} {
				id := RunID(tid, u.contact(user).ID)
				require.Equal(t, store.RunWaiting, u.run(id).Status, tid)
				require.Len(t, u.messages(id), 1, tid)
				tr, err := u.raw.GetTrigger(u.ctx, unitBot, tid)
				require.NoError(t, err)
				require.Equal(t, store.TriggerDone, tr.Status, tid)
				require.EqualValues(t, 1, tr.Counters.RunsCreated, tid)
			}
		})
	}
}

// TestBatchOfSeveralBots: a trigger batch of several bots (the ingress's
// group commit on flowgate.trigger._bots, without a CloudEvent subject)
// starts each trigger in its own bot, once whatever the deliveries. A
// trigger of it that fails for good is split off on its own bot's
// subject, or on the batch's subject when it names no bot.
func TestBatchOfSeveralBots(t *testing.T) {
	u := newUnit(t)
	require.NoError(t, u.raw.CreateBot(u.ctx, store.Bot{ID: "other", Name: "Other"}))
	_, err := u.raw.PutFlow(u.ctx, store.Flow{BotID: "other", ID: "ask", Definition: []byte(askFlow)})
	require.NoError(t, err)
	trig := func(id, bot, user, flowID string) json.RawMessage {
		raw, err := json.Marshal(events.Trigger{ID: id, BotID: bot, FlowID: flowID, Channel: events.ChannelSandbox,
			Source: "dispatch", Audience: events.Audience{Users: []string{user}}})
		require.NoError(t, err)
		return raw
	}
	batch := events.TriggerBatch{Triggers: []json.RawMessage{
		trig("m1", unitBot, "ann", "ask"), trig("m2", "other", "ann", "ask"), trig("m3", "other", "bob", "no-such-flow"),
		json.RawMessage(`{"id":"m4"}`), trig("m5", unitBot, "bob", "ask"),
	}}
	ev, err := bus.NewEvent("batch:m1", events.TypeTriggerBatch, "", batch)
	require.NoError(t, err)
	require.Empty(t, ev.Subject())
	m := bus.Message{Subject: events.SubjectTriggerBots, Event: ev, Delivered: 1}
	for range 2 { // and its redelivery
		require.NoError(t, u.o.handleTrigger(u.ctx, m))
		m.Delivered++
	}
	for _, c := range []struct{ bot, trigger, user string }{{unitBot, "m1", "ann"}, {"other", "m2", "ann"}, {unitBot, "m5", "bob"}} {
		contact, err := u.raw.GetContactByExternalID(u.ctx, c.bot, events.ChannelSandbox, c.user)
		require.NoError(t, err, "%s's contact %s", c.bot, c.user)
		run, err := u.raw.GetRun(u.ctx, c.bot, RunID(c.trigger, contact.ID))
		require.NoError(t, err, "%s's run for %s", c.bot, c.trigger)
		require.Equal(t, store.RunWaiting, run.Status)
		found := 0
		for seq := range 10 {
			msg, err := u.raw.GetMessage(u.ctx, c.bot, MessageID(run.ID, seq))
			if errors.Is(err, store.ErrNotFound) {
				continue
			}
			require.NoError(t, err)
			require.Equal(t, c.bot, msg.BotID)
			found++
		}
		require.Equal(t, 1, found, "one first message for %s's run, whatever the deliveries", c.bot)
	}
	_, err = u.raw.GetContactByExternalID(u.ctx, "other", events.ChannelSandbox, "bob")
	require.ErrorIs(t, err, store.ErrNotFound, "m3 failed for good: no contact for it")

	// The two split off, once each: m3 on its bot's subject, m4 (no bot)
	// on the batch's.
	split := map[string]string{}
	for _, sm := range u.streamMsgs(bus.StreamTriggers) {
		split[sm.Header.Get("Nats-Msg-Id")] = sm.Subject + " " + sm.Header.Get("ce-subject")
	}
	require.Equal(t, map[string]string{
		bus.MsgID("m3"): events.TriggerSubject("other") + " other",
		bus.MsgID("m4"): events.SubjectTriggerBots + " ",
	}, split)
}
