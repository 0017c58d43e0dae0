package ingress_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/flowgate/flowgate/shared/testclock"

	"github.com/pb33f/libopenapi"
	validator "github.com/pb33f/libopenapi-validator"
	"github.com/stretchr/testify/require"

	"github.com/flowgate/flowgate/cmd/flowgate/app"
	"github.com/flowgate/flowgate/ingress"
	"github.com/flowgate/flowgate/shared/store"
)

// mgmtEnv is newEnv plus what the management tests need: keys of every
// kind for the auth matrix, and a contact with a run and messages.
type mgmtEnv struct {
	*env
	revoked, trigger, triggerWelcome string
	revokedID                        string
}

func newMgmtEnv(t *testing.T) *mgmtEnv {
	e := &mgmtEnv{env: newEnv(t)}
	acme := e.keys["acme"]
	var created struct {
		Key    struct{ ID string } `json:"key"`
		APIKey string              `json:"api_key"`
	}
	mk := func(body string) (string, string) {
		b := e.do("POST", "/v1/bots/acme/keys", acme, "application/json", body, 201)
		require.NoError(t, json.Unmarshal(b, &created))
		return created.APIKey, created.Key.ID
	}
	e.revoked, e.revokedID = mk(`{"name":"leaked","scope":"admin"}`)
	e.do("DELETE", "/v1/bots/acme/keys/"+e.revokedID, acme, "", "", 200)
	e.trigger, _ = mk(`{"name":"crm","scope":"trigger"}`)
	e.triggerWelcome, _ = mk(`{"name":"crm-welcome","scope":"trigger","events":["WELCOME"]}`)

	ctx := context.Background()
	st := e.store
	now := testclock.Date(2026, 5, 1, 10, 0, 0)
	for i, ext := range []string{"+31612345678", "+31687654321"} {
		_, _, err := st.UpsertContact(ctx, store.ContactUpsert{BotID: "acme", Channel: "whatsapp", ExternalID: ext,
			Name: []string{"Ann", "Bob"}[i], Attributes: map[string]any{"plan": []string{"Premium", "Basic"}[i]},
			LastRequest: map[string]any{"order": "A-1"}, NewID: []string{"c-ann", "c-bob"}[i], Now: now})
		require.NoError(t, err)
	}
	_, _, err := st.UpsertContact(ctx, store.ContactUpsert{BotID: "globex", Channel: "sandbox", ExternalID: "g1", NewID: "c-globex", Now: now})
	require.NoError(t, err)
	require.NoError(t, st.CreateSubscription(ctx, store.Subscription{ID: "wh_1", BotID: "acme", URL: "https://crm.example.com/hook",
		Secret: "first-secret-0123456789", EventTypes: []string{"run.status"}, CreatedAt: now}))
	_, _, err = st.CreateTrigger(ctx, store.Trigger{ID: "tr-1", BotID: "acme", Source: "dispatch", Event: "WELCOME", FlowID: "welcome",
		Channel: "whatsapp", Status: store.TriggerDone, CreatedAt: now})
	require.NoError(t, err)
	_, _, err = st.CreateTrigger(ctx, store.Trigger{ID: "tr-2", BotID: "acme", Source: "native", FlowID: "welcome",
		Channel: "whatsapp", Status: store.TriggerAccepted, CreatedAt: now.Add(time.Minute)})
	require.NoError(t, err)
	_, _, err = st.CreateRun(ctx, store.Run{ID: "run-1", BotID: "acme", TriggerID: "tr-1", FlowID: "welcome", FlowVersion: 1,
		ContactID: "c-ann", Channel: "whatsapp", Status: store.RunCompleted, CreatedAt: now})
	require.NoError(t, err)
	require.NoError(t, st.InsertMessages(ctx, []store.Message{{ID: "msg-1", BotID: "acme", RunID: "run-1", TriggerID: "tr-1",
		ContactID: "c-ann", Channel: "whatsapp", To: "+31612345678", Seq: 1, Content: json.RawMessage(`{"text":"Hi Ann"}`),
		Status: store.MessageQueued, CreatedAt: now}}))
	require.NoError(t, st.UpdateMessageStatus(ctx, store.StatusUpdate{BotID: "acme", MessageID: "msg-1", Status: store.MessageFailed, Reason: "131026: message undeliverable", At: now}))
	return e
}

// snapshot is what a refused request must leave as it was.
func (e *mgmtEnv) snapshot() string {
	e.t.Helper()
	ctx := context.Background()
	st := e.store
	bot, err := st.GetBot(ctx, "acme")
	require.NoError(e.t, err)
	keys, err := st.ListAPIKeys(ctx, "acme")
	require.NoError(e.t, err)
	for i := range keys {
		keys[i].LastUsedAt = nil // written in the background as keys are used
	}
	flows, err := st.ListFlows(ctx, "acme")
	require.NoError(e.t, err)
	evs, err := st.ListEvents(ctx, "acme")
	require.NoError(e.t, err)
	cs, _, err := st.SearchContacts(ctx, store.ContactSearch{BotID: "acme"})
	require.NoError(e.t, err)
	runs, _, err := st.ListRuns(ctx, store.RunFilter{BotID: "acme"})
	require.NoError(e.t, err)
	subs, err := st.ListSubscriptions(ctx, "acme")
	require.NoError(e.t, err)
	secrets := []string{}
	for _, sub := range subs {
		secrets = append(secrets, sub.Secret, sub.PreviousSecret)
	}
	b, err := json.Marshal([]any{bot, keys, flows, evs, cs, runs, subs, secrets})
	require.NoError(e.t, err)
	return string(b)
}

type apiErr struct {
	Error struct {
		Code, Message, Field string
		RequestID            string `json:"request_id"`
	} `json:"error"`
}

// mgmtRoutes are every management route, with a valid request each.
var mgmtRoutes = []struct {
	method, path, ctype, body string
	adminKeyOnly              bool
}{
	{"GET", "/v1/bots", "", "", true},
	{"PATCH", "/v1/bots/acme", "application/json", `{"name":"Acme"}`, false},
	{"DELETE", "/v1/bots/acme", "", "", false},
	{"POST", "/v1/bots/acme/keys", "application/json", `{"name":"x","scope":"admin"}`, false},
	{"GET", "/v1/bots/acme/keys", "", "", false},
	{"DELETE", "/v1/bots/acme/keys/nope", "", "", false},
	{"GET", "/v1/bots/acme/flows", "", "", false},
	{"DELETE", "/v1/bots/acme/flows/welcome", "", "", false},
	{"GET", "/v1/bots/acme/flows/welcome/versions/1", "", "", false},
	{"POST", "/v1/bots/acme/flows/welcome/versions/1/activate", "", "", false},
	{"GET", "/v1/bots/acme/flows/welcome/definition", "", "", false},
	{"GET", "/v1/bots/acme/events", "", "", false},
	{"DELETE", "/v1/bots/acme/events/WELCOME", "", "", false},
	{"GET", "/v1/bots/acme/triggers", "", "", false},
	{"GET", "/v1/bots/acme/contacts", "", "", false},
	{"GET", "/v1/bots/acme/contacts/c-ann", "", "", false},
	{"PATCH", "/v1/bots/acme/contacts/c-ann", "application/json", `{"attributes":{"plan":"Gold"}}`, false},
	{"DELETE", "/v1/bots/acme/contacts/c-ann", "", "", false},
	{"POST", "/v1/bots/acme/contacts/c-ann/opt-out", "", "", false},
	{"POST", "/v1/bots/acme/contacts/c-ann/opt-in", "", "", false},
	{"GET", "/v1/bots/acme/contacts/c-ann/messages", "", "", false},
	{"GET", "/v1/bots/acme/runs/run-1/messages", "", "", false},
	{"POST", "/v1/bots/acme/webhooks/wh_1/rotate-secret", "application/json", `{"secret":"second-secret-0123456789"}`, false},
	{"DELETE", "/v1/bots/acme/webhooks/wh_1/previous-secret", "", "", false},
	{"POST", "/v1/bots/acme/triggers/tr-1/pause", "", "", false},
	{"POST", "/v1/bots/acme/triggers/tr-1/resume", "", "", false},
	{"POST", "/v1/bots/acme/triggers/tr-1/cancel", "", "", false},
	{"POST", "/v1/bots/acme/media", "image/png", "\x89PNG", false},
	{"GET", "/v1/bots/acme/media", "", "", false},
	{"GET", "/v1/bots/acme/media/med_1", "", "", false},
	{"GET", "/v1/bots/acme/media/med_1/content", "", "", false},
	{"DELETE", "/v1/bots/acme/media/med_1", "", "", false},
	{"GET", "/v1/admin/dlq", "", "", true},
	{"DELETE", "/v1/admin/dlq", "", "", true},
	{"GET", "/v1/admin/dlq/1", "", "", true},
	{"DELETE", "/v1/admin/dlq/1", "", "", true},
	{"POST", "/v1/admin/dlq/1/replay", "", "", true},
}

// TestManagementAuthMatrix calls every management route with no key, a
// wrong key, another bot's key, a revoked key and a trigger-scope key:
// each is refused with the right status and code, and nothing changes.
func TestManagementAuthMatrix(t *testing.T) {
	e := newMgmtEnv(t)
	before := e.snapshot()
	for _, r := range mgmtRoutes {
		for _, k := range []struct {
			who, key string
			status   int
			code     string
		}{
			{"no key", "", 401, "unauthenticated"},
			{"wrong key", "fg_0000000000000000000000000000000000000000", 401, "unauthenticated"},
			{"revoked key", e.revoked, 401, "unauthenticated"},
			{"another bot's key", e.keys["globex"], 403, "forbidden"},
			{"trigger-scope key", e.trigger, 403, "insufficient_scope"},
			{"event-limited trigger key", e.triggerWelcome, 403, "insufficient_scope"},
		} {
			if r.adminKeyOnly && k.code == "insufficient_scope" {
				k.code = "forbidden" // not a bot route: the admin key alone may call it
			}
			t.Run(r.method+" "+r.path+"/"+k.who, func(t *testing.T) {
				rid := "req-" + strings.ReplaceAll(k.who, " ", "-")
				resp := e.request(r.method, r.path, k.key, r.ctype, r.body, "X-Request-Id", rid)
				defer resp.Body.Close()
				require.Equal(t, k.status, resp.StatusCode)
				var eb apiErr
				require.NoError(t, json.NewDecoder(resp.Body).Decode(&eb))
				require.Equal(t, k.code, eb.Error.Code)
				require.Equal(t, rid, eb.Error.RequestID, "the error body names the request")
				require.Equal(t, rid, resp.Header.Get("X-Request-Id"))
			})
		}
	}
	require.Equal(t, before, e.snapshot(), "a refused request changes nothing")
	// The admin-key-only routes refuse the bot's own admin key too.
	e.do("GET", "/v1/bots", e.keys["acme"], "", "", 403)
	e.do("DELETE", "/v1/bots/acme", e.keys["acme"], "", "", 403)
	require.Equal(t, before, e.snapshot())
}

// TestTriggerScopeKey: a trigger-scope key triggers (dispatch, native,
// CloudEvents) and reads nothing; an event-limited one triggers only its
// events and no flow by name.
func TestTriggerScopeKey(t *testing.T) {
	e := newMgmtEnv(t)
	e.do("POST", "/v1/bots/acme/dispatch/WELCOME", e.trigger, "application/json", `{"from":"1"}`, 202)
	e.do("POST", "/v1/bots/acme/triggers", e.trigger, "application/json", `{"flow":"welcome","audience":{"users":["1"]}}`, 202)
	e.do("POST", "/v1/bots/acme/cloudevents", e.trigger, "application/cloudevents+json",
		`{"specversion":"1.0","id":"ce-1","source":"crm","type":"WELCOME","subject":"1"}`, 202)
	e.do("POST", "/v1/bots/acme/dispatch/WELCOME", e.triggerWelcome, "application/json", `{"from":"1"}`, 202)
	require.EqualValues(t, 4, e.queuedTriggers())

	for _, read := range []string{"/v1/bots/acme", "/v1/bots/acme/runs", "/v1/bots/acme/runs/run-1", "/v1/bots/acme/triggers/tr-1",
		"/v1/bots/acme/flows/welcome", "/v1/bots/acme/sandbox/messages", "/v1/bots/acme/webhooks"} {
		b := e.do("GET", read, e.trigger, "", "", 403)
		require.Contains(t, string(b), "insufficient_scope", read)
	}
	e.do("POST", "/v1/bots/acme/contacts/import", e.trigger, "application/x-ndjson", `{"channel":"sandbox","external_id":"x"}`, 403)
	e.do("POST", "/v1/bots/acme/triggers/tr-2/cancel", e.trigger, "", "", 403)
	e.do("PUT", "/v1/bots/acme/flows/x", e.trigger, "application/json", `{"steps":[]}`, 403)
	e.do("GET", "/public/v2/flow-runs/x", e.trigger, "", "", 403)

	e.do("PUT", "/v1/bots/acme/events/PAID", e.keys["acme"], "application/json", `{"flow":"welcome"}`, 201)
	for _, tc := range []struct{ method, path, ctype, body, field string }{
		{"POST", "/v1/bots/acme/dispatch/PAID", "application/json", `{"from":"1"}`, "event"},
		{"POST", "/v1/bots/acme/triggers", "application/json", `{"event":"PAID","audience":{"users":["1"]}}`, "event"},
		{"POST", "/v1/bots/acme/triggers", "application/json", `{"flow":"welcome","audience":{"users":["1"]}}`, ""},
		{"POST", "/v1/bots/acme/cloudevents", "application/cloudevents+json", `{"specversion":"1.0","id":"ce-2","source":"crm","type":"PAID","subject":"1"}`, "type"},
	} {
		resp := e.request(tc.method, tc.path, e.triggerWelcome, tc.ctype, tc.body)
		var eb apiErr
		require.NoError(t, json.NewDecoder(resp.Body).Decode(&eb))
		resp.Body.Close()
		require.Equal(t, 403, resp.StatusCode, tc.path+" "+tc.body)
		require.Equal(t, "event_not_allowed", eb.Error.Code)
		require.Equal(t, tc.field, eb.Error.Field)
	}
	require.EqualValues(t, 4, e.queuedTriggers(), "refused triggers queue nothing")
}

func TestKeysCreateListRevoke(t *testing.T) {
	e := newMgmtEnv(t)
	acme := e.keys["acme"]
	b := e.do("POST", "/v1/bots/acme/keys", acme, "application/json", `{"name":"ops","scope":"admin"}`, 201)
	var created struct {
		Key struct {
			ID, Prefix, Scope string
		} `json:"key"`
		APIKey string `json:"api_key"`
	}
	require.NoError(t, json.Unmarshal(b, &created))
	require.True(t, strings.HasPrefix(created.APIKey, created.Key.Prefix))
	require.Equal(t, "admin", created.Key.Scope)
	e.do("GET", "/v1/bots/acme/flows", created.APIKey, "", "", 200)

	list := e.do("GET", "/v1/bots/acme/keys", adminKey, "", "", 200)
	require.NotContains(t, string(list), created.APIKey, "the list never shows a key")
	require.NotContains(t, string(list), "hash")
	var keys struct {
		Keys []struct {
			ID, Name, Scope, Prefix string
			Events                  []string
			Revoked                 bool
			LastUsedAt              *time.Time `json:"last_used_at"`
		}
	}
	require.NoError(t, json.Unmarshal(list, &keys))
	require.Len(t, keys.Keys, 5, "the first key, the revoked, two trigger keys and ops")
	require.Equal(t, "admin", keys.Keys[0].Scope, "the bot's first key is an admin key")
	byName := map[string]int{}
	for i, k := range keys.Keys {
		byName[k.Name] = i
	}
	require.True(t, keys.Keys[byName["leaked"]].Revoked)
	require.Equal(t, []string{"WELCOME"}, keys.Keys[byName["crm-welcome"]].Events)
	require.Equal(t, "trigger", keys.Keys[byName["crm"]].Scope)
	// Last use is recorded in the background.
	require.Eventually(t, func() bool {
		ks, err := e.store.ListAPIKeys(context.Background(), "acme")
		require.NoError(t, err)
		for _, k := range ks {
			if k.ID == created.Key.ID {
				return k.LastUsedAt != nil
			}
		}
		return false
	}, 30*time.Second, 20*time.Millisecond)

	// Revoke: refused at once (this replica forgets its cache entry).
	b = e.do("DELETE", "/v1/bots/acme/keys/"+created.Key.ID, acme, "", "", 200)
	require.Contains(t, string(b), `"revoked":true`)
	e.do("GET", "/v1/bots/acme/flows", created.APIKey, "", "", 401)
	e.do("DELETE", "/v1/bots/acme/keys/"+created.Key.ID, acme, "", "", 200) // twice is harmless
	// Another bot cannot revoke acme's key, even naming its id.
	e.do("DELETE", "/v1/bots/globex/keys/"+e.revokedID, e.keys["globex"], "", "", 404)
}

func TestManagementBadInput(t *testing.T) {
	e := newMgmtEnv(t)
	acme := e.keys["acme"]
	before := e.snapshot()
	const js = "application/json"
	cases := []struct {
		name, method, path, ctype, body string
		status                          int
		code, field                     string
	}{
		{"key: not JSON", "POST", "/v1/bots/acme/keys", js, `{`, 400, "invalid_json", ""},
		{"key: text/plain", "POST", "/v1/bots/acme/keys", "text/plain", `{}`, 415, "", ""},
		{"key: no name", "POST", "/v1/bots/acme/keys", js, `{"scope":"admin"}`, 422, "required", "name"},
		{"key: no scope", "POST", "/v1/bots/acme/keys", js, `{"name":"x"}`, 422, "invalid", "scope"},
		{"key: unknown scope", "POST", "/v1/bots/acme/keys", js, `{"name":"x","scope":"owner"}`, 422, "invalid", "scope"},
		{"key: admin with events", "POST", "/v1/bots/acme/keys", js, `{"name":"x","scope":"admin","events":["WELCOME"]}`, 422, "invalid", "events"},
		{"key: bad event name", "POST", "/v1/bots/acme/keys", js, `{"name":"x","scope":"trigger","events":["no spaces"]}`, 422, "invalid", "events"},
		{"key: unknown field", "POST", "/v1/bots/acme/keys", js, `{"name":"x","scope":"admin","admin":true}`, 400, "invalid_json", ""},
		{"revoke: unknown key", "DELETE", "/v1/bots/acme/keys/nope", "", "", 404, "not_found", ""},
		{"bot: unknown channel", "PATCH", "/v1/bots/acme", js, `{"channels":{"fax":{}}}`, 422, "invalid", "channels.fax"},
		{"bot: unknown channel field", "PATCH", "/v1/bots/acme", js, `{"channels":{"telegram":{"bot_token":"t","tokn":"x"}}}`, 422, "invalid", "channels.telegram"},
		{"bot: whatsapp without token", "PATCH", "/v1/bots/acme", js, `{"channels":{"whatsapp":{"phone_number_id":"1","app_secret":"s"}}}`, 422, "missing_field", "channels.whatsapp.access_token"},
		{"bot: telegram token of the wrong shape", "PATCH", "/v1/bots/acme", js, `{"channels":{"telegram":{"bot_token":"t"}}}`, 422, "invalid", "channels.telegram.bot_token"},
		{"bot: rcs without agent", "PATCH", "/v1/bots/acme", js, `{"channels":{"rcs":{"client_token":"c"}}}`, 422, "missing_field", "channels.rcs.agent_id"},
		{"bot: negative rate", "PATCH", "/v1/bots/acme", js, `{"channels":{"telegram":{"bot_token":"t","rate_per_second":-1}}}`, 422, "invalid", "channels.telegram.rate_per_second"},
		{"bot: default not configured", "PATCH", "/v1/bots/acme", js, `{"channels":{"default_channel":"rcs"}}`, 422, "channel_not_configured", "channels.default_channel"},
		{"bot: unknown default", "PATCH", "/v1/bots/acme", js, `{"channels":{"default_channel":"fax"}}`, 422, "invalid", "channels.default_channel"},
		{"bot: empty name", "PATCH", "/v1/bots/acme", js, `{"name":""}`, 422, "invalid", "name"},
		{"bot: not JSON", "PATCH", "/v1/bots/acme", js, `[`, 400, "invalid_json", ""},
		{"bot: unknown field", "PATCH", "/v1/bots/acme", js, `{"id":"other"}`, 400, "invalid_json", ""},
		{"flow: unknown", "DELETE", "/v1/bots/acme/flows/nope", "", "", 404, "not_found", ""},
		{"flow: in use by an event", "DELETE", "/v1/bots/acme/flows/welcome", "", "", 409, "flow_in_use", ""},
		{"flow: version 0", "GET", "/v1/bots/acme/flows/welcome/versions/0", "", "", 422, "invalid", "version"},
		{"flow: version not a number", "GET", "/v1/bots/acme/flows/welcome/versions/x", "", "", 422, "invalid", "version"},
		{"flow: unknown version", "GET", "/v1/bots/acme/flows/welcome/versions/9", "", "", 404, "not_found", ""},
		{"flow: activate unknown version", "POST", "/v1/bots/acme/flows/welcome/versions/9/activate", "", "", 404, "not_found", ""},
		{"flow: download bad format", "GET", "/v1/bots/acme/flows/welcome/definition?format=xml", "", "", 422, "invalid", "format"},
		{"flow: download unknown", "GET", "/v1/bots/acme/flows/nope/definition", "", "", 404, "not_found", ""},
		{"event: unknown", "DELETE", "/v1/bots/acme/events/NOPE", "", "", 404, "not_found", ""},
		{"triggers: bad status", "GET", "/v1/bots/acme/triggers?status=paused-ish", "", "", 422, "invalid", "status"},
		{"triggers: bad since", "GET", "/v1/bots/acme/triggers?since=yesterday", "", "", 422, "invalid", "since"},
		{"triggers: bad limit", "GET", "/v1/bots/acme/triggers?limit=0", "", "", 422, "invalid", "limit"},
		{"triggers: bad cursor", "GET", "/v1/bots/acme/triggers?cursor=%21%21", "", "", 422, "invalid", "cursor"},
		{"triggers: bad event", "GET", "/v1/bots/acme/triggers?event=a%20b", "", "", 422, "invalid", "event"},
		{"contacts: value without attribute", "GET", "/v1/bots/acme/contacts?value=1", "", "", 422, "invalid", "value"},
		{"contacts: unknown channel", "GET", "/v1/bots/acme/contacts?channel=fax", "", "", 422, "invalid", "channel"},
		{"contacts: bad cursor", "GET", "/v1/bots/acme/contacts?cursor=%25", "", "", 422, "invalid", "cursor"},
		{"contacts: bad limit", "GET", "/v1/bots/acme/contacts?limit=5000", "", "", 422, "invalid", "limit"},
		{"contact: unknown", "GET", "/v1/bots/acme/contacts/nope", "", "", 404, "not_found", ""},
		{"contact: another bot's", "GET", "/v1/bots/acme/contacts/c-globex", "", "", 404, "not_found", ""},
		{"contact: patch nothing", "PATCH", "/v1/bots/acme/contacts/c-ann", js, `{}`, 422, "invalid", ""},
		{"contact: patch not JSON", "PATCH", "/v1/bots/acme/contacts/c-ann", js, `{"attributes":`, 400, "invalid_json", ""},
		{"contact: patch unknown field", "PATCH", "/v1/bots/acme/contacts/c-ann", js, `{"opted_out":true}`, 400, "invalid_json", ""},
		{"contact: patch attributes not an object", "PATCH", "/v1/bots/acme/contacts/c-ann", js, `{"attributes":[1]}`, 400, "invalid_json", ""},
		{"contact: patch empty attribute name", "PATCH", "/v1/bots/acme/contacts/c-ann", js, `{"attributes":{"":1}}`, 422, "invalid", "attributes"},
		{"contact: patch empty name", "PATCH", "/v1/bots/acme/contacts/c-ann", js, `{"name":""}`, 422, "invalid", "name"},
		{"contact: patch text/plain", "PATCH", "/v1/bots/acme/contacts/c-ann", "text/plain", `{"name":"x"}`, 415, "", ""},
		{"contact: patch unknown", "PATCH", "/v1/bots/acme/contacts/nope", js, `{"name":"x"}`, 404, "not_found", ""},
		{"contact: delete unknown", "DELETE", "/v1/bots/acme/contacts/nope", "", "", 404, "not_found", ""},
		{"contact: delete another bot's", "DELETE", "/v1/bots/acme/contacts/c-globex", "", "", 404, "not_found", ""},
		{"contact: opt-out unknown", "POST", "/v1/bots/acme/contacts/nope/opt-out", "", "", 404, "not_found", ""},
		{"contact: messages unknown", "GET", "/v1/bots/acme/contacts/nope/messages", "", "", 404, "not_found", ""},
		{"contact: messages bad limit", "GET", "/v1/bots/acme/contacts/c-ann/messages?limit=x", "", "", 422, "invalid", "limit"},
		{"run: messages unknown", "GET", "/v1/bots/acme/runs/nope/messages", "", "", 404, "not_found", ""},
		{"unknown bot", "GET", "/v1/bots/nobody/flows", "", "", 404, "not_found", ""},
		{"rotate: short secret", "POST", "/v1/bots/acme/webhooks/wh_1/rotate-secret", js, `{"secret":"short"}`, 422, "invalid", "secret"},
		{"rotate: no secret", "POST", "/v1/bots/acme/webhooks/wh_1/rotate-secret", js, `{}`, 422, "required", "secret"},
		{"rotate: not JSON", "POST", "/v1/bots/acme/webhooks/wh_1/rotate-secret", js, `{`, 400, "invalid_json", ""},
		{"rotate: unknown field", "POST", "/v1/bots/acme/webhooks/wh_1/rotate-secret", js, `{"secret":"second-secret-0123456789","keep":1}`, 400, "invalid_json", ""},
		{"rotate: text/plain", "POST", "/v1/bots/acme/webhooks/wh_1/rotate-secret", "text/plain", `{"secret":"second-secret-0123456789"}`, 415, "", ""},
		{"rotate: unknown subscription", "POST", "/v1/bots/acme/webhooks/nope/rotate-secret", js, `{"secret":"second-secret-0123456789"}`, 404, "not_found", ""},
		{"drop previous: unknown subscription", "DELETE", "/v1/bots/acme/webhooks/nope/previous-secret", "", "", 404, "not_found", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			resp := e.request(tc.method, tc.path, acme, tc.ctype, tc.body)
			defer resp.Body.Close()
			require.Equal(t, tc.status, resp.StatusCode)
			require.Equal(t, "application/json; charset=utf-8", resp.Header.Get("Content-Type"))
			var eb apiErr
			require.NoError(t, json.NewDecoder(resp.Body).Decode(&eb))
			require.NotEmpty(t, eb.Error.Message)
			require.NotEmpty(t, eb.Error.RequestID)
			if tc.code != "" {
				require.Equal(t, tc.code, eb.Error.Code)
			}
			require.Equal(t, tc.field, eb.Error.Field)
		})
	}
	require.Equal(t, before, e.snapshot(), "a refused request changes nothing")
}

func TestBotsListAndUpdate(t *testing.T) {
	e := newMgmtEnv(t)
	b := e.do("GET", "/v1/bots", adminKey, "", "", 200)
	var list struct{ Bots []struct{ ID string } }
	require.NoError(t, json.Unmarshal(b, &list))
	require.Len(t, list.Bots, 2)
	require.Equal(t, "acme", list.Bots[0].ID)

	acme := e.keys["acme"]
	e.do("PATCH", "/v1/bots/acme", acme, "application/json",
		`{"name":"Acme Inc","channels":{"whatsapp":{"phone_number_id":"100","access_token":"SECRET-1","app_secret":"SECRET-APP","rate_per_second":40}}}`, 200)
	// Rotating the token names only the token; the rest stays.
	b = e.do("PATCH", "/v1/bots/acme", acme, "application/json",
		`{"channels":{"whatsapp":{"access_token":"SECRET-2"},"default_channel":"whatsapp"}}`, 200)
	require.NotContains(t, string(b), "SECRET", "secrets are write-only")
	require.Contains(t, string(b), `"access_token_set":true`)
	bot, err := e.store.GetBot(context.Background(), "acme")
	require.NoError(t, err)
	require.Equal(t, "Acme Inc", bot.Name)
	require.Equal(t, "SECRET-2", bot.Channels.WhatsApp.AccessToken)
	require.Equal(t, "SECRET-APP", bot.Channels.WhatsApp.AppSecret)
	require.Equal(t, "100", bot.Channels.WhatsApp.PhoneNumberID)
	require.EqualValues(t, 40, bot.Channels.WhatsApp.RatePerSecond)
	require.Equal(t, "whatsapp", bot.Channels.DefaultChannel)
	b = e.do("GET", "/v1/bots/acme", acme, "", "", 200)
	require.NotContains(t, string(b), "SECRET")
	require.Contains(t, string(b), `"rate_per_second":40`)

	// The default channel is used by the next trigger at once.
	e.do("POST", "/v1/bots/acme/triggers", acme, "application/json", `{"flow":"welcome","audience":{"users":["+31612345678"]}}`, 202)

	// A channel set to null is removed; it cannot stay the default.
	e.do("PATCH", "/v1/bots/acme", acme, "application/json", `{"channels":{"whatsapp":null}}`, 422)
	e.do("PATCH", "/v1/bots/acme", acme, "application/json", `{"channels":{"whatsapp":null,"default_channel":"sandbox"}}`, 200)
	bot, err = e.store.GetBot(context.Background(), "acme")
	require.NoError(t, err)
	require.Nil(t, bot.Channels.WhatsApp)
	// The admin key may update any bot.
	e.do("PATCH", "/v1/bots/globex", adminKey, "application/json", `{"name":"Globex"}`, 200)
}

func TestFlowsEventsTriggersManagement(t *testing.T) {
	e := newMgmtEnv(t)
	acme := e.keys["acme"]
	e.do("PUT", "/v1/bots/acme/flows/welcome", acme, "application/json", `{"steps":[{"id":"hi","type":"send","text":"Hello v2"}]}`, 200)
	e.do("PUT", "/v1/bots/acme/flows/extra", acme, "application/yaml", "steps:\n  - id: a\n    type: send\n    text: Extra\n", 200)
	b := e.do("GET", "/v1/bots/acme/flows", acme, "", "", 200)
	var flows struct {
		Flows []struct {
			ID      string
			Version int
		}
	}
	require.NoError(t, json.Unmarshal(b, &flows))
	require.Len(t, flows.Flows, 2)
	require.Equal(t, "extra", flows.Flows[0].ID)
	require.Equal(t, 2, flows.Flows[1].Version)

	b = e.do("GET", "/v1/bots/acme/flows/welcome/versions/1", acme, "", "", 200)
	require.Contains(t, string(b), "Hi {{ name }}")
	// Rollback: version 1's definition becomes version 3.
	b = e.do("POST", "/v1/bots/acme/flows/welcome/versions/1/activate", acme, "", "", 200)
	require.Contains(t, string(b), `"version":3`)
	require.Contains(t, string(b), `"activated_from":1`)
	latest, err := e.store.GetFlow(context.Background(), "acme", "welcome", 0)
	require.NoError(t, err)
	require.Equal(t, 3, latest.Version)
	require.Contains(t, string(latest.Definition), "Hi {{ name }}")

	// YAML download: block style, and the same document twice.
	resp := e.request("GET", "/v1/bots/acme/flows/welcome/definition?version=2", acme, "", "")
	y := readAll(t, resp)
	require.Equal(t, 200, resp.StatusCode)
	require.Equal(t, "application/yaml", resp.Header.Get("Content-Type"))
	require.Equal(t, "2", resp.Header.Get("X-Flow-Version"))
	require.Contains(t, y, "steps:\n")
	require.Contains(t, y, "text: Hello v2\n")
	require.NotContains(t, y, "{")
	// The download uploads back as the same flow.
	e.do("PUT", "/v1/bots/acme/flows/copy", acme, "application/yaml", y, 200)
	cp, err := e.store.GetFlow(context.Background(), "acme", "copy", 0)
	require.NoError(t, err)
	v2, err := e.store.GetFlow(context.Background(), "acme", "welcome", 2)
	require.NoError(t, err)
	require.JSONEq(t, string(v2.Definition), string(cp.Definition))
	resp = e.request("GET", "/v1/bots/acme/flows/welcome/definition?format=json", acme, "", "")
	j := readAll(t, resp)
	require.JSONEq(t, string(latest.Definition), j)

	// Events: list, delete (the dispatch of a deleted event is a 404), and
	// then the flow can go.
	b = e.do("GET", "/v1/bots/acme/events", acme, "", "", 200)
	require.Contains(t, string(b), `"name":"WELCOME"`)
	e.do("DELETE", "/v1/bots/acme/events/WELCOME", acme, "", "", 200)
	e.do("POST", "/v1/bots/acme/dispatch/WELCOME", acme, "application/json", `{"from":"1"}`, 404)
	e.do("DELETE", "/v1/bots/acme/flows/welcome", acme, "", "", 200)
	e.do("GET", "/v1/bots/acme/flows/welcome", acme, "", "", 404)

	// Triggers: filters and paging.
	b = e.do("GET", "/v1/bots/acme/triggers", acme, "", "", 200)
	var tl struct {
		Triggers []struct{ ID string }
		Next     string `json:"next_cursor"`
	}
	require.NoError(t, json.Unmarshal(b, &tl))
	require.Len(t, tl.Triggers, 2)
	require.Equal(t, "tr-2", tl.Triggers[0].ID, "newest first")
	b = e.do("GET", "/v1/bots/acme/triggers?limit=1", acme, "", "", 200)
	require.NoError(t, json.Unmarshal(b, &tl))
	require.Equal(t, "tr-2", tl.Triggers[0].ID)
	require.NotEmpty(t, tl.Next)
	b = e.do("GET", "/v1/bots/acme/triggers?limit=1&cursor="+tl.Next, acme, "", "", 200)
	require.NoError(t, json.Unmarshal(b, &tl))
	require.Equal(t, "tr-1", tl.Triggers[0].ID)
	require.Empty(t, tl.Next)
	b = e.do("GET", "/v1/bots/acme/triggers?status=done&event=WELCOME&since="+testclock.Date(2026, 5, 1, 10, 0, 0).Format(time.RFC3339), acme, "", "", 200)
	require.NoError(t, json.Unmarshal(b, &tl))
	require.Len(t, tl.Triggers, 1)
	require.Equal(t, "tr-1", tl.Triggers[0].ID)
	b = e.do("GET", "/v1/bots/acme/triggers?since="+testclock.Date(2026, 5, 1, 10, 0, 30).Format(time.RFC3339), acme, "", "", 200)
	require.NoError(t, json.Unmarshal(b, &tl))
	require.Len(t, tl.Triggers, 1)
	require.Equal(t, "tr-2", tl.Triggers[0].ID)
}

func TestContactsManagement(t *testing.T) {
	e := newMgmtEnv(t)
	acme := e.keys["acme"]
	ids := func(path string) []string {
		t.Helper()
		var r struct {
			Contacts []struct{ ID string }
		}
		require.NoError(t, json.Unmarshal(e.do("GET", path, acme, "", "", 200), &r))
		out := []string{}
		for _, c := range r.Contacts {
			out = append(out, c.ID)
		}
		return out
	}
	require.Equal(t, []string{"c-ann", "c-bob"}, ids("/v1/bots/acme/contacts"))
	require.Equal(t, []string{"c-ann"}, ids("/v1/bots/acme/contacts?external_id_prefix=%2B3161"))
	require.Equal(t, []string{"c-bob"}, ids("/v1/bots/acme/contacts?name=BO"))
	require.Equal(t, []string{"c-ann"}, ids("/v1/bots/acme/contacts?attribute=plan&value=Premium"))
	require.Equal(t, []string{"c-bob"}, ids("/v1/bots/acme/contacts?limit=1&cursor="+store.ContactCursor("c-ann")))

	b := e.do("GET", "/v1/bots/acme/contacts/c-ann", acme, "", "", 200)
	var got struct {
		Contact struct {
			LastRequest map[string]any `json:"last_request"`
		}
		RecentRuns []struct{ ID string } `json:"recent_runs"`
	}
	require.NoError(t, json.Unmarshal(b, &got))
	require.Equal(t, "A-1", got.Contact.LastRequest["order"])
	require.Len(t, got.RecentRuns, 1)
	require.Equal(t, "run-1", got.RecentRuns[0].ID)

	// Messages with provider status and error.
	for _, path := range []string{"/v1/bots/acme/contacts/c-ann/messages", "/v1/bots/acme/runs/run-1/messages"} {
		b = e.do("GET", path, acme, "", "", 200)
		var ms struct {
			Messages []struct{ ID, Status, Error string }
		}
		require.NoError(t, json.Unmarshal(b, &ms))
		require.Len(t, ms.Messages, 1, path)
		require.Equal(t, "failed", ms.Messages[0].Status)
		require.Contains(t, ms.Messages[0].Error, "131026")
	}

	e.do("PATCH", "/v1/bots/acme/contacts/c-ann", acme, "application/json", `{"name":"Ann B","attributes":{"plan":"Gold","age":30}}`, 200)
	c, err := e.store.GetContact(context.Background(), "acme", "c-ann")
	require.NoError(t, err)
	require.Equal(t, "Ann B", c.Name)
	require.Equal(t, "Gold", c.Attributes["plan"])
	require.EqualValues(t, 30, c.Attributes["age"])

	e.do("POST", "/v1/bots/acme/contacts/c-ann/opt-out", acme, "", "", 200)
	e.do("POST", "/v1/bots/acme/contacts/c-ann/opt-out", acme, "", "", 200)
	c, err = e.store.GetContact(context.Background(), "acme", "c-ann")
	require.NoError(t, err)
	require.True(t, c.OptedOut)
	e.do("POST", "/v1/bots/acme/contacts/c-ann/opt-in", acme, "", "", 200)
	c, err = e.store.GetContact(context.Background(), "acme", "c-ann")
	require.NoError(t, err)
	require.False(t, c.OptedOut)

	e.do("DELETE", "/v1/bots/acme/contacts/c-ann", acme, "", "", 200)
	e.do("GET", "/v1/bots/acme/contacts/c-ann", acme, "", "", 404)
	e.do("GET", "/v1/bots/acme/runs/run-1", acme, "", "", 404)
	_, err = e.store.GetMessage(context.Background(), "acme", "msg-1")
	require.ErrorIs(t, err, store.ErrNotFound)
	e.do("DELETE", "/v1/bots/acme/contacts/c-ann", acme, "", "", 404)
}

func TestIdempotencyKeyReuse(t *testing.T) {
	e := newMgmtEnv(t)
	acme := e.keys["acme"]
	e.do("POST", "/v1/bots/acme/dispatch/WELCOME", acme, "application/json", `{"from":"1","plan":"A"}`, 202, "Idempotency-Key", "order-7")
	// The same request again (spacing and key order aside) is a retry.
	b := e.do("POST", "/v1/bots/acme/dispatch/WELCOME", acme, "application/json", `{ "plan":"A", "from":"1" }`, 202, "Idempotency-Key", "order-7")
	require.Contains(t, string(b), `"duplicate":true`)
	// Another request with the key is refused, and queues nothing.
	b = e.do("POST", "/v1/bots/acme/dispatch/WELCOME", acme, "application/json", `{"from":"1","plan":"B"}`, 422, "Idempotency-Key", "order-7")
	require.Contains(t, string(b), "idempotency_key_reused")
	e.do("POST", "/v1/bots/acme/triggers", acme, "application/json", `{"flow":"welcome","audience":{"users":["1"]}}`, 422, "Idempotency-Key", "order-7")
	// The key in the native body counts as the header does.
	e.do("POST", "/v1/bots/acme/triggers", acme, "application/json", `{"flow":"welcome","audience":{"users":["1"]},"idempotency_key":"order-7"}`, 422)
	require.EqualValues(t, 1, e.queuedTriggers())
	// Keys are per bot.
	e.do("POST", "/v1/bots/globex/dispatch/WELCOME", e.keys["globex"], "application/json", `{"from":"1","plan":"B"}`, 202, "Idempotency-Key", "order-7")
}

func TestRequestID(t *testing.T) {
	e := newEnv(t)
	resp := e.request("GET", "/healthz", "", "", "")
	resp.Body.Close()
	require.Len(t, resp.Header.Get("X-Request-Id"), 36, "a fresh UUID when the caller sends none")
	resp = e.request("GET", "/healthz", "", "", "", "X-Request-Id", "abc-123")
	resp.Body.Close()
	require.Equal(t, "abc-123", resp.Header.Get("X-Request-Id"))
	resp = e.request("GET", "/healthz", "", "", "", "X-Request-Id", strings.Repeat("x", 200))
	resp.Body.Close()
	require.Len(t, resp.Header.Get("X-Request-Id"), 36, "an overlong id is replaced")
	resp = e.request("GET", "/v1/bots/acme/nope", "", "", "", "X-Request-Id", "r-404")
	var eb apiErr
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&eb))
	resp.Body.Close()
	require.Equal(t, "r-404", eb.Error.RequestID)
	require.Equal(t, http.StatusNotFound, resp.StatusCode)
}

func readAll(t *testing.T, resp *http.Response) string {
	t.Helper()
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return string(b)
}

// TestRevokedKeyRefusedOnEveryReplica: two ingress replicas share a store
// with a long cache TTL; a key used (and so cached) on replica B and
// revoked through replica A is refused by B once the key cache entry ends
// (at most MaxKeyCacheTTL, 4 s; TestKeyCacheTTLCapped proves the cap).
func TestRevokedKeyRefusedOnEveryReplica(t *testing.T) {
	e := newEnv(t)
	h, err := ingress.NewHandler(ingress.Config{AdminKey: adminKey, CacheTTL: time.Hour},
		ingress.Deps{Store: e.store, Bus: e.bus, CompileFlow: app.CompileFlow})
	require.NoError(t, err)
	b := httptest.NewServer(h)
	t.Cleanup(b.Close)
	body := e.do("POST", "/v1/bots/acme/keys", e.keys["acme"], "application/json", `{"name":"leak","scope":"admin"}`, 201)
	var created struct {
		Key    struct{ ID string } `json:"key"`
		APIKey string              `json:"api_key"`
	}
	require.NoError(t, json.Unmarshal(body, &created))
	get := func() int {
		req, err := http.NewRequest("GET", b.URL+"/v1/bots/acme/flows", nil)
		require.NoError(t, err)
		req.Header.Set("Authorization", "Bearer "+created.APIKey)
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		resp.Body.Close()
		return resp.StatusCode
	}
	require.Equal(t, 200, get(), "replica B caches the key")
	e.do("DELETE", "/v1/bots/acme/keys/"+created.Key.ID, e.keys["acme"], "", "", 200)
	revoked := time.Now()
	require.Eventually(t, func() bool { return get() == 401 }, 30*time.Second, 50*time.Millisecond)
	t.Logf("replica B refused the revoked key after %v", time.Since(revoked).Round(time.Millisecond))
}

// TestRateLimitPerKey: with a limit, answers carry RateLimit-* headers and
// a key over its burst gets 429 with Retry-After; another key is not held back.
func TestRateLimitPerKey(t *testing.T) {
	e := newEnv(t)
	h, err := ingress.NewHandler(ingress.Config{AdminKey: adminKey, CacheTTL: -1, RateLimit: 0.001, RateBurst: 2},
		ingress.Deps{Store: e.store, Bus: e.bus, CompileFlow: app.CompileFlow})
	require.NoError(t, err)
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	call := func(key string, bot ...string) *http.Response {
		b := "acme"
		if len(bot) > 0 {
			b = bot[0]
		}
		req, err := http.NewRequest("POST", srv.URL+"/v1/bots/"+b+"/dispatch/WELCOME", strings.NewReader(`{"from":"1"}`))
		require.NoError(t, err)
		req.Header.Set("Authorization", "Bearer "+key)
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		resp.Body.Close()
		return resp
	}
	before := e.queuedTriggers()
	for i, rem := range []string{"1", "0"} {
		r := call(e.keys["acme"])
		require.Equal(t, 202, r.StatusCode, i)
		require.Equal(t, "2", r.Header.Get("RateLimit-Limit"))
		require.Equal(t, rem, r.Header.Get("RateLimit-Remaining"))
		require.NotEmpty(t, r.Header.Get("RateLimit-Reset"))
	}
	r := call(e.keys["acme"])
	require.Equal(t, 429, r.StatusCode)
	require.Equal(t, "1000", r.Header.Get("Retry-After"), "one token per 1000 s")
	require.Equal(t, "0", r.Header.Get("RateLimit-Remaining"))
	require.Equal(t, before+2, e.queuedTriggers(), "the refused request queued nothing")
	require.Equal(t, 202, call(e.keys["globex"], "globex").StatusCode, "another key has its own bucket")
}

// TestDeleteBot: DELETE /v1/bots/{bot} answers 202, revokes the bot's keys
// at once, reports "deleting", and removes the bot with all its data in
// the background; another bot is untouched.
func TestDeleteBot(t *testing.T) {
	e := newMgmtEnv(t)
	acme := e.keys["acme"]
	e.do("DELETE", "/v1/bots/nobody", adminKey, "", "", 404)
	b := e.do("DELETE", "/v1/bots/acme", adminKey, "", "", 202)
	require.Contains(t, string(b), `"status":"deleting"`)
	e.do("GET", "/v1/bots/acme/flows", acme, "", "", 401) // its keys are revoked
	// Again while it runs: 202 (or 404 once it is done).
	again := e.request("DELETE", "/v1/bots/acme", adminKey, "", "")
	again.Body.Close()
	require.Contains(t, []int{202, 404}, again.StatusCode)
	require.Eventually(t, func() bool {
		resp := e.request("GET", "/v1/bots/acme", adminKey, "", "")
		resp.Body.Close()
		return resp.StatusCode == 404
	}, 30*time.Second, 20*time.Millisecond)
	ctx := context.Background()
	_, err := e.store.GetContact(ctx, "acme", "c-ann")
	require.ErrorIs(t, err, store.ErrNotFound)
	_, err = e.store.GetRun(ctx, "acme", "run-1")
	require.ErrorIs(t, err, store.ErrNotFound)
	_, err = e.store.GetMessage(ctx, "acme", "msg-1")
	require.ErrorIs(t, err, store.ErrNotFound)
	_, err = e.store.GetTrigger(ctx, "acme", "tr-1")
	require.ErrorIs(t, err, store.ErrNotFound)
	keys, err := e.store.ListAPIKeys(ctx, "acme")
	require.NoError(t, err)
	require.Empty(t, keys)
	ds, err := e.store.BotDeletions(ctx)
	require.NoError(t, err)
	require.Empty(t, ds)
	// globex is untouched; the id can be used again.
	e.do("GET", "/v1/bots/globex/contacts/c-globex", e.keys["globex"], "", "", 200)
	e.createBot("acme")
}

func TestWebhookSecretRotation(t *testing.T) {
	e := newMgmtEnv(t)
	acme := e.keys["acme"]
	b := e.do("POST", "/v1/bots/acme/webhooks/wh_1/rotate-secret", acme, "application/json", `{"secret":"second-secret-0123456789"}`, 200)
	require.NotContains(t, string(b), "secret-0123456789", "secrets are never shown")
	subs, err := e.store.ListSubscriptions(context.Background(), "acme")
	require.NoError(t, err)
	require.Equal(t, "second-secret-0123456789", subs[0].Secret)
	require.Equal(t, "first-secret-0123456789", subs[0].PreviousSecret)
	e.do("DELETE", "/v1/bots/acme/webhooks/wh_1/previous-secret", acme, "", "", 200)
	subs, err = e.store.ListSubscriptions(context.Background(), "acme")
	require.NoError(t, err)
	require.Empty(t, subs[0].PreviousSecret)
	// Another bot cannot rotate acme's subscription.
	e.do("POST", "/v1/bots/globex/webhooks/wh_1/rotate-secret", e.keys["globex"], "application/json", `{"secret":"third-secret-0123456789"}`, 404)
}

// TestResponsesMatchOpenAPI validates real answers of the management API
// (and a few older routes) against their schemas in /openapi.json, with
// the same validator as TestOpenAPIDocumentValid.
func TestResponsesMatchOpenAPI(t *testing.T) {
	e := newMgmtEnv(t)
	spec, err := os.ReadFile("openapi.json")
	require.NoError(t, err)
	doc, err := libopenapi.NewDocument(spec)
	require.NoError(t, err)
	v, errs := validator.NewValidator(doc)
	require.Empty(t, errs)
	acme := e.keys["acme"]
	for _, r := range []struct{ method, path, key, ctype, body string }{
		{"GET", "/v1/bots", adminKey, "", ""},
		{"GET", "/v1/bots/acme", acme, "", ""},
		{"PATCH", "/v1/bots/acme", acme, "application/json", `{"name":"Acme"}`},
		{"POST", "/v1/bots/acme/keys", acme, "application/json", `{"name":"x","scope":"trigger","events":["WELCOME"]}`},
		{"GET", "/v1/bots/acme/keys", acme, "", ""},
		{"GET", "/v1/bots/acme/flows", acme, "", ""},
		{"GET", "/v1/bots/acme/flows/welcome", acme, "", ""},
		{"GET", "/v1/bots/acme/flows/welcome/versions/1", acme, "", ""},
		{"POST", "/v1/bots/acme/flows/welcome/versions/1/activate", acme, "", ""},
		{"GET", "/v1/bots/acme/events", acme, "", ""},
		{"GET", "/v1/bots/acme/triggers?status=done&limit=5", acme, "", ""},
		{"GET", "/v1/bots/acme/triggers/tr-1", acme, "", ""},
		{"GET", "/v1/bots/acme/contacts?attribute=plan&value=Premium", acme, "", ""},
		{"GET", "/v1/bots/acme/contacts/c-ann", acme, "", ""},
		{"PATCH", "/v1/bots/acme/contacts/c-ann", acme, "application/json", `{"attributes":{"plan":"Gold"}}`},
		{"POST", "/v1/bots/acme/contacts/c-ann/opt-out", acme, "", ""},
		{"GET", "/v1/bots/acme/contacts/c-ann/messages", acme, "", ""},
		{"GET", "/v1/bots/acme/runs/run-1/messages", acme, "", ""},
		{"GET", "/v1/bots/acme/runs", acme, "", ""},
		{"GET", "/v1/bots/acme/runs/run-1", acme, "", ""},
		{"POST", "/v1/bots/acme/webhooks/wh_1/rotate-secret", acme, "application/json", `{"secret":"second-secret-0123456789"}`},
		{"GET", "/v1/bots/acme/flows/nope/versions/1", acme, "", ""}, // an error answer
		{"DELETE", "/v1/bots/acme/events/WELCOME", acme, "", ""},
		{"DELETE", "/v1/bots/acme/contacts/c-bob", acme, "", ""},
	} {
		resp := e.request(r.method, r.path, r.key, r.ctype, r.body)
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		require.NoError(t, err)
		require.Less(t, resp.StatusCode, 500, "%s %s", r.method, r.path)
		req, err := http.NewRequest(r.method, r.path, strings.NewReader(r.body))
		require.NoError(t, err)
		if r.ctype != "" {
			req.Header.Set("Content-Type", r.ctype)
		}
		resp.Body = io.NopCloser(bytes.NewReader(body))
		ok, verrs := v.ValidateHttpResponse(req, resp)
		for _, ve := range verrs {
			t.Errorf("%s %s → %d: %s: %s", r.method, r.path, resp.StatusCode, ve.Message, ve.Reason)
			for _, se := range ve.SchemaValidationErrors {
				t.Errorf("  %s (%s)", se.Reason, se.FieldPath)
			}
		}
		require.True(t, ok, "%s %s: %s", r.method, r.path, body)
	}
}
