package ingress_test

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/flowgate/flowgate/cmd/flowgate/app"
	"github.com/flowgate/flowgate/ingress"
	"github.com/flowgate/flowgate/shared/bus"
	"github.com/flowgate/flowgate/shared/bus/bustest"
	"github.com/flowgate/flowgate/shared/store"
	"github.com/flowgate/flowgate/shared/store/sqlite/sqlitetest"
)

const adminKey = "test-admin-key-0123456789"

type env struct {
	t     *testing.T
	srv   *httptest.Server
	store store.Store
	nats  *bus.Embedded
	bus   *bus.Bus
	keys  map[string]string // bot → API key
}

// startEnv runs the real ingress handler with cfg (AdminKey and CacheTTL
// -1 set here) on embedded JetStream and a SQLite store, with no bots yet;
// resolver (nil: the system's) resolves webhook hosts.
func startEnv(t *testing.T, cfg ingress.Config, resolver *net.Resolver) *env {
	t.Helper()
	e, b := bustest.Bus(t, bus.Config{Source: "/test", PublishTimeout: time.Second})
	st := sqlitetest.Open(t)
	cfg.AdminKey, cfg.CacheTTL = adminKey, -1
	h, err := ingress.NewHandler(cfg, ingress.Deps{Store: st, Bus: b, CompileFlow: app.CompileFlow, Resolver: resolver})
	require.NoError(t, err)
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return &env{t: t, srv: srv, store: st, nats: e, bus: b, keys: map[string]string{}}
}

func newEnv(t *testing.T) *env {
	t.Helper()
	en := startEnv(t, ingress.Config{}, nil)
	for _, bot := range []string{"acme", "globex"} {
		en.createBot(bot)
		en.do("PUT", "/v1/bots/"+bot+"/flows/welcome", en.keys[bot], "application/json",
			`{"steps":[{"id":"hi","type":"send","text":"Hi {{ name }}"}]}`, 200)
		en.do("PUT", "/v1/bots/"+bot+"/events/WELCOME", en.keys[bot], "application/json", `{"flow":"welcome"}`, 201)
	}
	return en
}

func (e *env) createBot(id string) {
	body := e.do("POST", "/v1/bots", adminKey, "application/json", `{"id":"`+id+`","name":"Bot `+id+`"}`, 201)
	var resp struct {
		APIKey string `json:"api_key"`
	}
	require.NoError(e.t, json.Unmarshal(body, &resp))
	require.NotEmpty(e.t, resp.APIKey)
	e.keys[id] = resp.APIKey
}

func (e *env) request(method, path, key, contentType, body string, hdr ...string) *http.Response {
	e.t.Helper()
	req, err := http.NewRequest(method, e.srv.URL+path, strings.NewReader(body))
	require.NoError(e.t, err)
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(e.t, err)
	return resp
}

func (e *env) do(method, path, key, contentType, body string, want int, hdr ...string) []byte {
	e.t.Helper()
	resp := e.request(method, path, key, contentType, body, hdr...)
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	require.Equal(e.t, want, resp.StatusCode, "%s %s: %s", method, path, b)
	return b
}

func (e *env) queuedTriggers() uint64 {
	info, err := e.bus.JetStream().Stream(context.Background(), bus.StreamTriggers)
	require.NoError(e.t, err)
	return info.CachedInfo().State.Msgs
}

func TestDispatchAccepted(t *testing.T) {
	e := newEnv(t)
	body := e.do("POST", "/v1/bots/acme/dispatch/WELCOME", e.keys["acme"], "application/json",
		`{"from":"1234567890","name":"John Doe","plan":"Premium"}`, 202)
	var resp map[string]any
	require.NoError(t, json.Unmarshal(body, &resp))
	require.NotEmpty(t, resp["trigger_id"])
	require.EqualValues(t, 1, e.queuedTriggers())

	// The same Idempotency-Key names the same trigger; JetStream drops the copy.
	a := e.do("POST", "/v1/bots/acme/dispatch/WELCOME", e.keys["acme"], "application/json", `{"from":"1"}`, 202, "Idempotency-Key", "k-1")
	b := e.do("POST", "/v1/bots/acme/dispatch/WELCOME", e.keys["acme"], "application/json", `{"from":"1"}`, 202, "Idempotency-Key", "k-1")
	var ra, rb map[string]any
	require.NoError(t, json.Unmarshal(a, &ra))
	require.NoError(t, json.Unmarshal(b, &rb))
	require.Equal(t, ra["trigger_id"], rb["trigger_id"])
	require.Equal(t, false, ra["duplicate"])
	require.Equal(t, true, rb["duplicate"])
	require.EqualValues(t, 2, e.queuedTriggers())
}

func TestDispatchBadInput(t *testing.T) {
	e := newEnv(t)
	acme, globex := e.keys["acme"], e.keys["globex"]
	big := `{"from":"1","pad":"` + strings.Repeat("x", 1<<20) + `"}`
	cases := []struct {
		name, path, key, ctype, body string
		status                       int
		code, field                  string
	}{
		{"no key", "/v1/bots/acme/dispatch/WELCOME", "", "application/json", `{"from":"1"}`, 401, "unauthenticated", ""},
		{"wrong key", "/v1/bots/acme/dispatch/WELCOME", "fg_wrong", "application/json", `{"from":"1"}`, 401, "unauthenticated", ""},
		{"another bot's key", "/v1/bots/acme/dispatch/WELCOME", globex, "application/json", `{"from":"1"}`, 403, "forbidden", ""},
		{"unknown bot", "/v1/bots/nobody/dispatch/WELCOME", acme, "application/json", `{"from":"1"}`, 404, "not_found", ""},
		{"unknown bot without key", "/v1/bots/nobody/dispatch/WELCOME", "", "application/json", `{"from":"1"}`, 401, "unauthenticated", ""},
		{"malformed bot id", "/v1/bots/NO%20BODY/dispatch/WELCOME", acme, "application/json", `{"from":"1"}`, 404, "not_found", ""},
		{"unknown event", "/v1/bots/acme/dispatch/NOPE", acme, "application/json", `{"from":"1"}`, 404, "not_found", ""},
		{"not JSON", "/v1/bots/acme/dispatch/WELCOME", acme, "application/json", `{"from":`, 400, "", ""},
		{"JSON array", "/v1/bots/acme/dispatch/WELCOME", acme, "application/json", `["from"]`, 400, "", ""},
		{"wrong content type", "/v1/bots/acme/dispatch/WELCOME", acme, "text/plain", `{"from":"1"}`, 415, "", ""},
		{"no content type", "/v1/bots/acme/dispatch/WELCOME", acme, "", `{"from":"1"}`, 415, "", ""},
		{"missing from", "/v1/bots/acme/dispatch/WELCOME", acme, "application/json", `{"name":"x"}`, 422, "", "from"},
		{"empty from", "/v1/bots/acme/dispatch/WELCOME", acme, "application/json", `{"from":""}`, 422, "", "from"},
		{"from not a string", "/v1/bots/acme/dispatch/WELCOME", acme, "application/json", `{"from":{"a":1}}`, 422, "", "from"},
		{"body over 1 MiB", "/v1/bots/acme/dispatch/WELCOME", acme, "application/json", big, 413, "body_too_large", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			resp := e.request("POST", tc.path, tc.key, tc.ctype, tc.body)
			defer resp.Body.Close()
			require.Equal(t, tc.status, resp.StatusCode)
			require.Equal(t, "application/json; charset=utf-8", resp.Header.Get("Content-Type"))
			var eb struct {
				Error struct{ Code, Message, Field string } `json:"error"`
			}
			require.NoError(t, json.NewDecoder(resp.Body).Decode(&eb))
			require.NotEmpty(t, eb.Error.Code)
			require.NotEmpty(t, eb.Error.Message)
			if tc.code != "" {
				require.Equal(t, tc.code, eb.Error.Code)
			}
			if tc.field != "" {
				require.Equal(t, tc.field, eb.Error.Field)
			}
		})
	}
	require.Zero(t, e.queuedTriggers(), "a refused request queues nothing")
}

func TestDispatchNATSUnavailable(t *testing.T) {
	e := newEnv(t)
	e.nats.Shutdown()
	// Once the client knows the server is gone, nothing can be queued: a
	// publish made before it noticed may have reached the server, and is
	// answered "outcome_unknown" (TestOutcomeUnknownNamesTriggerAndRetryKey),
	// which is not this case.
	require.Eventually(t, func() bool { return !e.bus.JetStream().Conn().IsConnected() }, 10*time.Second, time.Millisecond)
	resp := e.request("POST", "/v1/bots/acme/dispatch/WELCOME", e.keys["acme"], "application/json", `{"from":"1"}`)
	defer resp.Body.Close()
	require.Equal(t, http.StatusServiceUnavailable, resp.StatusCode)
	require.Equal(t, "5", resp.Header.Get("Retry-After"))
	var eb struct{ Error struct{ Code string } }
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&eb))
	require.Equal(t, "unavailable", eb.Error.Code)
	// Nothing reached the orchestrator's side: no trigger record exists.
	runs, _, err := e.store.ListRuns(context.Background(), store.RunFilter{BotID: "acme"})
	require.NoError(t, err)
	require.Empty(t, runs)
	r := e.request("GET", "/readyz", "", "", "")
	r.Body.Close()
	require.Equal(t, http.StatusServiceUnavailable, r.StatusCode)
}

func TestAdminAndFlowValidation(t *testing.T) {
	e := newEnv(t)
	// Only the admin key creates bots.
	e.do("POST", "/v1/bots", e.keys["acme"], "application/json", `{"id":"x"}`, 403)
	e.do("POST", "/v1/bots", "", "application/json", `{"id":"x"}`, 401)
	e.do("POST", "/v1/bots", adminKey, "application/json", `{"id":"Bad Id"}`, 422)
	e.do("POST", "/v1/bots", adminKey, "application/json", `{"id":"acme"}`, 409)
	e.do("POST", "/v1/bots", adminKey, "application/json", `{"id":"x","unknown":1}`, 400)
	// The bot view never shows secrets.
	e.do("POST", "/v1/bots", adminKey, "application/json",
		`{"id":"wa","channels":{"whatsapp":{"phone_number_id":"123","access_token":"SECRET-TOKEN","app_secret":"SECRET-APP"}}}`, 201)
	body := e.do("GET", "/v1/bots/acme", e.keys["acme"], "", "", 200)
	require.NotContains(t, string(body), "SECRET")

	// Flows: invalid documents are refused with the offending path; valid ones are versioned.
	b := e.do("PUT", "/v1/bots/acme/flows/bad", e.keys["acme"], "application/json",
		`{"steps":[{"id":"a","type":"teleport"}]}`, 422)
	require.Contains(t, string(b), `"field":"steps[0].type"`)
	e.do("PUT", "/v1/bots/acme/flows/bad", e.keys["acme"], "application/json", `{"steps":`, 422)
	e.do("PUT", "/v1/bots/acme/flows/welcome", e.keys["acme"], "application/json",
		`{"steps":[{"id":"hi","type":"send","text":"Hello"}]}`, 200)
	b = e.do("GET", "/v1/bots/acme/flows/welcome", e.keys["acme"], "", "", 200)
	require.Contains(t, string(b), `"version":2`)
	// Events must name an existing flow.
	e.do("PUT", "/v1/bots/acme/events/E2", e.keys["acme"], "application/json", `{"flow":"missing"}`, 422)
	e.do("PUT", "/v1/bots/acme/events/E2", e.keys["acme"], "application/json", `{}`, 422)
	e.do("PUT", "/v1/bots/acme/events/E2", e.keys["acme"], "text/plain", `{"flow":"welcome"}`, 415)
	// Another bot's key cannot touch acme's flows.
	e.do("PUT", "/v1/bots/acme/flows/welcome", e.keys["globex"], "application/json", `{"steps":[]}`, 403)
	e.do("GET", "/v1/bots/acme/runs/nope", e.keys["acme"], "", "", 404)
	e.do("GET", "/v1/bots/acme/runs?status=bogus", e.keys["acme"], "", "", 422)
}
