package app_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/flowgate/flowgate/cmd/flowgate/app"
	"github.com/flowgate/flowgate/shared/apitest"
	"github.com/flowgate/flowgate/shared/store/mongo/ferret"
)

// client talks to a running Flowgate over HTTP, as a user would.
type client struct {
	t    *testing.T
	base string
}

func (c client) call(method, path, key, body string, hdr ...string) (int, []byte) {
	c.t.Helper()
	return apitest.Client{Base: c.base}.Call(c.t, method, path, key, body, hdr...)
}

// importCSV imports a contacts CSV into bot through the API.
func (c client) importCSV(bot, key, csv string) {
	c.t.Helper()
	code, b := c.call("POST", "/v1/bots/"+bot+"/contacts/import", key, csv, "Content-Type", "text/csv")
	require.Equal(c.t, 200, code, string(b))
}

// sandboxCSV is a contacts CSV of n sandbox contacts: external ids
// prefix00000…, names "PREFIX i", and on every row the columns of extra
// (name, value pairs).
func sandboxCSV(n int, prefix string, extra ...string) string {
	var csv strings.Builder
	csv.WriteString("channel,external_id,name")
	for i := 0; i+1 < len(extra); i += 2 {
		csv.WriteString("," + extra[i])
	}
	csv.WriteString("\n")
	for i := range n {
		fmt.Fprintf(&csv, "sandbox,%s%05d,%s %d", prefix, i, strings.ToUpper(prefix), i)
		for j := 1; j < len(extra); j += 2 {
			csv.WriteString("," + extra[j])
		}
		csv.WriteString("\n")
	}
	return csv.String()
}

func (c client) must(method, path, key, body string, want int, hdr ...string) map[string]any {
	c.t.Helper()
	code, b := c.call(method, path, key, body, hdr...)
	require.Equal(c.t, want, code, "%s %s: %s", method, path, b)
	var out map[string]any
	require.NoError(c.t, json.Unmarshal(b, &out), string(b))
	return out
}

type sandboxMsg struct {
	Seq   int64  `json:"seq"`
	To    string `json:"to"`
	RunID string `json:"run_id"`
	Text  string `json:"text"`
}

func (c client) sandbox(bot, key, to string) []sandboxMsg {
	c.t.Helper()
	code, b := c.call("GET", "/v1/bots/"+bot+"/sandbox/messages?to="+to, key, "")
	require.Equal(c.t, 200, code, string(b))
	var out struct{ Messages []sandboxMsg }
	require.NoError(c.t, json.Unmarshal(b, &out))
	return out.Messages
}

const welcomeFlow = `{
  "steps": [
    {"id": "welcome", "type": "send", "text": "Welcome {{ name }}! 🎉"},
    {"id": "plan", "type": "send", "text": "You've signed up for the {{ plan }} plan."},
    {"id": "referral", "type": "send", "text": "Referral code: {{ referralCode }}", "skip_if_empty": true}
  ]
}`

func startDev(t *testing.T, dir string) (*app.Dev, client) {
	return startDevWith(t, app.Config{DataDir: dir})
}

func startDevWith(t *testing.T, cfg app.Config) (*app.Dev, client) {
	t.Helper()
	cfg.HTTPAddr = "127.0.0.1:0"
	cfg.AdminKey = "e2e-admin-key-0123456789"
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	if os.Getenv("FLOWGATE_TEST_LOG") != "" {
		cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	d, err := app.StartDev(context.Background(), cfg)
	require.NoError(t, err)
	return d, client{t: t, base: "http://" + d.Addr}
}

// importCSV imports a CSV of contacts into a bot, as `flowgate contacts
// import` does (text/csv), and requires it to be taken whole.
func importCSV(c client, bot, key, csv string) {
	c.t.Helper()
	req, err := http.NewRequest("POST", c.base+"/v1/bots/"+bot+"/contacts/import", strings.NewReader(csv))
	require.NoError(c.t, err)
	req.Header.Set("Authorization", "Bearer "+key)
	req.Header.Set("Content-Type", "text/csv")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(c.t, err)
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.Equal(c.t, 200, resp.StatusCode, string(b))
}

// setupAcme creates the BuilderBot seed's WELCOME_NEW_USER bot and returns its key.
func setupAcme(c client) string {
	resp := c.must("POST", "/v1/bots", "e2e-admin-key-0123456789", `{"id":"acme","name":"Acme"}`, 201)
	key := resp["api_key"].(string)
	c.must("PUT", "/v1/bots/acme/flows/welcome", key, welcomeFlow, 200)
	c.must("PUT", "/v1/bots/acme/events/WELCOME_NEW_USER", key, `{"flow":"welcome"}`, 201)
	return key
}

const seedPayload = `{"from":"1234567890","name":"John Doe","plan":"Premium","referralCode":"REF123"}`

var seedMessages = []string{"Welcome John Doe! 🎉", "You've signed up for the Premium plan.", "Referral code: REF123"}

func texts(ms []sandboxMsg) []string {
	out := make([]string, len(ms))
	for i, m := range ms {
		out[i] = m.Text
	}
	return out
}

func TestDispatchEndToEnd(t *testing.T) {
	d, c := startDev(t, t.TempDir())
	defer func() { require.NoError(t, d.Stop()) }()
	dispatchEndToEnd(t, d, c)
}

// TestDispatchEndToEndMongo runs the same path with the MongoDB adapter,
// against FerretDB embedded in the test (a MongoDB wire-protocol server).
func TestDispatchEndToEndMongo(t *testing.T) {
	uri, stop, err := ferret.Start(context.Background(), t.TempDir())
	require.NoError(t, err)
	defer stop()
	d, c := startDevWith(t, app.Config{DataDir: t.TempDir(), MongoURI: uri, MongoDB: "e2e"})
	defer func() { require.NoError(t, d.Stop()) }()
	dispatchEndToEnd(t, d, c)
}

func dispatchEndToEnd(t *testing.T, d *app.Dev, c client) {
	key := setupAcme(c)

	resp := c.must("POST", "/v1/bots/acme/dispatch/WELCOME_NEW_USER", key, seedPayload, 202)
	trigger := resp["trigger_id"].(string)
	require.NotEmpty(t, trigger)

	require.Eventually(t, func() bool { return len(c.sandbox("acme", key, "1234567890")) == 3 }, 10*time.Second, 20*time.Millisecond)
	msgs := c.sandbox("acme", key, "1234567890")
	require.Equal(t, seedMessages, texts(msgs), "in order, placeholders filled")

	runs := c.must("GET", "/v1/bots/acme/runs?trigger="+trigger, key, "", 200)["runs"].([]any)
	require.Len(t, runs, 1)
	run := runs[0].(map[string]any)
	require.Eventually(t, func() bool {
		r := c.must("GET", "/v1/bots/acme/runs/"+run["id"].(string), key, "", 200)
		return r["run"].(map[string]any)["status"] == "completed"
	}, 5*time.Second, 20*time.Millisecond)
	r := c.must("GET", "/v1/bots/acme/runs/"+run["id"].(string), key, "", 200)
	require.Len(t, r["messages"], 3)

	// The custom data became the contact's last_request.
	contact, err := d.Store.GetContactByExternalID(context.Background(), "acme", "sandbox", "1234567890")
	require.NoError(t, err)
	require.Equal(t, "Premium", contact.LastRequest["plan"])
	require.Equal(t, "John Doe", contact.Name)

	// Without a referral code the third message is not sent.
	c.must("POST", "/v1/bots/acme/dispatch/WELCOME_NEW_USER", key, `{"from":"555","name":"Ann","plan":"Basic"}`, 202)
	require.Eventually(t, func() bool { return len(c.sandbox("acme", key, "555")) == 2 }, 10*time.Second, 20*time.Millisecond)
	time.Sleep(200 * time.Millisecond)
	require.Equal(t, []string{"Welcome Ann! 🎉", "You've signed up for the Basic plan."}, texts(c.sandbox("acme", key, "555")))
}

func TestDispatchIdempotencyKey(t *testing.T) {
	d, c := startDev(t, t.TempDir())
	defer func() { require.NoError(t, d.Stop()) }()
	key := setupAcme(c)
	first := c.must("POST", "/v1/bots/acme/dispatch/WELCOME_NEW_USER", key, seedPayload, 202, "Idempotency-Key", "order-42")
	require.Eventually(t, func() bool { return len(c.sandbox("acme", key, "1234567890")) == 3 }, 10*time.Second, 20*time.Millisecond)
	// A retry after the run finished, and one more while nothing is pending.
	for i := 0; i < 2; i++ {
		again := c.must("POST", "/v1/bots/acme/dispatch/WELCOME_NEW_USER", key, seedPayload, 202, "Idempotency-Key", "order-42")
		require.Equal(t, first["trigger_id"], again["trigger_id"])
		require.Equal(t, true, again["duplicate"])
	}
	time.Sleep(500 * time.Millisecond)
	runs := c.must("GET", "/v1/bots/acme/runs", key, "", 200)["runs"].([]any)
	require.Len(t, runs, 1, "one run for one idempotency key")
	require.Len(t, c.sandbox("acme", key, "1234567890"), 3)
}
