package compat

import (
	"fmt"
	"net/url"
	"strings"
	"testing"
)

const ctAPI = "application/vnd.api+json"

// idList returns a JSON array of n distinct Telegram-style ids.
func idList(n int) string {
	var b strings.Builder
	b.WriteByte('[')
	for i := 0; i < n; i++ {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `"%d"`, 1000+i)
	}
	b.WriteByte(']')
	return b.String()
}

func TestBadInput(t *testing.T) {
	bigData := `{"blob":"` + strings.Repeat("x", MaxDataBytes) + `"}`
	deep := strings.Repeat(`{"a":`, MaxDepth+1) + "1" + strings.Repeat("}", MaxDepth+1)
	longName := strings.Repeat("é", MaxNameLen+1)

	dispatch := func(ct, body string) func() *Error {
		return func() *Error { _, err := ParseDispatch(ct, []byte(body)); return err }
	}
	native := func(body string) func() *Error {
		return func() *Error { _, err := ParseNative(ctJSON, []byte(body)); return err }
	}
	botmother := func(ct, body string) func() *Error {
		return func() *Error { _, err := ParseBotmother(ct, []byte(body)); return err }
	}
	engati2 := func(body string) func() *Error {
		return func() *Error { _, err := ParseEngatiV2(ctJSON, []byte(body)); return err }
	}
	engati1 := func(query string) func() *Error {
		return func() *Error {
			q, err := url.ParseQuery(query)
			if err != nil {
				panic(err)
			}
			_, perr := ParseEngatiV1(q)
			return perr
		}
	}
	thread := func(ct, body string) func() *Error {
		return func() *Error { _, err := ParseRecruboThread(ct, []byte(body)); return err }
	}
	flowRun := func(body string) func() *Error {
		return func() *Error { _, err := ParseRecruboFlowRun(ctAPI, []byte(body)); return err }
	}
	cloud := func(data, subject string) func() *Error {
		return func() *Error { _, err := ParseCloudEventData([]byte(data), subject); return err }
	}
	run := func(body string) string {
		return `{"data":{"type":"flowRuns","attributes":` + body + `}}`
	}
	const okRun = `"flowId":"f1","messageThreadId":"t1"`

	cases := []struct {
		name   string
		parse  func() *Error
		status int
		code   string
		field  string
	}{
		// BuilderBot dispatch
		{"dispatch: form body", dispatch("application/x-www-form-urlencoded", "from=1"), 415, CodeUnsupportedMediaType, "Content-Type"},
		{"dispatch: no content type", dispatch("", `{"from":"1"}`), 415, CodeUnsupportedMediaType, "Content-Type"},
		{"dispatch: latin-1 charset", dispatch("application/json; charset=iso-8859-1", `{"from":"1"}`), 415, CodeUnsupportedMediaType, "Content-Type"},
		{"dispatch: malformed JSON", dispatch(ctJSON, `{"from":"1",`), 400, CodeInvalidJSON, ""},
		{"dispatch: empty body", dispatch(ctJSON, ``), 400, CodeInvalidJSON, ""},
		{"dispatch: array body", dispatch(ctJSON, `[{"from":"1"}]`), 400, CodeInvalidJSON, ""},
		{"dispatch: null body", dispatch(ctJSON, `null`), 400, CodeInvalidJSON, ""},
		{"dispatch: trailing data", dispatch(ctJSON, `{"from":"1"}{"from":"2"}`), 400, CodeInvalidJSON, ""},
		{"dispatch: missing from", dispatch(ctJSON, `{"name":"John"}`), 422, CodeMissingField, "from"},
		{"dispatch: null from", dispatch(ctJSON, `{"from":null}`), 422, CodeMissingField, "from"},
		{"dispatch: blank from", dispatch(ctJSON, `{"from":"  "}`), 422, CodeMissingField, "from"},
		{"dispatch: from object", dispatch(ctJSON, `{"from":{"id":1}}`), 422, CodeInvalidField, "from"},
		{"dispatch: from fraction", dispatch(ctJSON, `{"from":3.5}`), 422, CodeInvalidField, "from"},
		{"dispatch: from with newline", dispatch(ctJSON, `{"from":"12\n34"}`), 422, CodeInvalidUserID, "from"},
		{"dispatch: name number", dispatch(ctJSON, `{"from":"1","name":42}`), 422, CodeInvalidField, "name"},
		{"dispatch: name too long", dispatch(ctJSON, `{"from":"1","name":"`+longName+`"}`), 422, CodeInvalidField, "name"},
		{"dispatch: data too large", dispatch(ctJSON, `{"from":"1","blob":"`+strings.Repeat("x", MaxDataBytes)+`"}`), 413, CodeDataTooLarge, "body"},
		{"dispatch: too deep", dispatch(ctJSON, `{"from":"1","x":`+deep+`}`), 422, CodeTooDeep, "x"},
		{"dispatch: number out of range", dispatch(ctJSON, `{"from":"1","x":1e999}`), 422, CodeInvalidField, "x"},

		// Native
		{"native: neither event nor flow", native(`{"audience":{"everyone":true}}`), 422, CodeMissingField, "event"},
		{"native: event and flow", native(`{"event":"E","flow":"F","audience":{"everyone":true}}`), 422, CodeConflictingFields, "flow"},
		{"native: event not string", native(`{"event":7,"audience":{"everyone":true}}`), 422, CodeInvalidField, "event"},
		{"native: event with control char", native(`{"event":"A\u0000B","audience":{"everyone":true}}`), 422, CodeInvalidField, "event"},
		{"native: unknown top-level field", native(`{"event":"E","audiance":{"everyone":true}}`), 422, CodeUnknownField, "audiance"},
		{"native: unknown audience field", native(`{"event":"E","audience":{"everyone":true,"segment":"x"}}`), 422, CodeUnknownField, "audience.segment"},
		{"native: unknown channel", native(`{"event":"E","channel":"sms","audience":{"everyone":true}}`), 422, CodeUnknownChannel, "channel"},
		{"native: unknown priority", native(`{"event":"E","priority":"urgent","audience":{"everyone":true}}`), 422, CodeInvalidField, "priority"},
		{"native: priority not a string", native(`{"event":"E","priority":1,"audience":{"everyone":true}}`), 422, CodeInvalidField, "priority"},
		{"native: missing audience", native(`{"event":"E"}`), 422, CodeMissingField, "audience"},
		{"native: audience not object", native(`{"event":"E","audience":["1"]}`), 422, CodeInvalidField, "audience"},
		{"native: empty audience", native(`{"event":"E","audience":{}}`), 422, CodeMissingField, "audience.users"},
		{"native: everyone false only", native(`{"event":"E","audience":{"everyone":false}}`), 422, CodeMissingField, "audience.users"},
		{"native: users and users_bm", native(`{"event":"E","audience":{"users":["1"],"users_bm":["c1"]}}`), 422, CodeConflictingFields, "audience.users_bm"},
		{"native: users and everyone", native(`{"event":"E","audience":{"users":["1"],"everyone":true}}`), 422, CodeConflictingFields, "audience.everyone"},
		{"native: filter with users", native(`{"event":"E","audience":{"users":["1"],"filter":"a == 1"}}`), 422, CodeConflictingFields, "audience.filter"},
		{"native: filter syntax", native(`{"event":"E","audience":{"filter":"plan == "}}`), 422, CodeInvalidFilter, "audience.filter"},
		{"native: filter not boolean", native(`{"event":"E","audience":{"filter":"1 + 2"}}`), 422, CodeInvalidFilter, "audience.filter"},
		{"native: filter too long", native(`{"event":"E","audience":{"filter":"` + strings.Repeat("a", MaxFilterLen+1) + `"}}`), 422, CodeInvalidFilter, "audience.filter"},
		{"native: unknown platform", native(`{"event":"E","audience":{"everyone":true,"platform":"viber"}}`), 422, CodeUnknownPlatform, "audience.platform"},
		{"native: platform differs from channel", native(`{"event":"E","channel":"whatsapp","audience":{"everyone":true,"platform":"telegram"}}`), 422, CodeConflictingFields, "audience.platform"},
		{"native: users not array", native(`{"event":"E","audience":{"users":{"a":1}}}`), 422, CodeInvalidField, "audience.users"},
		{"native: users other string", native(`{"event":"E","audience":{"users":"all"}}`), 422, CodeInvalidField, "audience.users"},
		{"native: empty users", native(`{"event":"E","audience":{"users":[]}}`), 422, CodeEmptyAudience, "audience.users"},
		{"native: user is bool", native(`{"event":"E","audience":{"users":["1",true]}}`), 422, CodeInvalidField, "audience.users[1]"},
		{"native: invalid phone in list", native(`{"event":"E","channel":"whatsapp","audience":{"users":["+31612345678","0612345678"]}}`), 422, CodeInvalidPhone, "audience.users[1]"},
		{"native: telegram id not numeric", native(`{"event":"E","channel":"telegram","audience":{"users":["@john"]}}`), 422, CodeInvalidUserID, "audience.users[0]"},
		{"native: bad contact id", native(`{"event":"E","audience":{"users_bm":["ok","no spaces"]}}`), 422, CodeInvalidUserID, "audience.users_bm[1]"},
		{"native: too many users", native(`{"event":"E","audience":{"users":` + idList(MaxAudienceIDs+1) + `}}`), 413, CodeAudienceTooLarge, "audience.users"},
		{"native: too many users_bm", native(`{"event":"E","audience":{"users_bm":` + idList(MaxAudienceIDs+1) + `}}`), 413, CodeAudienceTooLarge, "audience.users_bm"},
		{"native: everyone not bool", native(`{"event":"E","audience":{"everyone":"yes"}}`), 422, CodeInvalidField, "audience.everyone"},
		{"native: data not object", native(`{"event":"E","audience":{"everyone":true},"data":[1]}`), 422, CodeInvalidField, "data"},
		{"native: data too large", native(`{"event":"E","audience":{"everyone":true},"data":` + bigData + `}`), 413, CodeDataTooLarge, "data"},
		{"native: data too deep", native(`{"event":"E","audience":{"everyone":true},"data":` + deep + `}`), 422, CodeTooDeep, "data"},
		{"native: idempotency key not string", native(`{"event":"E","audience":{"everyone":true},"idempotency_key":5}`), 422, CodeInvalidField, "idempotency_key"},
		{"native: idempotency key with CRLF", native(`{"event":"E","audience":{"everyone":true},"idempotency_key":"a\r\nb"}`), 422, CodeInvalidField, "idempotency_key"},
		{"native: initial message text", native(`{"event":"E","audience":{"everyone":true},"initial_message":{"type":"text","text":"hi"}}`), 422, CodeInvalidField, "initial_message.type"},
		{"native: initial message no template", native(`{"event":"E","audience":{"everyone":true},"initial_message":{"type":"template"}}`), 422, CodeMissingField, "initial_message.template"},
		{"native: initial message no name", native(`{"event":"E","audience":{"everyone":true},"initial_message":{"type":"template","template":{"language":"en"}}}`), 422, CodeMissingField, "initial_message.template.name"},
		{"native: initial message unknown key", native(`{"event":"E","audience":{"everyone":true},"initial_message":{"type":"template","tmpl":{}}}`), 422, CodeInvalidField, "initial_message"},
		{"native: name with many users", native(`{"event":"E","name":"Ana","audience":{"users":["1","2"]}}`), 422, CodeConflictingFields, "name"},

		// Botmother
		{"botmother: text/plain", botmother("text/plain", `{"platform":"tg","users":["1"]}`), 415, CodeUnsupportedMediaType, "Content-Type"},
		{"botmother: malformed JSON", botmother(ctJSON, `{"platform": "tg", "users": [ "123456" ], "data": {}`), 400, CodeInvalidJSON, ""},
		{"botmother: unknown platform", botmother(ctJSON, `{"platform":"fb","users":["1"]}`), 422, CodeUnknownPlatform, "platform"},
		{"botmother: platform number", botmother(ctJSON, `{"platform":1,"users":["1"]}`), 422, CodeInvalidField, "platform"},
		{"botmother: no users", botmother(ctJSON, `{"platform":"tg","data":{}}`), 422, CodeMissingField, "users"},
		{"botmother: users and users_bm", botmother(ctJSON, `{"users":["1"],"users_bm":["5c517b7773515eaha3078e2f"]}`), 422, CodeConflictingFields, "users_bm"},
		{"botmother: users is EVERYONE", botmother(ctJSON, `{"platform":"any","users":"EVERYONE"}`), 422, CodeInvalidField, "users"},
		{"botmother: users number", botmother(ctJSON, `{"platform":"tg","users":123456}`), 422, CodeInvalidField, "users"},
		{"botmother: empty users", botmother(ctJSON, `{"platform":"tg","users":[]}`), 422, CodeEmptyAudience, "users"},
		{"botmother: user is object", botmother(ctJSON, `{"platform":"tg","users":[{"id":1}]}`), 422, CodeInvalidField, "users[0]"},
		{"botmother: telegram id text", botmother(ctJSON, `{"platform":"tg","users":["123","abc"]}`), 422, CodeInvalidUserID, "users[1]"},
		{"botmother: whatsapp id invalid", botmother(ctJSON, `{"platform":"wa","users":["12"]}`), 422, CodeInvalidPhone, "users[0]"},
		{"botmother: bm_id too short", botmother(ctJSON, `{"users_bm":["5c517b77"]}`), 422, CodeInvalidUserID, "users_bm[0]"},
		{"botmother: bm_id with dash", botmother(ctJSON, `{"users_bm":["5c517b7773515eaha3078e2f","5c517b7773515eaha3078e-f"]}`), 422, CodeInvalidUserID, "users_bm[1]"},
		{"botmother: too many users", botmother(ctJSON, `{"platform":"tg","users":`+idList(MaxAudienceIDs+1)+`}`), 413, CodeAudienceTooLarge, "users"},
		{"botmother: data string", botmother(ctJSON, `{"platform":"any","users":"everyone","data":"x"}`), 422, CodeInvalidField, "data"},
		{"botmother: data too large", botmother(ctJSON, `{"platform":"any","users":"everyone","data":`+bigData+`}`), 413, CodeDataTooLarge, "data"},

		// Engati
		{"engati v2: missing phone", engati2(`{"user_channel":"whatsapp","attribute_1":"x"}`), 422, CodeMissingField, "user_phone_no"},
		{"engati v2: phone without country code", engati2(`{"user_channel":"whatsapp","user_phone_no":"0612345678"}`), 422, CodeInvalidPhone, "user_phone_no"},
		{"engati v2: phone letters", engati2(`{"user_phone_no":"call me"}`), 422, CodeInvalidPhone, "user_phone_no"},
		{"engati v2: negative phone", engati2(`{"user_channel":"whatsapp","user_phone_no":"-919876543210"}`), 422, CodeInvalidPhone, "user_phone_no"},
		{"engati v1: negative phone", engati1("user_phone_no=-919876543210"), 422, CodeInvalidPhone, "user_phone_no"},
		{"engati v2: phone too short", engati2(`{"user_phone_no":12345}`), 422, CodeInvalidPhone, "user_phone_no"},
		{"engati v2: phone bool", engati2(`{"user_phone_no":true}`), 422, CodeInvalidField, "user_phone_no"},
		{"engati v2: phone float", engati2(`{"user_phone_no":9.19876543210e11}`), 422, CodeInvalidField, "user_phone_no"},
		{"engati v2: telegram channel", engati2(`{"user_channel":"telegram","user_phone_no":"+31612345678"}`), 422, CodeUnknownChannel, "user_channel"},
		{"engati v2: channel number", engati2(`{"user_channel":1,"user_phone_no":"+31612345678"}`), 422, CodeInvalidField, "user_channel"},
		{"engati v2: dotted attribute", engati2(`{"user_phone_no":"+31612345678","a.b":1}`), 422, CodeInvalidField, "a.b"},
		{"engati v2: dollar attribute", engati2(`{"user_phone_no":"+31612345678","$set":1}`), 422, CodeInvalidField, "$set"},
		{"engati v2: name not string", engati2(`{"user_phone_no":"+31612345678","user_name":["A"]}`), 422, CodeInvalidField, "user_name"},
		{"engati v2: malformed JSON", engati2(`{"user_phone_no":+31612345678}`), 400, CodeInvalidJSON, ""},
		{"engati v2: attributes too large", engati2(`{"user_phone_no":"+31612345678","blob":"` + strings.Repeat("x", MaxDataBytes) + `"}`), 413, CodeDataTooLarge, "attributes"},
		{"engati v2: wrong content type", func() *Error { _, err := ParseEngatiV2("text/plain", []byte(`{}`)); return err }, 415, CodeUnsupportedMediaType, "Content-Type"},
		{"engati v1: missing phone", engati1("resultcode=123"), 422, CodeMissingField, "user_phone_no"},
		{"engati v1: phone twice", engati1("user_phone_no=%2B31612345678&user_phone_no=%2B14155552671"), 422, CodeInvalidField, "user_phone_no"},
		{"engati v1: invalid phone", engati1("user_phone_no=%2B999123"), 422, CodeInvalidPhone, "user_phone_no"},
		{"engati v1: unknown channel", engati1("user_phone_no=%2B31612345678&user_channel=sms"), 422, CodeUnknownChannel, "user_channel"},
		{"engati v1: empty key", engati1("user_phone_no=%2B31612345678&=x"), 422, CodeInvalidField, ""},

		// Recrubo JSON:API
		{"recrubo: application/json", thread(ctJSON, recruboThreadSeed), 415, CodeUnsupportedMediaType, "Content-Type"},
		{"recrubo: charset parameter", thread(ctAPI+"; charset=utf-8", recruboThreadSeed), 415, CodeUnsupportedMediaType, "Content-Type"},
		{"recrubo: ext parameter", thread(ctAPI+`; ext="https://jsonapi.org/ext/atomic"`, recruboThreadSeed), 415, CodeUnsupportedMediaType, "Content-Type"},
		{"recrubo: malformed JSON", thread(ctAPI, `{"data":`), 400, CodeInvalidJSON, ""},
		{"recrubo: no data", thread(ctAPI, `{"meta":{}}`), 400, CodeInvalidDocument, "/data"},
		{"recrubo: data array", thread(ctAPI, `{"data":[{"type":"messageThreads"}]}`), 400, CodeInvalidDocument, "/data"},
		{"recrubo: data null", thread(ctAPI, `{"data":null}`), 400, CodeInvalidDocument, "/data"},
		{"recrubo: no type", thread(ctAPI, `{"data":{"attributes":{"channel":"whatsapp","identifier":"31612345678"}}}`), 400, CodeInvalidDocument, "/data/type"},
		{"recrubo: type not string", thread(ctAPI, `{"data":{"type":1}}`), 400, CodeInvalidDocument, "/data/type"},
		{"recrubo: wrong type", thread(ctAPI, `{"data":{"type":"flowRuns","attributes":{}}}`), 409, CodeTypeMismatch, "/data/type"},
		{"recrubo: id not string", thread(ctAPI, `{"data":{"type":"messageThreads","id":7,"attributes":{}}}`), 400, CodeInvalidDocument, "/data/id"},
		{"recrubo: no attributes", thread(ctAPI, `{"data":{"type":"messageThreads"}}`), 422, CodeMissingField, "/data/attributes"},
		{"recrubo: attributes array", thread(ctAPI, `{"data":{"type":"messageThreads","attributes":[]}}`), 400, CodeInvalidDocument, "/data/attributes"},
		{"recrubo: thread no channel", thread(ctAPI, `{"data":{"type":"messageThreads","attributes":{"identifier":"31612345678"}}}`), 422, CodeMissingField, "/data/attributes/channel"},
		{"recrubo: thread bad channel", thread(ctAPI, `{"data":{"type":"messageThreads","attributes":{"channel":"email","identifier":"a@b.c"}}}`), 422, CodeUnknownChannel, "/data/attributes/channel"},
		{"recrubo: thread no identifier", thread(ctAPI, `{"data":{"type":"messageThreads","attributes":{"channel":"whatsapp"}}}`), 422, CodeMissingField, "/data/attributes/identifier"},
		{"recrubo: thread invalid phone", thread(ctAPI, `{"data":{"type":"messageThreads","attributes":{"channel":"rcs","identifier":"3161234"}}}`), 422, CodeInvalidPhone, "/data/attributes/identifier"},
		{"recrubo: thread identifier array", thread(ctAPI, `{"data":{"type":"messageThreads","attributes":{"channel":"rcs","identifier":["1"]}}}`), 422, CodeInvalidField, "/data/attributes/identifier"},
		{"recrubo: run no flowId", flowRun(run(`{"messageThreadId":"t1"}`)), 422, CodeMissingField, "/data/attributes/flowId"},
		{"recrubo: run flowId number", flowRun(run(`{"flowId":5,"messageThreadId":"t1"}`)), 422, CodeInvalidField, "/data/attributes/flowId"},
		{"recrubo: run no thread", flowRun(run(`{"flowId":"f1"}`)), 422, CodeMissingField, "/data/attributes/messageThreadId"},
		{"recrubo: run state array", flowRun(run(`{` + okRun + `,"state":[]}`)), 422, CodeInvalidField, "/data/attributes/state"},
		{"recrubo: run message text", flowRun(run(`{` + okRun + `,"initialMessage":{"type":"text","text":"hi"}}`)), 422, CodeInvalidField, "/data/attributes/initialMessage/type"},
		{"recrubo: run message no type", flowRun(run(`{` + okRun + `,"initialMessage":{"template":{"id":"x"}}}`)), 422, CodeMissingField, "/data/attributes/initialMessage/type"},
		{"recrubo: run message no template", flowRun(run(`{` + okRun + `,"initialMessage":{"type":"template"}}`)), 422, CodeMissingField, "/data/attributes/initialMessage/template"},
		{"recrubo: run template no id", flowRun(run(`{` + okRun + `,"initialMessage":{"type":"template","template":{"components":[]}}}`)), 422, CodeMissingField, "/data/attributes/initialMessage/template/id"},
		{"recrubo: run components object", flowRun(run(`{` + okRun + `,"initialMessage":{"type":"template","template":{"id":"x","components":{}}}}`)), 422, CodeInvalidField, "/data/attributes/initialMessage/template/components"},
		{"recrubo: run component string", flowRun(run(`{` + okRun + `,"initialMessage":{"type":"template","template":{"id":"x","components":["body"]}}}`)), 422, CodeInvalidField, "/data/attributes/initialMessage/template/components/0"},
		{"recrubo: run wrong type", flowRun(`{"data":{"type":"messageThreads","attributes":{}}}`), 409, CodeTypeMismatch, "/data/type"},

		// CloudEvents data
		{"cloudevents: no user", cloud(`{"name":"x"}`, ""), 422, CodeMissingField, "subject"},
		{"cloudevents: no data no subject", cloud(``, ""), 422, CodeMissingField, "subject"},
		{"cloudevents: data array", cloud(`[1]`, "u1"), 400, CodeInvalidJSON, "data"},
		{"cloudevents: data malformed", cloud(`{"from":`, "u1"), 400, CodeInvalidJSON, "data"},
		{"cloudevents: from object", cloud(`{"from":{}}`, ""), 422, CodeInvalidField, "data.from"},
		{"cloudevents: name number", cloud(`{"name":1}`, "u1"), 422, CodeInvalidField, "data.name"},
		{"cloudevents: data too deep", cloud(`{"x":`+deep+`}`, "u1"), 422, CodeTooDeep, "data.x"},
		{"cloudevents: subject control char", cloud(``, "a\tb"), 422, CodeInvalidUserID, "subject"},
	}
	if len(cases) < 40 {
		t.Fatalf("only %d cases", len(cases))
	}
	seen := map[string]bool{}
	for _, c := range cases {
		if seen[c.name] {
			t.Fatalf("duplicate case name %q", c.name)
		}
		seen[c.name] = true
		t.Run(c.name, func(t *testing.T) {
			err := c.parse()
			if err == nil {
				t.Fatalf("accepted; want %d %s at %q", c.status, c.code, c.field)
			}
			if err.Status != c.status || err.Code != c.code || err.Field != c.field {
				t.Fatalf("got %d %s at %q (%s); want %d %s at %q", err.Status, err.Code, err.Field, err.Message, c.status, c.code, c.field)
			}
			if err.Message == "" {
				t.Fatal("empty message")
			}
		})
	}
}

// At the limit, lists are accepted.
func TestAudienceLimitIsInclusive(t *testing.T) {
	req, err := ParseBotmother(ctJSON, []byte(`{"platform":"tg","users":`+idList(MaxAudienceIDs)+`}`))
	if err != nil {
		t.Fatal(err)
	}
	if len(req.Audience.Users) != MaxAudienceIDs {
		t.Fatalf("%d users", len(req.Audience.Users))
	}
	if _, err := ParseNative(ctJSON, []byte(`{"event":"E","audience":{"users_bm":`+idList(MaxAudienceIDs)+`}}`)); err != nil {
		t.Fatal(err)
	}
}

func TestAudienceTooLargeMessagePointsToImport(t *testing.T) {
	_, err := ParseBotmother(ctJSON, []byte(`{"platform":"tg","users":`+idList(MaxAudienceIDs+1)+`}`))
	if err == nil || !strings.Contains(err.Message, "contacts/import") || !strings.Contains(err.Message, "filter") {
		t.Fatalf("got %v", err)
	}
}
