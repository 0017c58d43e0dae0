package whatsappdouble_test

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/flowgate/flowgate/shared/testclock"

	"github.com/stretchr/testify/require"

	whatsappdouble "github.com/flowgate/flowgate/shared/providerdouble/whatsapp"
)

const phoneID = "106540352242922"

type answer struct {
	status int
	body   map[string]any
	raw    string
}

func post(t *testing.T, d *whatsappdouble.Server, path, token, body string) answer {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, d.URL()+path, strings.NewReader(body))
	require.NoError(t, err)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := d.Client().Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	a := answer{status: resp.StatusCode, raw: string(raw)}
	require.NoError(t, json.Unmarshal(raw, &a.body), "answer %q", raw)
	return a
}

func send(t *testing.T, d *whatsappdouble.Server, body string) answer {
	t.Helper()
	return post(t, d, "/v21.0/"+phoneID+"/messages", whatsappdouble.DefaultToken, body)
}

// requireError checks the documented error body shape and the code.
func requireError(t *testing.T, a answer, status, code int) {
	t.Helper()
	require.Equal(t, status, a.status, a.raw)
	e, ok := a.body["error"].(map[string]any)
	require.True(t, ok, "error object in %s", a.raw)
	require.EqualValues(t, code, e["code"], a.raw)
	require.NotEmpty(t, e["message"])
	require.Equal(t, "OAuthException", e["type"])
	require.NotEmpty(t, e["fbtrace_id"])
	data, ok := e["error_data"].(map[string]any)
	require.True(t, ok, a.raw)
	require.Equal(t, "whatsapp", data["messaging_product"])
	require.Contains(t, data, "details")
}

const textBody = `{"messaging_product":"whatsapp","recipient_type":"individual","to":"+31612345678","type":"text","text":{"body":"hi","preview_url":false}}`

func TestSuccessShape(t *testing.T) {
	d := whatsappdouble.New()
	defer d.Close()
	a := send(t, d, textBody)
	require.Equal(t, http.StatusOK, a.status)
	require.Equal(t, "whatsapp", a.body["messaging_product"])
	require.Equal(t, []any{map[string]any{"input": "+31612345678", "wa_id": "31612345678"}}, a.body["contacts"])
	msgs := a.body["messages"].([]any)
	require.Len(t, msgs, 1)
	id := msgs[0].(map[string]any)["id"].(string)
	require.True(t, strings.HasPrefix(id, "wamid."))

	acc := d.Accepted()
	require.Len(t, acc, 1)
	require.Equal(t, whatsappdouble.AcceptedMessage{PhoneNumberID: phoneID, To: "+31612345678", Type: "text",
		Payload: json.RawMessage(textBody), At: acc[0].At, WAMID: id, Received: acc[0].Received, Answered: acc[0].Answered}, acc[0])
	require.WithinDuration(t, time.Now(), acc[0].At, time.Minute)
	// The answer was written (and the time logged) before the client read it.
	require.False(t, acc[0].Received.IsZero())
	require.False(t, acc[0].Answered.Before(acc[0].Received), "answered %v before received %v", acc[0].Answered, acc[0].Received)
	require.Equal(t, "hi", acc[0].Map()["text"].(map[string]any)["body"])

	// Templates are answered with message_status accepted, as Meta does.
	a = send(t, d, `{"messaging_product":"whatsapp","recipient_type":"individual","to":"31612345678","type":"template","template":{"name":"hello_world","language":{"code":"en_US"}}}`)
	require.Equal(t, http.StatusOK, a.status, a.raw)
	require.Equal(t, "accepted", a.body["messages"].([]any)[0].(map[string]any)["message_status"])
	st := d.Stats()
	require.EqualValues(t, 2, st.Requests)
	require.EqualValues(t, 2, st.Accepted)
	require.Empty(t, st.Rejected)
}

func TestAuthAndPaths(t *testing.T) {
	d := whatsappdouble.New(whatsappdouble.WithToken("tok"), whatsappdouble.WithAccountToken("999999", "other"))
	defer d.Close()
	path := "/v21.0/" + phoneID + "/messages"
	requireError(t, post(t, d, path, "", textBody), http.StatusUnauthorized, 190)
	requireError(t, post(t, d, path, "wrong", textBody), http.StatusUnauthorized, 190)
	requireError(t, post(t, d, path, "other", textBody), http.StatusUnauthorized, 190)
	require.Equal(t, http.StatusOK, post(t, d, path, "tok", textBody).status)
	require.Equal(t, http.StatusOK, post(t, d, "/v19.0/999999/messages", "other", textBody).status)
	requireError(t, post(t, d, "/v19.0/999999/messages", "tok", textBody), http.StatusUnauthorized, 190)
	requireError(t, post(t, d, "/latest/"+phoneID+"/messages", "tok", textBody), http.StatusNotFound, 100)
	requireError(t, post(t, d, "/v21.0/"+phoneID+"/media", "tok", textBody), http.StatusBadRequest, 100) // media uploads are multipart
	requireError(t, post(t, d, "/v21.0/"+phoneID+"/photos", "tok", textBody), http.StatusNotFound, 100)

	req, _ := http.NewRequest(http.MethodGet, d.URL()+path, nil)
	resp, err := d.Client().Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusMethodNotAllowed, resp.StatusCode)
	require.EqualValues(t, 4, d.Stats().Rejected[190])
}

func TestValidation(t *testing.T) {
	msg := func(typ, obj string) string {
		return `{"messaging_product":"whatsapp","recipient_type":"individual","to":"31612345678","type":"` + typ + `","` + typ + `":` + obj + `}`
	}
	inter := func(obj string) string { return msg("interactive", obj) }
	buttons := func(n, titleLen int) string {
		var b []string
		for i := range n {
			b = append(b, fmt.Sprintf(`{"type":"reply","reply":{"id":"b%d","title":"%s%d"}}`, i, strings.Repeat("t", titleLen-1), i))
		}
		return inter(`{"type":"button","body":{"text":"Pick"},"action":{"buttons":[` + strings.Join(b, ",") + `]}}`)
	}
	list := func(button string, perSection ...int) string {
		var secs []string
		k := 0
		for s, n := range perSection {
			var rows []string
			for range n {
				rows = append(rows, fmt.Sprintf(`{"id":"r%d","title":"Row %d"}`, k, k))
				k++
			}
			secs = append(secs, fmt.Sprintf(`{"title":"S%d","rows":[%s]}`, s, strings.Join(rows, ",")))
		}
		return inter(`{"type":"list","body":{"text":"Pick"},"action":{"button":"` + button + `","sections":[` + strings.Join(secs, ",") + `]}}`)
	}
	flow := func(params string) string {
		return inter(`{"type":"flow","body":{"text":"Go"},"action":{"name":"flow","parameters":` + params + `}}`)
	}
	tmpl := func(obj string) string { return msg("template", obj) }
	ok := []string{
		textBody,
		msg("image", `{"link":"https://x.example/a.png","caption":"c"}`),
		msg("document", `{"link":"https://x.example/a.pdf","caption":"c","filename":"a.pdf"}`),
		msg("video", `{"link":"https://x.example/a.mp4"}`),
		buttons(3, 20),
		list(strings.Repeat("b", 20), 6, 4),
		flow(`{"flow_message_version":"3","flow_cta":"Go","flow_id":"1","flow_token":"t","flow_action":"navigate","flow_action_payload":{"screen":"A","data":{"x":1}},"mode":"draft"}`),
		flow(`{"flow_message_version":"3","flow_cta":"Go","flow_name":"n","flow_action":"data_exchange"}`),
		tmpl(`{"name":"t","language":{"code":"en"},"components":[{"type":"body","parameters":[{"type":"text","text":"John"}]},{"type":"button","sub_type":"flow","index":"0","parameters":[{"type":"action","action":{"flow_token":"ft","flow_action_data":{"a":"b"}}}]}]}`),
		tmpl(`{"name":"t","language":{"code":"en"},"components":[{"type":"button","sub_type":"flow","index":"0"}]}`),
	}
	bad := map[string]struct {
		body string
		code int
	}{
		"not json":               {`{"messaging_product":`, 100},
		"unknown field":          {`{"messaging_product":"whatsapp","recipient_type":"individual","to":"31612345678","type":"text","text":{"body":"hi","bold":true}}`, 100},
		"wrong product":          {strings.Replace(textBody, `"whatsapp"`, `"messenger"`, 1), 100},
		"no recipient_type":      {strings.Replace(textBody, `"recipient_type":"individual",`, ``, 1), 100},
		"group recipient":        {strings.Replace(textBody, `"individual"`, `"group"`, 1), 100},
		"no to":                  {strings.Replace(textBody, `"to":"+31612345678",`, ``, 1), 100},
		"to not a number":        {strings.Replace(textBody, `+31612345678`, `john`, 1), 100},
		"unknown type":           {msg("carousel", `{}`), 100},
		"type object missing":    {strings.Replace(textBody, `"type":"text"`, `"type":"image"`, 1), 131008},
		"two objects":            {strings.Replace(textBody, `}}`, `},"image":{"id":"1"}}`, 1), 100},
		"empty text":             {msg("text", `{"body":""}`), 131008},
		"text too long":          {msg("text", `{"body":"`+strings.Repeat("x", 4097)+`"}`), 131009},
		"media link and id":      {msg("image", `{"id":"1","link":"https://x.example/a"}`), 100},
		"media link not url":     {msg("image", `{"link":"a.png"}`), 131009},
		"image filename":         {msg("image", `{"id":"1","filename":"a"}`), 100},
		"four buttons":           {buttons(4, 5), 131009},
		"button title 21":        {buttons(1, 21), 131009},
		"button body 1025":       {inter(`{"type":"button","body":{"text":"` + strings.Repeat("x", 1025) + `"},"action":{"buttons":[{"type":"reply","reply":{"id":"a","title":"b"}}]}}`), 131009},
		"button no body":         {inter(`{"type":"button","action":{"buttons":[{"type":"reply","reply":{"id":"a","title":"b"}}]}}`), 131008},
		"button not reply":       {inter(`{"type":"button","body":{"text":"x"},"action":{"buttons":[{"type":"url","reply":{"id":"a","title":"b"}}]}}`), 100},
		"duplicate button ids":   {inter(`{"type":"button","body":{"text":"x"},"action":{"buttons":[{"type":"reply","reply":{"id":"a","title":"b"}},{"type":"reply","reply":{"id":"a","title":"c"}}]}}`), 131009},
		"list 11 rows":           {list("Open", 6, 5), 131009},
		"list button 21":         {list(strings.Repeat("b", 21), 1), 131009},
		"list no sections":       {list("Open"), 131009},
		"list row title 25":      {inter(`{"type":"list","body":{"text":"x"},"action":{"button":"b","sections":[{"rows":[{"id":"a","title":"` + strings.Repeat("t", 25) + `"}]}]}}`), 131009},
		"flow both id and name":  {flow(`{"flow_message_version":"3","flow_cta":"Go","flow_id":"1","flow_name":"n"}`), 100},
		"flow version 2":         {flow(`{"flow_message_version":"2","flow_cta":"Go","flow_id":"1"}`), 131009},
		"flow no cta":            {flow(`{"flow_message_version":"3","flow_id":"1"}`), 131008},
		"flow payload no screen": {flow(`{"flow_message_version":"3","flow_cta":"Go","flow_id":"1","flow_action_payload":{"data":{}}}`), 131008},
		"flow bad action":        {flow(`{"flow_message_version":"3","flow_cta":"Go","flow_id":"1","flow_action":"jump"}`), 100},
		"interactive cta_url":    {inter(`{"type":"cta_url","body":{"text":"x"},"action":{}}`), 100},
		"template no name":       {tmpl(`{"language":{"code":"en"}}`), 131008},
		"template no language":   {tmpl(`{"name":"t"}`), 131008},
		"template empty code":    {tmpl(`{"name":"t","language":{"code":""}}`), 131008},
		"template empty param":   {tmpl(`{"name":"t","language":{"code":"en"},"components":[{"type":"body","parameters":[{"type":"text","text":""}]}]}`), 100},
		"flow button no index":   {tmpl(`{"name":"t","language":{"code":"en"},"components":[{"type":"button","sub_type":"flow"}]}`), 131008},
		"flow button text param": {tmpl(`{"name":"t","language":{"code":"en"},"components":[{"type":"button","sub_type":"flow","index":"0","parameters":[{"type":"text","text":"x"}]}]}`), 100},
	}
	d := whatsappdouble.New()
	defer d.Close()
	for i, body := range ok {
		a := send(t, d, body)
		require.Equal(t, http.StatusOK, a.status, "ok[%d]: %s", i, a.raw)
	}
	for name, tc := range bad {
		t.Run(name, func(t *testing.T) {
			requireError(t, send(t, d, tc.body), whatsappdouble.HTTPStatus(tc.code), tc.code)
		})
	}
	require.Len(t, d.Accepted(), len(ok))
	st := d.Stats()
	var rejected int64
	for _, n := range st.Rejected {
		rejected += n
	}
	require.EqualValues(t, len(bad), rejected)
}

func TestTemplatesRegistry(t *testing.T) {
	d := whatsappdouble.New(whatsappdouble.WithTemplates("welcome"))
	defer d.Close()
	body := func(name string) string {
		return `{"messaging_product":"whatsapp","recipient_type":"individual","to":"31612345678","type":"template","template":{"name":"` + name + `","language":{"code":"en"}}}`
	}
	require.Equal(t, http.StatusOK, send(t, d, body("welcome")).status)
	requireError(t, send(t, d, body("other")), http.StatusNotFound, 132001)
}

func TestRateLimitPerNumber(t *testing.T) {
	// A refill of one token per 100 s: no stall of a loaded machine refills it.
	d := whatsappdouble.New(whatsappdouble.WithRate(0.01, 3))
	defer d.Close()
	for range 3 {
		require.Equal(t, http.StatusOK, send(t, d, textBody).status)
	}
	requireError(t, send(t, d, textBody), http.StatusBadRequest, 130429)
	// Another number has its own bucket.
	require.Equal(t, http.StatusOK, post(t, d, "/v21.0/222/messages", whatsappdouble.DefaultToken, textBody).status)

	// At 20/s a token comes back within 50 ms.
	d.SetRate(20, 1)
	refused := false
	for range 1000 {
		if send(t, d, textBody).status != http.StatusOK {
			refused = true
			break
		}
	}
	require.True(t, refused)
	time.Sleep(100 * time.Millisecond)
	require.Equal(t, http.StatusOK, send(t, d, textBody).status)

	d.SetRate(0, 0)
	for range 20 {
		require.Equal(t, http.StatusOK, send(t, d, textBody).status)
	}
	require.EqualValues(t, 2, d.Stats().Rejected[130429])
}

// TestRateLimitAccuracy: at 50/s with burst 1, hammering for 400 ms gets
// at most 1 + 50/s × elapsed accepted.
func TestRateLimitAccuracy(t *testing.T) {
	d := whatsappdouble.New(whatsappdouble.WithRate(50, 1))
	defer d.Close()
	start := time.Now()
	requests := 0
	for time.Since(start) < 400*time.Millisecond {
		send(t, d, textBody)
		requests++
	}
	elapsed := time.Since(start).Seconds()
	acc := d.Stats().Accepted
	require.LessOrEqual(t, float64(acc), 1+50*elapsed, "never above the rate")
	// The bucket refills (a lower bound in time would flake on a loaded
	// machine, where the loop itself may stall longer than the bucket holds).
	require.Greater(t, acc, int64(1), "%d requests", requests)
	require.EqualValues(t, requests, acc+d.Stats().Rejected[130429])
}

func TestInjectedFailures(t *testing.T) {
	d := whatsappdouble.New()
	defer d.Close()
	for _, code := range whatsappdouble.DocumentedCodes {
		d.FailNext(1, code)
		requireError(t, send(t, d, textBody), whatsappdouble.HTTPStatus(code), code)
	}
	require.Equal(t, http.StatusUnauthorized, whatsappdouble.HTTPStatus(190))
	require.Equal(t, http.StatusOK, send(t, d, textBody).status)

	d.FailNext(2, 131000)
	requireError(t, send(t, d, textBody), http.StatusInternalServerError, 131000)
	requireError(t, send(t, d, textBody), http.StatusInternalServerError, 131000)
	require.Equal(t, http.StatusOK, send(t, d, textBody).status)

	// Per recipient, with or without "+".
	d.FailRecipient("31612345678", 131026)
	requireError(t, send(t, d, textBody), http.StatusBadRequest, 131026)
	requireError(t, send(t, d, textBody), http.StatusBadRequest, 131026)
	require.Equal(t, http.StatusOK, send(t, d, strings.Replace(textBody, "31612345678", "31687654321", 1)).status)
	d.ClearFailures()
	require.Equal(t, http.StatusOK, send(t, d, textBody).status)

	// An invalid request is refused for what it is, not for an injected failure.
	d.FailNext(1, 368)
	requireError(t, send(t, d, `{}`), http.StatusBadRequest, 100)
	requireError(t, send(t, d, textBody), http.StatusForbidden, 368)
}

func TestWindowEnforcementAndPairRate(t *testing.T) {
	clock := testclock.Date(2026, 1, 1, 12, 0, 0)
	var mu sync.Mutex
	now := func() time.Time { mu.Lock(); defer mu.Unlock(); return clock }
	advance := func(d time.Duration) { mu.Lock(); clock = clock.Add(d); mu.Unlock() }

	d := whatsappdouble.New(whatsappdouble.WithWindowEnforcement(), whatsappdouble.WithClock(now), whatsappdouble.WithPairRateLimit(6*time.Second))
	defer d.Close()
	template := `{"messaging_product":"whatsapp","recipient_type":"individual","to":"31612345678","type":"template","template":{"name":"t","language":{"code":"en"}}}`
	requireError(t, send(t, d, textBody), http.StatusBadRequest, 131047)
	require.Equal(t, http.StatusOK, send(t, d, template).status, "templates any time")

	d.UserWrote("+31612345678", now())
	requireError(t, send(t, d, textBody), http.StatusBadRequest, 131056) // 0 s after the template
	advance(6 * time.Second)
	require.Equal(t, http.StatusOK, send(t, d, textBody).status)
	advance(24 * time.Hour)
	requireError(t, send(t, d, textBody), http.StatusBadRequest, 131047)
}

func TestConcurrentSendsUniqueIDs(t *testing.T) {
	d := whatsappdouble.New()
	defer d.Close()
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 50 {
				send(t, d, textBody)
				_ = d.Stats()
				_ = d.Accepted()
			}
		})
	}
	wg.Wait()
	acc := d.Accepted()
	require.Len(t, acc, 400)
	seen := map[string]bool{}
	for _, a := range acc {
		require.False(t, seen[a.WAMID], "duplicate %s", a.WAMID)
		seen[a.WAMID] = true
	}
	d.Reset()
	require.Empty(t, d.Accepted())
	require.Zero(t, d.Stats().Requests)
}

func TestWithoutLog(t *testing.T) {
	d := whatsappdouble.New(whatsappdouble.WithoutLog())
	defer d.Close()
	require.Equal(t, http.StatusOK, send(t, d, textBody).status)
	require.Empty(t, d.Accepted())
	require.EqualValues(t, 1, d.Stats().Accepted)
}

func TestWebhookBuilders(t *testing.T) {
	at := time.Unix(1749416400, 0)
	n := whatsappdouble.NewNotification(phoneID).
		AddMessage("Anna", whatsappdouble.FlowReply("31612345678", "wamid.1", "tok", map[string]any{"age": "30"}, at)).
		AddMessage("Anna", whatsappdouble.TextMessage("31612345678", "wamid.2", "hi", at)).
		AddStatus(whatsappdouble.FailedStatus("wamid.o", "31612345678", at, 131026, "Message undeliverable", "not on WhatsApp"))
	body, sig := whatsappdouble.SignedWebhook("secret", n)

	mac := hmac.New(sha256.New, []byte("secret"))
	mac.Write(body)
	require.Equal(t, "sha256="+hex.EncodeToString(mac.Sum(nil)), sig)

	want := `{"object":"whatsapp_business_account","entry":[{"id":"WABA-106540352242922","changes":[{"field":"messages","value":{
	  "messaging_product":"whatsapp","metadata":{"display_phone_number":"15550000000","phone_number_id":"106540352242922"},
	  "contacts":[{"profile":{"name":"Anna"},"wa_id":"31612345678"}],
	  "messages":[
	    {"from":"31612345678","id":"wamid.1","timestamp":"1749416400","type":"interactive","interactive":{"type":"nfm_reply","nfm_reply":{"name":"flow","body":"Sent","response_json":"{\"age\":\"30\",\"flow_token\":\"tok\"}"}}},
	    {"from":"31612345678","id":"wamid.2","timestamp":"1749416400","type":"text","text":{"body":"hi"}}],
	  "statuses":[{"id":"wamid.o","status":"failed","timestamp":"1749416400","recipient_id":"31612345678","errors":[{"code":131026,"title":"Message undeliverable","message":"Message undeliverable","error_data":{"details":"not on WhatsApp"}}]}]
	}}]}]}`
	require.JSONEq(t, want, string(body))

	plus := whatsappdouble.TextMessage("+31612345678", "wamid.3", "x", at)
	require.Equal(t, "31612345678", plus.From, "wa_id has no +")
	require.Equal(t, "31612345678", whatsappdouble.StatusUpdate("wamid.4", "read", "+31612345678", at).RecipientID)
	require.Equal(t, "hub.challenge=C&hub.mode=subscribe&hub.verify_token=T", whatsappdouble.ChallengeQuery("T", "C").Encode())

	raw, sig2 := whatsappdouble.SignedWebhook("secret", body)
	require.Equal(t, body, raw, "bytes are signed as they are")
	require.Equal(t, sig, sig2)
	require.True(t, strings.HasPrefix(whatsappdouble.MessageID(), "wamid."))
	require.NotEqual(t, whatsappdouble.MessageID(), whatsappdouble.MessageID())

	var got struct {
		body []byte
		sig  string
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got.body, _ = io.ReadAll(r.Body)
		got.sig = r.Header.Get("X-Hub-Signature-256")
	}))
	defer srv.Close()
	resp, err := whatsappdouble.PostWebhook(t.Context(), srv.Client(), srv.URL, "secret", n)
	require.NoError(t, err)
	resp.Body.Close()
	require.True(t, bytes.Equal(body, got.body))
	require.Equal(t, sig, got.sig)
}
