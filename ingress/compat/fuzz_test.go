package compat

import (
	"encoding/json"
	"net/url"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/flowgate/flowgate/shared/events"
	"github.com/flowgate/flowgate/shared/provider"
)

// Fuzz targets: every parser must refuse or accept any input without
// panicking, refusals must be well-formed, and acceptances must hold the
// invariants the ingress and orchestrator rely on.

var fuzzContentTypes = []string{ctJSON, ctAPI, "application/json; charset=utf-8", "text/plain", ""}

func addBodies(f *testing.F, withCT bool, bodies ...string) {
	for _, b := range bodies {
		if withCT {
			for _, ct := range fuzzContentTypes[:2] {
				f.Add(ct, []byte(b))
			}
		} else {
			f.Add([]byte(b))
		}
	}
	if withCT {
		f.Add("text/plain", []byte(`{}`))
		f.Add("application/json; charset=latin1", []byte(`{}`))
	}
}

func checkError(t *testing.T, err *Error) {
	t.Helper()
	switch err.Status {
	case 400, 409, 413, 415, 422:
	default:
		t.Fatalf("status %d: %v", err.Status, err)
	}
	if err.Code == "" || err.Message == "" {
		t.Fatalf("incomplete error %#v", err)
	}
	var doc struct {
		Errors []map[string]any `json:"errors"`
	}
	if jerr := json.Unmarshal(RenderJSONAPIError(err), &doc); jerr != nil || len(doc.Errors) != 1 ||
		doc.Errors[0]["status"] != strconv.Itoa(err.Status) {
		t.Fatalf("JSON:API error rendering of %v: %v %v", err, jerr, doc)
	}
	var native map[string]map[string]any
	if jerr := json.Unmarshal(RenderError(err), &native); jerr != nil || native["error"]["code"] != err.Code {
		t.Fatalf("native error rendering of %v: %v", err, jerr)
	}
}

func isE164(s string) bool {
	if len(s) < 8 || len(s) > 16 || s[0] != '+' || s[1] == '0' {
		return false
	}
	for i := 1; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// checkUsers holds for ids normalised on channel.
func checkUsers(t *testing.T, channel string, users []string) {
	t.Helper()
	seen := map[string]bool{}
	for _, u := range users {
		if seen[u] {
			t.Fatalf("duplicate user %q", u)
		}
		seen[u] = true
		switch channel {
		case events.ChannelWhatsApp, events.ChannelRCS:
			if !isE164(u) {
				t.Fatalf("user %q on %s is not E.164", u, channel)
			}
		case events.ChannelTelegram:
			if n, err := strconv.ParseInt(u, 10, 64); err != nil || n == 0 || strconv.FormatInt(n, 10) != u {
				t.Fatalf("user %q on telegram is not a canonical chat id", u)
			}
		default:
			if u == "" || u != strings.TrimSpace(u) || utf8.RuneCountInString(u) > MaxNameLen {
				t.Fatalf("user %q not trimmed or too long", u)
			}
		}
	}
}

// checkRequest holds for every accepted request.
func checkRequest(t *testing.T, req Request) {
	t.Helper()
	a := req.Audience
	selectors := 0
	if len(a.Users) > 0 {
		selectors++
	}
	if len(a.UsersBM) > 0 {
		selectors++
	}
	if a.Everyone {
		selectors++
	}
	if selectors != 1 {
		t.Fatalf("audience selects by %d selectors: %+v", selectors, a)
	}
	if a.Filter != "" && !a.Everyone {
		t.Fatalf("filter without everyone: %+v", a)
	}
	if len(a.Users) > MaxAudienceIDs || len(a.UsersBM) > MaxAudienceIDs {
		t.Fatalf("list over the cap: %d users, %d users_bm", len(a.Users), len(a.UsersBM))
	}
	if req.Channel != "" && !provider.Known(req.Channel) {
		t.Fatalf("channel %q", req.Channel)
	}
	if a.Platform != "" && a.Platform != PlatformAny && !provider.Known(a.Platform) {
		t.Fatalf("platform %q", a.Platform)
	}
	if req.Channel != "" && a.Platform != req.Channel {
		t.Fatalf("channel %q but platform %q", req.Channel, a.Platform)
	}
	checkUsers(t, req.Channel, a.Users)
	if utf8.RuneCountInString(req.Name) > MaxNameLen {
		t.Fatalf("name of %d characters", utf8.RuneCountInString(req.Name))
	}
	for _, m := range []map[string]any{req.Data, req.Attributes, req.RunState} {
		if m == nil {
			continue
		}
		b, err := json.Marshal(m)
		if err != nil {
			t.Fatalf("data does not encode: %v", err)
		}
		if len(b) > 6*MaxDataBytes { // Marshal escapes <>&, the limit counts them unescaped
			t.Fatalf("data of %d bytes", len(b))
		}
	}
	if req.InitialMessage != nil && (req.InitialMessage.Type != events.ContentTemplate ||
		req.InitialMessage.Template == nil || req.InitialMessage.Template.Name == "") {
		t.Fatalf("initial message %+v", req.InitialMessage)
	}
	// The ingress publishes it as a trigger.
	if _, err := json.Marshal(events.Trigger{Event: req.Event, FlowID: req.FlowID, Channel: req.Channel,
		Audience: a, Name: req.Name, Data: req.Data, Attributes: req.Attributes,
		IdempotencyKey: req.IdempotencyKey, InitialMessage: req.InitialMessage}); err != nil {
		t.Fatalf("trigger does not encode: %v", err)
	}
}

// checkResolve checks ResolveChannel on a request without channel.
func checkResolve(t *testing.T, req Request) {
	t.Helper()
	for _, ch := range []string{events.ChannelWhatsApp, events.ChannelTelegram, events.ChannelSandbox} {
		r := req
		r.Audience.Users = append([]string(nil), req.Audience.Users...)
		if err := r.ResolveChannel(ch); err != nil {
			checkError(t, err)
			continue
		}
		if req.Audience.Platform == PlatformAny {
			if !reflect.DeepEqual(r, req) {
				t.Fatalf("platform any changed by ResolveChannel: %+v", r)
			}
			continue
		}
		if r.Channel != ch {
			t.Fatalf("resolved to %q, want %q", r.Channel, ch)
		}
		checkRequest(t, r)
	}
}

// parseTwice checks that a parser is deterministic on success.
func parseTwice[T any](t *testing.T, parse func() (T, *Error)) (T, *Error) {
	t.Helper()
	v1, e1 := parse()
	v2, e2 := parse()
	if (e1 == nil) != (e2 == nil) {
		t.Fatalf("non-deterministic: %v then %v", e1, e2)
	}
	if e1 == nil && !reflect.DeepEqual(v1, v2) {
		t.Fatalf("non-deterministic result:\n%+v\n%+v", v1, v2)
	}
	if e1 != nil {
		checkError(t, e1)
	}
	return v1, e1
}

func FuzzParseDispatch(f *testing.F) {
	addBodies(f, true,
		`{"from":"1234567890","name":"John Doe","plan":"Premium","referralCode":"REF123"}`,
		`{"from":"31612345678","name":"Customer","amount":49.99,"orderId":"ORD-1001"}`,
		`{"from":31612345678}`, `{"from":null}`, `{"name":1}`, `[]`, `{"from":"1","x":1e999}`,
		`{"from":"1","a":{"b":{"c":[1,2,{"d":null}]}}}`)
	f.Fuzz(func(t *testing.T, ct string, body []byte) {
		req, err := parseTwice(t, func() (Request, *Error) { return ParseDispatch(ct, body) })
		if err != nil {
			return
		}
		checkRequest(t, req)
		if len(req.Audience.Users) != 1 || req.Channel != "" || req.Data == nil {
			t.Fatalf("dispatch request %+v", req)
		}
		if _, ok := req.Data["from"]; ok {
			t.Fatal("from in data")
		}
		checkResolve(t, req)
	})
}

func FuzzParseNative(f *testing.F) {
	addBodies(f, true,
		`{"event":"E","channel":"whatsapp","audience":{"users":["+31612345678","14155552671"]},"data":{"plan":"Premium"},"idempotency_key":"k","initial_message":{"type":"template","template":{"name":"welcome","language":"en"}}}`,
		`{"flow":"F","audience":{"platform":"telegram","filter":"plan == \"Premium\" && city == \"Lima\""}}`,
		`{"event":"E","audience":{"users":"everyone","platform":"any"}}`,
		`{"event":"E","audience":{"users_bm":["c-1","c_2"],"platform":"tg"}}`,
		`{"event":"E","channel":"telegram","name":"Ana","audience":{"users":[" 0042 ",42]}}`,
		`{"event":"E","audience":{"filter":"1 + 2"}}`,
		`{"event":"E","audience":{"filter":"len(tags) > 0 and any(tags, {# == \"vip\"})"}}`,
		`{"event":"E","audience":{"everyone":true,"users":["1"]}}`)
	f.Fuzz(func(t *testing.T, ct string, body []byte) {
		req, err := parseTwice(t, func() (Request, *Error) { return ParseNative(ct, body) })
		if err != nil {
			return
		}
		checkRequest(t, req)
		if (req.Event == "") == (req.FlowID == "") {
			t.Fatalf("event %q flow %q", req.Event, req.FlowID)
		}
		if req.Audience.Filter != "" {
			if cerr := compileFilter(req.Audience.Filter, "f"); cerr != nil {
				t.Fatalf("accepted filter does not compile: %v", cerr)
			}
		}
		if req.Channel == "" {
			checkResolve(t, req)
		}
	})
}

func FuzzParseBotmother(f *testing.F) {
	addBodies(f, true,
		`{"platform":"tg","users":["123456"],"data":{}}`,
		`{"platform":"any","users":"everyone","data":{}}`,
		`{"users_bm":["5c517b7773515eaha3078e2f"],"data":{}}`,
		`{"platform":"wa","users":["31612345678",31612345679],"data":{"a":[1,2]}}`,
		`{"platform":"rcs","users":["+14155552671"]}`, `{"platform":"fb"}`, `{"users":[]}`)
	f.Fuzz(func(t *testing.T, ct string, body []byte) {
		req, err := parseTwice(t, func() (Request, *Error) { return ParseBotmother(ct, body) })
		if err != nil {
			return
		}
		checkRequest(t, req)
		for _, id := range req.Audience.UsersBM {
			if !isBMID(id) {
				t.Fatalf("bm_id %q", id)
			}
		}
	})
}

func checkEngati(t *testing.T, req Request) {
	t.Helper()
	checkRequest(t, req)
	if req.Channel != events.ChannelWhatsApp && req.Channel != events.ChannelRCS {
		t.Fatalf("engati channel %q", req.Channel)
	}
	if len(req.Audience.Users) != 1 || req.Name == "" || req.Attributes[NameAttribute] != req.Name ||
		!reflect.DeepEqual(req.Attributes, req.Data) {
		t.Fatalf("engati request %+v", req)
	}
	for k := range req.Attributes {
		if k == engatiPhoneKey || k == engatiChannelKey || checkAttributeKey(k) != nil {
			t.Fatalf("attribute %q", k)
		}
	}
}

func FuzzParseEngatiV2(f *testing.F) {
	addBodies(f, true,
		`{ "user_channel": "whatsapp", "user_phone_no": 919876543210, "attribute_1": "this is parameter 1", "attribute_2": "this is parameter 2" }`,
		`{ "user_channel": "rcs", "user_phone_no": "14155552671", "attribute_1": "x" }`,
		`{"user_phone_no":"+31612345678","user_name":"Asha","n":{"a":[1]}}`,
		`{"user_phone_no":"0612345678"}`, `{"user_phone_no":"+31612345678","a.b":1}`)
	f.Fuzz(func(t *testing.T, ct string, body []byte) {
		req, err := parseTwice(t, func() (Request, *Error) { return ParseEngatiV2(ct, body) })
		if err != nil {
			return
		}
		checkEngati(t, req)
	})
}

func FuzzParseEngatiV1(f *testing.F) {
	for _, q := range []string{
		"user_phone_no=+31612345678&resultcode=123&operationid=test123",
		"user_phone_no=%2B14155552671&user_channel=rcs&tag=a&tag=b",
		"user_phone_no=919876543210&name=Ravi", "user_phone_no=0612345678", "=x&user_phone_no=31612345678",
		"user_phone_no=%2B31612345678&user_phone_no=%2B14155552671", "a.b=1&user_phone_no=31612345678",
	} {
		f.Add(q)
	}
	f.Fuzz(func(t *testing.T, rawQuery string) {
		q, perr := url.ParseQuery(rawQuery)
		if perr != nil && len(q) == 0 {
			return
		}
		req, err := parseTwice(t, func() (Request, *Error) { return ParseEngatiV1(q) })
		if err != nil {
			return
		}
		checkEngati(t, req)
		for k, v := range req.Attributes {
			switch v.(type) {
			case string, []any:
			default:
				t.Fatalf("v1 attribute %q is %T", k, v)
			}
		}
	})
}

func FuzzParseRecruboThread(f *testing.F) {
	addBodies(f, true, recruboThreadSeed,
		`{"data":{"type":"messageThreads","id":"t-1","attributes":{"channel":"telegram","identifier":123456}}}`,
		`{"data":{"type":"messageThreads","attributes":{"channel":"rcs","identifier":"+14155552671"}}}`,
		`{"data":{"type":"flowRuns","attributes":{}}}`, `{"data":[]}`, `{"data":null}`, `{}`)
	f.Add(ctAPI+"; profile=\"https://example.com/p\"", []byte(recruboThreadSeed))
	f.Add(ctAPI+"; ext=x", []byte(recruboThreadSeed))
	f.Fuzz(func(t *testing.T, ct string, body []byte) {
		th, err := parseTwice(t, func() (Thread, *Error) { return ParseRecruboThread(ct, body) })
		if err != nil {
			return
		}
		if !provider.Known(th.Channel) || th.Identifier == "" {
			t.Fatalf("thread %+v", th)
		}
		checkUsers(t, th.Channel, []string{th.Identifier})
		checkRequest(t, FlowRun{FlowID: "f"}.Request(th))
		var doc map[string]any
		if jerr := json.Unmarshal(RenderRecruboThread("id", th, time.Time{}), &doc); jerr != nil {
			t.Fatal(jerr)
		}
	})
}

func FuzzParseRecruboFlowRun(f *testing.F) {
	addBodies(f, true, recruboFlowRunSeed,
		`{"data":{"type":"flowRuns","attributes":{"flowId":"f","messageThreadId":"t","state":{"step":2}}}}`,
		`{"data":{"type":"flowRuns","attributes":{"flowId":"f","messageThreadId":"t","initialMessage":{"type":"template","template":{"id":7,"language":"nl","components":[]}}}}}`,
		`{"data":{"type":"flowRuns","attributes":{"flowId":"f"}}}`, `{"data":{"type":"messageThreads"}}`)
	f.Fuzz(func(t *testing.T, ct string, body []byte) {
		run, err := parseTwice(t, func() (FlowRun, *Error) { return ParseRecruboFlowRun(ct, body) })
		if err != nil {
			return
		}
		if run.FlowID == "" || run.MessageThreadID == "" || run.State == nil {
			t.Fatalf("flow run %+v", run)
		}
		req := run.Request(Thread{Channel: events.ChannelWhatsApp, Identifier: "+31612345678"})
		checkRequest(t, req)
		b, rerr := RenderRecruboFlowRun(FlowRunView{ID: "r", FlowID: run.FlowID, MessageThreadID: run.MessageThreadID,
			State: run.State, InitialMessage: run.InitialMessage, Status: "created"})
		if rerr != nil {
			t.Fatal(rerr)
		}
		var doc struct {
			Data struct {
				Attributes struct {
					FlowID string `json:"flowId"`
				} `json:"attributes"`
			} `json:"data"`
		}
		if jerr := json.Unmarshal(b, &doc); jerr != nil || doc.Data.Attributes.FlowID != run.FlowID {
			t.Fatalf("render: %v %s", jerr, b)
		}
	})
}

func FuzzParseCloudEventData(f *testing.F) {
	for _, c := range []struct{ data, subject string }{
		{`{"from":"31612345678","name":"John","plan":"Premium"}`, ""},
		{`{"plan":"Premium"}`, "31612345678"},
		{``, "user-1"}, {`{"from":{}}`, ""}, {`[1]`, "x"}, {`{"from":12345678901234567890}`, ""},
		{`{"name":"é"}`, " \t"},
	} {
		f.Add([]byte(c.data), c.subject)
	}
	f.Fuzz(func(t *testing.T, data []byte, subject string) {
		req, err := parseTwice(t, func() (Request, *Error) { return ParseCloudEventData(data, subject) })
		if err != nil {
			return
		}
		checkRequest(t, req)
		if len(req.Audience.Users) != 1 || req.Channel != "" {
			t.Fatalf("cloudevent request %+v", req)
		}
		if strings.TrimSpace(subject) != "" && req.Audience.Users[0] != strings.TrimSpace(subject) {
			t.Fatalf("user %q, subject %q", req.Audience.Users[0], subject)
		}
		checkResolve(t, req)
	})
}
