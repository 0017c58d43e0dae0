package app_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/flowgate/flowgate/cmd/flowgate/app"
)

// recruboDelivery is one WebhookPayload a Recrubo receiver got.
type recruboDelivery struct {
	Secret      string
	ContentType string
	Doc         struct {
		Data struct {
			Type       string `json:"type"`
			ID         string `json:"id"`
			Attributes struct {
				WebhookID string   `json:"webhookId"`
				Event     string   `json:"event"`
				Fields    []string `json:"fields"`
				Resource  struct {
					ID         string         `json:"id"`
					Type       string         `json:"type"`
					Attributes map[string]any `json:"attributes"`
				} `json:"resource"`
			} `json:"attributes"`
		} `json:"data"`
	}
}

// recruboReceiver records what a Recrubo webhook URL receives; it refuses
// the first delivery with a 500, as a receiver restarting would.
type recruboReceiver struct {
	mu       sync.Mutex
	requests int
	got      []recruboDelivery
	srv      *httptest.Server
}

func newRecruboReceiver(t *testing.T) *recruboReceiver {
	r := &recruboReceiver{}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		r.mu.Lock()
		defer r.mu.Unlock()
		r.requests++
		if r.requests == 1 {
			http.Error(w, "restarting", http.StatusInternalServerError)
			return
		}
		d := recruboDelivery{Secret: req.Header.Get("X-Recrubo-Webhook-Secret"), ContentType: req.Header.Get("Content-Type")}
		if err := json.Unmarshal(body, &d.Doc); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		r.got = append(r.got, d)
	}))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *recruboReceiver) deliveries() []recruboDelivery {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]recruboDelivery(nil), r.got...)
}

// TestRecruboWebhookPayloadEndToEnd: in `flowgate dev` (embedded NATS,
// SQLite), webhooks registered the Recrubo way (POST /public/v2/webhooks)
// receive a FlowRun's creation and its status updates as Recrubo
// WebhookPayload documents, with the secret in X-Recrubo-Webhook-Secret,
// each change once and in order although the first attempt failed; the
// resource is the FlowRun as GET /public/v2/flow-runs/{id} shows it.
func TestRecruboWebhookPayloadEndToEnd(t *testing.T) {
	d, c := startDevWith(t, app.Config{DataDir: t.TempDir(), Webhooks: fastWebhooks})
	defer func() { require.NoError(t, d.Stop()) }()
	key := createBot(c, "rec", nil)
	const flowID = "eb3c92e9-2548-4e4c-95d5-adfb94270c3f"
	c.must("PUT", "/v1/bots/rec/flows/"+flowID, key,
		`{"steps":[{"id":"q","type":"ask","text":"Hi! Are you still looking for a job?","attribute":"answer"},{"id":"t","type":"send","text":"Thanks: {{ answer }}"}]}`, 200)
	jsonapi := func(method, path, body string, want int) map[string]any {
		t.Helper()
		code, b := c.call(method, path, key, body, "Content-Type", "application/vnd.api+json")
		require.Equal(t, want, code, "%s %s: %s", method, path, b)
		var out map[string]any
		if len(b) > 0 {
			require.NoError(t, json.Unmarshal(b, &out), string(b))
		}
		return out
	}
	updates, creates := newRecruboReceiver(t), newRecruboReceiver(t)
	const secret = "mysecret"
	hook := jsonapi("POST", "/public/v2/webhooks", `{"data":{"type":"webhooks","attributes":{"resource":"flowRuns","event":"update",
	  "fields":["status"],"webhookUrl":"`+updates.srv.URL+`","webhookSecret":"`+secret+`"}}}`, 201)["data"].(map[string]any)
	hookID := hook["id"].(string)
	_, err := uuid.Parse(hookID)
	require.NoError(t, err, "webhook ids are UUIDs")
	require.Equal(t, "webhooks", hook["type"])
	require.NotContains(t, hook["attributes"], "webhookSecret", "the secret is never shown")
	createID := jsonapi("POST", "/public/v2/webhooks", `{"data":{"type":"webhooks","attributes":{"resource":"flowRuns","event":"create",
	  "webhookUrl":"`+creates.srv.URL+`","webhookSecret":"another-secret"}}}`, 201)["data"].(map[string]any)["id"].(string)

	// Refused registrations: JSON:API errors pointing at the attribute, nothing stored.
	for body, pointer := range map[string]string{
		`{"data":{"type":"webhooks","attributes":{"resource":"candidates","event":"update","webhookUrl":"https://example.com/h","webhookSecret":"mysecret"}}}`:                  "/data/attributes/resource",
		`{"data":{"type":"webhooks","attributes":{"resource":"flowRuns","event":"delete","webhookUrl":"https://example.com/h","webhookSecret":"mysecret"}}}`:                    "/data/attributes/event",
		`{"data":{"type":"webhooks","attributes":{"resource":"flowRuns","event":"update","fields":["state"],"webhookUrl":"https://example.com/h","webhookSecret":"mysecret"}}}`: "/data/attributes/fields",
		`{"data":{"type":"webhooks","attributes":{"resource":"flowRuns","event":"update","webhookUrl":"https://example.com/h"}}}`:                                               "/data/attributes/webhookSecret",
		`{"data":{"type":"webhooks","attributes":{"resource":"flowRuns","event":"update","webhookUrl":"ftp://example.com/h","webhookSecret":"mysecret"}}}`:                      "/data/attributes/webhookUrl",
	} {
		errs := jsonapi("POST", "/public/v2/webhooks", body, 422)["errors"].([]any)
		require.Equal(t, pointer, errs[0].(map[string]any)["source"].(map[string]any)["pointer"], body)
	}
	subs := c.must("GET", "/v1/bots/rec/webhooks", key, "", 200)["subscriptions"].([]any)
	require.Len(t, subs, 2, "only the two valid webhooks are stored")

	threadID := jsonapi("POST", "/public/v2/message-threads",
		`{"data":{"type":"messageThreads","attributes":{"channel":"sandbox","identifier":"31612345678"}}}`, 201)["data"].(map[string]any)["id"].(string)
	runID := jsonapi("POST", "/public/v2/flow-runs", `{"data":{"type":"flowRuns","attributes":{"flowId":"`+flowID+`",
	  "messageThreadId":"`+threadID+`","state":{"source":"seed"}}}}`, 202)["data"].(map[string]any)["id"].(string)
	// The flow asks: "running" in Recrubo's words (waiting for the reply);
	// the reply completes it.
	require.Eventually(t, func() bool { return len(updates.deliveries()) >= 1 }, 30*time.Second, 20*time.Millisecond)
	c.must("POST", "/v1/bots/rec/sandbox/messages", key, `{"from":"31612345678","text":"yes"}`, 202)
	require.Eventually(t, func() bool { return len(updates.deliveries()) >= 2 }, 30*time.Second, 20*time.Millisecond)
	require.Eventually(t, func() bool { return len(creates.deliveries()) >= 1 }, 30*time.Second, 20*time.Millisecond)
	time.Sleep(500 * time.Millisecond) // late duplicates would arrive now

	got := updates.deliveries()
	require.Len(t, got, 2, "each status change once")
	var statuses []string
	payloadIDs := map[string]bool{}
	for _, d := range got {
		require.Equal(t, secret, d.Secret, "the secret in X-Recrubo-Webhook-Secret")
		require.Equal(t, "application/vnd.api+json", d.ContentType)
		data := d.Doc.Data
		require.Equal(t, "webhookPayload", data.Type)
		_, err := uuid.Parse(data.ID)
		require.NoError(t, err, "payload ids are UUIDs")
		payloadIDs[data.ID] = true
		a := data.Attributes
		require.Equal(t, hookID, a.WebhookID)
		require.Equal(t, "update", a.Event)
		require.Equal(t, []string{"status"}, a.Fields)
		require.Equal(t, runID, a.Resource.ID)
		require.Equal(t, "flowRuns", a.Resource.Type)
		require.Equal(t, flowID, a.Resource.Attributes["flowId"])
		require.Equal(t, threadID, a.Resource.Attributes["messageThreadId"])
		require.Equal(t, map[string]any{"source": "seed"}, a.Resource.Attributes["state"])
		require.EqualValues(t, 0, a.Resource.Attributes["cost"])
		statuses = append(statuses, a.Resource.Attributes["status"].(string))
	}
	require.Equal(t, []string{"running", "completed"}, statuses, "in order, in Recrubo's vocabulary")
	require.Len(t, payloadIDs, 2)
	// The resource is the FlowRun as GET shows it (status aside, which is
	// the one of each change).
	now := jsonapi("GET", "/public/v2/flow-runs/"+runID, "", 200)["data"].(map[string]any)["attributes"].(map[string]any)
	last := got[1].Doc.Data.Attributes.Resource.Attributes
	for _, k := range []string{"flowId", "messageThreadId", "state", "initialMessage", "createdAt", "status"} {
		require.Equal(t, now[k], last[k], k)
	}

	cr := creates.deliveries()
	require.Len(t, cr, 1, "the create webhook is called once per FlowRun")
	require.Equal(t, "another-secret", cr[0].Secret)
	require.Equal(t, createID, cr[0].Doc.Data.Attributes.WebhookID)
	require.Equal(t, "create", cr[0].Doc.Data.Attributes.Event)
	require.Empty(t, cr[0].Doc.Data.Attributes.Fields)
	require.Equal(t, "created", cr[0].Doc.Data.Attributes.Resource.Attributes["status"])

	// Deleted the Recrubo way; a native subscription's id is not a Recrubo webhook.
	native := c.must("POST", "/v1/bots/rec/webhooks", key, `{"url":"`+updates.srv.URL+`","secret":"whsec-0123456789abcdef"}`, 201)["subscription"].(map[string]any)["id"].(string)
	jsonapi("DELETE", "/public/v2/webhooks/"+native, "", 404)
	jsonapi("DELETE", "/public/v2/webhooks/"+hookID, "", 204)
	jsonapi("DELETE", "/public/v2/webhooks/"+hookID, "", 404)
	subs = c.must("GET", "/v1/bots/rec/webhooks", key, "", 200)["subscriptions"].([]any)
	var ids []string
	for _, s := range subs {
		ids = append(ids, s.(map[string]any)["id"].(string))
	}
	require.ElementsMatch(t, []string{createID, native}, ids)
	require.False(t, strings.Contains(strings.Join(ids, ","), hookID))
}
