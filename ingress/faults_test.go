package ingress_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	cloudevents "github.com/cloudevents/sdk-go/v2/event"
	"github.com/stretchr/testify/require"

	"github.com/flowgate/flowgate/cmd/flowgate/app"
	"github.com/flowgate/flowgate/ingress"
	"github.com/flowgate/flowgate/shared/bus"
	"github.com/flowgate/flowgate/shared/bus/bustest"
	"github.com/flowgate/flowgate/shared/events"
	"github.com/flowgate/flowgate/shared/store/sqlite"
)

// answer is what one keyless dispatch request got.
type answer struct {
	status               int
	code                 string
	triggerID, retryKey  string
	retriedID, retriedOK string
}

// TestNATSRestartNothingQueuedMeansNothingQueued sends keyless dispatch
// requests while NATS (a network server, as deployed) is shut down for 5 s
// and for 20 s and started again. A request answered 503 "unavailable" (nothing was queued)
// must never be in the stream once NATS is back; every 202 must be there
// exactly once; a 503 "outcome_unknown" names the trigger and a key, and a
// retry with that key leaves exactly one copy.
func TestNATSRestartNothingQueuedMeansNothingQueued(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	addr := bustest.FreeAddr(t)
	startNATS := func() *bus.Embedded {
		e, err := bus.StartEmbedded(bus.EmbeddedConfig{StoreDir: dir, Listen: addr})
		require.NoError(t, err)
		return e
	}
	nats := startNATS()
	defer func() { nats.Shutdown() }()
	b, err := bus.Connect(ctx, "nats://"+addr, bus.Config{Source: "/test", PublishTimeout: time.Second})
	require.NoError(t, err)
	defer b.Close()
	st, err := sqlite.Open(ctx, t.TempDir())
	require.NoError(t, err)
	defer st.Close()
	h, err := ingress.NewHandler(ingress.Config{AdminKey: adminKey, CacheTTL: -1},
		ingress.Deps{Store: st, Bus: b, CompileFlow: app.CompileFlow, Logger: slog.New(slog.DiscardHandler)})
	require.NoError(t, err)
	srv := httptest.NewServer(h)
	defer srv.Close()
	en := &env{t: t, srv: srv, store: st, nats: nats, bus: b, keys: map[string]string{}}
	en.createBot("acme")
	en.do("PUT", "/v1/bots/acme/flows/welcome", en.keys["acme"], "application/json",
		`{"steps":[{"id":"hi","type":"send","text":"Hi"}]}`, 200)
	en.do("PUT", "/v1/bots/acme/events/WELCOME", en.keys["acme"], "application/json", `{"flow":"welcome"}`, 201)

	client := &http.Client{Timeout: 30 * time.Second}
	post := func(seq int, key string) answer {
		req, err := http.NewRequest("POST", srv.URL+"/v1/bots/acme/dispatch/WELCOME",
			strings.NewReader(fmt.Sprintf(`{"from":"+1555%07d","seq":%d}`, seq, seq)))
		require.NoError(t, err)
		req.Header.Set("Authorization", "Bearer "+en.keys["acme"])
		req.Header.Set("Content-Type", "application/json")
		if key != "" {
			req.Header.Set("Idempotency-Key", key)
		}
		resp, err := client.Do(req)
		if err != nil {
			return answer{code: err.Error()}
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		var out struct {
			TriggerID string `json:"trigger_id"`
			Error     struct {
				Code           string `json:"code"`
				TriggerID      string `json:"trigger_id"`
				IdempotencyKey string `json:"idempotency_key"`
			} `json:"error"`
		}
		_ = json.Unmarshal(body, &out)
		a := answer{status: resp.StatusCode, code: out.Error.Code, triggerID: out.TriggerID}
		if a.status == http.StatusServiceUnavailable {
			a.triggerID, a.retryKey = out.Error.TriggerID, out.Error.IdempotencyKey
		}
		return a
	}

	var (
		mu      sync.Mutex
		answers = map[int]answer{}
		seq     atomic.Int64
		stop    atomic.Bool
		wg      sync.WaitGroup
	)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !stop.Load() {
				i := int(seq.Add(1))
				a := post(i, "")
				mu.Lock()
				answers[i] = a
				mu.Unlock()
				if a.status != http.StatusAccepted {
					time.Sleep(5 * time.Millisecond) // a client backing off a little
				}
			}
		}()
	}
	count := func(pred func(answer) bool) int {
		mu.Lock()
		defer mu.Unlock()
		n := 0
		for _, a := range answers {
			if pred(a) {
				n++
			}
		}
		return n
	}
	accepted := func(a answer) bool { return a.status == http.StatusAccepted }
	require.Eventually(t, func() bool { return count(accepted) >= 200 }, 30*time.Second, 10*time.Millisecond)

	for _, outage := range []time.Duration{5 * time.Second, 20 * time.Second} {
		nats.Shutdown()
		time.Sleep(outage)
		before := count(accepted)
		nats = startNATS()
		require.Eventually(t, func() bool { return count(accepted) >= before+200 }, 60*time.Second, 10*time.Millisecond,
			"requests are accepted again after NATS is back")
	}
	stop.Store(true)
	wg.Wait()

	// Retry every unknown outcome with the key the answer named.
	mu.Lock()
	defer mu.Unlock()
	var unavailable, unknown int
	for i, a := range answers {
		switch {
		case a.status == http.StatusAccepted:
		case a.status == http.StatusServiceUnavailable && a.code == "unavailable":
			unavailable++
		case a.status == http.StatusServiceUnavailable && a.code == "outcome_unknown":
			unknown++
			require.NotEmpty(t, a.triggerID)
			require.True(t, strings.HasPrefix(a.retryKey, "flowgate-retry-"), a.retryKey)
			r := post(i, a.retryKey)
			require.Equal(t, http.StatusAccepted, r.status, "retry of %d", i)
			require.Equal(t, a.triggerID, r.triggerID, "the retry names the trigger the answer named")
			a.retriedID = r.triggerID
			answers[i] = a
		default:
			t.Fatalf("request %d: unexpected answer %+v", i, a)
		}
	}
	t.Logf("%d requests: %d accepted, %d unavailable (nothing queued), %d outcome unknown",
		len(answers), len(answers)-unavailable-unknown, unavailable, unknown)
	require.NotZero(t, unavailable, "the outages were seen as 503 unavailable")

	// What the stream holds once NATS is back: each request's seq. A
	// message is one trigger, or a batch of keyless triggers that queued
	// behind a publish (the ingress's group commit).
	inStream := map[int]int{}
	inBatch := map[int]bool{}
	ids := map[int]string{}
	s, err := b.JetStream().Stream(ctx, bus.StreamTriggers)
	require.NoError(t, err)
	info := s.CachedInfo()
	batches := 0
	for n := info.State.FirstSeq; n <= info.State.LastSeq && info.State.Msgs > 0; n++ {
		m, err := s.GetMsg(ctx, n)
		require.NoError(t, err)
		raws := []json.RawMessage{m.Data}
		if m.Header["ce-type"] != nil && m.Header["ce-type"][0] == events.TypeTriggerBatch {
			var tb events.TriggerBatch
			require.NoError(t, json.Unmarshal(m.Data, &tb))
			raws = tb.Triggers
			batches++
		}
		for _, raw := range raws {
			var tr struct {
				ID   string         `json:"id"`
				Data map[string]any `json:"data"`
			}
			require.NoError(t, json.Unmarshal(raw, &tr))
			i := int(tr.Data["seq"].(float64))
			inStream[i]++
			inBatch[i] = inBatch[i] || len(raws) > 1
			ids[i] = tr.ID
		}
	}
	t.Logf("%d trigger messages, %d of them batches", info.State.Msgs, batches)
	for i, a := range answers {
		switch {
		case a.status == http.StatusAccepted:
			require.Equal(t, 1, inStream[i], "request %d answered 202 is queued exactly once", i)
			require.Equal(t, a.triggerID, ids[i])
		case a.code == "unavailable":
			require.Zero(t, inStream[i], "request %d answered 503 nothing queued was queued", i)
		case a.code == "outcome_unknown" && inBatch[i]:
			// Its batch may have been stored: the retry (alone, keyed) is
			// not a copy JetStream can recognise, and the orchestrator
			// creates the trigger (and its run) once whatever the copies.
			require.Contains(t, []int{1, 2}, inStream[i], "request %d (outcome unknown in a batch, retried with its key)", i)
			require.Equal(t, a.triggerID, ids[i])
		case a.code == "outcome_unknown":
			require.Equal(t, 1, inStream[i], "request %d (outcome unknown, retried with its key) is queued exactly once", i)
			require.Equal(t, a.triggerID, ids[i])
		}
	}
}

// lostAck publishes for real, then reports the acknowledgement lost (the
// server stored the trigger; the ingress cannot know), once.
type lostAck struct {
	*bus.Bus
	armed atomic.Bool
}

func (l *lostAck) Publish(ctx context.Context, subject string, e cloudevents.Event) (bus.PublishResult, error) {
	res, err := l.Bus.Publish(ctx, subject, e)
	if err == nil && l.armed.CompareAndSwap(true, false) {
		return bus.PublishResult{}, fmt.Errorf("%w: nats: timeout", bus.ErrOutcomeUnknown)
	}
	return res, err
}

// A keyless request whose acknowledgement is lost is answered 503
// outcome_unknown with its trigger id and a key; the retry with that key
// names the same trigger, and the stream holds it once.
func TestOutcomeUnknownNamesTriggerAndRetryKey(t *testing.T) {
	base := newEnv(t)
	la := &lostAck{Bus: base.bus}
	h, err := ingress.NewHandler(ingress.Config{AdminKey: adminKey, CacheTTL: -1},
		ingress.Deps{Store: base.store, Bus: la, CompileFlow: app.CompileFlow, Logger: slog.New(slog.DiscardHandler)})
	require.NoError(t, err)
	srv := httptest.NewServer(h)
	defer srv.Close()
	e := &env{t: t, srv: srv, store: base.store, nats: base.nats, bus: base.bus, keys: base.keys}

	la.armed.Store(true)
	resp := e.request("POST", "/v1/bots/acme/dispatch/WELCOME", e.keys["acme"], "application/json", `{"from":"1"}`)
	defer resp.Body.Close()
	require.Equal(t, http.StatusServiceUnavailable, resp.StatusCode)
	require.Equal(t, "5", resp.Header.Get("Retry-After"))
	var eb struct {
		Error struct {
			Code, Message  string
			TriggerID      string `json:"trigger_id"`
			IdempotencyKey string `json:"idempotency_key"`
		} `json:"error"`
	}
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&eb))
	require.Equal(t, "outcome_unknown", eb.Error.Code)
	require.NotEmpty(t, eb.Error.TriggerID)
	require.Contains(t, eb.Error.Message, "/v1/bots/acme/triggers/"+eb.Error.TriggerID)
	require.Contains(t, eb.Error.Message, eb.Error.IdempotencyKey)
	require.EqualValues(t, 1, e.queuedTriggers(), "it was queued after all")

	body := e.do("POST", "/v1/bots/acme/dispatch/WELCOME", e.keys["acme"], "application/json", `{"from":"1"}`, 202,
		"Idempotency-Key", eb.Error.IdempotencyKey)
	var acc struct {
		TriggerID string `json:"trigger_id"`
		Duplicate bool   `json:"duplicate"`
	}
	require.NoError(t, json.Unmarshal(body, &acc))
	require.Equal(t, eb.Error.TriggerID, acc.TriggerID)
	require.True(t, acc.Duplicate, "JetStream dropped the retry")
	require.EqualValues(t, 1, e.queuedTriggers(), "queued once")

	// With the client's own key, the answer names that key.
	la.armed.Store(true)
	resp2 := e.request("POST", "/v1/bots/acme/dispatch/WELCOME", e.keys["acme"], "application/json", `{"from":"2"}`, "Idempotency-Key", "order-77")
	defer resp2.Body.Close()
	require.NoError(t, json.NewDecoder(resp2.Body).Decode(&eb))
	require.Equal(t, "outcome_unknown", eb.Error.Code)
	require.Equal(t, "order-77", eb.Error.IdempotencyKey)
	require.Equal(t, ingress.TriggerID("acme", "order-77"), eb.Error.TriggerID)
}
