package compat

import (
	"encoding/json"
	"net/url"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/flowgate/flowgate/shared/events"
)

const ctJSON = "application/json"

// The request bodies below are the seed documents' examples as written
// (Botmother's are shown there without their braces).

func TestBotmotherSeedTelegramUser(t *testing.T) {
	req, err := ParseBotmother(ctJSON, []byte(`{
  "platform": "tg",
  "users": [ "123456" ],
  "data": {}
}`))
	require.Nil(t, err)
	require.Equal(t, events.ChannelTelegram, req.Channel)
	require.Equal(t, events.Audience{Users: []string{"123456"}, Platform: events.ChannelTelegram}, req.Audience)
	require.NotNil(t, req.Data, "data {} replaces last_request")
	require.Empty(t, req.Data)
}

func TestBotmotherSeedEveryone(t *testing.T) {
	req, err := ParseBotmother(ctJSON, []byte(`{
  "platform": "any",
  "users": "everyone",
  "data": {}
}`))
	require.Nil(t, err)
	require.Equal(t, "", req.Channel, "any platform: no single channel")
	require.Equal(t, events.Audience{Everyone: true, Platform: PlatformAny}, req.Audience)
	require.Equal(t, map[string]any{}, req.Data)
}

func TestBotmotherSeedUsersBM(t *testing.T) {
	req, err := ParseBotmother(ctJSON, []byte(`{
  "users_bm": [ "5c517b7773515eaha3078e2f" ],
  "data": {}
}`))
	require.Nil(t, err)
	require.Equal(t, events.Audience{UsersBM: []string{"5c517b7773515eaha3078e2f"}, Platform: PlatformAny}, req.Audience)
}

func TestBotmotherDataAndNumbers(t *testing.T) {
	req, err := ParseBotmother("application/json; charset=utf-8", []byte(`{
  "platform": "tg", "users": [123456, "987654321", 5000000000000000001, "123456"],
  "data": {"order": 12345678901234567, "amount": 9.5, "items": [{"sku": "A"}], "vip": true}
}`))
	require.Nil(t, err)
	require.Equal(t, []string{"123456", "987654321", "5000000000000000001"}, req.Audience.Users,
		"numbers kept exactly, duplicates dropped")
	require.Equal(t, int64(12345678901234567), req.Data["order"])
	require.Equal(t, 9.5, req.Data["amount"])
	require.Equal(t, true, req.Data["vip"])

	req, err = ParseBotmother(ctJSON, []byte(`{"platform":"wa","users":["31612345678","+31 6 1234 5678"],"data":{"a":1}}`))
	require.Nil(t, err)
	require.Equal(t, events.ChannelWhatsApp, req.Channel)
	require.Equal(t, []string{"+31612345678"}, req.Audience.Users)
}

func TestEngatiV1Seed(t *testing.T) {
	// curl --location --request POST '.../bot_api/v1.0/customer/<cid>/bot/<bot_key>/flow/<flow_key>?user_phone_no=<phone number>&resultcode=123&operationid=test123'
	q, perr := url.ParseQuery("user_phone_no=+31612345678&resultcode=123&operationid=test123")
	require.NoError(t, perr)
	req, err := ParseEngatiV1(q)
	require.Nil(t, err)
	require.Equal(t, events.ChannelWhatsApp, req.Channel, "v1 defaults to whatsapp")
	require.Equal(t, events.Audience{Users: []string{"+31612345678"}, Platform: events.ChannelWhatsApp}, req.Audience)
	require.Equal(t, "+31612345678", req.Name, "no name: the phone number is the name")
	want := map[string]any{"resultcode": "123", "operationid": "test123", NameAttribute: "+31612345678"}
	require.Equal(t, want, req.Attributes)
	require.Equal(t, want, req.Data)
}

func TestEngatiV2SeedWhatsApp(t *testing.T) {
	// The seed's body has "user_phone_no": <to number>, a bare JSON number.
	req, err := ParseEngatiV2(ctJSON, []byte(`{ "user_channel": "whatsapp", "user_phone_no": 919876543210, "attribute_1": "this is parameter 1", "attribute_2": "this is parameter 2" }`))
	require.Nil(t, err)
	require.Equal(t, events.ChannelWhatsApp, req.Channel)
	require.Equal(t, []string{"+919876543210"}, req.Audience.Users)
	require.Equal(t, "+919876543210", req.Name)
	want := map[string]any{
		"attribute_1": "this is parameter 1", "attribute_2": "this is parameter 2",
		NameAttribute: "+919876543210",
	}
	require.Equal(t, want, req.Attributes)
	require.Equal(t, want, req.Data)
	req.Data["x"] = 1
	require.NotContains(t, req.Attributes, "x", "Data and Attributes are separate maps")

	// The first example form: quoted number and attribute values.
	req, err = ParseEngatiV2(ctJSON, []byte(`{ "user_channel": "whatsapp", "user_phone_no": "+919876543210", "attribute 1": "value1", "attribute 2": "value2", "user_name": "Asha" }`))
	require.Nil(t, err)
	require.Equal(t, "Asha", req.Name)
	require.Equal(t, "Asha", req.Attributes[NameAttribute])
	require.Equal(t, "value1", req.Attributes["attribute 1"])
	require.Equal(t, "Asha", req.Attributes["user_name"])
}

func TestEngatiV2SeedRCS(t *testing.T) {
	req, err := ParseEngatiV2(ctJSON, []byte(`{ "user_channel": "rcs", "user_phone_no": "14155552671", "attribute_1": "this is parameter 1", "attribute_2": "this is parameter 2" }`))
	require.Nil(t, err)
	require.Equal(t, events.ChannelRCS, req.Channel)
	require.Equal(t, events.Audience{Users: []string{"+14155552671"}, Platform: events.ChannelRCS}, req.Audience)
	require.Equal(t, "+14155552671", req.Attributes[NameAttribute])
}

const recruboThreadSeed = `{
"data": {
"type": "messageThreads",
"attributes": {
"channel": "whatsapp",
"identifier": "31612345678"
}
}
}`

const recruboFlowRunSeed = `{
"data": {
"type": "flowRuns",
"attributes": {
"flowId": "eb3c92e9-2548-4e4c-95d5-adfb94270c3f",
"messageThreadId": "7125853f-26ac-4a65-9044-cab092806249",
"state": {},
"initialMessage": {
"type": "template",
"template": {
"id": "7fqa9715-5e7c-4328-ab47-bb9e595438c9",
"components": [
{
"type": "body",
"parameters": [
{
"type": "text",
"text": "John"
}
]
}
]
}
}
}
}
}`

func TestRecruboSeed(t *testing.T) {
	thread, err := ParseRecruboThread("application/vnd.api+json", []byte(recruboThreadSeed))
	require.Nil(t, err)
	require.Equal(t, Thread{Channel: events.ChannelWhatsApp, Identifier: "+31612345678"}, thread)

	run, err := ParseRecruboFlowRun("application/vnd.api+json", []byte(recruboFlowRunSeed))
	require.Nil(t, err)
	require.Equal(t, "eb3c92e9-2548-4e4c-95d5-adfb94270c3f", run.FlowID)
	require.Equal(t, "7125853f-26ac-4a65-9044-cab092806249", run.MessageThreadID)
	require.Equal(t, map[string]any{}, run.State)
	require.Equal(t, &events.Content{Type: events.ContentTemplate, Template: &events.Template{
		Name: "7fqa9715-5e7c-4328-ab47-bb9e595438c9",
		Components: []map[string]any{{
			"type":       "body",
			"parameters": []any{map[string]any{"type": "text", "text": "John"}},
		}},
	}}, run.InitialMessage)

	req := run.Request(thread)
	require.Equal(t, events.ChannelWhatsApp, req.Channel)
	require.Equal(t, []string{"+31612345678"}, req.Audience.Users)
	require.Equal(t, run.FlowID, req.FlowID)
	require.Equal(t, run.InitialMessage, req.InitialMessage)

	// The response has the seed's shape.
	at := time.Date(2024, 4, 16, 7, 5, 39, 0, time.UTC) // testclock: data, not a clock
	body, rerr := RenderRecruboFlowRun(FlowRunView{
		ID: "cbb3835f-137e-49ed-b5cb-e72eefde7da2", CreatedAt: at, UpdatedAt: at,
		FlowID: run.FlowID, MessageThreadID: run.MessageThreadID, State: run.State,
		InitialMessage: run.InitialMessage, Status: "created",
	})
	require.NoError(t, rerr)
	require.JSONEq(t, `{"data":{"id":"cbb3835f-137e-49ed-b5cb-e72eefde7da2","type":"flowRuns","attributes":{
		"createdAt":"2024-04-16T07:05:39+00:00","updatedAt":"2024-04-16T07:05:39+00:00",
		"flowId":"eb3c92e9-2548-4e4c-95d5-adfb94270c3f","messageThreadId":"7125853f-26ac-4a65-9044-cab092806249",
		"state":{},"initialMessage":{"type":"template","template":{"id":"7fqa9715-5e7c-4328-ab47-bb9e595438c9",
		"components":[{"type":"body","parameters":[{"type":"text","text":"John"}]}]}},
		"context":{},"status":"created","cost":0}}}`, string(body))

	tb := RenderRecruboThread("7125853f-26ac-4a65-9044-cab092806249", thread, at)
	require.JSONEq(t, `{"data":{"id":"7125853f-26ac-4a65-9044-cab092806249","type":"messageThreads","attributes":{
		"createdAt":"2024-04-16T07:05:39+00:00","updatedAt":"2024-04-16T07:05:39+00:00",
		"channel":"whatsapp","identifier":"+31612345678"}}}`, string(tb))
}

func TestRenderRecruboFlowRunWithoutMessage(t *testing.T) {
	at := time.Date(2024, 4, 16, 9, 5, 39, 0, time.FixedZone("CEST", 2*3600)) // testclock: data, not a clock
	body, err := RenderRecruboFlowRun(FlowRunView{ID: "r1", CreatedAt: at, UpdatedAt: at, FlowID: "f", MessageThreadID: "t",
		Context: map[string]any{"a": 1}, Status: "running", Cost: 0.05})
	require.NoError(t, err)
	require.JSONEq(t, `{"data":{"id":"r1","type":"flowRuns","attributes":{
		"createdAt":"2024-04-16T07:05:39+00:00","updatedAt":"2024-04-16T07:05:39+00:00",
		"flowId":"f","messageThreadId":"t","state":{},"initialMessage":null,
		"context":{"a":1},"status":"running","cost":0.05}}}`, string(body))
}

func TestRenderErrors(t *testing.T) {
	e := &Error{Status: 422, Code: CodeMissingField, Field: "/data/attributes/flowId", Message: "/data/attributes/flowId is required"}
	require.JSONEq(t, `{"errors":[{"status":"422","code":"missing_field","title":"Unprocessable Entity",
		"detail":"/data/attributes/flowId is required","source":{"pointer":"/data/attributes/flowId"}}]}`,
		string(RenderJSONAPIError(e)))
	require.JSONEq(t, `{"errors":[{"status":"415","code":"unsupported_media_type","title":"Unsupported Media Type",
		"detail":"x","source":{"header":"Content-Type"}}]}`,
		string(RenderJSONAPIError(&Error{Status: 415, Code: CodeUnsupportedMediaType, Field: "Content-Type", Message: "x"})))
	require.JSONEq(t, `{"errors":[{"status":"400","code":"invalid_json","title":"Bad Request","detail":"y"}]}`,
		string(RenderJSONAPIError(&Error{Status: 400, Code: CodeInvalidJSON, Message: "y"})))
	require.JSONEq(t, `{"errors":[{"status":"500","code":"internal_error","title":"Internal Server Error","detail":"internal error"}]}`,
		string(RenderJSONAPIError(nil)))
	require.JSONEq(t, `{"error":{"code":"invalid_phone","field":"from","message":"bad"}}`,
		string(RenderError(&Error{Status: 422, Code: CodeInvalidPhone, Field: "from", Message: "bad"})))
	require.Equal(t, `422 invalid_phone (from): bad`, (&Error{Status: 422, Code: CodeInvalidPhone, Field: "from", Message: "bad"}).Error())
}

func TestBuilderBotSeeds(t *testing.T) {
	cases := []struct {
		event, body string
		from, name  string
		data        map[string]any
	}{
		{"WELCOME_NEW_USER", `{"from":"1234567890","name":"John Doe","plan":"Premium","referralCode":"REF123"}`,
			"1234567890", "John Doe", map[string]any{"name": "John Doe", "plan": "Premium", "referralCode": "REF123"}},
		{"REGISTER_FLOW", `{"from":"5491122334455","name":"Ana"}`,
			"5491122334455", "Ana", map[string]any{"name": "Ana"}},
		{"PAYMENT_RECEIVED", `{"from":"31612345678","name":"Customer","amount":49.99,"orderId":"ORD-1001"}`,
			"31612345678", "Customer", map[string]any{"name": "Customer", "amount": 49.99, "orderId": "ORD-1001"}},
		{"SAMPLES", `{"from":31612345678}`, "31612345678", "", map[string]any{}},
	}
	for _, c := range cases {
		t.Run(c.event, func(t *testing.T) {
			req, err := ParseDispatch(ctJSON, []byte(c.body))
			require.Nil(t, err)
			require.Equal(t, "", req.Channel, "the route or bot decides the channel")
			require.Equal(t, []string{c.from}, req.Audience.Users)
			require.Equal(t, c.name, req.Name)
			require.Equal(t, c.data, req.Data)
		})
	}
}

func TestResolveChannel(t *testing.T) {
	req, err := ParseDispatch(ctJSON, []byte(`{"from":"31612345678","name":"Customer"}`))
	require.Nil(t, err)
	require.Nil(t, req.ResolveChannel(events.ChannelWhatsApp))
	require.Equal(t, events.ChannelWhatsApp, req.Channel)
	require.Equal(t, events.Audience{Users: []string{"+31612345678"}, Platform: events.ChannelWhatsApp}, req.Audience)
	// Already resolved: kept.
	require.Nil(t, req.ResolveChannel(events.ChannelTelegram))
	require.Equal(t, events.ChannelWhatsApp, req.Channel)

	// The BuilderBot seed's placeholder "1234567890" is no phone number.
	req, err = ParseDispatch(ctJSON, []byte(`{"from":"1234567890"}`))
	require.Nil(t, err)
	perr := req.ResolveChannel(events.ChannelWhatsApp)
	require.NotNil(t, perr)
	require.Equal(t, CodeInvalidPhone, perr.Code)
	require.Equal(t, "from", perr.Field)
	require.Equal(t, "", req.Channel, "a failed resolve leaves the request unchanged")
	require.Nil(t, req.ResolveChannel(events.ChannelSandbox))
	require.Equal(t, []string{"1234567890"}, req.Audience.Users)

	req, err = ParseCloudEventData([]byte(`{"name":"x"}`), "abc")
	require.Nil(t, err)
	perr = req.ResolveChannel(events.ChannelTelegram)
	require.NotNil(t, perr)
	require.Equal(t, "subject", perr.Field)
	require.Equal(t, CodeUnknownChannel, req.ResolveChannel("fax").Code)

	req, err = ParseNative(ctJSON, []byte(`{"event":"E","audience":{"users":["31612345678","+31612345678"]}}`))
	require.Nil(t, err)
	require.Nil(t, req.ResolveChannel(events.ChannelRCS))
	require.Equal(t, []string{"+31612345678"}, req.Audience.Users)

	req, err = ParseNative(ctJSON, []byte(`{"event":"E","audience":{"users":["31612345678","0612345678"]}}`))
	require.Nil(t, err)
	perr = req.ResolveChannel(events.ChannelWhatsApp)
	require.NotNil(t, perr)
	require.Equal(t, "audience.users[1]", perr.Field)

	// Platform "any" stays any: its contacts are on several channels.
	req, err = ParseBotmother(ctJSON, []byte(`{"platform":"any","users":"everyone","data":{}}`))
	require.Nil(t, err)
	require.Nil(t, req.ResolveChannel(events.ChannelWhatsApp))
	require.Equal(t, "", req.Channel)
	require.Equal(t, PlatformAny, req.Audience.Platform)
}

func TestCloudEventData(t *testing.T) {
	req, err := ParseCloudEventData([]byte(`{"from":"31612345678","name":"John","plan":"Premium"}`), "")
	require.Nil(t, err)
	require.Equal(t, []string{"31612345678"}, req.Audience.Users)
	require.Equal(t, "John", req.Name)
	require.Equal(t, map[string]any{"name": "John", "plan": "Premium"}, req.Data)

	req, err = ParseCloudEventData([]byte(`{"from":"111","n":1}`), " 222 ")
	require.Nil(t, err)
	require.Equal(t, []string{"222"}, req.Audience.Users, "subject wins over data.from")

	req, err = ParseCloudEventData(nil, "+31612345678")
	require.Nil(t, err)
	require.Equal(t, []string{"+31612345678"}, req.Audience.Users)
	require.Nil(t, req.Data)
}

func TestNativeForms(t *testing.T) {
	req, err := ParseNative(ctJSON, []byte(`{
		"event": "WELCOME_NEW_USER", "channel": "whatsapp",
		"audience": {"users": ["+31612345678", "14155552671"]},
		"data": {"plan": "Premium"}, "idempotency_key": "order-1001",
		"initial_message": {"type": "template", "template": {"name": "welcome", "language": "en", "body_params": ["John"]}}
	}`))
	require.Nil(t, err)
	require.Equal(t, "WELCOME_NEW_USER", req.Event)
	require.Equal(t, events.ChannelWhatsApp, req.Channel)
	require.Equal(t, events.Audience{Users: []string{"+31612345678", "+14155552671"}, Platform: events.ChannelWhatsApp}, req.Audience)
	require.Equal(t, map[string]any{"plan": "Premium"}, req.Data)
	require.Equal(t, "order-1001", req.IdempotencyKey)
	require.Equal(t, &events.Content{Type: "template", Template: &events.Template{Name: "welcome", Language: "en", BodyParams: []string{"John"}}}, req.InitialMessage)

	req, err = ParseNative(ctJSON, []byte(`{"flow":"onboarding","audience":{"platform":"telegram","filter":"plan == \"Premium\" && city == \"Lima\""}}`))
	require.Nil(t, err)
	require.Equal(t, "onboarding", req.FlowID)
	require.Equal(t, events.ChannelTelegram, req.Channel, "a platform is the channel")
	require.Equal(t, events.Audience{Everyone: true, Platform: events.ChannelTelegram, Filter: `plan == "Premium" && city == "Lima"`}, req.Audience)
	require.Nil(t, req.Data)

	req, err = ParseNative(ctJSON, []byte(`{"event":"E","channel":"rcs","audience":{"everyone":true,"platform":"any","filter":"age > 18"}}`))
	require.Nil(t, err)
	require.Equal(t, events.Audience{Everyone: true, Platform: events.ChannelRCS, Filter: "age > 18"}, req.Audience)

	req, err = ParseNative(ctJSON, []byte(`{"event":"E","audience":{"users":"everyone","platform":"any"}}`))
	require.Nil(t, err)
	require.Equal(t, "", req.Channel)
	require.Equal(t, events.Audience{Everyone: true, Platform: PlatformAny}, req.Audience)

	req, err = ParseNative(ctJSON, []byte(`{"event":"E","audience":{"users_bm":["c-1","c_2","c-1"],"platform":"tg"}}`))
	require.Nil(t, err)
	require.Equal(t, events.Audience{UsersBM: []string{"c-1", "c_2"}, Platform: events.ChannelTelegram}, req.Audience)

	req, err = ParseNative(ctJSON, []byte(`{"event":"E","channel":"telegram","name":"Ana","audience":{"users":[" 0042 "]}}`))
	require.Nil(t, err)
	require.Equal(t, []string{"42"}, req.Audience.Users)
	require.Equal(t, "Ana", req.Name)

	// A request must be publishable as a trigger.
	_, merr := json.Marshal(events.Trigger{Audience: req.Audience, Data: req.Data, InitialMessage: req.InitialMessage})
	require.NoError(t, merr)
}
