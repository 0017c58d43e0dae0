package webhooks_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/flowgate/flowgate/orchestrator/webhooks"
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
