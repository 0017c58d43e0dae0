package ingress_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestTriggerEndpointsBadInput sends malformed requests to every trigger
// endpoint over HTTP: each gets a JSON error with the right status naming
// the field, and nothing reaches the bus.
func TestTriggerEndpointsBadInput(t *testing.T) {
	e := newEnv(t)
	acme := e.keys["acme"]
	// A Botmother URL, a Recrubo thread to point runs at.
	ev := e.do("PUT", "/v1/bots/acme/events/BM", acme, "application/json", `{"flow":"welcome"}`, 201)
	var evr struct {
		Event struct {
			TriggerURL string `json:"trigger_url"`
		}
	}
	require.NoError(t, json.Unmarshal(ev, &evr))
	bm := evr.Event.TriggerURL
	th := e.do("POST", "/public/v2/message-threads", acme, "application/vnd.api+json",
		`{"data":{"type":"messageThreads","attributes":{"channel":"sandbox","identifier":"u1"}}}`, 201)
	var thr struct{ Data struct{ ID string } }
	require.NoError(t, json.Unmarshal(th, &thr))
	before := e.queuedTriggers()

	big := `"` + strings.Repeat("x", 1<<20) + `"`
	many := `[` + strings.Repeat(`"1",`, 10000) + `"1"]`
	native := "/v1/bots/acme/triggers"
	engati2 := "/bot_api/v2.0/customer/1/bot/acme/flow/welcome"
	engati1 := "/bot_api/v1.0/customer/1/bot/acme/flow/welcome"
	const js, jsonapi = "application/json", "application/vnd.api+json"
	run := func(flow, thread string) string {
		return `{"data":{"type":"flowRuns","attributes":{"flowId":"` + flow + `","messageThreadId":"` + thread + `","state":{}}}}`
	}
	cases := []struct {
		name, method, path, auth, ctype, body string
		status                                int
		field                                 string
	}{
		// native
		{"native: not JSON", "POST", native, "b", js, `{`, 400, ""},
		{"native: array", "POST", native, "b", js, `[]`, 400, ""},
		{"native: text/plain", "POST", native, "b", "text/plain", `{}`, 415, ""},
		{"native: no event or flow", "POST", native, "b", js, `{"audience":{"users":["1"]}}`, 422, ""},
		{"native: event and flow", "POST", native, "b", js, `{"event":"WELCOME","flow":"welcome","audience":{"users":["1"]}}`, 422, ""},
		{"native: unknown event", "POST", native, "b", js, `{"event":"NOPE","audience":{"users":["1"]}}`, 422, "event"},
		{"native: unknown flow", "POST", native, "b", js, `{"flow":"nope","audience":{"users":["1"]}}`, 422, "flow"},
		{"native: no audience", "POST", native, "b", js, `{"flow":"welcome"}`, 422, ""},
		{"native: users not a list", "POST", native, "b", js, `{"flow":"welcome","audience":{"users":5}}`, 422, ""},
		{"native: users and users_bm", "POST", native, "b", js, `{"flow":"welcome","audience":{"users":["1"],"users_bm":["a"]}}`, 422, ""},
		{"native: unknown platform", "POST", native, "b", js, `{"flow":"welcome","audience":{"users":["1"],"platform":"fax"}}`, 422, ""},
		{"native: unknown channel", "POST", native, "b", js, `{"flow":"welcome","channel":"fax","audience":{"users":["1"]}}`, 422, ""},
		{"native: unknown priority", "POST", native, "b", js, `{"flow":"welcome","priority":"urgent","audience":{"users":["1"]}}`, 422, "priority"},
		{"native: channel not configured", "POST", native, "b", js, `{"flow":"welcome","channel":"whatsapp","audience":{"users":["+31612345678"]}}`, 422, "channel"},
		{"native: invalid phone", "POST", native, "b", js, `{"flow":"welcome","channel":"whatsapp","audience":{"users":["12"]}}`, 422, ""},
		{"native: bad filter", "POST", native, "b", js, `{"flow":"welcome","audience":{"everyone":true,"filter":"plan ==="}}`, 422, "audience.filter"},
		{"native: unknown field", "POST", native, "b", js, `{"flow":"welcome","audience":{"users":["1"]},"typo":1}`, 422, ""},
		{"native: data not an object", "POST", native, "b", js, `{"flow":"welcome","audience":{"users":["1"]},"data":[1]}`, 422, ""},
		{"native: 10,001 users", "POST", native, "b", js, `{"flow":"welcome","audience":{"users":` + many + `}}`, 413, ""},
		{"native: body over 1 MiB", "POST", native, "b", js, `{"flow":"welcome","audience":{"users":["1"]},"data":{"x":` + big + `}}`, 413, ""},
		{"native: no key", "POST", native, "", js, `{"flow":"welcome","audience":{"users":["1"]}}`, 401, ""},
		{"native: another bot's key", "POST", native, "g", js, `{"flow":"welcome","audience":{"users":["1"]}}`, 403, ""},
		// CloudEvents
		{"ce: not a CloudEvent", "POST", "/v1/bots/acme/cloudevents", "b", js, `{"from":"1"}`, 415, ""},
		{"ce: structured, malformed", "POST", "/v1/bots/acme/cloudevents", "b", "application/cloudevents+json", `{"specversion":`, 400, ""},
		{"ce: missing id", "POST", "/v1/bots/acme/cloudevents", "b", "application/cloudevents+json", `{"specversion":"1.0","source":"s","type":"WELCOME","subject":"u"}`, 422, "id"},
		{"ce: unknown type", "POST", "/v1/bots/acme/cloudevents", "b", "application/cloudevents+json", `{"specversion":"1.0","id":"1","source":"s","type":"NOPE","subject":"u"}`, 422, "type"},
		{"ce: no user", "POST", "/v1/bots/acme/cloudevents", "b", "application/cloudevents+json", `{"specversion":"1.0","id":"1","source":"s","type":"WELCOME"}`, 422, ""},
		{"ce: empty batch", "POST", "/v1/bots/acme/cloudevents", "b", "application/cloudevents-batch+json", `[]`, 422, ""},
		{"ce: batch with a bad event", "POST", "/v1/bots/acme/cloudevents", "b", "application/cloudevents-batch+json",
			`[{"specversion":"1.0","id":"1","source":"s","type":"WELCOME","subject":"u"},{"specversion":"1.0","id":"2","source":"s","type":"NOPE","subject":"u"}]`, 422, "[1].type"},
		{"ce: batch with an event without type", "POST", "/v1/bots/acme/cloudevents", "b", "application/cloudevents-batch+json",
			`[{"specversion":"1.0","id":"1","source":"s","type":"WELCOME","subject":"u"},{"specversion":"1.0","id":"2","source":"s","type":"","subject":"u"}]`, 422, "[1].type"},
		{"ce: batch with an event without source", "POST", "/v1/bots/acme/cloudevents", "b", "application/cloudevents-batch+json",
			`[{"specversion":"1.0","id":"1","source":"s","type":"WELCOME","subject":"u"},{"specversion":"1.0","id":"2","type":"WELCOME","subject":"u"}]`, 422, "[1].source"},
		{"ce: structured, specversion 0.3", "POST", "/v1/bots/acme/cloudevents", "b", "application/cloudevents+json", `{"specversion":"0.3","id":"1","source":"s","type":"WELCOME","subject":"u"}`, 422, "specversion"},
		{"ce: batch, specversion 0.3", "POST", "/v1/bots/acme/cloudevents", "b", "application/cloudevents-batch+json",
			`[{"specversion":"1.0","id":"1","source":"s","type":"WELCOME","subject":"u"},{"specversion":"0.3","id":"2","source":"s","type":"WELCOME","subject":"u"}]`, 422, "[1].specversion"},
		{"ce: binary, specversion 0.3", "POST", "/v1/bots/acme/cloudevents", "b", js + "|ce-specversion:0.3|ce-id:1|ce-source:s|ce-type:WELCOME|ce-subject:u", `{}`, 422, "specversion"},
		{"ce: binary, no ce-source", "POST", "/v1/bots/acme/cloudevents", "b", js + "|ce-specversion:1.0|ce-id:1|ce-type:WELCOME|ce-subject:u", `{}`, 422, "source"},
		// Botmother
		{"botmother: wrong token", "POST", "/hooks/botmother/acme/nope", "", js, `{"platform":"tg","users":["1"],"data":{}}`, 404, ""},
		{"botmother: unknown bot", "POST", "/hooks/botmother/nobody/nope", "", js, `{"platform":"tg","users":["1"],"data":{}}`, 404, ""},
		{"botmother: text/plain", "POST", bm, "", "text/plain", `{"platform":"any","users":"everyone","data":{}}`, 415, ""},
		{"botmother: malformed", "POST", bm, "", js, `{"platform":`, 400, ""},
		{"botmother: unknown platform", "POST", bm, "", js, `{"platform":"fax","users":["1"],"data":{}}`, 422, ""},
		{"botmother: users a number", "POST", bm, "", js, `{"platform":"any","users":5,"data":{}}`, 422, ""},
		{"botmother: bad bm_id", "POST", bm, "", js, `{"users_bm":["not-an-id!"],"data":{}}`, 422, ""},
		{"botmother: channel not configured", "POST", bm, "", js, `{"platform":"tg","users":["1"],"data":{}}`, 422, "platform"},
		// Engati
		{"engati v2: no phone", "POST", engati2, "basic", js, `{"user_channel":"whatsapp"}`, 422, ""},
		{"engati v2: invalid phone", "POST", engati2, "basic", js, `{"user_channel":"whatsapp","user_phone_no":"abc"}`, 422, ""},
		{"engati v2: negative phone", "POST", engati2, "basic", js, `{"user_channel":"whatsapp","user_phone_no":"-919876543210"}`, 422, "user_phone_no"},
		{"engati v1: negative phone", "POST", engati1 + "?user_phone_no=-919876543210", "basic", "", ``, 422, "user_phone_no"},
		{"engati v2: unknown channel", "POST", engati2, "basic", js, `{"user_channel":"fax","user_phone_no":"31612345678"}`, 422, ""},
		{"engati v2: malformed", "POST", engati2, "basic", js, `{"user_phone_no":`, 400, ""},
		{"engati v2: channel not configured", "POST", engati2, "basic", js, `{"user_channel":"whatsapp","user_phone_no":"31612345678"}`, 422, "user_channel"},
		{"engati v2: unknown flow", "POST", "/bot_api/v2.0/customer/1/bot/acme/flow/nope", "basic", js, `{"user_channel":"whatsapp","user_phone_no":"31612345678"}`, 404, ""},
		{"engati v1: no phone", "POST", engati1 + "?resultcode=1", "basic", "", ``, 422, ""},
		{"engati v2: no key", "POST", engati2, "", js, `{"user_channel":"whatsapp","user_phone_no":"31612345678"}`, 401, ""},
		// Recrubo
		{"recrubo: application/json", "POST", "/public/v2/flow-runs", "b", js, run("welcome", thr.Data.ID), 415, ""},
		{"recrubo: malformed", "POST", "/public/v2/flow-runs", "b", jsonapi, `{"data":`, 400, ""},
		{"recrubo: no data", "POST", "/public/v2/flow-runs", "b", jsonapi, `{}`, 400, ""},
		{"recrubo: wrong type", "POST", "/public/v2/flow-runs", "b", jsonapi, `{"data":{"type":"messageThreads","attributes":{}}}`, 409, ""},
		{"recrubo: unknown thread", "POST", "/public/v2/flow-runs", "b", jsonapi, run("welcome", "000000000000000000000000"), 422, "/data/attributes/messageThreadId"},
		{"recrubo: unknown flow", "POST", "/public/v2/flow-runs", "b", jsonapi, run("nope", thr.Data.ID), 422, "/data/attributes/flowId"},
		{"recrubo: thread without identifier", "POST", "/public/v2/message-threads", "b", jsonapi, `{"data":{"type":"messageThreads","attributes":{"channel":"whatsapp"}}}`, 422, "/data/attributes/identifier"},
		{"recrubo: thread invalid phone", "POST", "/public/v2/message-threads", "b", jsonapi, `{"data":{"type":"messageThreads","attributes":{"channel":"whatsapp","identifier":"12"}}}`, 422, "/data/attributes/identifier"},
		{"recrubo: admin key", "POST", "/public/v2/flow-runs", "admin", jsonapi, run("welcome", thr.Data.ID), 403, ""},
		// sandbox
		{"sandbox: no from", "POST", "/v1/bots/acme/sandbox/messages", "b", js, `{"text":"hi"}`, 422, "from"},
		{"sandbox: no text", "POST", "/v1/bots/acme/sandbox/messages", "b", js, `{"from":"u1"}`, 422, "text"},
	}
	require.GreaterOrEqual(t, len(cases), 40)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			key, hdr := "", []string{}
			switch tc.auth {
			case "b":
				key = acme
			case "g":
				key = e.keys["globex"]
			case "admin":
				key = adminKey
			case "basic":
				hdr = []string{"Authorization", "Basic " + acme}
			}
			// A content type "type|name:value|..." also sets those headers
			// (CloudEvents binary mode).
			ctype, extra, _ := strings.Cut(tc.ctype, "|")
			if extra != "" {
				for _, h := range strings.Split(extra, "|") {
					name, value, _ := strings.Cut(h, ":")
					hdr = append(hdr, name, value)
				}
			}
			resp := e.request(tc.method, tc.path, key, ctype, tc.body, hdr...)
			defer resp.Body.Close()
			require.Equal(t, tc.status, resp.StatusCode)
			var doc map[string]any
			require.NoError(t, json.NewDecoder(resp.Body).Decode(&doc), "a JSON error body")
			var field string
			if errs, ok := doc["errors"].([]any); ok { // JSON:API (Recrubo)
				require.Len(t, errs, 1)
				if src, ok := errs[0].(map[string]any)["source"].(map[string]any); ok {
					field, _ = src["pointer"].(string)
				}
			} else {
				eo, ok := doc["error"].(map[string]any)
				require.True(t, ok, "error object: %v", doc)
				require.NotEmpty(t, eo["code"])
				require.NotEmpty(t, eo["message"])
				require.NotContains(t, eo["message"], "\n", "a message is one line")
				field, _ = eo["field"].(string)
			}
			if tc.field != "" {
				require.Equal(t, tc.field, field)
			}
		})
	}
	require.Equal(t, before, e.queuedTriggers(), "refused requests queue nothing")
}
