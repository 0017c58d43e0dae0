package orchestrator

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	cloudevents "github.com/cloudevents/sdk-go/v2/event"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/flowgate/flowgate/orchestrator/flow"
	"github.com/flowgate/flowgate/shared/bus"
	"github.com/flowgate/flowgate/shared/bus/bustest"
	"github.com/flowgate/flowgate/shared/events"
	"github.com/flowgate/flowgate/shared/store"
	"github.com/flowgate/flowgate/shared/store/sqlite/sqlitetest"
	"github.com/flowgate/flowgate/shared/testclock"
)

// The runner's unit tests: the handlers called directly, as the consumer
// would call them (and call them again on a redelivery), on a real SQLite
// store and an embedded NATS server wrapped in the failing decorators of
// faults_test.go.

const unitBot = "unit"

// askFlow asks a name (stored as an attribute) and thanks by name.
const askFlow = `{"steps":[
	{"id":"ask_name","type":"ask","text":"What is your name?","attribute":"name"},
	{"id":"thanks","type":"send","text":"Thanks {{ name }}"}]}`

type unit struct {
	t     testing.TB
	ctx   context.Context
	raw   store.Store
	bus   *bus.Bus
	store *faultyStore
	o     *Orchestrator
}

func newUnit(t testing.TB) *unit {
	t.Helper()
	ctx := context.Background()
	_, b := bustest.Bus(t, bus.Config{Source: "/test"})
	st := sqlitetest.Open(t)
	require.NoError(t, st.CreateBot(ctx, store.Bot{ID: unitBot, Name: "Unit"}))
	_, err := st.PutFlow(ctx, store.Flow{BotID: unitBot, ID: "ask", Definition: []byte(askFlow)})
	require.NoError(t, err)
	u := &unit{t: t, ctx: ctx, raw: st, bus: b, store: &faultyStore{Store: st, before: map[string]func() error{}}}
	fb := &faultyBus{Bus: b, afterPublish: func(evs []bus.Outgoing) error {
		return u.store.record(fmt.Sprintf("PublishAll(%d)", len(evs)))
	}}
	// Every status change is published, so that the tests see them.
	u.o, err = New(Config{AlwaysPublishStatus: true}, Deps{Store: u.store, Bus: fb,
		Logger: slog.New(slog.NewTextHandler(testLogOut(), nil))})
	require.NoError(t, err)
	return u
}

// replica is a second orchestrator process on the same store and bus
// (without the unit's faults).
func (u *unit) replica() *Orchestrator {
	o, _ := u.faultyReplica()
	return o
}

// faultyReplica is a replica with faults of its own.
func (u *unit) faultyReplica() (*Orchestrator, *faultyStore) {
	u.t.Helper()
	fs := &faultyStore{Store: u.raw, before: map[string]func() error{}}
	o, err := New(Config{AlwaysPublishStatus: true}, Deps{Store: fs, Bus: u.bus,
		Logger: slog.New(slog.NewTextHandler(testLogOut(), nil))})
	require.NoError(u.t, err)
	return o, fs
}

// failOnce makes the next write named name fail (before it is made).
func (u *unit) failOnce(name string) {
	u.store.mu.Lock()
	defer u.store.mu.Unlock()
	u.store.before[name] = func() error { // called with the lock released
		u.store.mu.Lock()
		delete(u.store.before, name)
		u.store.mu.Unlock()
		return errors.New("injected failure of " + name)
	}
}

func (u *unit) message(id, typ string, data any) bus.Message {
	u.t.Helper()
	ev, err := bus.NewEvent(id, typ, "subject", data)
	require.NoError(u.t, err)
	return bus.Message{Event: ev, Delivered: 1}
}

// dispatch starts the ask flow for one user and returns the run.
func (u *unit) dispatch(user string, initial *events.Content) store.Run {
	u.t.Helper()
	trig := events.Trigger{ID: "t-" + user, BotID: unitBot, FlowID: "ask", Channel: events.ChannelSandbox,
		Source: "native", Audience: events.Audience{Users: []string{user}}, InitialMessage: initial}
	require.NoError(u.t, u.o.handleTrigger(u.ctx, u.message(trig.ID, events.TypeTriggerAccepted, trig)))
	return u.run(RunID(trig.ID, u.contact(user).ID))
}

func (u *unit) contact(user string) store.Contact {
	u.t.Helper()
	c, err := u.raw.GetContactByExternalID(u.ctx, unitBot, events.ChannelSandbox, user)
	require.NoError(u.t, err)
	return c
}

func (u *unit) run(id string) store.Run {
	u.t.Helper()
	r, err := u.raw.GetRun(u.ctx, unitBot, id)
	require.NoError(u.t, err)
	return r
}

func (u *unit) reply(user, id, text string) bus.Message {
	return u.message(id, events.TypeInbound, events.Inbound{BotID: unitBot, Channel: events.ChannelSandbox,
		From: user, ProviderMessageID: id, Text: text, ReceivedAt: time.Now().UTC()})
}

// streamMsgs returns the messages a stream holds, in order.
func (u *unit) streamMsgs(stream string) []*jetstream.RawStreamMsg {
	u.t.Helper()
	s, err := u.bus.JetStream().Stream(u.ctx, stream)
	require.NoError(u.t, err)
	info, err := s.Info(u.ctx)
	require.NoError(u.t, err)
	var msgs []*jetstream.RawStreamMsg
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		m, err := s.GetMsg(u.ctx, seq)
		require.NoError(u.t, err)
		msgs = append(msgs, m)
	}
	return msgs
}

// streamIDs returns the ids of the events a stream holds, in order.
func (u *unit) streamIDs(stream string) []string {
	var ids []string
	for _, m := range u.streamMsgs(stream) {
		ids = append(ids, m.Header.Get("Nats-Msg-Id"))
	}
	return ids
}

// bundleIDs lists the ids of the bundles the outbound stream holds (each
// bundle's id alone, events.OutboundID, whether alone or in a batch), in
// stream order.
func (u *unit) bundleIDs() []string {
	u.t.Helper()
	var ids []string
	for _, m := range u.streamMsgs(bus.StreamOutbound) {
		for _, b := range unpack(u.t, m.Header, m.Data) {
			ids = append(ids, events.OutboundID(b))
		}
	}
	return ids
}

func (u *unit) messages(runID string) []store.Message {
	u.t.Helper()
	var out []store.Message
	for seq := 0; seq < 10; seq++ {
		m, err := u.raw.GetMessage(u.ctx, unitBot, MessageID(runID, seq))
		if errors.Is(err, store.ErrNotFound) {
			continue
		}
		require.NoError(u.t, err)
		out = append(out, m)
	}
	return out
}

// Every kind of step commits its effects in the same order: the claim of a
// stored run, attributes, messages, one publish of the bundles and status
// changes, then the runs. (A run started fresh is inserted at the end: no
// other step can find it before, so it is not claimed.)
func TestCommitOrder(t *testing.T) {
	u := newUnit(t)
	run := u.dispatch("ann", nil)
	// The audience's contact upsert, the first step's commit (no
	// attributes), the trigger's count and checkpoint in one write.
	require.Equal(t, []string{"UpsertContacts", "InsertMessages", "PublishAll(2)", "CreateRuns", "CheckpointTrigger"}, u.store.writes())
	require.Equal(t, store.RunWaiting, run.Status)

	require.NoError(t, u.o.handleInbound(u.ctx, u.reply("ann", "in-1", "Ann")))
	require.Equal(t, []string{"ClaimRuns", "UpsertContacts", "InsertMessages", "PublishAll(2)", "UpdateRuns"}, u.store.writes(),
		"a reply: the claim, the name attribute, the thanks message, its bundle and the completed status, the run")
	require.Equal(t, store.RunCompleted, u.run(run.ID).Status)
	require.Equal(t, "Ann", u.contact("ann").Attributes["name"])

	// A delivery failure of the completed run's message fails it: a status
	// change and nothing else.
	require.NoError(t, u.o.handleDelivery(u.ctx, u.message("d-1", events.TypeDelivery, events.Delivery{BotID: unitBot,
		Channel: events.ChannelSandbox, MessageID: MessageID(run.ID, 2), RunID: run.ID, Status: events.StatusFailed,
		Reason: "blocked", At: time.Now().UTC()})))
	w := u.store.writes()
	require.Equal(t, []string{"ClaimRuns", "PublishAll(1)", "UpdateRuns"}, w[len(w)-3:])
	failed := u.run(run.ID)
	require.Equal(t, store.RunFailed, failed.Status)
	require.Equal(t, "message 2 could not be delivered: blocked", failed.Error)

	// A cancel of a waiting run.
	other := u.dispatch("bob", nil)
	u.store.writes()
	require.NoError(t, u.o.handleControl(u.ctx, u.message("c-1", events.TypeRunCommand,
		events.RunCommand{BotID: unitBot, RunID: other.ID, Command: "cancel", Reason: "by the operator"})))
	require.Equal(t, []string{"ClaimRuns", "PublishAll(1)", "UpdateRuns"}, u.store.writes())
	cancelled := u.run(other.ID)
	require.Equal(t, store.RunCancelled, cancelled.Status)
	require.Equal(t, "by the operator", cancelled.Error)
}

// A step that fails at any point of its commit, and is redelivered, ends
// as if it had run once: one state change, each message recorded and
// published once, each status change published once.
func TestCommitFailureAnywhereThenRedelivery(t *testing.T) {
	for _, at := range []string{"UpsertContacts", "InsertMessages", "PublishAll(2)", "UpdateRuns"} {
		t.Run(at, func(t *testing.T) {
			u := newUnit(t)
			run := u.dispatch("ann", nil)
			outBefore, statusBefore := len(u.streamIDs(bus.StreamOutbound)), len(u.streamIDs(bus.StreamRuns))
			u.failOnce(at)
			reply := u.reply("ann", "in-1", "Ann")
			require.Error(t, u.o.handleInbound(u.ctx, reply), "the injected failure")
			reply.Delivered = 2
			require.NoError(t, u.o.handleInbound(u.ctx, reply), "the redelivery")
			// And a provider's retry of the same reply changes nothing.
			require.NoError(t, u.o.handleInbound(u.ctx, u.reply("ann", "in-1", "Ann")))

			done := u.run(run.ID)
			require.Equal(t, store.RunCompleted, done.Status)
			require.Equal(t, int64(2), done.Version, "one write at the start, one for the reply")
			msgs := u.messages(run.ID)
			require.Len(t, msgs, 2)
			require.Equal(t, 2, msgs[1].Seq)
			out := u.streamIDs(bus.StreamOutbound)
			require.Equal(t, []string{bus.MsgID("out:" + MessageID(run.ID, 2))}, out[outBefore:], "the thanks bundle, once")
			status := u.streamIDs(bus.StreamRuns)
			require.Equal(t, []string{bus.MsgID(fmt.Sprintf("run:%s:2:completed", run.ID))}, status[statusBefore:], "the completed status, once")
		})
	}
}

// A reply that finds its run moved by another replica between its read
// and its claim (a cancel) is refused the claim: nothing of the reply goes
// out, the handler asks to be retried, and the retry applies to the run as
// it now is.
func TestCommitVersionConflict(t *testing.T) {
	u := newUnit(t)
	run := u.dispatch("ann", nil)
	replica := u.replica()
	outBefore, statusBefore := len(u.streamIDs(bus.StreamOutbound)), len(u.streamIDs(bus.StreamRuns))
	u.store.onceBefore("ClaimRuns", func() {
		// Another replica cancels the run meanwhile.
		require.NoError(t, replica.handleControl(u.ctx, u.message("c-1", events.TypeRunCommand,
			events.RunCommand{BotID: unitBot, RunID: run.ID, Command: "cancel"})))
	})
	reply := u.reply("ann", "in-1", "Ann")
	err := u.o.handleInbound(u.ctx, reply)
	require.ErrorIs(t, err, store.ErrVersionConflict)
	var retry *bus.RetryAfterError
	require.ErrorAs(t, err, &retry)
	require.True(t, bus.IsTransient(err), "a run that moved on is no reason to dead-letter the reply")
	require.NoError(t, u.o.handleInbound(u.ctx, reply))
	require.Equal(t, store.RunCancelled, u.run(run.ID).Status, "the cancel stands; the reply finds no waiting run")
	require.Empty(t, u.streamIDs(bus.StreamOutbound)[outBefore:], "no thanks for a cancelled run")
	require.Equal(t, []string{bus.MsgID(fmt.Sprintf("run:%s:2:cancelled", run.ID))}, u.streamIDs(bus.StreamRuns)[statusBefore:])
}

// Two steps of one run in two orchestrator processes, the second taken
// while the first is between its claim and its write (its effects going
// out): the second is refused — nothing of it goes out, and it is retried
// as transient, never dead-lettered for waiting — and its retry applies to
// the run as the first left it. Before claims, both went out: the replica's
// "cancelled" status for a run that completed, or the reply's thanks to a
// run that ends cancelled.
func TestStepsOfARunInTwoProcessesDoNotOverlap(t *testing.T) {
	t.Run("a cancel during a reply", func(t *testing.T) {
		u := newUnit(t)
		run := u.dispatch("ann", nil)
		replica := u.replica()
		outBefore, statusBefore := len(u.streamIDs(bus.StreamOutbound)), len(u.streamIDs(bus.StreamRuns))
		cancel := u.message("c-1", events.TypeRunCommand, events.RunCommand{BotID: unitBot, RunID: run.ID, Command: "cancel"})
		u.store.onceBefore("InsertMessages", func() {
			requireWaitsForClaim(t, replica.handleControl(u.ctx, cancel))
		})
		require.NoError(t, u.o.handleInbound(u.ctx, u.reply("ann", "in-1", "Ann")))
		require.NoError(t, replica.handleControl(u.ctx, cancel), "the retry finds the run completed")
		require.Equal(t, store.RunCompleted, u.run(run.ID).Status)
		require.Equal(t, []string{bus.MsgID("out:" + MessageID(run.ID, 2))}, u.streamIDs(bus.StreamOutbound)[outBefore:])
		require.Equal(t, []string{bus.MsgID(fmt.Sprintf("run:%s:2:completed", run.ID))}, u.streamIDs(bus.StreamRuns)[statusBefore:],
			"no cancelled status for a run that completed")
	})
	t.Run("a reply during a cancel", func(t *testing.T) {
		u := newUnit(t)
		run := u.dispatch("ann", nil)
		replica := u.replica()
		outBefore, statusBefore := len(u.streamIDs(bus.StreamOutbound)), len(u.streamIDs(bus.StreamRuns))
		reply := u.reply("ann", "in-1", "Ann")
		u.store.onceBefore("UpdateRuns", func() {
			requireWaitsForClaim(t, replica.handleInbound(u.ctx, reply))
		})
		require.NoError(t, u.o.handleControl(u.ctx, u.message("c-1", events.TypeRunCommand,
			events.RunCommand{BotID: unitBot, RunID: run.ID, Command: "cancel"})))
		require.NoError(t, replica.handleInbound(u.ctx, reply), "the retry finds no waiting run")
		require.Equal(t, store.RunCancelled, u.run(run.ID).Status)
		require.Empty(t, u.streamIDs(bus.StreamOutbound)[outBefore:], "no thanks to a cancelled run")
		require.Equal(t, []string{bus.MsgID(fmt.Sprintf("run:%s:2:cancelled", run.ID))}, u.streamIDs(bus.StreamRuns)[statusBefore:])
	})
}

// requireWaitsForClaim: err is a step refused for another's claim on its
// run, retried as transient (never dead-lettered for waiting).
func requireWaitsForClaim(t *testing.T, err error) {
	t.Helper()
	require.ErrorIs(t, err, errRunClaimed)
	require.True(t, bus.IsTransient(err), "waiting for a step is not a failure: %v", err)
	var te *bus.TransientError
	require.ErrorAs(t, err, &te)
	require.Equal(t, claimRetryCap, te.MaxWait, "a step waiting for a claim is retried within the cap")
}

// A step that died between its claim and its write (its effects out, its
// state not stored) keeps the run from other steps until its claim lapses;
// its own event, redelivered, takes the run back at once and replays the
// same effects, which JetStream drops.
func TestAClaimOfADeadStep(t *testing.T) {
	u := newUnit(t)
	run := u.dispatch("ann", nil)
	now := testclock.Date(2031, 3, 1, 12, 0, 0)
	clock := func() time.Time { return now }
	dead, err := New(Config{AlwaysPublishStatus: true, ClaimLease: time.Minute}, Deps{Store: u.store, Bus: u.bus, Clock: clock,
		Logger: slog.New(slog.NewTextHandler(testLogOut(), nil))})
	require.NoError(t, err)
	replica := u.replica()
	replica.now = clock
	outBefore, statusBefore := len(u.streamIDs(bus.StreamOutbound)), len(u.streamIDs(bus.StreamRuns))
	crash := errors.New("the process died before its write")
	u.store.mu.Lock()
	u.store.before["UpdateRuns"] = func() error { return crash }
	u.store.mu.Unlock()
	reply := u.reply("ann", "in-1", "Ann")
	require.ErrorIs(t, dead.handleInbound(u.ctx, reply), crash)
	u.store.mu.Lock()
	delete(u.store.before, "UpdateRuns")
	u.store.mu.Unlock()

	cancel := u.message("c-1", events.TypeRunCommand, events.RunCommand{BotID: unitBot, RunID: run.ID, Command: "cancel"})
	now = now.Add(59 * time.Second)
	require.ErrorIs(t, replica.handleControl(u.ctx, cancel), errRunClaimed, "the claim holds for its lease")
	require.NoError(t, replica.handleInbound(u.ctx, reply), "the same reply, redelivered, takes the run back")
	require.NoError(t, replica.handleControl(u.ctx, cancel))
	require.Equal(t, store.RunCompleted, u.run(run.ID).Status)
	require.Equal(t, []string{bus.MsgID("out:" + MessageID(run.ID, 2))}, u.streamIDs(bus.StreamOutbound)[outBefore:], "the thanks, once")
	require.Equal(t, []string{bus.MsgID(fmt.Sprintf("run:%s:2:completed", run.ID))}, u.streamIDs(bus.StreamRuns)[statusBefore:])

	// Another run, whose dead step's event never comes back: its claim
	// lapses after the lease, and the cancel goes through.
	run2 := u.dispatch("bob", nil)
	u.store.mu.Lock()
	u.store.before["UpdateRuns"] = func() error { return crash }
	u.store.mu.Unlock()
	require.ErrorIs(t, dead.handleInbound(u.ctx, u.reply("bob", "in-2", "Bob")), crash)
	u.store.mu.Lock()
	delete(u.store.before, "UpdateRuns")
	u.store.mu.Unlock()
	cancel2 := u.message("c-2", events.TypeRunCommand, events.RunCommand{BotID: unitBot, RunID: run2.ID, Command: "cancel"})
	require.ErrorIs(t, replica.handleControl(u.ctx, cancel2), errRunClaimed)
	now = now.Add(time.Minute)
	require.NoError(t, replica.handleControl(u.ctx, cancel2), "the lapsed claim is no claim")
	require.Equal(t, store.RunCancelled, u.run(run2.ID).Status)
}

// Two steps of one run in one process: a cancel taken while a reply to the
// run is between its read and its step. The reply's step is not taken —
// no "thanks" message, no "completed" status goes out for a run that ends
// cancelled (before runLocks, both did, and the reply's write then lost
// its version check) — and the retried reply finds no waiting run.
func TestStepsOfARunInOneProcessDoNotOverlap(t *testing.T) {
	u := newUnit(t)
	run := u.dispatch("ann", nil)
	outBefore, statusBefore := len(u.streamIDs(bus.StreamOutbound)), len(u.streamIDs(bus.StreamRuns))
	var once sync.Once
	u.store.mu.Lock()
	u.store.afterListRuns = func() {
		once.Do(func() {
			require.NoError(t, u.o.handleControl(u.ctx, u.message("c-1", events.TypeRunCommand,
				events.RunCommand{BotID: unitBot, RunID: run.ID, Command: "cancel"})))
		})
	}
	u.store.mu.Unlock()
	reply := u.reply("ann", "in-1", "Ann")
	err := u.o.handleInbound(u.ctx, reply)
	require.ErrorIs(t, err, store.ErrVersionConflict)
	var retry *bus.RetryAfterError
	require.ErrorAs(t, err, &retry)
	require.NoError(t, u.o.handleInbound(u.ctx, reply))

	require.Equal(t, store.RunCancelled, u.run(run.ID).Status)
	require.Empty(t, u.streamIDs(bus.StreamOutbound)[outBefore:], "no message for the reply")
	require.Equal(t, []string{bus.MsgID(fmt.Sprintf("run:%s:2:cancelled", run.ID))}, u.streamIDs(bus.StreamRuns)[statusBefore:],
		"the cancel's status change, and no other")
	require.Len(t, u.messages(run.ID), 1, "the question only")
}

// The WhatsApp window: a contact outside it gets the trigger's template,
// the run waits for the window in the interpreter's state, and the flow
// starts when the contact answers. Runs stored with the former
// awaiting_window flag resume the same way.
func TestWindowWaitIsInterpreterState(t *testing.T) {
	u := newUnit(t)
	template := &events.Content{Type: events.ContentTemplate, Template: &events.Template{Name: "hello", Language: "en"}}
	// The sandbox channel has no reply window: a WhatsApp contact is needed.
	trig := events.Trigger{ID: "t-wa", BotID: unitBot, FlowID: "ask", Channel: events.ChannelWhatsApp, Source: "recrubo",
		Audience: events.Audience{Users: []string{"+15550001"}}, InitialMessage: template}
	require.NoError(t, u.o.handleTrigger(u.ctx, u.message(trig.ID, events.TypeTriggerAccepted, trig)))
	c, err := u.raw.GetContactByExternalID(u.ctx, unitBot, events.ChannelWhatsApp, "+15550001")
	require.NoError(t, err)
	run := u.run(RunID(trig.ID, c.ID))
	require.Equal(t, store.RunWaiting, run.Status)
	st, err := decodeState(run)
	require.NoError(t, err)
	require.Equal(t, flow.WaitWindow, st.Flow.WaitingFor)
	msgs := u.messages(run.ID)
	require.Len(t, msgs, 1)
	require.Equal(t, 0, msgs[0].Seq)

	inbound := func(id string) bus.Message {
		return u.message(id, events.TypeInbound, events.Inbound{BotID: unitBot, Channel: events.ChannelWhatsApp,
			From: "+15550001", ProviderMessageID: id, Text: "yes", ReceivedAt: time.Now().UTC()})
	}
	require.NoError(t, u.o.handleInbound(u.ctx, inbound("wa-1")))
	started := u.run(run.ID)
	st, err = decodeState(started)
	require.NoError(t, err)
	require.Equal(t, flow.WaitReply, st.Flow.WaitingFor, "the flow started and asks")
	require.Len(t, u.messages(run.ID), 2)
	require.Equal(t, events.LaneHigh, u.messages(run.ID)[1].Lane, "an answer to the user goes in the high lane")

	// A run stored by an earlier version, waiting with the former flag.
	legacy := store.Run{ID: "legacy", BotID: unitBot, TriggerID: "t-old", FlowID: "ask", FlowVersion: 1,
		ContactID: c.ID, Channel: events.ChannelWhatsApp, Status: store.RunWaiting,
		State:     json.RawMessage(`{"flow":{},"awaiting_window":true,"status_seq":1,"lane":"bulk"}`),
		CreatedAt: time.Now().UTC(), UpdatedAt: time.Now().UTC()}
	require.NoError(t, u.o.handleControl(u.ctx, u.message("c-1", events.TypeRunCommand,
		events.RunCommand{BotID: unitBot, RunID: run.ID, Command: "cancel"})))
	_, _, err = u.raw.CreateRuns(u.ctx, []store.Run{legacy})
	require.NoError(t, err)
	require.NoError(t, u.o.handleInbound(u.ctx, inbound("wa-2")))
	resumed := u.run("legacy")
	require.Equal(t, store.RunWaiting, resumed.Status)
	st, err = decodeState(resumed)
	require.NoError(t, err)
	require.Equal(t, flow.WaitReply, st.Flow.WaitingFor, "the legacy run's flow started")
	require.NotContains(t, string(resumed.State), "awaiting_window", "the former flag is not written again")
	require.Len(t, u.messages("legacy"), 1)

	// A template that could not be delivered fails the run that waits for it.
	trig.ID, trig.Audience.Users = "t-wa2", []string{"+15550002"}
	require.NoError(t, u.o.handleTrigger(u.ctx, u.message(trig.ID, events.TypeTriggerAccepted, trig)))
	c2, err := u.raw.GetContactByExternalID(u.ctx, unitBot, events.ChannelWhatsApp, "+15550002")
	require.NoError(t, err)
	id := RunID(trig.ID, c2.ID)
	require.NoError(t, u.o.handleDelivery(u.ctx, u.message("d-1", events.TypeDelivery, events.Delivery{BotID: unitBot,
		Channel: events.ChannelWhatsApp, MessageID: MessageID(id, 0), RunID: id, Status: events.StatusFailed,
		Code: "131047", Reason: "re-engagement message", At: time.Now().UTC()})))
	failed := u.run(id)
	require.Equal(t, store.RunFailed, failed.Status)
	require.Equal(t, "initial message could not be delivered: 131047: re-engagement message", failed.Error)
}

// A run that cannot go on fails through the interpreter: its flow deleted,
// or its stored state corrupt. A cancel of a run that never started (a
// crash left it in status created) cancels it.
func TestRunsThatCannotGoOn(t *testing.T) {
	u := newUnit(t)
	run := u.dispatch("ann", nil)
	_, err := u.raw.GetFlow(u.ctx, unitBot, "ask", 0)
	require.NoError(t, err)
	require.NoError(t, u.raw.DeleteFlow(u.ctx, unitBot, "ask"))
	u.o.defs = map[string]*flow.Definition{} // as a restarted process
	require.NoError(t, u.o.handleInbound(u.ctx, u.reply("ann", "in-1", "Ann")))
	gone := u.run(run.ID)
	require.Equal(t, store.RunFailed, gone.Status)
	require.Contains(t, gone.Error, "not found")
	st, err := decodeState(gone)
	require.NoError(t, err)
	require.Equal(t, flow.StatusFailed, st.Flow.Status, "the interpreter's state says so too")

	now := time.Now().UTC()
	for _, r := range []store.Run{
		{ID: "corrupt", State: json.RawMessage(`{"flow":5}`), Status: store.RunWaiting},
		{ID: "created", Status: store.RunCreated},
	} {
		r.BotID, r.TriggerID, r.FlowID, r.FlowVersion, r.ContactID = unitBot, "t-"+r.ID, "ask", 1, gone.ContactID
		r.Channel, r.CreatedAt, r.UpdatedAt = events.ChannelSandbox, now, now
		_, _, err := u.raw.CreateRuns(u.ctx, []store.Run{r})
		require.NoError(t, err)
	}
	require.NoError(t, u.o.handleInbound(u.ctx, u.reply("ann", "in-2", "Ann")))
	corrupt := u.run("corrupt")
	require.Equal(t, store.RunFailed, corrupt.Status)
	require.Contains(t, corrupt.Error, "corrupt state")
	require.NoError(t, u.o.handleControl(u.ctx, u.message("c-1", events.TypeRunCommand,
		events.RunCommand{BotID: unitBot, RunID: "created", Command: "cancel"})))
	require.Equal(t, store.RunCancelled, u.run("created").Status)
}

// TestCrashAfterPublishThenRestart stops the orchestrator after it
// published a run's messages but before it stored the run — the worst
// moment for a crash — and starts another on the same store and streams:
// the run completes and its message is published once. (The channel
// worker's side, a bundle redelivered after a send, is the channel
// package's TestSandboxBundleIsDeliveredAndCountedOnce.)
func TestCrashAfterPublishThenRestart(t *testing.T) {
	var crashed atomic.Bool
	crash := eachPublishedRun(func(string) error {
		crashed.Store(true)
		return errors.New("simulated crash after publish")
	})
	r := newRig(t, Config{}, func(st Store, b Bus) (Store, Bus) { return st, &faultyBus{Bus: b, afterPublish: crash} })
	r.addContacts([]contactSpec{{channel: events.ChannelSandbox, id: "ann"}})
	id := r.trigger(events.Trigger{Audience: events.Audience{Users: []string{"ann"}}})
	require.Eventually(t, crashed.Load, 10*time.Second, 5*time.Millisecond)
	require.Empty(t, r.runs(id), "the crash came before the run was stored")

	r.restart(Config{}, nil)
	require.Eventually(t, func() bool {
		runs := r.runs(id)
		return len(runs) == 1 && runs[0].Status == store.RunCompleted
	}, 30*time.Second, 20*time.Millisecond)
	bundles := r.bundles()
	require.Len(t, bundles, 1, "the redone step's publish was a duplicate")
	require.Equal(t, "Hi Nann", bundles[0].Messages[0].Content.Text)
}

// A trigger batch (the ingress's group commit) is each of its triggers: a
// run per good one; one that fails for good is split off into a message of
// its own (for the dead letters) without holding the others back; a
// redelivered batch changes nothing.
func TestTriggerBatch(t *testing.T) {
	u := newUnit(t)
	trig := func(id, user, flowID string) json.RawMessage {
		raw, err := json.Marshal(events.Trigger{ID: id, BotID: unitBot, FlowID: flowID, Channel: events.ChannelSandbox,
			Source: "dispatch", Audience: events.Audience{Users: []string{user}}})
		require.NoError(t, err)
		return raw
	}
	// b5's id is another bot's trigger; b6's id is longer than the store
	// takes (the batch's triggers are then stored one by one, and only b6
	// fails): both are refused by the store for good.
	require.NoError(t, u.raw.CreateBot(u.ctx, store.Bot{ID: "other", Name: "Other"}))
	_, _, err := u.raw.CreateTrigger(u.ctx, store.Trigger{ID: "b5", BotID: "other", Source: "native", FlowID: "f",
		Channel: events.ChannelSandbox, Spec: json.RawMessage(`{}`)})
	require.NoError(t, err)
	long := "b6" + strings.Repeat("x", store.MaxIDBytes)
	batch := events.TriggerBatch{Triggers: []json.RawMessage{
		trig("b1", "ann", "ask"), trig("b2", "bob", "ask"), trig("b3", "cid", "no-such-flow"), json.RawMessage(`{"id":"b4"}`),
		trig("b5", "dan", "ask"), trig(long, "eve", "ask"),
	}}
	ev, err := bus.NewEvent("batch:b1", events.TypeTriggerBatch, unitBot, batch)
	require.NoError(t, err)
	m := bus.Message{Event: ev, Delivered: 1}
	for range 2 { // and its redelivery
		require.NoError(t, u.o.handleTrigger(u.ctx, m))
		for _, user := range []string{"ann", "bob"} {
			id := RunID("b"+map[string]string{"ann": "1", "bob": "2"}[user], u.contact(user).ID)
			require.Equal(t, store.RunWaiting, u.run(id).Status)
			require.Len(t, u.messages(id), 1, "one first message, whatever the deliveries")
		}
		m.Delivered++
	}
	// The two bad triggers, each once in the trigger stream as a message
	// of its own; handled alone, they fail for good (the consumer
	// dead-letters them).
	split := u.streamIDs(bus.StreamTriggers)
	require.ElementsMatch(t, []string{bus.MsgID("b3"), bus.MsgID("b4"), bus.MsgID("b5"), bus.MsgID(long)}, split)
	s, err := u.bus.JetStream().Stream(u.ctx, bus.StreamTriggers)
	require.NoError(t, err)
	for seq := uint64(1); seq <= 4; seq++ {
		raw, err := s.GetMsg(u.ctx, seq)
		require.NoError(t, err)
		ev, err := bus.NewEvent("x", events.TypeTriggerAccepted, unitBot, json.RawMessage(raw.Data))
		require.NoError(t, err)
		var perm *bus.PermanentError
		require.ErrorAs(t, u.o.handleTrigger(u.ctx, bus.Message{Event: ev, Delivered: 1}), &perm)
	}

	// A batch whose payload is not a batch is dead-lettered whole, and
	// nothing of it is stored or published.
	for _, data := range []string{`[1,2]`, `{"triggers":"b1"}`, `{"triggers":[`} {
		ev := cloudevents.New()
		ev.SetID("batch:bad")
		ev.SetType(events.TypeTriggerBatch)
		ev.SetSource("/test")
		ev.SetSubject(unitBot)
		require.NoError(t, ev.SetData(cloudevents.ApplicationJSON, []byte(data)))
		var perm *bus.PermanentError
		require.ErrorAs(t, u.o.handleTrigger(u.ctx, bus.Message{Event: ev, Delivered: 1}), &perm, "payload %s", data)
	}
	require.Len(t, u.streamIDs(bus.StreamTriggers), 4, "nothing split off from a bad batch")
	theirs, err := u.raw.GetTrigger(u.ctx, "other", "b5")
	require.NoError(t, err)
	require.Equal(t, "native", theirs.Source, "the other bot's trigger untouched")
}

// Replies and cancels of the same runs, taken at the same moment by the
// handlers of one process: every run ends either completed (the "thanks"
// message and the "completed" change went out, once) or cancelled (neither
// went out), never with the effects of both.
func TestConcurrentReplyAndCancelOfOneRun(t *testing.T) {
	u := newUnit(t)
	n := 60
	if raceEnabled {
		n = 20
	}
	runs := make([]store.Run, n)
	for i := range runs {
		runs[i] = u.dispatch(fmt.Sprintf("racer-%d", i), nil)
	}
	outBefore, statusBefore := len(u.streamIDs(bus.StreamOutbound)), len(u.streamIDs(bus.StreamRuns))
	// untilDone retries a handler as the bus would.
	untilDone := func(f func() error) {
		for range 100 {
			err := f()
			var retry *bus.RetryAfterError
			if !errors.As(err, &retry) {
				require.NoError(t, err)
				return
			}
		}
		t.Error("still retried after 100 attempts")
	}
	var wg sync.WaitGroup
	for i, run := range runs {
		wg.Add(2)
		go func() {
			defer wg.Done()
			untilDone(func() error {
				return u.o.handleInbound(u.ctx, u.reply(fmt.Sprintf("racer-%d", i), fmt.Sprintf("in-%d", i), "Ann"))
			})
		}()
		go func() {
			defer wg.Done()
			untilDone(func() error {
				return u.o.handleControl(u.ctx, u.message(fmt.Sprintf("c-%d", i), events.TypeRunCommand,
					events.RunCommand{BotID: unitBot, RunID: run.ID, Command: "cancel"}))
			})
		}()
	}
	wg.Wait()

	out := u.streamIDs(bus.StreamOutbound)[outBefore:]
	status := u.streamIDs(bus.StreamRuns)[statusBefore:]
	completed := 0
	for _, run := range runs {
		final := u.run(run.ID).Status
		thanks := bus.MsgID("out:" + MessageID(run.ID, 2))
		done := bus.MsgID(fmt.Sprintf("run:%s:2:completed", run.ID))
		cancelled := bus.MsgID(fmt.Sprintf("run:%s:2:cancelled", run.ID))
		switch final {
		case store.RunCompleted:
			completed++
			require.Equal(t, 1, count(out, thanks), "%s: the thanks bundle once", run.ID)
			require.Equal(t, 1, count(status, done), run.ID)
			require.Zero(t, count(status, cancelled), run.ID)
			require.Len(t, u.messages(run.ID), 2, run.ID)
		case store.RunCancelled:
			require.Zero(t, count(out, thanks), "%s: cancelled, yet the thanks bundle went out", run.ID)
			require.Zero(t, count(status, done), "%s: cancelled, yet announced completed", run.ID)
			require.Equal(t, 1, count(status, cancelled), run.ID)
			require.Len(t, u.messages(run.ID), 1, run.ID)
		default:
			t.Fatalf("%s ended %s", run.ID, final)
		}
	}
	t.Logf("%d of %d runs completed before their cancel", completed, n)
}

// A trigger redelivered after a crash stores its runs (status created) and
// then starts them; a cancel through the API that comes in between waits
// for the start and then cancels the started run, instead of cancelling
// the created run while the start goes out and loses its write (which
// announced "waiting" and "cancelled" under one status number).
func TestRecoveredStartAndCancelOfOneRun(t *testing.T) {
	u := newUnit(t)
	trig := events.Trigger{ID: "t-rec", BotID: unitBot, FlowID: "ask", Channel: events.ChannelSandbox,
		Source: "native", Audience: events.Audience{Users: []string{"rec"}}}
	msg := u.message(trig.ID, events.TypeTriggerAccepted, trig)
	u.failOnce("CreateRuns") // the first attempt dies before its runs are stored
	require.Error(t, u.o.handleTrigger(u.ctx, msg))
	runID := RunID(trig.ID, u.contact("rec").ID)

	cancelled := make(chan struct{})
	u.store.onceBefore("UpdateRuns", func() { // the redelivery's start, about to be written
		go func() {
			defer close(cancelled)
			for range 100 {
				err := u.o.handleControl(u.ctx, u.message("c-rec", events.TypeRunCommand,
					events.RunCommand{BotID: unitBot, RunID: runID, Command: "cancel"}))
				var retry *bus.RetryAfterError
				if !errors.As(err, &retry) {
					require.NoError(t, err)
					return
				}
			}
		}()
		time.Sleep(200 * time.Millisecond) // time for the cancel to overtake, if it could
	})
	require.NoError(t, u.o.handleTrigger(u.ctx, msg))
	<-cancelled

	require.Equal(t, store.RunCancelled, u.run(runID).Status)
	require.Equal(t, map[string]string{"1": "waiting", "2": "cancelled"}, u.statusNumbers(runID))
}

// statusNumbers are the status changes published for runID, by status
// number; a number announced twice fails the test.
func (u *unit) statusNumbers(runID string) map[string]string {
	u.t.Helper()
	seqs := map[string]string{}
	for _, id := range u.streamIDs(bus.StreamRuns) {
		for _, st := range []string{"waiting", "cancelled", "completed"} {
			for seq := range 4 {
				if id == bus.MsgID(fmt.Sprintf("run:%s:%d:%s", runID, seq, st)) {
					key := strconv.Itoa(seq)
					require.Empty(u.t, seqs[key], "status number %d announced twice: %s and %s", seq, seqs[key], st)
					seqs[key] = st
				}
			}
		}
	}
	return seqs
}

// The same, with the cancel taken by another orchestrator process: either
// step may come first, and only that one goes out.
func TestRecoveredStartAndCancelOfOneRunInTwoProcesses(t *testing.T) {
	recovering := func(u *unit) (bus.Message, string) {
		trig := events.Trigger{ID: "t-rec", BotID: unitBot, FlowID: "ask", Channel: events.ChannelSandbox,
			Source: "native", Audience: events.Audience{Users: []string{"rec"}}}
		msg := u.message(trig.ID, events.TypeTriggerAccepted, trig)
		u.failOnce("InsertMessages") // the first attempt dies before anything went out
		require.Error(t, u.o.handleTrigger(u.ctx, msg))
		return msg, RunID(trig.ID, u.contact("rec").ID)
	}
	t.Run("the cancel during the start", func(t *testing.T) {
		u := newUnit(t)
		replica := u.replica()
		msg, runID := recovering(u)
		cancel := u.message("c-rec", events.TypeRunCommand, events.RunCommand{BotID: unitBot, RunID: runID, Command: "cancel"})
		u.store.onceBefore("UpdateRuns", func() { // the redelivery's start, its effects out
			requireWaitsForClaim(t, replica.handleControl(u.ctx, cancel))
		})
		require.NoError(t, u.o.handleTrigger(u.ctx, msg))
		require.NoError(t, replica.handleControl(u.ctx, cancel))
		require.Equal(t, store.RunCancelled, u.run(runID).Status)
		require.Equal(t, map[string]string{"1": "waiting", "2": "cancelled"}, u.statusNumbers(runID))
	})
	t.Run("the start during the cancel", func(t *testing.T) {
		u := newUnit(t)
		replica, rs := u.faultyReplica()
		msg, runID := recovering(u)
		u.failOnce("ClaimRuns") // the second dies after storing its run, before starting it
		require.Error(t, u.o.handleTrigger(u.ctx, msg))
		require.Equal(t, store.RunCreated, u.run(runID).Status)
		outBefore := len(u.streamIDs(bus.StreamOutbound))
		rs.onceBefore("UpdateRuns", func() { // the cancel of the created run, its status out
			requireWaitsForClaim(t, u.o.handleTrigger(u.ctx, msg))
		})
		require.NoError(t, replica.handleControl(u.ctx, u.message("c-rec", events.TypeRunCommand,
			events.RunCommand{BotID: unitBot, RunID: runID, Command: "cancel"})))
		require.NoError(t, u.o.handleTrigger(u.ctx, msg), "the retried batch finds its run cancelled")
		require.Equal(t, store.RunCancelled, u.run(runID).Status)
		require.Equal(t, map[string]string{"1": "cancelled"}, u.statusNumbers(runID))
		require.Empty(t, u.streamIDs(bus.StreamOutbound)[outBefore:], "no question to a cancelled run")
	})
}

// A step stalled for most of its claim's lease gives up before the claim
// lapses: it does not write the run once another step may have taken it.
func TestAStepGivesUpBeforeItsClaimLapses(t *testing.T) {
	u := newUnit(t)
	run := u.dispatch("ann", nil)
	slow, err := New(Config{AlwaysPublishStatus: true, ClaimLease: 300 * time.Millisecond}, Deps{Store: u.store, Bus: u.bus,
		Logger: slog.New(slog.NewTextHandler(testLogOut(), nil))})
	require.NoError(t, err)
	u.store.mu.Lock()
	u.store.before["UpdateRuns"] = func() error {
		time.Sleep(400 * time.Millisecond) // stalled past 9/10 of the lease
		return nil
	}
	u.store.mu.Unlock()
	err = slow.handleInbound(u.ctx, u.reply("ann", "in-1", "Ann"))
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.Equal(t, run.Version, u.run(run.ID).Version, "not written")
}

// statusChanges are the run status changes published for runID, in order.
func (u *unit) statusChanges(runID string) []events.RunStatus {
	u.t.Helper()
	s, err := u.bus.JetStream().Stream(u.ctx, bus.StreamRuns)
	require.NoError(u.t, err)
	info, err := s.Info(u.ctx)
	require.NoError(u.t, err)
	var out []events.RunStatus
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		m, err := s.GetMsg(u.ctx, seq)
		require.NoError(u.t, err)
		ev, err := bus.FromMsg(m.Header, m.Data)
		require.NoError(u.t, err)
		var rs events.RunStatus
		require.NoError(u.t, json.Unmarshal(ev.Data(), &rs))
		if rs.RunID == runID {
			out = append(out, rs)
		}
	}
	return out
}

// Every status change names the store version of the run it is written
// with (RunVersion), for readers that must see the change in the run
// (webhook deliveries wait for it): a new run inserted at its first change,
// a stored run's updates, and a trigger's start of runs it stored first.
func TestStatusChangesNameTheirRunVersion(t *testing.T) {
	u := newUnit(t)
	run := u.dispatch("ann", nil)
	require.NoError(t, u.o.handleInbound(u.ctx, u.reply("ann", "in-1", "Ann")))
	changes := u.statusChanges(run.ID)
	require.Len(t, changes, 2)
	require.Equal(t, []int64{1, 2}, []int64{changes[0].RunVersion, changes[1].RunVersion})
	require.Equal(t, int64(2), u.run(run.ID).Version)

	// Stored as created first (the first attempt died), then started.
	trig := events.Trigger{ID: "t-rec", BotID: unitBot, FlowID: "ask", Channel: events.ChannelSandbox,
		Source: "native", Audience: events.Audience{Users: []string{"rec"}}}
	msg := u.message(trig.ID, events.TypeTriggerAccepted, trig)
	u.failOnce("InsertMessages")
	require.Error(t, u.o.handleTrigger(u.ctx, msg))
	require.NoError(t, u.o.handleTrigger(u.ctx, msg))
	runID := RunID(trig.ID, u.contact("rec").ID)
	changes = u.statusChanges(runID)
	require.Len(t, changes, 1)
	require.Equal(t, "waiting", changes[0].Status)
	require.Equal(t, u.run(runID).Version, changes[0].RunVersion)
	require.Equal(t, int64(2), changes[0].RunVersion, "created at 1, started at 2")
}

// Every replica polls for due timers and finds the same ones: the replica
// that claims a run's timer fires it, and the other is refused before it
// publishes anything (its claim is named for its own process).
func TestATimerFoundByTwoReplicasFiresOnce(t *testing.T) {
	u := newUnit(t)
	_, err := u.raw.PutFlow(u.ctx, store.Flow{BotID: unitBot, ID: "late", Definition: []byte(`{"steps":[
		{"id":"q","type":"ask","text":"Still there?","attribute":"a","timeout":"1s","on_timeout":"bye"},
		{"id":"bye","type":"send","text":"Too late"}]}`)})
	require.NoError(t, err)
	var mu sync.Mutex
	var publishes []string
	record := func(who string) func(evs []bus.Outgoing) error {
		return func(evs []bus.Outgoing) error {
			mu.Lock()
			defer mu.Unlock()
			for _, e := range evs {
				publishes = append(publishes, who+" "+e.Event.ID())
			}
			return nil
		}
	}
	newReplica := func(who string, st Store) *Orchestrator {
		o, err := New(Config{AlwaysPublishStatus: true}, Deps{Store: st, Bus: &faultyBus{Bus: u.bus, afterPublish: record(who)},
			Logger: slog.New(slog.NewTextHandler(testLogOut(), nil))})
		require.NoError(t, err)
		return o
	}
	a, b := newReplica("a", u.raw), newReplica("b", u.raw)
	trig := events.Trigger{ID: "t-late", BotID: unitBot, FlowID: "late", Channel: events.ChannelSandbox,
		Source: "native", Audience: events.Audience{Users: []string{"tim"}}}
	require.NoError(t, a.handleTrigger(u.ctx, u.message(trig.ID, events.TypeTriggerAccepted, trig)))
	runID := RunID(trig.ID, u.contact("tim").ID)
	run := u.run(runID)
	require.Equal(t, store.RunWaiting, run.Status)
	require.NotNil(t, run.WaitUntil)
	time.Sleep(time.Until(*run.WaitUntil) + 50*time.Millisecond)
	mu.Lock()
	publishes = nil
	mu.Unlock()

	// Both find the timer due; both step it at once.
	start := make(chan struct{})
	var wg sync.WaitGroup
	for _, o := range []*Orchestrator{a, b} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			o.fireDue(u.ctx)
		}()
	}
	close(start)
	wg.Wait()
	for range 2 { // a refused replica finds the timer done at its next poll
		a.fireDue(u.ctx)
		b.fireDue(u.ctx)
	}
	require.Equal(t, store.RunCompleted, u.run(runID).Status)
	mu.Lock()
	defer mu.Unlock()
	require.Len(t, publishes, 2, "one replica published the bundle and the status, once: %v", publishes)
	require.Equal(t, publishes[0][:1], publishes[1][:1], "by one replica: %v", publishes)
}
