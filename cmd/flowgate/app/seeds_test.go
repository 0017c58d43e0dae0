package app_test

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	cloudevents "github.com/cloudevents/sdk-go/v2"
	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	rcsdouble "github.com/flowgate/flowgate/shared/providerdouble/rcs"
	tgdouble "github.com/flowgate/flowgate/shared/providerdouble/telegram"
	wadouble "github.com/flowgate/flowgate/shared/providerdouble/whatsapp"
)

const admin = "e2e-admin-key-0123456789"

// createBot creates a bot with channel accounts and returns its API key.
func createBot(c client, id string, channels map[string]any) string {
	body, _ := json.Marshal(map[string]any{"id": id, "name": id, "channels": channels})
	return c.must("POST", "/v1/bots", admin, string(body), 201)["api_key"].(string)
}

// TestSeedBotmother replays the Botmother External Event examples as written.
func TestSeedBotmother(t *testing.T) {
	tg := tgdouble.Start(t, tgdouble.WithUnlimited())
	const token = "123456:ABC-DEF"
	tg.AddBot(token)
	d, c := startDev(t, t.TempDir())
	defer func() { require.NoError(t, d.Stop()) }()
	key := createBot(c, "bm", map[string]any{"telegram": map[string]any{"bot_token": token, "webhook_secret": "s3cret", "api_base": tg.URL}})
	c.must("PUT", "/v1/bots/bm/flows/screen", key, `{"steps":[{"id":"s","type":"send","text":"Your order has shipped"}]}`, 200)
	ev := c.must("PUT", "/v1/bots/bm/events/order_shipped", key, `{"flow":"screen"}`, 201)["event"].(map[string]any)
	url := ev["trigger_url"].(string)
	require.True(t, strings.HasPrefix(url, "/hooks/botmother/bm/"), url)

	// "starts the bot execution for a user with platform_id = 123456 inside the Telegram platform"
	c.must("POST", url, "", `{"platform": "tg", "users": [ "123456" ], "data": {}}`, 202)
	require.Eventually(t, func() bool { return len(tg.AcceptedTo("123456")) == 1 }, 10*time.Second, 20*time.Millisecond)
	contact, err := d.Store.GetContactByExternalID(context.Background(), "bm", "telegram", "123456")
	require.NoError(t, err)
	require.NotNil(t, contact.LastRequest, "data is stored as last_request")

	// POST by bm_id: the contact's internal id.
	c.must("POST", url, "", `{"users_bm": [ "`+contact.ID+`" ], "data": {"order": "A-1"}}`, 202)
	require.Eventually(t, func() bool { return len(tg.AcceptedTo("123456")) == 2 }, 10*time.Second, 20*time.Millisecond)
	contact, err = d.Store.GetContactByExternalID(context.Background(), "bm", "telegram", "123456")
	require.NoError(t, err)
	require.Equal(t, "A-1", contact.LastRequest["order"])

	// A rotated token: the old URL stops working, the new one works.
	rotated := c.must("PUT", "/v1/bots/bm/events/order_shipped?rotate_token=true", key, `{"flow":"screen"}`, 200)["event"].(map[string]any)
	code, _ := c.call("POST", url, "", `{"platform": "tg", "users": [ "123456" ], "data": {}}`)
	require.Equal(t, http.StatusNotFound, code)
	c.must("POST", rotated["trigger_url"].(string), "", `{"platform": "tg", "users": [ "123456" ], "data": {}}`, 202)
	require.Eventually(t, func() bool { return len(tg.AcceptedTo("123456")) == 3 }, 10*time.Second, 20*time.Millisecond)

	// "starts the bot execution for all users of all your bot platforms":
	// a second Telegram user and a sandbox user exist; everyone gets it once.
	c.must("POST", rotated["trigger_url"].(string), "", `{"platform": "tg", "users": [ "654321" ], "data": {}}`, 202)
	require.Eventually(t, func() bool { return len(tg.AcceptedTo("654321")) == 1 }, 10*time.Second, 20*time.Millisecond)
	c.must("POST", "/v1/bots/bm/sandbox/messages", key, `{"from":"sandbox-user","text":"hi"}`, 202)
	require.Eventually(t, func() bool {
		_, err := d.Store.GetContactByExternalID(context.Background(), "bm", "sandbox", "sandbox-user")
		return err == nil
	}, 10*time.Second, 20*time.Millisecond)
	c.must("POST", rotated["trigger_url"].(string), "", `{"platform": "any", "users": "everyone", "data": {}}`, 202)
	require.Eventually(t, func() bool {
		return len(tg.AcceptedTo("123456")) == 4 && len(tg.AcceptedTo("654321")) == 2 && len(c.sandbox("bm", key, "sandbox-user")) == 1
	}, 15*time.Second, 20*time.Millisecond)
	time.Sleep(300 * time.Millisecond)
	require.Len(t, tg.AcceptedTo("123456"), 4, "exactly once each")
}

// TestSeedEngati replays Engati's API Trigger examples (v1 and v2, WhatsApp
// and RCS) against the provider doubles, with the seed's decision node.
func TestSeedEngati(t *testing.T) {
	wa := wadouble.New()
	defer wa.Close()
	rcs := rcsdouble.Start(t)
	saKey, err := rcs.NewServiceAccountKey("flowgate-agent")
	require.NoError(t, err)
	d, c := startDev(t, t.TempDir())
	defer func() { require.NoError(t, d.Stop()) }()
	key := createBot(c, "eng", map[string]any{
		"whatsapp": map[string]any{"phone_number_id": "1055", "access_token": wadouble.DefaultToken, "app_secret": "app-secret",
			"verify_token": "v", "api_base": wa.APIBase()},
		"rcs": map[string]any{"agent_id": "flowgate-agent", "service_account_json": string(saKey), "client_token": "ct", "api_base": rcs.URL},
	})
	// WhatsApp: a template opens the conversation; RCS: free text. The
	// decision node routes VIPs ("if user_type = vip → VIP flow").
	c.must("PUT", "/v1/bots/eng/flows/wa_welcome", key, `{"steps":[
	  {"id":"route","type":"branch","conditions":[{"when":"user_type == \"vip\"","next":"vip"}],"default":"standard"},
	  {"id":"vip","type":"template","template":"vip_welcome","language":"en","params":["{{ user_user_name }}"],"next":"done"},
	  {"id":"standard","type":"template","template":"welcome","language":"en","params":["{{ user_user_name }}"]},
	  {"id":"done","type":"end"}]}`, 200)
	c.must("PUT", "/v1/bots/eng/flows/rcs_welcome", key, `{"steps":[
	  {"id":"hi","type":"send","text":"Hello {{ user_user_name }}: {{ attribute_1 }}"}]}`, 200)

	basic := func(path, body string, want int) {
		req, _ := http.NewRequest("POST", c.base+path, strings.NewReader(body))
		req.Header.Set("Authorization", "Basic "+key)
		if body != "" {
			req.Header.Set("Content-Type", "application/json")
		}
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		resp.Body.Close()
		require.Equal(t, want, resp.StatusCode, path)
	}
	// Version 2, WhatsApp, the seed's body (a phone number with country code, no "+").
	basic("/bot_api/v2.0/customer/42/bot/eng/flow/wa_welcome",
		`{"user_channel": "whatsapp", "user_phone_no": "31612345678", "attribute_1": "this is parameter 1", "attribute_2": "this is parameter 2"}`, 202)
	// A VIP, passed as an attribute.
	basic("/bot_api/v2.0/customer/42/bot/eng/flow/wa_welcome",
		`{"user_channel": "whatsapp", "user_phone_no": 14155552671, "user_type": "vip", "user_name": "Ana"}`, 202)
	// Version 1: the same data as query parameters.
	basic("/bot_api/v1.0/customer/42/bot/eng/flow/wa_welcome?user_phone_no=447911123456&resultcode=123&operationid=test123", "", 202)
	// Version 2, RCS.
	basic("/bot_api/v2.0/customer/42/bot/eng/flow/rcs_welcome",
		`{"user_channel": "rcs", "user_phone_no": "+14155552671", "attribute_1": "this is parameter 1", "attribute_2": "this is parameter 2"}`, 202)

	require.Eventually(t, func() bool { return len(wa.Accepted()) == 3 && len(rcs.Accepted()) == 1 }, 15*time.Second, 20*time.Millisecond)
	byTo := map[string]map[string]any{}
	for _, m := range wa.Accepted() {
		byTo[strings.TrimPrefix(m.To, "+")] = m.Map()
	}
	tmpl := func(to string) (string, string) {
		m := byTo[to]
		require.NotNil(t, m, "message to %s", to)
		tp := m["template"].(map[string]any)
		comps := tp["components"].([]any)
		param := comps[0].(map[string]any)["parameters"].([]any)[0].(map[string]any)["text"].(string)
		return tp["name"].(string), param
	}
	name, param := tmpl("31612345678")
	require.Equal(t, "welcome", name)
	require.Equal(t, "+31612345678", param, "no name given: the phone number is the name")
	name, param = tmpl("14155552671")
	require.Equal(t, "vip_welcome", name, "the decision node sent the VIP to the VIP branch")
	require.Equal(t, "Ana", param)
	name, _ = tmpl("447911123456")
	require.Equal(t, "welcome", name)
	require.Equal(t, "Hello +14155552671: this is parameter 1", rcs.Accepted()[0].Text, "no name: the phone number is the name")

	// The user was created with the attributes; the phone became the name.
	ct, err := d.Store.GetContactByExternalID(context.Background(), "eng", "whatsapp", "+31612345678")
	require.NoError(t, err)
	require.Equal(t, "+31612345678", ct.Name)
	require.Equal(t, "this is parameter 2", ct.Attributes["attribute_2"])
	v1, err := d.Store.GetContactByExternalID(context.Background(), "eng", "whatsapp", "+447911123456")
	require.NoError(t, err)
	require.Equal(t, "test123", v1.Attributes["operationid"])

	// Credentials: none, wrong, another bot's, and a bot whose flow is unknown.
	other := createBot(c, "other", nil)
	for _, tc := range []struct {
		auth string
		want int
	}{{"", 401}, {"Basic nope", 401}, {"Basic " + other, 403}, {"Bearer " + key, 401}} {
		req, _ := http.NewRequest("POST", c.base+"/bot_api/v2.0/customer/42/bot/eng/flow/wa_welcome",
			strings.NewReader(`{"user_channel":"whatsapp","user_phone_no":"31612345678"}`))
		req.Header.Set("Content-Type", "application/json")
		if tc.auth != "" {
			req.Header.Set("Authorization", tc.auth)
		}
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		resp.Body.Close()
		require.Equal(t, tc.want, resp.StatusCode, tc.auth)
	}
	basic("/bot_api/v2.0/customer/42/bot/eng/flow/missing", `{"user_channel":"whatsapp","user_phone_no":"31612345678"}`, 404)
	basic("/bot_api/v2.0/customer/42/bot/eng/flow/wa_welcome", `{"user_channel":"whatsapp","user_phone_no":"12"}`, 422)
	time.Sleep(300 * time.Millisecond)
	require.Len(t, wa.Accepted(), 3, "refused requests send nothing")
}

// TestSeedRecruboAPI replays the Recrubo thread + flow-run requests and
// checks the JSON:API answers (the WhatsApp conversation itself is covered
// by the channel tests; here the thread is on the sandbox channel too).
func TestSeedRecruboAPI(t *testing.T) {
	d, c := startDev(t, t.TempDir())
	defer func() { require.NoError(t, d.Stop()) }()
	key := createBot(c, "rec", nil)
	c.must("PUT", "/v1/bots/rec/flows/eb3c92e9-2548-4e4c-95d5-adfb94270c3f", key,
		`{"steps":[{"id":"q","type":"ask","text":"Hi! Are you still looking for a job?","attribute":"answer"},{"id":"t","type":"send","text":"Thanks: {{ answer }}"}]}`, 200)

	jsonapi := func(method, path, body string, want int) map[string]any {
		req, _ := http.NewRequest(method, c.base+path, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+key)
		if body != "" {
			req.Header.Set("Content-Type", "application/vnd.api+json")
		}
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		require.Equal(t, want, resp.StatusCode, path)
		require.Equal(t, "application/vnd.api+json", resp.Header.Get("Content-Type"))
		var out map[string]any
		require.NoError(t, json.NewDecoder(resp.Body).Decode(&out))
		return out
	}
	thread := jsonapi("POST", "/public/v2/message-threads",
		`{"data": {"type": "messageThreads", "attributes": {"channel": "sandbox", "identifier": "31612345678"}}}`, 201)
	threadID := thread["data"].(map[string]any)["id"].(string)
	_, err := uuid.Parse(threadID)
	require.NoError(t, err, "thread ids are UUIDs, as in the seed: %q", threadID)
	run := jsonapi("POST", "/public/v2/flow-runs", `{"data": {"type": "flowRuns", "attributes": {
	  "flowId": "eb3c92e9-2548-4e4c-95d5-adfb94270c3f", "messageThreadId": "`+threadID+`", "state": {"source": "seed"},
	  "initialMessage": {"type": "template", "template": {"id": "7fqa9715-5e7c-4328-ab47-bb9e595438c9",
	    "components": [{"type": "body", "parameters": [{"type": "text", "text": "John"}]}]}}}}}`, 202)
	data := run["data"].(map[string]any)
	attrs := data["attributes"].(map[string]any)
	require.Equal(t, "flowRuns", data["type"])
	require.Equal(t, "created", attrs["status"])
	require.EqualValues(t, 0, attrs["cost"])
	require.Equal(t, threadID, attrs["messageThreadId"])
	id := data["id"].(string)
	_, err = uuid.Parse(id)
	require.NoError(t, err, "flow run ids are UUIDs: %q", id)

	// The run waits for the reply: in Recrubo's words it is running. GET
	// shows what the POST accepted.
	var got map[string]any
	require.Eventually(t, func() bool {
		got = jsonapi("GET", "/public/v2/flow-runs/"+id, "", 200)["data"].(map[string]any)["attributes"].(map[string]any)
		return got["status"] == "running"
	}, 10*time.Second, 20*time.Millisecond)
	for _, k := range []string{"flowId", "messageThreadId", "state", "initialMessage"} {
		require.Equal(t, attrs[k], got[k], "GET %s as the POST accepted it", k)
	}
	require.NotNil(t, got["initialMessage"])
	require.Equal(t, map[string]any{"source": "seed"}, got["state"])
	c.must("POST", "/v1/bots/rec/sandbox/messages", key, `{"from":"31612345678","text":"yes"}`, 202)
	require.Eventually(t, func() bool {
		got := jsonapi("GET", "/public/v2/flow-runs/"+id, "", 200)
		return got["data"].(map[string]any)["attributes"].(map[string]any)["status"] == "completed"
	}, 10*time.Second, 20*time.Millisecond)
	// The run is stored completed once its message is queued; the sandbox
	// channel stores the message a moment later.
	want := []string{"Hi! Are you still looking for a job?", "Thanks: yes"}
	require.Eventually(t, func() bool { return len(c.sandbox("rec", key, "31612345678")) >= len(want) }, 10*time.Second, 20*time.Millisecond)
	require.Equal(t, want, texts(c.sandbox("rec", key, "31612345678")))

	// JSON:API errors: wrong media type, wrong type, unknown thread, admin key, no key.
	for _, tc := range []struct {
		ctype, body string
		want        int
		pointer     string
	}{
		{"application/json", `{}`, 415, ""},
		{"application/vnd.api+json", `{"data":{"type":"messageThreads","attributes":{}}}`, 409, ""},
		{"application/vnd.api+json", `{"data":{"type":"flowRuns","attributes":{"flowId":"eb3c92e9-2548-4e4c-95d5-adfb94270c3f","messageThreadId":"000000000000000000000000"}}}`, 422, "/data/attributes/messageThreadId"},
		{"application/vnd.api+json", `{"data":{"type":"flowRuns","attributes":{"flowId":"nope","messageThreadId":"` + threadID + `"}}}`, 422, "/data/attributes/flowId"},
		{"application/vnd.api+json", `{"data":`, 400, ""},
	} {
		req, _ := http.NewRequest("POST", c.base+"/public/v2/flow-runs", strings.NewReader(tc.body))
		req.Header.Set("Authorization", "Bearer "+key)
		req.Header.Set("Content-Type", tc.ctype)
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		var doc struct {
			Errors []struct {
				Status string
				Source struct{ Pointer string }
			}
		}
		require.NoError(t, json.NewDecoder(resp.Body).Decode(&doc))
		resp.Body.Close()
		require.Equal(t, tc.want, resp.StatusCode, tc.body)
		require.Len(t, doc.Errors, 1)
		if tc.pointer != "" {
			require.Equal(t, tc.pointer, doc.Errors[0].Source.Pointer)
		}
	}
	for _, auth := range []string{"", "Bearer " + admin, "Bearer nope"} {
		req, _ := http.NewRequest("GET", c.base+"/public/v2/flow-runs/"+id, nil)
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		resp.Body.Close()
		require.Contains(t, []int{401, 403}, resp.StatusCode, auth)
	}
}

// TestCloudEventsSDKSender sends with the CloudEvents Go SDK's HTTP client
// in binary and structured mode.
func TestCloudEventsSDKSender(t *testing.T) {
	d, c := startDev(t, t.TempDir())
	defer func() { require.NoError(t, d.Stop()) }()
	key := setupAcme(c)
	for i, mode := range []string{"binary", "structured"} {
		p, err := cloudevents.NewHTTP(cloudevents.WithTarget(c.base+"/v1/bots/acme/cloudevents"),
			cloudevents.WithHeader("Authorization", "Bearer "+key))
		require.NoError(t, err)
		cl, err := cloudevents.NewClient(p, cloudevents.WithTimeNow())
		require.NoError(t, err)
		e := cloudevents.NewEvent()
		e.SetID("evt-" + mode)
		e.SetSource("https://crm.example/hooks")
		e.SetType("WELCOME_NEW_USER")
		e.SetSubject("ce-user-" + mode)
		require.NoError(t, e.SetData(cloudevents.ApplicationJSON, map[string]any{"name": "Eve", "plan": "Gold"}))
		ctx := context.Background()
		if mode == "structured" {
			ctx = cloudevents.WithEncodingStructured(ctx)
		} else {
			ctx = cloudevents.WithEncodingBinary(ctx)
		}
		res := cl.Send(ctx, e)
		require.True(t, cloudevents.IsACK(res), "%s: %v", mode, res)
		// The same event again is recognised by source + id: no second run.
		res = cl.Send(ctx, e)
		require.True(t, cloudevents.IsACK(res))
		require.Eventually(t, func() bool { return len(c.sandbox("acme", key, "ce-user-"+mode)) == 2 }, 10*time.Second, 20*time.Millisecond)
		time.Sleep(200 * time.Millisecond)
		require.Equal(t, []string{"Welcome Eve! 🎉", "You've signed up for the Gold plan."}, texts(c.sandbox("acme", key, "ce-user-"+mode)), "mode %d", i)
	}
	// An unknown type and a non-CloudEvent body are refused.
	code, _ := c.call("POST", "/v1/bots/acme/cloudevents", key, `{"specversion":"1.0","id":"x","source":"s","type":"NOPE","subject":"u"}`,
		"Content-Type", "application/cloudevents+json")
	require.Equal(t, 422, code)
	code, _ = c.call("POST", "/v1/bots/acme/cloudevents", key, `{"from":"u"}`)
	require.Equal(t, 415, code)
	// Batch mode: two events, one trigger each.
	code, b := c.call("POST", "/v1/bots/acme/cloudevents", key,
		`[{"specversion":"1.0","id":"b1","source":"s","type":"WELCOME_NEW_USER","subject":"batch-1","datacontenttype":"application/json","data":{"name":"B1","plan":"x"}},
		  {"specversion":"1.0","id":"b2","source":"s","type":"WELCOME_NEW_USER","subject":"batch-2","datacontenttype":"application/json","data":{"name":"B2","plan":"y"}}]`,
		"Content-Type", "application/cloudevents-batch+json")
	require.Equal(t, 202, code, string(b))
	require.Eventually(t, func() bool {
		return len(c.sandbox("acme", key, "batch-1")) == 2 && len(c.sandbox("acme", key, "batch-2")) == 2
	}, 10*time.Second, 20*time.Millisecond)
}
