package webhooks_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/flowgate/flowgate/orchestrator/webhooks"
	"github.com/flowgate/flowgate/shared/bus"
	"github.com/flowgate/flowgate/shared/events"
	"github.com/flowgate/flowgate/shared/recrubo"
	"github.com/flowgate/flowgate/shared/store"
)

// recruboReceiver records the FlowRun of each Recrubo webhook payload.
type recruboReceiver struct {
	mu  sync.Mutex
	got []map[string]any
	srv *httptest.Server
}

func newRecruboReceiver(t *testing.T) *recruboReceiver {
	r := &recruboReceiver{}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		var doc struct {
			Data struct {
				Attributes struct {
					Resource struct {
						Attributes map[string]any `json:"attributes"`
					} `json:"resource"`
				} `json:"attributes"`
			} `json:"data"`
		}
		if err := json.Unmarshal(body, &doc); err != nil || req.Header.Get(recrubo.HeaderSecret) != secret {
			http.Error(w, "not a Recrubo payload", http.StatusBadRequest)
			return
		}
		r.mu.Lock()
		r.got = append(r.got, doc.Data.Attributes.Resource.Attributes)
		r.mu.Unlock()
	}))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *recruboReceiver) deliveries() []map[string]any {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]map[string]any(nil), r.got...)
}

func (e *env) subscribeRecrubo(id, url string) {
	e.t.Helper()
	typ, err := recrubo.SubscriptionType(recrubo.EventUpdate, []string{recrubo.FieldStatus})
	require.NoError(e.t, err)
	e.subscribe(id, url, secret, typ)
}

// The orchestrator publishes a new run's first change before it writes the
// run (a crash in between redoes both), so the change can be delivered
// before the run is stored. The payload waits for the run: it shows the
// run's state, not an empty one. (Seen in CI on 2026-12-05: "state": {}.)
func TestRecruboPayloadWaitsForTheRunToBeStored(t *testing.T) {
	ctx := context.Background()
	rcv := newRecruboReceiver(t)
	e := newEnv(t, webhooks.Config{AllowPrivate: true}, nil)
	e.subscribeRecrubo("wh_r", rcv.srv.URL)
	_, _, err := e.store.UpsertContact(ctx, store.ContactUpsert{BotID: "acme", Channel: "sandbox",
		ExternalID: "31612345678", NewID: "c-run-1", Now: time.Now().UTC()})
	require.NoError(t, err)

	e.publish("run-1", "created", "waiting")
	time.Sleep(400 * time.Millisecond)
	require.Empty(t, rcv.deliveries(), "nothing is sent while the run is not stored")
	now := time.Now().UTC()
	_, _, err = e.store.CreateRuns(ctx, []store.Run{{ID: "run-1", BotID: "acme", FlowID: "f", ContactID: "c-run-1",
		Channel: "sandbox", Status: store.RunWaiting, Data: map[string]any{"source": "seed"}, CreatedAt: now, UpdatedAt: now}})
	require.NoError(t, err)

	require.Eventually(t, func() bool { return len(rcv.deliveries()) == 1 }, 10*time.Second, 10*time.Millisecond)
	got := rcv.deliveries()[0]
	require.Equal(t, map[string]any{"source": "seed"}, got["state"])
	require.Equal(t, "running", got["status"])
}

// A run that is not stored because its contact is gone (deleted) is sent at
// once with what the change says: the wait (longer than the test) is not
// taken.
func TestRecruboPayloadOfADeletedContactsRun(t *testing.T) {
	defer webhooks.SetMaxRunWait(time.Hour)()
	rcv := newRecruboReceiver(t)
	e := newEnv(t, webhooks.Config{AllowPrivate: true}, nil)
	e.subscribeRecrubo("wh_r", rcv.srv.URL)
	e.publish("run-gone", "created", "waiting")
	require.Eventually(t, func() bool { return len(rcv.deliveries()) == 1 }, 20*time.Second, 10*time.Millisecond)
	d := rcv.deliveries()[0]
	require.Equal(t, map[string]any{}, d["state"])
	require.Equal(t, "running", d["status"])
}

// A run that never comes although its contact is stored (its trigger was
// cancelled before it was written) is sent with what the change says after
// the wait.
func TestRecruboPayloadOfARunNeverStored(t *testing.T) {
	defer webhooks.SetMaxRunWait(300 * time.Millisecond)()
	rcv := newRecruboReceiver(t)
	e := newEnv(t, webhooks.Config{AllowPrivate: true}, nil)
	e.subscribeRecrubo("wh_r", rcv.srv.URL)
	_, _, err := e.store.UpsertContact(context.Background(), store.ContactUpsert{BotID: "acme", Channel: "sandbox",
		ExternalID: "31612345678", NewID: "c-run-never", Now: time.Now().UTC()})
	require.NoError(t, err)
	start := time.Now()
	e.publish("run-never", "created", "waiting")
	require.Eventually(t, func() bool { return len(rcv.deliveries()) == 1 }, 20*time.Second, 10*time.Millisecond)
	require.GreaterOrEqual(t, time.Since(start), 300*time.Millisecond, "a stored contact's run is waited for")
	d := rcv.deliveries()[0]
	require.Equal(t, map[string]any{}, d["state"])
	require.Equal(t, "running", d["status"])
}

// The deliveries of one status change to several subscriptions read its
// run once, and the runs of one trigger read the trigger once
// (Config.ReadTTL); with the cache off, every delivery reads both. The
// payloads are the same either way.
func TestDeliveriesShareTheirReads(t *testing.T) {
	for _, tc := range []struct {
		name string
		ttl  time.Duration
	}{{"shared", time.Minute}, {"off", -1}} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			std1, std2 := newReceiver(t, secret, 0), newReceiver(t, secret, 0)
			rec := newRecruboReceiver(t)
			e := newEnv(t, webhooks.Config{AllowPrivate: true, ReadTTL: tc.ttl}, nil)
			e.subscribe("wh_1", std1.srv.URL, secret)
			e.subscribe("wh_2", std2.srv.URL, secret)
			e.subscribeRecrubo("wh_r", rec.srv.URL)
			now := time.Now().UTC()
			_, _, err := e.store.CreateTrigger(ctx, store.Trigger{ID: "tr-1", BotID: "acme", Source: "native", Event: "e", FlowID: "f",
				Channel: "sandbox", Spec: []byte(`{"initial_message":{"type":"text","text":"hello"}}`), Status: store.TriggerDone,
				CreatedAt: now, UpdatedAt: now})
			require.NoError(t, err)
			const runs = 2
			for i := range runs {
				id := fmt.Sprintf("run-%d", i)
				_, _, err := e.store.UpsertContact(ctx, store.ContactUpsert{BotID: "acme", Channel: "sandbox",
					ExternalID: fmt.Sprintf("3161234567%d", i), NewID: "c-" + id, Now: now})
				require.NoError(t, err)
				stored, _, err := e.store.CreateRuns(ctx, []store.Run{{ID: id, BotID: "acme", TriggerID: "tr-1", FlowID: "f",
					ContactID: "c-" + id, Channel: "sandbox", Status: store.RunWaiting, Data: map[string]any{"n": float64(i)},
					CreatedAt: now, UpdatedAt: now}})
				require.NoError(t, err)
				// The run's first change, at the version it is stored at: its
				// "created" is delivered first, so each subscription gets two.
				rs := events.RunStatus{BotID: "acme", RunID: id, TriggerID: "tr-1", FlowID: "f", ContactID: "c-" + id,
					Status: store.RunWaiting, Previous: store.RunCreated, Version: 1, At: now, RunVersion: stored[0].Version}
				ev, err := bus.NewEvent(fmt.Sprintf("run:%s:1:waiting", id), events.TypeRunStatus, id, rs)
				require.NoError(t, err)
				_, err = e.bus.Publish(ctx, events.RunStatusSubject("acme"), ev)
				require.NoError(t, err)
			}
			require.Eventually(t, func() bool {
				return len(std1.deliveries()) == 2*runs && len(std2.deliveries()) == 2*runs && len(rec.deliveries()) >= runs
			}, 20*time.Second, 10*time.Millisecond)
			for _, d := range rec.deliveries() {
				require.Equal(t, map[string]any{"type": "text", "text": "hello"}, d["initialMessage"], "the trigger's initial message")
				require.Contains(t, d["state"], "n", "the stored run's data")
			}
			deliveries := int64(len(std1.deliveries()) + len(std2.deliveries()) + len(rec.deliveries()))
			t.Logf("%d deliveries of %d runs: %d run reads, %d trigger reads", deliveries, runs, e.reads.runs.Load(), e.reads.triggers.Load())
			if tc.ttl > 0 {
				require.EqualValues(t, runs, e.reads.runs.Load(), "one run read per run")
				require.EqualValues(t, 1, e.reads.triggers.Load(), "one trigger read for the runs of one trigger")
			} else {
				require.GreaterOrEqual(t, e.reads.runs.Load(), deliveries, "a read per delivery")
				require.GreaterOrEqual(t, e.reads.triggers.Load(), int64(len(rec.deliveries())), "a read per Recrubo delivery")
			}
		})
	}
}
