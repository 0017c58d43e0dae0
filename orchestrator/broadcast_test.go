package orchestrator

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/flowgate/flowgate/shared/bus"
	"github.com/flowgate/flowgate/shared/bus/bustest"
	"github.com/flowgate/flowgate/shared/events"
	"github.com/flowgate/flowgate/shared/store"
	"github.com/flowgate/flowgate/shared/store/sqlite/sqlitetest"
)

// rig is an orchestrator on a real embedded NATS server and SQLite store,
// with no channel workers: outbound messages stay in their stream, where
// the tests count them.
type rig struct {
	t     *testing.T
	store store.Store
	bus   *bus.Bus
	log   *slog.Logger
	stop  func()
}

// wrap decorates the orchestrator's Store and Bus (faults_test.go); nil
// leaves them as they are.
type wrap func(Store, Bus) (Store, Bus)

const testBot = "bcast"

func newRig(t *testing.T, cfg Config, w wrap) *rig {
	t.Helper()
	ctx := context.Background()
	_, b := bustest.Bus(t, bus.Config{Source: "/test"})
	st := sqlitetest.Open(t)
	require.NoError(t, st.CreateBot(ctx, store.Bot{ID: testBot, Name: "Broadcast"}))
	_, err := st.PutFlow(ctx, store.Flow{BotID: testBot, ID: "hello",
		Definition: []byte(`{"steps":[{"id":"hi","type":"send","text":"Hi {{ name }}"}]}`)})
	require.NoError(t, err)
	r := &rig{t: t, store: st, bus: b, log: slog.New(slog.NewTextHandler(testLogOut(), nil))}
	r.start(cfg, w)
	t.Cleanup(func() {
		if r.stop != nil {
			r.stop()
		}
	})
	return r
}

// start runs an orchestrator on the rig's store and bus, decorated by w.
func (r *rig) start(cfg Config, w wrap) {
	var st Store = r.store
	var b Bus = r.bus
	if w != nil {
		st, b = w(st, b)
	}
	o, err := New(cfg, Deps{Store: st, Bus: b, Logger: r.log})
	require.NoError(r.t, err)
	rctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- o.Run(rctx) }()
	r.stop = func() {
		cancel()
		require.NoError(r.t, <-done)
		r.stop = nil
	}
}

// restart stops the rig's orchestrator and starts another on the same
// store and bus, as a new process would.
func (r *rig) restart(cfg Config, w wrap) {
	r.stop()
	r.start(cfg, w)
}

type contactSpec struct {
	channel, id string
	attrs       map[string]any
	optedOut    bool
	unreachable bool
}

func (r *rig) addContacts(cs []contactSpec) {
	r.t.Helper()
	ctx := context.Background()
	for i := 0; i < len(cs); i += 1000 {
		var ups []store.ContactUpsert
		for _, c := range cs[i:min(i+1000, len(cs))] {
			oo := c.optedOut
			ups = append(ups, store.ContactUpsert{BotID: testBot, Channel: c.channel, ExternalID: c.id, Name: "N" + c.id,
				Attributes: c.attrs, OptedOut: &oo, NewID: store.NewContactID()})
		}
		_, _, err := r.store.ImportContacts(ctx, ups)
		require.NoError(r.t, err)
	}
	for _, c := range cs {
		if c.unreachable {
			ct, err := r.store.GetContactByExternalID(ctx, testBot, c.channel, c.id)
			require.NoError(r.t, err)
			require.NoError(r.t, r.store.SetContactReachability(ctx, testBot, ct.ID, true, "blocked"))
		}
	}
}

func (r *rig) trigger(t events.Trigger) string {
	r.t.Helper()
	if t.ID == "" {
		t.ID = fmt.Sprintf("trg-%d", time.Now().UnixNano())
	}
	t.BotID, t.FlowID, t.Source = testBot, "hello", "native"
	if t.Channel == "" {
		t.Channel = events.ChannelSandbox
	}
	t.AcceptedAt = time.Now().UTC()
	ev, err := bus.NewEvent(t.ID, events.TypeTriggerAccepted, testBot, t)
	require.NoError(r.t, err)
	_, err = r.bus.Publish(context.Background(), events.TriggerSubject(testBot), ev)
	require.NoError(r.t, err)
	return t.ID
}

func (r *rig) waitStatus(id string, want string, within time.Duration) store.Trigger {
	r.t.Helper()
	var tr store.Trigger
	require.Eventually(r.t, func() bool {
		var err error
		tr, err = r.store.GetTrigger(context.Background(), testBot, id)
		return err == nil && tr.Status == want
	}, within, 20*time.Millisecond, "trigger %s never reached %s (last: %+v)", id, want, tr)
	return tr
}

// runs returns every run of a trigger.
func (r *rig) runs(triggerID string) []store.Run {
	r.t.Helper()
	var out []store.Run
	cursor := ""
	for {
		page, next, err := r.store.ListRuns(context.Background(), store.RunFilter{BotID: testBot, TriggerID: triggerID, Limit: 1000, Cursor: cursor})
		require.NoError(r.t, err)
		out = append(out, page...)
		if next == "" {
			return out
		}
		cursor = next
	}
}

// outboundBundles counts the outbound bundles in the stream (nothing consumes
// them), whether alone or sharing a message (the sandbox's, outbatch.go).
func (r *rig) outboundBundles() uint64 {
	r.t.Helper()
	ctx := context.Background()
	s, err := r.bus.JetStream().Stream(ctx, bus.StreamOutbound)
	require.NoError(r.t, err)
	info, err := s.Info(ctx)
	require.NoError(r.t, err)
	n := uint64(0)
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		m, err := s.GetMsg(ctx, seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue
		}
		require.NoError(r.t, err)
		n += uint64(len(unpack(r.t, m.Header, m.Data)))
	}
	return n
}

// unpack returns the bundles of one outbound message, alone or sharing it.
func unpack(t testing.TB, h nats.Header, data []byte) []events.Outbound {
	t.Helper()
	e, err := bus.FromMsg(h, data)
	require.NoError(t, err)
	bundles, err := events.Bundles(e.Type(), e.Data())
	require.NoError(t, err)
	return bundles
}

func TestBroadcastFilterSkipsAndCounts(t *testing.T) {
	r := newRig(t, Config{FanOutBatch: 300}, nil)
	var cs []contactSpec
	want := map[string]bool{}
	for i := range 2000 {
		c := contactSpec{channel: events.ChannelSandbox, id: fmt.Sprintf("u%05d", i),
			attrs: map[string]any{"plan": "Basic", "city": "Lima", "age": 40}}
		if i%2 == 0 {
			c.attrs["plan"] = "Premium"
		}
		if i%10 == 0 {
			c.attrs["city"] = "Quito"
		}
		if i%7 == 0 {
			c.attrs["age"] = "unknown" // age > 30 cannot be evaluated
		}
		switch i % 13 {
		case 1:
			c.optedOut = true
		case 2:
			c.unreachable = true
		}
		cs = append(cs, c)
	}
	// Contacts on another channel are not in a sandbox broadcast at all.
	for i := range 300 {
		cs = append(cs, contactSpec{channel: events.ChannelTelegram, id: fmt.Sprint(1000 + i),
			attrs: map[string]any{"plan": "Premium", "city": "Lima", "age": 40}})
	}
	r.addContacts(cs)
	var mismatch, ferr, opted, unreach int64
	for i, c := range cs[:2000] {
		switch {
		case i%7 == 0 && c.attrs["plan"] == "Premium" && c.attrs["city"] == "Lima":
			ferr++ // && short-circuits: the age comparison runs only for Premium in Lima
		case c.attrs["plan"] != "Premium" || c.attrs["city"] != "Lima":
			mismatch++
		case c.optedOut:
			opted++
		case c.unreachable:
			unreach++
		default:
			want[c.id] = true
		}
	}

	id := r.trigger(events.Trigger{
		Audience: events.Audience{Everyone: true, Platform: events.ChannelSandbox, Filter: `plan == "Premium" && city == "Lima" && age > 30`},
		Data:     map[string]any{"campaign": "spring"},
	})
	tr := r.waitStatus(id, store.TriggerDone, 30*time.Second)
	runs := r.runs(id)
	require.Len(t, runs, len(want))
	ctx := context.Background()
	for _, run := range runs {
		c, err := r.store.GetContact(ctx, testBot, run.ContactID)
		require.NoError(t, err)
		require.True(t, want[c.ExternalID], "run for %s, who is not in the audience", c.ExternalID)
		require.Equal(t, events.ChannelSandbox, run.Channel)
		require.Equal(t, "spring", c.LastRequest["campaign"], "the trigger's data is the contact's last_request")
	}
	require.Equal(t, store.TriggerCounters{
		Targeted: 2000, RunsCreated: int64(len(want)), Skipped: 2000 - int64(len(want)),
		SkipReasons: map[string]int64{SkipFilterMismatch: mismatch, SkipFilterError: ferr, SkipOptedOut: opted, SkipUnreachable: unreach},
	}, tr.Counters)
	require.Eventually(t, func() bool { return r.outboundBundles() == uint64(len(want)) }, 10*time.Second, 20*time.Millisecond)
	msgs, err := r.store.ListRunMessages(ctx, testBot, runs[0].ID)
	require.NoError(t, err)
	require.Len(t, msgs, 1)
	// A skipped contact's last_request is left alone.
	c, err := r.store.GetContactByExternalID(ctx, testBot, events.ChannelSandbox, "u00001")
	require.NoError(t, err)
	require.Nil(t, c.LastRequest)
}

func TestBroadcastPlatform(t *testing.T) {
	r := newRig(t, Config{FanOutBatch: 100}, nil)
	var cs []contactSpec
	for i := range 250 {
		cs = append(cs, contactSpec{channel: events.ChannelSandbox, id: fmt.Sprintf("s%d", i)})
		cs = append(cs, contactSpec{channel: events.ChannelTelegram, id: fmt.Sprint(5000 + i)})
	}
	r.addContacts(cs)

	any := r.trigger(events.Trigger{Audience: events.Audience{Everyone: true, Platform: "any"}})
	r.waitStatus(any, store.TriggerDone, 30*time.Second)
	byChannel := map[string]int{}
	for _, run := range r.runs(any) {
		c, err := r.store.GetContact(context.Background(), testBot, run.ContactID)
		require.NoError(t, err)
		require.Equal(t, c.Channel, run.Channel, "each contact on its own channel")
		byChannel[run.Channel]++
	}
	require.Equal(t, map[string]int{events.ChannelSandbox: 250, events.ChannelTelegram: 250}, byChannel)

	tg := r.trigger(events.Trigger{Channel: events.ChannelTelegram, Audience: events.Audience{Everyone: true, Platform: events.ChannelTelegram}})
	tr := r.waitStatus(tg, store.TriggerDone, 30*time.Second)
	runs := r.runs(tg)
	require.Len(t, runs, 250)
	for _, run := range runs {
		require.Equal(t, events.ChannelTelegram, run.Channel)
	}
	require.Equal(t, int64(250), tr.Counters.Targeted)
	require.Eventually(t, func() bool { return r.outboundBundles() == 750 }, 10*time.Second, 20*time.Millisecond)
}

func TestBroadcastLists(t *testing.T) {
	r := newRig(t, Config{FanOutBatch: 600}, nil)
	users := make([]string, 0, 1600)
	for i := range 1500 {
		users = append(users, fmt.Sprintf("+3161%07d", i))
	}
	users = append(users, users[:100]...) // named twice: one run each
	id := r.trigger(events.Trigger{Name: "", Data: map[string]any{"k": "v"}, Audience: events.Audience{Users: users}})
	tr := r.waitStatus(id, store.TriggerDone, 60*time.Second)
	require.Len(t, r.runs(id), 1500)
	require.Equal(t, int64(1500), tr.Counters.RunsCreated)
	require.Equal(t, int64(0), tr.Counters.Skipped)
	c, err := r.store.GetContactByExternalID(context.Background(), testBot, events.ChannelSandbox, users[1234])
	require.NoError(t, err)
	require.Equal(t, "v", c.LastRequest["k"])

	// users_bm: internal ids, each contact on its own channel unless a
	// platform is named; unknown ids and other platforms are counted.
	r.addContacts([]contactSpec{{channel: events.ChannelTelegram, id: "42"}, {channel: events.ChannelTelegram, id: "43", optedOut: true}})
	tgc, err := r.store.GetContactByExternalID(context.Background(), testBot, events.ChannelTelegram, "42")
	require.NoError(t, err)
	tgOpted, err := r.store.GetContactByExternalID(context.Background(), testBot, events.ChannelTelegram, "43")
	require.NoError(t, err)
	bm := r.trigger(events.Trigger{Audience: events.Audience{UsersBM: []string{c.ID, tgc.ID, tgOpted.ID, "000000000000000000000000"}}})
	tr = r.waitStatus(bm, store.TriggerDone, 30*time.Second)
	require.Len(t, r.runs(bm), 2)
	require.Equal(t, map[string]int64{SkipUnknownContact: 1, SkipOptedOut: 1}, tr.Counters.SkipReasons)

	bmTG := r.trigger(events.Trigger{Channel: events.ChannelTelegram, Audience: events.Audience{Platform: events.ChannelTelegram, UsersBM: []string{c.ID, tgc.ID}}})
	tr = r.waitStatus(bmTG, store.TriggerDone, 30*time.Second)
	runs := r.runs(bmTG)
	require.Len(t, runs, 1)
	require.Equal(t, tgc.ID, runs[0].ContactID)
	require.Equal(t, map[string]int64{SkipOtherPlatform: 1}, tr.Counters.SkipReasons)
}

func TestBroadcastCancel(t *testing.T) {
	var r *rig
	cancelled := make(chan struct{})
	checkpoints := 0
	afterCheckpoint := func(tr store.Trigger) error {
		if tr.Status != store.TriggerFanningOut {
			return nil
		}
		checkpoints++ // the checkpoints of one fan-out are stored in order
		if checkpoints == 2 {
			triggerID := tr.ID
			// What POST /v1/bots/{bot}/triggers/{id}/cancel does.
			ctx := context.Background()
			for {
				tr, err := r.store.GetTrigger(ctx, testBot, triggerID)
				require.NoError(t, err)
				tr.Status = store.TriggerCancelled
				if _, err = r.store.UpdateTrigger(ctx, tr); !errors.Is(err, store.ErrVersionConflict) {
					require.NoError(t, err)
					close(cancelled)
					return nil
				}
			}
		}
		return nil
	}
	r = newRig(t, Config{FanOutBatch: 200}, func(st Store, b Bus) (Store, Bus) {
		return &faultyStore{Store: st, afterUpdateTrigger: afterCheckpoint}, b
	})
	var cs []contactSpec
	for i := range 2000 {
		cs = append(cs, contactSpec{channel: events.ChannelSandbox, id: fmt.Sprintf("c%d", i)})
	}
	r.addContacts(cs)
	id := r.trigger(events.Trigger{Audience: events.Audience{Everyone: true}})
	<-cancelled
	r.waitStatus(id, store.TriggerCancelled, 10*time.Second)
	// The fan-out returns (its trigger message is acked): nothing of it
	// runs any more, with no guess at how long that takes on a busy machine.
	r.triggersIdle()
	// Two batches are under way at once: the cancel met at batch 2's
	// checkpoint lets batch 3, already started, finish; none starts after.
	runs := len(r.runs(id))
	require.Contains(t, []int{400, 600}, runs, "two or three batches, then the cancel stopped the fan-out")
	tr, err := r.store.GetTrigger(context.Background(), testBot, id)
	require.NoError(t, err)
	require.Equal(t, store.TriggerCancelled, tr.Status)
	require.Equal(t, int64(runs), tr.Counters.RunsCreated, "counters match the runs")
}

// TestBroadcastResumesExactly aborts the fan-out in the middle of batches,
// twice, after some of the batch's runs have published their messages: the
// redelivered trigger resumes at the checkpoint and ends with one run and
// one message per contact, and exact counters.
func TestBroadcastResumesExactly(t *testing.T) {
	var publishes atomic.Int64
	crash := eachPublishedRun(func(string) error {
		switch publishes.Add(1) {
		case 700, 1600:
			return errors.New("injected crash")
		}
		return nil
	})
	r := newRig(t, Config{FanOutBatch: 500, FanOutParallelism: 8}, func(st Store, b Bus) (Store, Bus) {
		return st, &faultyBus{Bus: b, afterPublish: crash}
	})
	var cs []contactSpec
	for i := range 2000 {
		c := contactSpec{channel: events.ChannelSandbox, id: fmt.Sprintf("r%d", i)}
		c.optedOut = i%100 == 0
		cs = append(cs, c)
	}
	r.addContacts(cs)
	id := r.trigger(events.Trigger{Audience: events.Audience{Everyone: true}})
	tr := r.waitStatus(id, store.TriggerDone, 60*time.Second)
	require.GreaterOrEqual(t, publishes.Load(), int64(1600), "both crashes happened")
	runs := r.runs(id)
	require.Len(t, runs, 1980)
	seen := map[string]bool{}
	for _, run := range runs {
		require.False(t, seen[run.ContactID])
		seen[run.ContactID] = true
	}
	require.Equal(t, store.TriggerCounters{Targeted: 2000, RunsCreated: 1980, Skipped: 20,
		SkipReasons: map[string]int64{SkipOptedOut: 20}}, tr.Counters)
	require.Eventually(t, func() bool { return r.outboundBundles() == 1980 }, 10*time.Second, 20*time.Millisecond,
		"one outbound bundle per run: the replayed publishes were de-duplicated")
	time.Sleep(300 * time.Millisecond)
	require.Equal(t, uint64(1980), r.outboundBundles())
}

func TestCheckpointCorrection(t *testing.T) {
	cp := checkpoint{Targeted: 10, RunsCreated: 8, Skipped: 2, SkipReasons: map[string]int64{SkipOptedOut: 2}}
	d, ok := cp.correction(store.TriggerCounters{Targeted: 15, RunsCreated: 12, Skipped: 3, Sent: 99,
		SkipReasons: map[string]int64{SkipOptedOut: 2, SkipUnreachable: 1}})
	require.True(t, ok)
	require.Equal(t, store.TriggerCounters{Targeted: -5, RunsCreated: -4, Skipped: -1,
		SkipReasons: map[string]int64{SkipUnreachable: -1}}, d)
	_, ok = cp.correction(store.TriggerCounters{Targeted: 10, RunsCreated: 8, Skipped: 2, Delivered: 5,
		SkipReasons: map[string]int64{SkipOptedOut: 2}})
	require.False(t, ok, "counters of deliveries are not the fan-out's")

	enc := cp.encode()
	back, err := decodeCheckpoint(enc)
	require.NoError(t, err)
	require.Equal(t, cp, back)
	_, err = decodeCheckpoint("not json")
	require.Error(t, err)
}

func TestMatchFilter(t *testing.T) {
	prog, err := CompileFilter(`plan == "Premium" && city == "Lima"`)
	require.NoError(t, err)
	ok, err := MatchFilter(prog, store.Contact{Attributes: map[string]any{"plan": "Premium", "city": "Lima"}})
	require.NoError(t, err)
	require.True(t, ok)
	ok, err = MatchFilter(prog, store.Contact{Attributes: map[string]any{"plan": "Premium"}})
	require.NoError(t, err)
	require.False(t, ok, "a missing attribute is nil, not an error")
	prog, err = CompileFilter(`channel == "telegram" && name startsWith "A" && external_id != ""`)
	require.NoError(t, err)
	ok, err = MatchFilter(prog, store.Contact{Channel: "telegram", Name: "Ann", ExternalID: "1"})
	require.NoError(t, err)
	require.True(t, ok)
	prog, err = CompileFilter(`age > 30`)
	require.NoError(t, err)
	_, err = MatchFilter(prog, store.Contact{Attributes: map[string]any{"age": "old"}})
	require.Error(t, err)
	_, err = CompileFilter(`plan ==`)
	require.Error(t, err)
}
