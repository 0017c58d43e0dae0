package deploytest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/flowgate/flowgate/shared/apitest"
	whatsappdouble "github.com/flowgate/flowgate/shared/providerdouble/whatsapp"
)

// apiClient calls the ingress's API.
type apiClient struct {
	t    *testing.T
	base string
}

func (a apiClient) do(method, path, key string, body any) (int, []byte) {
	a.t.Helper()
	return apitest.Client{Base: a.base, Timeout: 15 * time.Second}.Call(a.t, method, path, key, body)
}

// must calls the API and fails the test unless it answers want.
func (a apiClient) must(want int, method, path, key string, body any) []byte {
	a.t.Helper()
	code, out := a.do(method, path, key, body)
	if code != want {
		a.t.Fatalf("%s %s: %d %s (want %d)", method, path, code, out, want)
	}
	return out
}

func (a apiClient) dispatch(key, event, from string, data map[string]any) (int, []byte) {
	body := map[string]any{"from": from}
	for k, v := range data {
		body[k] = v
	}
	return a.do(http.MethodPost, "/v1/bots/ops/dispatch/"+event, key, body)
}

// scenario counts what was started, to know what to wait for.
type scenario struct {
	key                               string
	welcome, lookup, register, broken int
	unauthorized, rejected            int
	// WhatsApp: templates sent through the double, and runs whose bot's
	// token the double refuses (error 190).
	waSent, waRevoked int
	waKey             string
}

// runScenario creates a bot, its flows and events, and drives traffic and
// failures through the ingress.
func runScenario(t *testing.T, api apiClient, providerURL, hookURL, waBase, natsURL string) scenario {
	t.Helper()
	var sc scenario
	// Admin: wrong keys first.
	for i := 0; i < 3; i++ {
		api.must(http.StatusUnauthorized, http.MethodPost, "/v1/bots", "wrong-admin-key-0123456789", map[string]any{"id": "nope", "name": "Nope"})
		sc.unauthorized++
	}
	var created struct {
		APIKey string `json:"api_key"`
	}
	if err := json.Unmarshal(api.must(http.StatusCreated, http.MethodPost, "/v1/bots", adminKey, map[string]any{"id": "ops", "name": "Ops"}), &created); err != nil || created.APIKey == "" {
		t.Fatalf("create bot: no api_key (%v)", err)
	}
	sc.key = created.APIKey

	// Run status webhooks: every completion is delivered to hookURL.
	api.must(http.StatusCreated, http.MethodPost, "/v1/bots/ops/webhooks", sc.key,
		map[string]any{"url": hookURL + "/flowgate", "secret": "deploytest-webhook-secret", "events": []string{"run.completed"}})
	// A provider webhook for a bot with no such account, with a forged secret.
	if code, _ := api.do(http.MethodPost, "/webhooks/telegram/ops", "", map[string]any{"update_id": 1}); code < 400 || code >= 500 {
		t.Errorf("a forged Telegram webhook: %d, want a 4xx", code)
	}

	flows := map[string]any{
		"welcome": map[string]any{"steps": []any{
			map[string]any{"id": "hi", "type": "send", "text": "Hi {{ name }}"},
			map[string]any{"id": "pause", "type": "wait", "duration": "1s"},
			map[string]any{"id": "plan", "type": "send", "text": "Your plan: {{ plan }}"},
		}},
		"lookup": map[string]any{"steps": []any{
			map[string]any{"id": "get", "type": "http", "url": providerURL + "/ok", "map": map[string]any{"tier": "tier"}},
			map[string]any{"id": "say", "type": "send", "text": "Your tier: {{ tier }}"},
		}},
		"broken": map[string]any{"steps": []any{
			map[string]any{"id": "get", "type": "http", "url": providerURL + "/fail"},
			map[string]any{"id": "say", "type": "send", "text": "never sent"},
		}},
		"register": map[string]any{"steps": []any{
			map[string]any{"id": "ask", "type": "ask", "text": "What is your name?", "attribute": "name"},
			map[string]any{"id": "thanks", "type": "send", "text": "Thanks, {{ name }}"},
		}},
	}
	for id, f := range flows {
		// The flow first: an event must name an existing flow.
		for _, put := range []struct {
			path string
			body any
		}{{"/v1/bots/ops/flows/" + id, f}, {"/v1/bots/ops/events/" + strings.ToUpper(id), map[string]any{"flow": id}}} {
			if code, out := api.do(http.MethodPut, put.path, sc.key, put.body); code != http.StatusOK && code != http.StatusCreated {
				t.Fatalf("PUT %s: %d %s", put.path, code, out)
			}
		}
	}

	dispatch := func(event, from string, data map[string]any) {
		t.Helper()
		if code, body := api.dispatch(sc.key, event, from, data); code != http.StatusAccepted {
			t.Fatalf("dispatch %s: %d %s", event, code, body)
		}
	}
	for i := 0; i < 20; i++ {
		dispatch("WELCOME", fmt.Sprintf("+1555000%04d", i), map[string]any{"name": fmt.Sprintf("User %d", i), "plan": "pro"})
		sc.welcome++
	}
	for i := 0; i < 3; i++ {
		dispatch("LOOKUP", fmt.Sprintf("+1555100%04d", i), nil)
		sc.lookup++
	}
	for i := 0; i < 2; i++ {
		dispatch("BROKEN", fmt.Sprintf("+1555200%04d", i), nil)
		sc.broken++
	}
	askers := []string{"+15553000001", "+15553000002"}
	for _, u := range askers {
		dispatch("REGISTER", u, nil)
		sc.register++
	}
	// Wrong keys, unknown events, malformed bodies.
	for i := 0; i < 5; i++ {
		if code, _ := api.dispatch("fg_wrongwrongwrongwrongwrong", "WELCOME", "+15559990000", nil); code != http.StatusUnauthorized {
			t.Errorf("dispatch with a wrong key: %d, want 401", code)
		}
		sc.unauthorized++
	}
	for i := 0; i < 2; i++ {
		if code, _ := api.dispatch(sc.key, "NO_SUCH_EVENT", "+15559990001", nil); code != http.StatusNotFound {
			t.Errorf("dispatch of an unknown event: %d, want 404", code)
		}
		sc.rejected++
		if code, _ := api.do(http.MethodPost, "/v1/bots/ops/dispatch/WELCOME", sc.key, `{"from": `); code != http.StatusBadRequest {
			t.Errorf("dispatch with a malformed body: %d, want 400", code)
		}
		sc.rejected++
	}

	// WhatsApp through the provider double: one bot with a valid token, one
	// whose token the double refuses (error 190, an authentication failure).
	// Templates may be sent outside the 24-hour window.
	for _, b := range []struct {
		id, token string
		n         int
	}{{"wa", waGoodToken, 40}, {"wabad", "revoked-token-0123456789", 3}} {
		var created struct {
			APIKey string `json:"api_key"`
		}
		out := api.must(http.StatusCreated, http.MethodPost, "/v1/bots", adminKey, map[string]any{"id": b.id, "name": b.id,
			"channels": map[string]any{"default_channel": "whatsapp", "whatsapp": map[string]any{
				"phone_number_id": waPhoneID, "access_token": b.token, "app_secret": "wa-app-secret-0123456789",
				"verify_token": "wa-verify-token", "api_base": waBase}}})
		if err := json.Unmarshal(out, &created); err != nil || created.APIKey == "" {
			t.Fatalf("create bot %s: %s", b.id, out)
		}
		flow := map[string]any{"steps": []any{map[string]any{"id": "promo", "type": "template", "template": "promo", "language": "en_US"}}}
		for _, put := range []struct {
			path string
			body any
		}{{"/v1/bots/" + b.id + "/flows/promo", flow}, {"/v1/bots/" + b.id + "/events/PROMO", map[string]any{"flow": "promo"}}} {
			if code, out := api.do(http.MethodPut, put.path, created.APIKey, put.body); code != http.StatusOK && code != http.StatusCreated {
				t.Fatalf("PUT %s: %d %s", put.path, code, out)
			}
		}
		for i := 0; i < b.n; i++ {
			path := "/v1/bots/" + b.id + "/dispatch/PROMO"
			if code, out := api.do(http.MethodPost, path, created.APIKey, map[string]any{"from": fmt.Sprintf("+49151234%05d", i)}); code != http.StatusAccepted {
				t.Fatalf("POST %s: %d %s", path, code, out)
			}
		}
		if b.id == "wa" {
			sc.waSent, sc.waKey = b.n, created.APIKey
		} else {
			sc.waRevoked = b.n
		}
	}

	// A WhatsApp user replies: a signed webhook, as Meta sends it; and a
	// forged one (wrong signature) that must be refused.
	note := whatsappdouble.NewNotification(waPhoneID).
		AddMessage("Ana", whatsappdouble.TextMessage("+4915123400000", whatsappdouble.MessageID(), "hello", time.Now()))
	hook, sig := whatsappdouble.SignedWebhook("wa-app-secret-0123456789", note)
	for _, sg := range []struct {
		sig  string
		want int
	}{{sig, http.StatusOK}, {"sha256=" + strings.Repeat("0", 64), http.StatusUnauthorized}} {
		req, _ := http.NewRequest(http.MethodPost, api.base+"/webhooks/whatsapp/wa", bytes.NewReader(hook))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("X-Hub-Signature-256", sg.sig)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != sg.want && !(sg.want == http.StatusUnauthorized && resp.StatusCode == http.StatusForbidden) {
			t.Errorf("WhatsApp webhook with signature %.12s…: %d %s, want %d", sg.sig, resp.StatusCode, b, sg.want)
		}
	}

	// The askers reply once their question has arrived.
	for _, u := range askers {
		waitSandbox(t, api, sc.key, u, "What is your name?")
		api.must(http.StatusAccepted, http.MethodPost, "/v1/bots/ops/sandbox/messages", sc.key, map[string]any{"from": u, "text": "Ana"})
	}
	for _, u := range askers {
		waitSandbox(t, api, sc.key, u, "Thanks, Ana")
	}

	// A message no handler can read goes to the dead-letter stream.
	nc, err := nats.Connect(natsURL)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, subj := range []string{"flowgate.trigger.ops", "flowgate.outbound.sandbox.ops"} {
		if _, err := js.Publish(ctx, subj, []byte("not a CloudEvent"), jetstream.WithMsgID("deploytest-garbage-"+subj)); err != nil {
			t.Fatalf("publish a malformed message on %s: %v", subj, err)
		}
	}
	return sc
}

// waitSandbox waits until the sandbox shows text sent to user.
func waitSandbox(t *testing.T, api apiClient, key, user, text string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		code, body := api.do(http.MethodGet, "/v1/bots/ops/sandbox/messages?to="+url.QueryEscape(user), key, nil)
		if code == http.StatusOK && strings.Contains(string(body), text) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("sandbox of %s never showed %q: %d %s", user, text, code, body)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
