package app_test

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/flowgate/flowgate/cmd/flowgate/app"
	"github.com/flowgate/flowgate/shared/channel"
	"github.com/flowgate/flowgate/shared/events"
	"github.com/flowgate/flowgate/shared/provider"
	"github.com/flowgate/flowgate/shared/store"
)

// relay is a fourth channel that exists only in this test: a provider
// whose API is an httptest server taking {"to","text","id"} and answering
// {"message_id"}, and whose webhook posts {"id","from","name","text"}
// (a reply) or {"status":{"message_id","state"}} (a delivery report) with
// a shared secret in X-Relay-Secret. Nothing outside this file knows it.
type relay struct {
	srv    *httptest.Server
	secret string

	mu   sync.Mutex
	sent []relayMsg
}

type relayMsg struct {
	To, Text, ID string
}

func newRelay(t *testing.T) *relay {
	r := &relay{secret: "relay-secret-42"}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		var m relayMsg
		if err := json.NewDecoder(req.Body).Decode(&m); err != nil || m.To == "" {
			http.Error(w, "bad request", http.StatusBadRequest)
			return
		}
		r.mu.Lock()
		r.sent = append(r.sent, m)
		n := len(r.sent)
		r.mu.Unlock()
		_ = json.NewEncoder(w).Encode(map[string]string{"message_id": fmt.Sprintf("relay-%d", n)})
	}))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *relay) texts(to string) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, m := range r.sent {
		if m.To == to {
			out = append(out, m.Text)
		}
	}
	return out
}

// provider is the relay's provider value: what a new channel package
// would register in its init function.
func (r *relay) provider() provider.Provider {
	return provider.Provider{
		Name: "relay",
		Rate: 50,
		Account: func(bot store.Bot) (provider.Account, bool) {
			return provider.Account{Key: "relay-" + bot.ID}, true
		},
		Webhook: func(_ context.Context, bot store.Bot, req provider.Request) (provider.Notification, error) {
			if subtle.ConstantTimeCompare([]byte(req.Header.Get("X-Relay-Secret")), []byte(r.secret)) != 1 {
				return provider.Notification{}, provider.BadSignature(nil)
			}
			var body struct {
				ID, From, Name, Text string
				Status               *struct {
					MessageID string `json:"message_id"`
					State     string `json:"state"`
				}
			}
			if err := json.Unmarshal(req.Body, &body); err != nil {
				return provider.Notification{}, provider.Malformed(err)
			}
			if body.Status != nil {
				return provider.Notification{Deliveries: []events.Delivery{{BotID: bot.ID, Channel: "relay",
					ProviderMessageID: body.Status.MessageID, Status: body.Status.State}}}, nil
			}
			return provider.Notification{Inbound: []events.Inbound{{BotID: bot.ID, Channel: "relay", From: body.From,
				Name: body.Name, ProviderMessageID: body.ID, Text: body.Text, ReceivedAt: time.Now().UTC()}}}, nil
		},
		NewSender: func(provider.SenderDeps) (channel.Sender, error) { return relaySender{r}, nil },
	}
}

type relaySender struct{ r *relay }

func (relaySender) Channel() string { return "relay" }

func (relaySender) Account(bot store.Bot) (string, error) { return "relay-" + bot.ID, nil }

func (s relaySender) Send(ctx context.Context, _ store.Bot, out events.Outbound, msg events.OutboundMessage) (channel.Result, error) {
	if msg.Content.Type != events.ContentText {
		return channel.Result{}, &channel.PermanentError{Code: "unsupported", Reason: "relay sends text only"}
	}
	body, _ := json.Marshal(relayMsg{To: out.To, Text: msg.Content.Text, ID: msg.ID})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.r.srv.URL, strings.NewReader(string(body)))
	if err != nil {
		return channel.Result{}, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return channel.Result{}, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return channel.Result{}, &channel.PermanentError{Code: resp.Status, Reason: "relay refused the message"}
	}
	var res struct {
		MessageID string `json:"message_id"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&res); err != nil || res.MessageID == "" {
		return channel.Result{}, errors.Join(errors.New("relay: unreadable answer"), err)
	}
	return channel.Result{ProviderMessageID: res.MessageID}, nil
}

const relayFlow = `{
  "steps": [
    {"id": "ask", "type": "ask", "text": "Hi {{ data.name }}, what is your favourite colour?", "attribute": "colour"},
    {"id": "thanks", "type": "send", "text": "{{ data.name }} likes {{ attributes.colour }}"}
  ]
}`

// TestFourthProviderEndToEnd: a channel registered by a test, touching no
// other package, is usable end to end through the real ingress, bus
// (embedded NATS), store (SQLite), orchestrator, pacer and channel runner:
// trigger → run → send → webhook reply → the run goes on and completes,
// and the provider's delivery report reaches the message.
func TestFourthProviderEndToEnd(t *testing.T) {
	r := newRelay(t)
	require.NoError(t, provider.Register(r.provider()))
	t.Cleanup(func() { provider.Remove("relay") })

	d, c := startDevWith(t, app.Config{DataDir: t.TempDir(), NoDemo: true})
	defer func() { require.NoError(t, d.Stop()) }()
	const admin = "e2e-admin-key-0123456789"
	key := c.must("POST", "/v1/bots", admin, `{"id":"shop","name":"Shop"}`, 201)["api_key"].(string)
	c.must("PUT", "/v1/bots/shop/flows/colour", key, relayFlow, 200)

	// Trigger on the new channel.
	resp := c.must("POST", "/v1/bots/shop/triggers", key,
		`{"flow":"colour","channel":"relay","audience":{"users":["ann-1"]},"data":{"name":"Ann"}}`, 202)
	trigger := resp["trigger"].(map[string]any)
	require.Equal(t, "relay", trigger["channel"])

	// Run → send: the relay API got the question.
	require.Eventually(t, func() bool { return len(r.texts("ann-1")) == 1 }, 30*time.Second, 20*time.Millisecond)
	require.Equal(t, []string{"Hi Ann, what is your favourite colour?"}, r.texts("ann-1"))
	runs := c.must("GET", "/v1/bots/shop/runs?trigger="+trigger["id"].(string), key, "", 200)["runs"].([]any)
	require.Len(t, runs, 1)
	runID := runs[0].(map[string]any)["id"].(string)
	require.Eventually(t, func() bool {
		return c.must("GET", "/v1/bots/shop/runs/"+runID, key, "", 200)["run"].(map[string]any)["status"] == "waiting"
	}, 30*time.Second, 20*time.Millisecond)

	// A webhook without the provider's secret is refused and queues nothing.
	code, body := c.call("POST", "/webhooks/relay/shop", "", `{"id":"in-0","from":"ann-1","text":"red"}`)
	require.Equal(t, http.StatusUnauthorized, code, string(body))
	require.Contains(t, string(body), `"code":"invalid_signature"`)

	// The provider reports the question delivered, then the user replies
	// through the provider's webhook.
	c.must("POST", "/webhooks/relay/shop", "", `{"status":{"message_id":"relay-1","state":"delivered"}}`, 200, "X-Relay-Secret", r.secret)
	c.must("POST", "/webhooks/relay/shop", "", `{"id":"in-1","from":"ann-1","name":"Ann","text":"green"}`, 200, "X-Relay-Secret", r.secret)
	// The provider retries the same reply: dropped (same provider id).
	c.must("POST", "/webhooks/relay/shop", "", `{"id":"in-1","from":"ann-1","name":"Ann","text":"green"}`, 200, "X-Relay-Secret", r.secret)

	require.Eventually(t, func() bool {
		return c.must("GET", "/v1/bots/shop/runs/"+runID, key, "", 200)["run"].(map[string]any)["status"] == "completed"
	}, 30*time.Second, 20*time.Millisecond)
	require.Eventually(t, func() bool { return len(r.texts("ann-1")) == 2 }, 30*time.Second, 20*time.Millisecond)
	require.Equal(t, []string{"Hi Ann, what is your favourite colour?", "Ann likes green"}, r.texts("ann-1"))

	contact, err := d.Store.GetContactByExternalID(context.Background(), "shop", "relay", "ann-1")
	require.NoError(t, err)
	require.Equal(t, "green", contact.Attributes["colour"])
	require.Eventually(t, func() bool {
		msgs, err := d.Store.ListRunMessages(context.Background(), "shop", runID)
		require.NoError(t, err)
		for _, m := range msgs {
			if m.ProviderMessageID == "relay-1" {
				return m.Status == events.StatusDelivered
			}
		}
		return false
	}, 30*time.Second, 20*time.Millisecond, "the delivery report reached the first message")
	time.Sleep(300 * time.Millisecond) // a duplicate reply would have been handled by now
	require.Len(t, r.texts("ann-1"), 2, "the retried reply changed nothing")
}
