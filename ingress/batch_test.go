package ingress_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	cloudevents "github.com/cloudevents/sdk-go/v2/event"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/flowgate/flowgate/cmd/flowgate/app"
	"github.com/flowgate/flowgate/ingress"
	"github.com/flowgate/flowgate/shared/bus"
	"github.com/flowgate/flowgate/shared/events"
)

// gatedBus holds every trigger publish until the test opens the gate, and
// can fail the next one with fail after publishing it (or instead).
type gatedBus struct {
	*bus.Bus
	gate      chan struct{}
	held      atomic.Int64
	mu        sync.Mutex
	fail      error
	published bool // with fail: whether the message went out first
}

func (g *gatedBus) Publish(ctx context.Context, subject string, e cloudevents.Event) (bus.PublishResult, error) {
	if e.Type() == events.TypeTriggerAccepted || e.Type() == events.TypeTriggerBatch {
		g.held.Add(1)
		<-g.gate
	}
	g.mu.Lock()
	fail, published := g.fail, g.published
	g.fail = nil
	g.mu.Unlock()
	if fail != nil && !published {
		return bus.PublishResult{}, fail
	}
	res, err := g.Bus.Publish(ctx, subject, e)
	if fail != nil {
		return bus.PublishResult{}, fail
	}
	return res, err
}

// batchEnv is the ingress of newEnv's bots on a gated bus.
func batchEnv(t *testing.T, batch int) (*env, *gatedBus) {
	base := newEnv(t)
	g := &gatedBus{Bus: base.bus, gate: make(chan struct{})}
	h, err := ingress.NewHandler(ingress.Config{AdminKey: adminKey, CacheTTL: -1, TriggerBatch: batch},
		ingress.Deps{Store: base.store, Bus: g, CompileFlow: app.CompileFlow, Logger: slog.New(slog.DiscardHandler)})
	require.NoError(t, err)
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return &env{t: t, srv: srv, store: base.store, nats: base.nats, bus: base.bus, keys: base.keys}, g
}

type accepted struct {
	status    int
	TriggerID string `json:"trigger_id"`
	Duplicate bool   `json:"duplicate"`
	Error     struct {
		Code      string `json:"code"`
		TriggerID string `json:"trigger_id"`
	} `json:"error"`
}

func (e *env) dispatchAsync(user string, hdr ...string) chan accepted {
	return e.dispatchBotAsync("acme", user, hdr...)
}

func (e *env) dispatchBotAsync(bot, user string, hdr ...string) chan accepted {
	ch := make(chan accepted, 1)
	go func() {
		resp := e.request("POST", "/v1/bots/"+bot+"/dispatch/WELCOME", e.keys[bot], "application/json", `{"from":"`+user+`"}`, hdr...)
		defer resp.Body.Close()
		var a accepted
		_ = json.NewDecoder(resp.Body).Decode(&a)
		a.status = resp.StatusCode
		ch <- a
	}()
	return ch
}

// heldDispatch sends a dispatch and waits until its publish is held at the
// gate: the publish in flight that the next triggers queue behind.
func (e *env) heldDispatch(g *gatedBus, bot, user string) chan accepted {
	e.t.Helper()
	ch := e.dispatchBotAsync(bot, user)
	require.Eventually(e.t, func() bool { return g.held.Load() == 1 }, 5*time.Second, time.Millisecond, "the first publish is in flight")
	return ch
}

// waitQueued waits until n triggers wait behind a publish in flight
// (flowgate_ingress_triggers_waiting).
func waitQueued(t *testing.T, n float64) {
	t.Helper()
	require.Eventually(t, func() bool {
		mfs, err := prometheus.DefaultGatherer.Gather()
		require.NoError(t, err)
		for _, mf := range mfs {
			if mf.GetName() == "flowgate_ingress_triggers_waiting" {
				return mf.GetMetric()[0].GetGauge().GetValue() == n
			}
		}
		return false
	}, 10*time.Second, time.Millisecond, "%v triggers queued behind the publish in flight", n)
}

// streamTriggers returns the trigger ids in FLOWGATE_TRIGGERS, message by
// message.
func (e *env) streamTriggers() [][]string {
	e.t.Helper()
	var out [][]string
	for _, m := range e.streamTriggerMsgs() {
		out = append(out, m.ids)
	}
	return out
}

// triggerMsg is a message of FLOWGATE_TRIGGERS: its subject, CloudEvent
// subject, and its triggers' ids and bots.
type triggerMsg struct {
	subject, ceSubject string
	ids, bots          []string
}

func (e *env) streamTriggerMsgs() []triggerMsg {
	e.t.Helper()
	ctx := context.Background()
	s, err := e.bus.JetStream().Stream(ctx, bus.StreamTriggers)
	require.NoError(e.t, err)
	info, err := s.Info(ctx)
	require.NoError(e.t, err)
	var out []triggerMsg
	for n := info.State.FirstSeq; n <= info.State.LastSeq && info.State.Msgs > 0; n++ {
		m, err := s.GetMsg(ctx, n)
		require.NoError(e.t, err)
		raws := []json.RawMessage{m.Data}
		if m.Header["ce-type"][0] == events.TypeTriggerBatch {
			var tb events.TriggerBatch
			require.NoError(e.t, json.Unmarshal(m.Data, &tb))
			raws = tb.Triggers
		}
		tm := triggerMsg{subject: m.Subject, ceSubject: m.Header.Get("ce-subject")}
		for _, raw := range raws {
			var tr events.Trigger
			require.NoError(e.t, json.Unmarshal(raw, &tr))
			tm.ids = append(tm.ids, tr.ID)
			tm.bots = append(tm.bots, tr.BotID)
		}
		out = append(out, tm)
	}
	return out
}

// Keyless triggers of one bot that arrive while a publish is in flight are
// published together when it returns, each answered 202 once that message
// is stored; a trigger with an Idempotency-Key is published alone (its
// copies are JetStream's to drop); a lone trigger waits for nothing.
func TestTriggersQueuedBehindAPublishGoTogether(t *testing.T) {
	e, g := batchEnv(t, 256)
	first := e.dispatchAsync("100")
	require.Eventually(t, func() bool { return g.held.Load() == 1 }, 5*time.Second, time.Millisecond, "the first publish is in flight")
	var queued []chan accepted
	for i := range 20 {
		queued = append(queued, e.dispatchAsync(fmt.Sprint(200+i)))
	}
	keyed := e.dispatchAsync("300", "Idempotency-Key", "k-300")
	// The 20 keyless requests wait behind the first publish; the keyed one
	// waits at the gate with a publish of its own.
	waitQueued(t, 20)
	require.Eventually(t, func() bool { return g.held.Load() == 2 }, 10*time.Second, time.Millisecond)
	close(g.gate)

	answers := map[string]bool{}
	for _, ch := range append(append(queued, first), keyed) {
		a := <-ch
		require.Equal(t, http.StatusAccepted, a.status, "%+v", a)
		require.False(t, a.Duplicate)
		require.False(t, answers[a.TriggerID], "a trigger id answered twice")
		answers[a.TriggerID] = true
	}
	msgs := e.streamTriggers()
	inStream := map[string]int{}
	batched := 0
	for _, ids := range msgs {
		for _, id := range ids {
			inStream[id]++
		}
		if len(ids) > 1 {
			batched += len(ids)
		}
	}
	require.Len(t, inStream, 22)
	for id := range answers {
		require.Equal(t, 1, inStream[id], "trigger %s in the stream once", id)
	}
	require.Len(t, msgs, 3, "the first alone, the keyed one alone, the 20 queued together: %v", msgs)
	require.Equal(t, 20, batched, "the 20 queued keyless triggers went in one batch")
	for _, ids := range msgs {
		if len(ids) > 1 {
			require.NotContains(t, ids, ingress.TriggerID("acme", "k-300"), "a keyed trigger goes alone")
		}
	}

	// A lone trigger is its own message at once, and a keyed retry is
	// dropped by JetStream as before.
	before := len(e.streamTriggers())
	require.Equal(t, http.StatusAccepted, (<-e.dispatchAsync("400")).status)
	again := <-e.dispatchAsync("300", "Idempotency-Key", "k-300")
	require.True(t, again.Duplicate)
	require.Len(t, e.streamTriggers(), before+1)
}

// Triggers of several bots queued behind a publish in flight go out in one
// message, on flowgate.trigger._bots without a CloudEvent subject, each
// trigger naming its bot, the bots taking turns; each request is answered
// 202 once it is stored. (With a queue per bot, the other bot's first
// trigger went out alone, in a publish of its own.)
func TestTriggersOfSeveralBotsShareAMessage(t *testing.T) {
	e, g := batchEnv(t, 256)
	first := e.heldDispatch(g, "acme", "100")
	var queued []chan accepted
	for i := range 5 {
		queued = append(queued, e.dispatchBotAsync("acme", fmt.Sprint(200+i)))
	}
	waitQueued(t, 5)
	for i := range 5 {
		queued = append(queued, e.dispatchBotAsync("globex", fmt.Sprint(300+i)))
	}
	waitQueued(t, 10)
	require.Equal(t, int64(1), g.held.Load(), "nothing else published meanwhile")
	close(g.gate)
	answers := map[string]bool{}
	for _, ch := range append(queued, first) {
		a := <-ch
		require.Equal(t, http.StatusAccepted, a.status, "%+v", a)
		answers[a.TriggerID] = true
	}
	require.Len(t, answers, 11)
	msgs := e.streamTriggerMsgs()
	require.Len(t, msgs, 2, "the first alone, the ten queued together: %+v", msgs)
	require.Equal(t, events.TriggerSubject("acme"), msgs[0].subject)
	require.Equal(t, "acme", msgs[0].ceSubject)
	mixed := msgs[1]
	require.Equal(t, events.SubjectTriggerBots, mixed.subject)
	require.Empty(t, mixed.ceSubject, "a batch of several bots names none")
	require.Equal(t, []string{"acme", "globex", "acme", "globex", "acme", "globex", "acme", "globex", "acme", "globex"}, mixed.bots,
		"the bots take turns")
	for _, id := range append(msgs[0].ids, mixed.ids...) {
		require.True(t, answers[id], "trigger %s answered", id)
	}
}

// A bot with many triggers queued does not keep another bot's trigger out
// of the next message: with four triggers a message, the other bot's one
// trigger, queued behind eight, goes in the first message after the one
// in flight, and each bot's triggers keep their order.
func TestABotsFloodDoesNotDelayAnotherBotsTrigger(t *testing.T) {
	e, g := batchEnv(t, 4)
	first := e.heldDispatch(g, "acme", "100")
	var flood []chan accepted
	for i := range 8 {
		flood = append(flood, e.dispatchBotAsync("acme", fmt.Sprint(200+i)))
		waitQueued(t, float64(i+1)) // one at a time: their order is known
	}
	other := e.dispatchBotAsync("globex", "300")
	waitQueued(t, 9)
	close(g.gate)
	require.Equal(t, http.StatusAccepted, (<-first).status)
	theirs := <-other
	require.Equal(t, http.StatusAccepted, theirs.status)
	var floodIDs []string
	for _, ch := range flood {
		a := <-ch
		require.Equal(t, http.StatusAccepted, a.status)
		floodIDs = append(floodIDs, a.TriggerID)
	}
	msgs := e.streamTriggerMsgs()
	require.Len(t, msgs, 4, "1 in flight, then 9 queued four at a time: %+v", msgs)
	require.Contains(t, msgs[1].ids, theirs.TriggerID, "the other bot's trigger in the next message: %+v", msgs)
	require.Equal(t, []string{"acme", "globex", "acme", "acme"}, msgs[1].bots)
	var acme []string
	for _, m := range msgs[1:] {
		for i, id := range m.ids {
			if m.bots[i] == "acme" {
				acme = append(acme, id)
			}
		}
	}
	require.Equal(t, floodIDs, acme, "the flooding bot's triggers in the order they came")
}

// Every request of a batch gets the batch's outcome: stored (202), nothing
// queued (503 unavailable), or unknown (503 outcome_unknown with its own
// trigger id).
func TestBatchOutcomeIsEveryRequestsOutcome(t *testing.T) {
	for _, tc := range []struct {
		name      string
		fail      error
		published bool
		code      string
	}{
		{"not queued", fmt.Errorf("%w: connection closed", bus.ErrNotQueued), false, "unavailable"},
		{"ack lost", fmt.Errorf("%w: nats: timeout", bus.ErrOutcomeUnknown), true, "outcome_unknown"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e, g := batchEnv(t, 256)
			first := e.dispatchAsync("100")
			require.Eventually(t, func() bool { return g.held.Load() == 1 }, 5*time.Second, time.Millisecond)
			var queued []chan accepted
			for i := range 5 {
				queued = append(queued, e.dispatchAsync(fmt.Sprint(200+i)))
			}
			waitQueued(t, 5)
			// The first publish goes through; the next one, the batch of
			// the five, fails.
			g.gate <- struct{}{}
			require.Equal(t, http.StatusAccepted, (<-first).status)
			g.mu.Lock()
			g.fail, g.published = tc.fail, tc.published
			g.mu.Unlock()
			close(g.gate)
			ids := map[string]bool{}
			for _, ch := range queued {
				a := <-ch
				require.Equal(t, http.StatusServiceUnavailable, a.status)
				require.Equal(t, tc.code, a.Error.Code)
				if tc.code == "outcome_unknown" {
					require.NotEmpty(t, a.Error.TriggerID)
					ids[a.Error.TriggerID] = true
				}
			}
			require.True(t, tc.code != "outcome_unknown" || len(ids) == 5, "each request names its own trigger")
		})
	}
}

// An ingress with a trigger batch out of range does not start.
func TestTriggerBatchConfigRefused(t *testing.T) {
	base := newEnv(t)
	for _, bad := range []int{-1, 10_001} {
		_, err := ingress.NewHandler(ingress.Config{AdminKey: adminKey, TriggerBatch: bad},
			ingress.Deps{Store: base.store, Bus: base.bus, CompileFlow: app.CompileFlow})
		require.ErrorContains(t, err, "trigger batch", "TriggerBatch %d", bad)
	}
}
