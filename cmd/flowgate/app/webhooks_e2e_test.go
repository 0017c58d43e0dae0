package app_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/flowgate/flowgate/cmd/flowgate/app"
	"github.com/flowgate/flowgate/orchestrator/webhooks"
	"github.com/flowgate/flowgate/shared/bus"
	"github.com/flowgate/flowgate/shared/events"
	"github.com/flowgate/flowgate/shared/store/mongo/ferret"
)

// hookReceiver is a subscriber's endpoint: it checks the signature with
// the secret it knows, refuses the first failFirst deliveries with 500,
// and records the CloudEvents it accepted.
type hookReceiver struct {
	secret    string
	failFirst int

	mu       sync.Mutex
	requests int
	badSigs  int
	got      []hookEvent
	srv      *httptest.Server
}

type hookEvent struct {
	ID   string           `json:"id"`
	Type string           `json:"type"`
	Data events.RunStatus `json:"data"`
}

func newHookReceiver(t *testing.T, secret string, failFirst int) *hookReceiver {
	r := &hookReceiver{secret: secret, failFirst: failFirst}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		r.mu.Lock()
		defer r.mu.Unlock()
		r.requests++
		if err := webhooks.Verify(r.secret, req.Header, body, 5*time.Minute, time.Now()); err != nil {
			r.badSigs++
			http.Error(w, "bad signature", http.StatusUnauthorized)
			return
		}
		if r.requests <= r.failFirst {
			http.Error(w, "try later", http.StatusInternalServerError)
			return
		}
		var e hookEvent
		if req.Header.Get("Content-Type") != "application/cloudevents+json" || json.Unmarshal(body, &e) != nil {
			http.Error(w, "not a structured CloudEvent", http.StatusBadRequest)
			return
		}
		r.got = append(r.got, e)
	}))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *hookReceiver) run(id string) []hookEvent {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []hookEvent
	for _, e := range r.got {
		if e.Data.RunID == id {
			out = append(out, e)
		}
	}
	return out
}

// accept makes the receiver accept every later delivery.
func (r *hookReceiver) accept() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.failFirst = 0
}

func (r *hookReceiver) counts() (requests, badSigs, accepted int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.requests, r.badSigs, len(r.got)
}

// TestRunStatusWebhooksEndToEnd: in `flowgate dev`, a subscriber gets every
// status change of an ask run (with a reply through the sandbox) and of a
// send-only run exactly once and in order, although its first three
// deliveries failed; a receiver holding the wrong secret detects it.
func TestRunStatusWebhooksEndToEnd(t *testing.T) {
	runStatusWebhooks(t, app.Config{DataDir: t.TempDir(), Webhooks: fastWebhooks})
}

// TestRunStatusWebhooksEndToEndMongo is the same with the MongoDB adapter
// on FerretDB embedded in the test.
func TestRunStatusWebhooksEndToEndMongo(t *testing.T) {
	uri, stop, err := ferret.Start(context.Background(), t.TempDir())
	require.NoError(t, err)
	defer stop()
	runStatusWebhooks(t, app.Config{DataDir: t.TempDir(), MongoURI: uri, MongoDB: "hooks", Webhooks: fastWebhooks})
}

// fastWebhooks allows the loopback receivers and retries quickly.
var fastWebhooks = webhooks.Config{
	AllowPrivate: true, InitialBackoff: 50 * time.Millisecond, ReconcileEvery: 100 * time.Millisecond,
}

func runStatusWebhooks(t *testing.T, cfg app.Config) {
	d, c := startDevWith(t, cfg)
	defer func() { require.NoError(t, d.Stop()) }()
	key := createBot(c, "hooks", nil)
	c.must("PUT", "/v1/bots/hooks/flows/ask", key, `{"steps":[
	  {"id":"name","type":"ask","text":"What is your name?","attribute":"name"},
	  {"id":"thanks","type":"send","text":"Thanks, {{ name }}!"}]}`, 200)
	c.must("PUT", "/v1/bots/hooks/events/ASK", key, `{"flow":"ask"}`, 201)
	c.must("PUT", "/v1/bots/hooks/flows/hello", key, `{"steps":[{"id":"hi","type":"send","text":"Hello"}]}`, 200)
	c.must("PUT", "/v1/bots/hooks/events/HELLO", key, `{"flow":"hello"}`, 201)

	const secret = "whsec-0123456789abcdef"
	good := newHookReceiver(t, secret, 3)
	wrong := newHookReceiver(t, "another-secret-0123456789", 0)
	c.must("POST", "/v1/bots/hooks/webhooks", key, `{"url":"`+good.srv.URL+`","secret":"`+secret+`","events":["run.status"]}`, 201)
	wrongID := c.must("POST", "/v1/bots/hooks/webhooks", key, `{"url":"`+wrong.srv.URL+`","secret":"`+secret+`"}`, 201)["subscription"].(map[string]any)["id"].(string)

	runOf := func(trigger string) string {
		var id string
		require.Eventually(t, func() bool {
			runs := c.must("GET", "/v1/bots/hooks/runs?trigger="+trigger, key, "", 200)["runs"].([]any)
			if len(runs) == 1 {
				id = runs[0].(map[string]any)["id"].(string)
			}
			return id != ""
		}, 10*time.Second, 20*time.Millisecond)
		return id
	}
	askTrigger := c.must("POST", "/v1/bots/hooks/dispatch/ASK", key, `{"from":"5511000","name":"Visitor"}`, 202)["trigger_id"].(string)
	askRun := runOf(askTrigger)
	require.Eventually(t, func() bool { return len(c.sandbox("hooks", key, "5511000")) == 1 }, 10*time.Second, 20*time.Millisecond)
	c.must("POST", "/v1/bots/hooks/sandbox/messages", key, `{"from":"5511000","text":"Maria"}`, 202)
	sendTrigger := c.must("POST", "/v1/bots/hooks/dispatch/HELLO", key, `{"from":"5511001"}`, 202)["trigger_id"].(string)
	sendRun := runOf(sendTrigger)

	final := func(evs []hookEvent) bool { return len(evs) > 0 && evs[len(evs)-1].Data.Status == "completed" }
	require.Eventually(t, func() bool { return final(good.run(askRun)) && final(good.run(sendRun)) },
		20*time.Second, 20*time.Millisecond)
	time.Sleep(500 * time.Millisecond) // late duplicates would arrive now

	check := func(run string, want []string) {
		t.Helper()
		evs := good.run(run)
		statuses := make([]string, len(evs))
		for i, e := range evs {
			statuses[i] = e.Data.Status
			require.EqualValues(t, i, e.Data.Version, "%s: changes arrive in order, each once", run)
			require.Equal(t, "dev.flowgate.run."+e.Data.Status, e.Type)
			require.Equal(t, "hooks", e.Data.BotID)
		}
		require.Equal(t, want, statuses, run)
		// The run itself ended where the webhooks say it did.
		st := c.must("GET", "/v1/bots/hooks/runs/"+run, key, "", 200)["run"].(map[string]any)["status"]
		require.Equal(t, want[len(want)-1], st)
	}
	check(askRun, []string{"created", "waiting", "completed"})
	check(sendRun, []string{"created", "completed"})
	requests, bad, accepted := good.counts()
	require.Zero(t, bad)
	require.Equal(t, 5, accepted)
	require.Equal(t, 8, requests, "three refused deliveries were retried, nothing else was sent twice")

	// The receiver with the wrong secret rejected every delivery it got.
	require.Eventually(t, func() bool { r, _, _ := wrong.counts(); return r > 0 }, 10*time.Second, 20*time.Millisecond)
	r, bad, accepted := wrong.counts()
	require.Equal(t, r, bad)
	require.Zero(t, accepted)

	// Deleting that subscription stops its retries and its future deliveries.
	code, _ := c.call("DELETE", "/v1/bots/hooks/webhooks/"+wrongID, key, "")
	require.Equal(t, 204, code)
	require.Eventually(t, func() bool {
		s, err := d.Bus.JetStream().Stream(context.Background(), bus.StreamWebhooks)
		require.NoError(t, err)
		_, err = s.Consumer(context.Background(), "webhook-"+wrongID)
		return errors.Is(err, jetstream.ErrConsumerNotFound)
	}, 10*time.Second, 20*time.Millisecond)
	before, _, _ := wrong.counts()
	again := c.must("POST", "/v1/bots/hooks/dispatch/HELLO", key, `{"from":"5511003"}`, 202)["trigger_id"].(string)
	againRun := runOf(again)
	require.Eventually(t, func() bool { return final(good.run(againRun)) }, 20*time.Second, 20*time.Millisecond)
	time.Sleep(300 * time.Millisecond)
	after, _, _ := wrong.counts()
	require.Equal(t, before, after, "no delivery attempt after the subscription was deleted")
}

// TestRunStatusWebhooksSurviveRestart: deliveries being retried when
// Flowgate stops are delivered after it starts again on the same data
// directory, once each and in order.
func TestRunStatusWebhooksSurviveRestart(t *testing.T) {
	cfg := app.Config{DataDir: t.TempDir(), Webhooks: fastWebhooks}
	d, c := startDevWith(t, cfg)
	key := createBot(c, "hooks", nil)
	c.must("PUT", "/v1/bots/hooks/flows/hello", key, `{"steps":[{"id":"hi","type":"send","text":"Hello"}]}`, 200)
	c.must("PUT", "/v1/bots/hooks/events/HELLO", key, `{"flow":"hello"}`, 201)
	const secret = "whsec-0123456789abcdef"
	rcv := newHookReceiver(t, secret, 1<<30) // down until accept
	c.must("POST", "/v1/bots/hooks/webhooks", key, `{"url":"`+rcv.srv.URL+`","secret":"`+secret+`"}`, 201)
	trigger := c.must("POST", "/v1/bots/hooks/dispatch/HELLO", key, `{"from":"5511002"}`, 202)["trigger_id"].(string)
	require.Eventually(t, func() bool { n, _, _ := rcv.counts(); return n >= 3 }, 10*time.Second, 20*time.Millisecond)
	require.NoError(t, d.Stop())

	rcv.accept()
	d, c = startDevWith(t, cfg)
	defer func() { require.NoError(t, d.Stop()) }()
	runs := c.must("GET", "/v1/bots/hooks/runs?trigger="+trigger, key, "", 200)["runs"].([]any)
	require.Len(t, runs, 1)
	run := runs[0].(map[string]any)["id"].(string)
	require.Eventually(t, func() bool {
		evs := rcv.run(run)
		return len(evs) > 0 && evs[len(evs)-1].Data.Status == "completed"
	}, 20*time.Second, 20*time.Millisecond)
	time.Sleep(300 * time.Millisecond)
	evs := rcv.run(run)
	require.Len(t, evs, 2)
	for i, want := range []string{"created", "completed"} {
		require.Equal(t, want, evs[i].Data.Status)
		require.EqualValues(t, i, evs[i].Data.Version)
	}
}
