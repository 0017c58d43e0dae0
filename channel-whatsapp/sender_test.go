package whatsapp_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	whatsapp "github.com/flowgate/flowgate/channel-whatsapp"
	"github.com/flowgate/flowgate/shared/channel"
	"github.com/flowgate/flowgate/shared/events"
	whatsappdouble "github.com/flowgate/flowgate/shared/providerdouble/whatsapp"
	"github.com/flowgate/flowgate/shared/store"
	"github.com/flowgate/flowgate/shared/testclock"
)

const (
	phoneID = "106540352242922"
	to      = "31612345678"
)

// now is the one clock of these tests, given to the sender and the double alike.
var now = testclock.Date(2026, 11, 21, 12, 0, 0)

func clock() time.Time { return now }

func testBot(token string) store.Bot {
	return store.Bot{ID: "acme", Channels: store.ChannelAccounts{WhatsApp: &store.WhatsAppAccount{
		PhoneNumberID: phoneID, AccessToken: token, AppSecret: "app-secret", VerifyToken: "verify",
	}}}
}

func setup(t testing.TB, opts ...whatsappdouble.Option) (*whatsappdouble.Server, *whatsapp.Sender) {
	t.Helper()
	// The double enforces the 24-hour window and the pair rate with the same
	// fixed clock as the sender: a double on the real clock would see the
	// test's "a minute ago" drift away as the calendar moves on.
	d := whatsappdouble.New(append([]whatsappdouble.Option{whatsappdouble.WithClock(clock)}, opts...)...)
	t.Cleanup(d.Close)
	s, err := whatsapp.NewSender(whatsapp.WithAPIBase(d.APIBase()), whatsapp.WithClock(clock))
	require.NoError(t, err)
	return d, s
}

// inWindow is a bundle for a contact who wrote an hour ago.
func inWindow(contents ...events.Content) events.Outbound {
	last := now.Add(-time.Hour)
	return bundle(&last, contents...)
}

func bundle(last *time.Time, contents ...events.Content) events.Outbound {
	out := events.Outbound{BotID: "acme", RunID: "run1", ContactID: "c1", Channel: events.ChannelWhatsApp,
		To: to, LastInboundAt: last}
	for i, c := range contents {
		out.Messages = append(out.Messages, events.OutboundMessage{ID: "run1:" + string(rune('0'+i)), Seq: i + 3, Content: c})
	}
	return out
}

func TestContractEveryMessageType(t *testing.T) {
	cases := []struct {
		name    string
		content events.Content
		subtype string
		want    string // the exact request body, per providers.md
	}{
		{
			name:    "text",
			content: events.Content{Type: events.ContentText, Text: "Hello John, https://example.com"},
			want:    `{"messaging_product":"whatsapp","recipient_type":"individual","to":"31612345678","type":"text","text":{"body":"Hello John, https://example.com","preview_url":false}}`,
		},
		{
			name:    "image by link with caption",
			content: events.Content{Type: events.ContentImage, MediaURL: "https://cdn.example.com/a.png", Caption: "Your ticket"},
			want:    `{"messaging_product":"whatsapp","recipient_type":"individual","to":"31612345678","type":"image","image":{"link":"https://cdn.example.com/a.png","caption":"Your ticket"}}`,
		},
		{
			name:    "document with filename",
			content: events.Content{Type: events.ContentDocument, MediaURL: "https://cdn.example.com/i.pdf", Caption: "Invoice", Filename: "invoice-42.pdf"},
			want:    `{"messaging_product":"whatsapp","recipient_type":"individual","to":"31612345678","type":"document","document":{"link":"https://cdn.example.com/i.pdf","caption":"Invoice","filename":"invoice-42.pdf"}}`,
		},
		{
			name:    "video",
			content: events.Content{Type: events.ContentVideo, MediaURL: "https://cdn.example.com/v.mp4", Caption: "Tour"},
			want:    `{"messaging_product":"whatsapp","recipient_type":"individual","to":"31612345678","type":"video","video":{"link":"https://cdn.example.com/v.mp4","caption":"Tour"}}`,
		},
		{
			name: "reply buttons at the limits",
			content: events.Content{Type: events.ContentButtons, Text: strings.Repeat("b", 1024), Buttons: []events.Button{
				{ID: "yes", Title: "Yes"}, {ID: "no", Title: "No"}, {ID: "later", Title: strings.Repeat("ñ", 20)},
			}},
			subtype: "button",
			want: `{"messaging_product":"whatsapp","recipient_type":"individual","to":"31612345678","type":"interactive","interactive":{"type":"button","body":{"text":"` + strings.Repeat("b", 1024) + `"},"action":{"buttons":[` +
				`{"type":"reply","reply":{"id":"yes","title":"Yes"}},{"type":"reply","reply":{"id":"no","title":"No"}},{"type":"reply","reply":{"id":"later","title":"` + strings.Repeat("ñ", 20) + `"}}]}}}`,
		},
		{
			name: "list with 10 rows",
			content: events.Content{Type: events.ContentList, Text: "Pick a slot", List: &events.List{Button: "See slots", Sections: []events.ListSection{
				{Title: "Morning", Rows: rows("m", 6)},
				{Title: "Afternoon", Rows: rows("a", 4)},
			}}},
			subtype: "list",
			want: `{"messaging_product":"whatsapp","recipient_type":"individual","to":"31612345678","type":"interactive","interactive":{"type":"list","body":{"text":"Pick a slot"},"action":{"button":"See slots","sections":[` +
				`{"title":"Morning","rows":[` + rowsJSON("m", 6) + `]},{"title":"Afternoon","rows":[` + rowsJSON("a", 4) + `]}]}}}`,
		},
		{
			name: "template with body parameters",
			content: events.Content{Type: events.ContentTemplate, Template: &events.Template{
				Name: "welcome", Language: "en_US", BodyParams: []string{"John", "42"},
			}},
			want: `{"messaging_product":"whatsapp","recipient_type":"individual","to":"31612345678","type":"template","template":{"name":"welcome","language":{"code":"en_US"},"components":[` +
				`{"type":"body","parameters":[{"type":"text","text":"John"},{"type":"text","text":"42"}]}]}}`,
		},
		{
			name: "template with verbatim components (Recrubo initialMessage)",
			content: events.Content{Type: events.ContentTemplate, Template: &events.Template{
				Name: "welcome", Language: "nl", BodyParams: []string{"ignored"},
				Components: []map[string]any{{"type": "body", "parameters": []any{map[string]any{"type": "text", "text": "John"}}}},
			}},
			want: `{"messaging_product":"whatsapp","recipient_type":"individual","to":"31612345678","type":"template","template":{"name":"welcome","language":{"code":"nl"},"components":[` +
				`{"type":"body","parameters":[{"type":"text","text":"John"}]}]}}`,
		},
		{
			name: "template with a Flow button, flow_token and flow_action_data (seed)",
			content: events.Content{Type: events.ContentTemplate, Template: &events.Template{
				Name: "signup", Language: "en", BodyParams: []string{"Anna"},
				FlowButton: &events.FlowButton{Index: "0", FlowToken: "flow_demo_00001", FlowActionData: map[string]any{"fname": "Anna", "lname": "Stakina", "age": "30"}},
			}},
			want: `{"messaging_product":"whatsapp","recipient_type":"individual","to":"31612345678","type":"template","template":{"name":"signup","language":{"code":"en"},"components":[` +
				`{"type":"body","parameters":[{"type":"text","text":"Anna"}]},` +
				`{"type":"button","sub_type":"flow","index":"0","parameters":[{"type":"action","action":{"flow_token":"flow_demo_00001","flow_action_data":{"age":"30","fname":"Anna","lname":"Stakina"}}}]}]}}`,
		},
		{
			name: "template with a bare Flow button",
			content: events.Content{Type: events.ContentTemplate, Template: &events.Template{
				Name: "signup", Language: "en", FlowButton: &events.FlowButton{},
			}},
			want: `{"messaging_product":"whatsapp","recipient_type":"individual","to":"31612345678","type":"template","template":{"name":"signup","language":{"code":"en"},"components":[` +
				`{"type":"button","sub_type":"flow","index":"0"}]}}`,
		},
		{
			name: "interactive flow, navigate",
			content: events.Content{Type: events.ContentWhatsAppFlow, Text: "Sign up in a minute", Flow: &events.InteractiveFlow{
				FlowID: "1234567890", CTA: "Sign up", Token: "run1:flow", Screen: "WELCOME", Data: map[string]any{"name": "John"},
				Mode: "draft", Header: "Courses", FooterText: "Takes 1 min",
			}},
			subtype: "flow",
			want: `{"messaging_product":"whatsapp","recipient_type":"individual","to":"31612345678","type":"interactive","interactive":{"type":"flow","header":{"type":"text","text":"Courses"},"body":{"text":"Sign up in a minute"},"footer":{"text":"Takes 1 min"},` +
				`"action":{"name":"flow","parameters":{"flow_message_version":"3","flow_cta":"Sign up","flow_id":"1234567890","flow_token":"run1:flow","flow_action":"navigate","flow_action_payload":{"screen":"WELCOME","data":{"name":"John"}},"mode":"draft"}}}}`,
		},
		{
			name: "interactive flow by name, data_exchange",
			content: events.Content{Type: events.ContentWhatsAppFlow, Text: "Book", Flow: &events.InteractiveFlow{
				FlowName: "booking", CTA: "Book now", Token: "tok", Action: "data_exchange", Mode: "published",
			}},
			subtype: "flow",
			want: `{"messaging_product":"whatsapp","recipient_type":"individual","to":"31612345678","type":"interactive","interactive":{"type":"flow","body":{"text":"Book"},` +
				`"action":{"name":"flow","parameters":{"flow_message_version":"3","flow_cta":"Book now","flow_name":"booking","flow_token":"tok","flow_action":"data_exchange","mode":"published"}}}}`,
		},
	}
	d, s := setup(t)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			body, err := whatsapp.BuildPayload(to, tc.content)
			require.NoError(t, err)
			require.JSONEq(t, tc.want, string(body))

			before := len(d.Accepted())
			out := inWindow(tc.content)
			res, err := s.Send(context.Background(), testBot(whatsappdouble.DefaultToken), out, out.Messages[0])
			require.NoError(t, err)
			acc := d.Accepted()
			require.Len(t, acc, before+1)
			got := acc[len(acc)-1]
			require.Equal(t, got.WAMID, res.ProviderMessageID)
			require.True(t, strings.HasPrefix(res.ProviderMessageID, "wamid."))
			require.Equal(t, phoneID, got.PhoneNumberID)
			require.Equal(t, to, got.To)
			require.Equal(t, tc.subtype, got.Subtype)
			require.JSONEq(t, tc.want, string(got.Payload))
		})
	}
	require.Zero(t, d.Stats().Requests-d.Stats().Accepted, "every contract case is accepted by the double")
}

func rows(prefix string, n int) []events.ListRow {
	var r []events.ListRow
	for i := range n {
		id := prefix + string(rune('0'+i))
		r = append(r, events.ListRow{ID: id, Title: "Slot " + id, Description: "at " + id})
	}
	return r
}

func rowsJSON(prefix string, n int) string {
	var parts []string
	for _, r := range rows(prefix, n) {
		b, _ := json.Marshal(r)
		parts = append(parts, string(b))
	}
	return strings.Join(parts, ",")
}

func TestLimitsRefusedBeforeAnyRequest(t *testing.T) {
	btn := func(n int, title string) []events.Button {
		var b []events.Button
		for i := range n {
			b = append(b, events.Button{ID: "b" + string(rune('0'+i)), Title: title + string(rune('0'+i))})
		}
		return b
	}
	cases := map[string]events.Content{
		"four buttons":        {Type: events.ContentButtons, Text: "Pick", Buttons: btn(4, "t")},
		"no buttons":          {Type: events.ContentButtons, Text: "Pick"},
		"button title 21":     {Type: events.ContentButtons, Text: "Pick", Buttons: btn(1, strings.Repeat("x", 20))},
		"button body 1025":    {Type: events.ContentButtons, Text: strings.Repeat("x", 1025), Buttons: btn(1, "t")},
		"button without id":   {Type: events.ContentButtons, Text: "Pick", Buttons: []events.Button{{Title: "x"}}},
		"button with url":     {Type: events.ContentButtons, Text: "Pick", Buttons: []events.Button{{ID: "x", Title: "x", URL: "https://x"}}},
		"buttons no body":     {Type: events.ContentButtons, Buttons: btn(1, "t")},
		"list 11 rows":        {Type: events.ContentList, Text: "Pick", List: &events.List{Button: "Open", Sections: []events.ListSection{{Title: "a", Rows: rows("a", 6)}, {Title: "b", Rows: rows("b", 5)}}}},
		"list button 21":      {Type: events.ContentList, Text: "Pick", List: &events.List{Button: strings.Repeat("x", 21), Sections: []events.ListSection{{Rows: rows("a", 1)}}}},
		"list without button": {Type: events.ContentList, Text: "Pick", List: &events.List{Sections: []events.ListSection{{Rows: rows("a", 1)}}}},
		"list without rows":   {Type: events.ContentList, Text: "Pick", List: &events.List{Button: "Open"}},
		"list nil":            {Type: events.ContentList, Text: "Pick"},
		"empty text":          {Type: events.ContentText},
		"text 4097":           {Type: events.ContentText, Text: strings.Repeat("x", 4097)},
		"image without url":   {Type: events.ContentImage},
		"image local path":    {Type: events.ContentImage, MediaURL: "assets/sample.png"},
		"image bare id":       {Type: events.ContentImage, MediaURL: "1479537139650973"},
		"video ftp url":       {Type: events.ContentVideo, MediaURL: "ftp://e.x/v.mp4"},
		"template nil":        {Type: events.ContentTemplate},
		"flow nil":            {Type: events.ContentWhatsAppFlow, Text: "x"},
		"flow id and name":    {Type: events.ContentWhatsAppFlow, Text: "x", Flow: &events.InteractiveFlow{FlowID: "1", FlowName: "n", CTA: "Go"}},
		"flow neither":        {Type: events.ContentWhatsAppFlow, Text: "x", Flow: &events.InteractiveFlow{CTA: "Go"}},
		"flow no cta":         {Type: events.ContentWhatsAppFlow, Text: "x", Flow: &events.InteractiveFlow{FlowID: "1"}},
		"flow bad action":     {Type: events.ContentWhatsAppFlow, Text: "x", Flow: &events.InteractiveFlow{FlowID: "1", CTA: "Go", Action: "jump"}},
		"flow data no screen": {Type: events.ContentWhatsAppFlow, Text: "x", Flow: &events.InteractiveFlow{FlowID: "1", CTA: "Go", Data: map[string]any{"a": 1}}},
		"flow bad mode":       {Type: events.ContentWhatsAppFlow, Text: "x", Flow: &events.InteractiveFlow{FlowID: "1", CTA: "Go", Mode: "beta"}},
		"unknown type":        {Type: "carousel", Text: "x"},
	}
	d, s := setup(t)
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			out := inWindow(c)
			_, err := s.Send(context.Background(), testBot(whatsappdouble.DefaultToken), out, out.Messages[0])
			var perm *channel.PermanentError
			require.ErrorAs(t, err, &perm)
			require.Equal(t, whatsapp.CodeInvalidMessage, perm.Code)
			require.NotEmpty(t, perm.Reason)
		})
	}
	require.Zero(t, d.Stats().Requests, "no invalid message reached the API")
}

func TestWindow(t *testing.T) {
	text := events.Content{Type: events.ContentText, Text: "Hi"}
	ago := func(d time.Duration) *time.Time { t := now.Add(-d); return &t }
	bot := testBot(whatsappdouble.DefaultToken)

	t.Run("free-form inside the window is sent", func(t *testing.T) {
		d, s := setup(t)
		out := bundle(ago(24*time.Hour-time.Second), text)
		_, err := s.Send(context.Background(), bot, out, out.Messages[0])
		require.NoError(t, err)
		require.Equal(t, "text", d.Accepted()[0].Type)
	})
	for name, last := range map[string]*time.Time{"never wrote": nil, "wrote 25h ago": ago(25 * time.Hour), "wrote exactly 24h ago": ago(24 * time.Hour)} {
		t.Run(name+": a free-form message fails outside_window without a request", func(t *testing.T) {
			d, s := setup(t)
			out := bundle(last, text)
			_, err := s.Send(context.Background(), bot, out, out.Messages[0])
			var perm *channel.PermanentError
			require.ErrorAs(t, err, &perm)
			require.Equal(t, whatsapp.CodeOutsideWindow, perm.Code)
			require.Zero(t, d.Stats().Requests)
		})
	}
	t.Run("a template is sent outside the window as is", func(t *testing.T) {
		d, s := setup(t, whatsappdouble.WithWindowEnforcement())
		other := events.Content{Type: events.ContentTemplate, Template: &events.Template{Name: "reminder", Language: "en"}}
		out := bundle(nil, other)
		_, err := s.Send(context.Background(), bot, out, out.Messages[0])
		require.NoError(t, err)
		require.Contains(t, string(d.Accepted()[0].Payload), `"reminder"`)
	})
}

// TestRecruboScenario: a contact outside the window gets the template
// initialMessage (the orchestrator sends it as the run's first message),
// replies (signed webhook), and the flow continues with free-form
// messages, against a double that enforces the window itself.
func TestRecruboScenario(t *testing.T) {
	d, s := setup(t, whatsappdouble.WithWindowEnforcement())
	bot := testBot(whatsappdouble.DefaultToken)
	initial := events.Content{Type: events.ContentTemplate, Template: &events.Template{Name: "7fqa9715", Language: "nl",
		Components: []map[string]any{{"type": "body", "parameters": []any{map[string]any{"type": "text", "text": "John"}}}}}}
	out := bundle(nil, initial)
	res, err := s.Send(context.Background(), bot, out, out.Messages[0])
	require.NoError(t, err)

	// The user answers; the ingress verifies and parses Meta's POST.
	replyAt := now.Add(-time.Minute).Truncate(time.Second)
	n := whatsappdouble.NewNotification(phoneID).AddMessage("John", whatsappdouble.TextMessage(to, whatsappdouble.MessageID(), "John Doe", replyAt))
	n.AddStatus(whatsappdouble.StatusUpdate(res.ProviderMessageID, "read", to, replyAt))
	body, sig := whatsappdouble.SignedWebhook("app-secret", n)
	require.NoError(t, whatsapp.VerifySignature(body, sig, bot.Channels.WhatsApp.AppSecret))
	p, err := whatsapp.ParseWebhook(bot.ID, body)
	require.NoError(t, err)
	require.Len(t, p.Inbound, 1)
	require.Equal(t, res.ProviderMessageID, p.Deliveries[0].ProviderMessageID)
	d.UserWrote(p.Inbound[0].From, p.Inbound[0].ReceivedAt) // Meta's own record of the window

	last := p.Inbound[0].ReceivedAt
	next := bundle(&last, events.Content{Type: events.ContentText, Text: "Thanks John"}, events.Content{Type: events.ContentText, Text: "Next question"})
	for _, m := range next.Messages {
		_, err := s.Send(context.Background(), bot, next, m)
		require.NoError(t, err)
	}
	var types []string
	for _, a := range d.Accepted() {
		types = append(types, a.Type)
	}
	require.Equal(t, []string{"template", "text", "text"}, types)
	require.Zero(t, d.Stats().Rejected[131047])
}

// TestFlowLaunchScenario: the WhatsApp Flow launch seed: a template with a
// Flow button carrying flow_token and flow_action_data, then the nfm_reply
// webhook carries the same token and the submitted answers.
func TestFlowLaunchScenario(t *testing.T) {
	d, s := setup(t, whatsappdouble.WithWindowEnforcement(), whatsappdouble.WithTemplates("course_signup"))
	bot := testBot(whatsappdouble.DefaultToken)
	tmpl := events.Content{Type: events.ContentTemplate, Template: &events.Template{Name: "course_signup", Language: "en",
		FlowButton: &events.FlowButton{Index: "0", FlowToken: "run1:step2", FlowActionData: map[string]any{"fname": "Anna", "lname": "Stakina", "age": "30"}}}}
	out := bundle(nil, tmpl)
	_, err := s.Send(context.Background(), bot, out, out.Messages[0])
	require.NoError(t, err)
	sent := d.Accepted()[0].Map()
	comp := sent["template"].(map[string]any)["components"].([]any)[0].(map[string]any)
	action := comp["parameters"].([]any)[0].(map[string]any)["action"].(map[string]any)
	require.Equal(t, "flow", comp["sub_type"])
	require.Equal(t, "run1:step2", action["flow_token"])
	require.Equal(t, map[string]any{"fname": "Anna", "lname": "Stakina", "age": "30"}, action["flow_action_data"])

	n := whatsappdouble.NewNotification(phoneID).AddMessage("Anna",
		whatsappdouble.FlowReply(to, whatsappdouble.MessageID(), action["flow_token"].(string), map[string]any{"course": "go-101", "age": "30"}, now))
	body, sig := whatsappdouble.SignedWebhook("app-secret", n)
	require.NoError(t, whatsapp.VerifySignature(body, sig, "app-secret"))
	p, err := whatsapp.ParseWebhook("acme", body)
	require.NoError(t, err)
	require.Len(t, p.Inbound, 1)
	require.Equal(t, "run1:step2", p.Inbound[0].FlowToken)
	require.Equal(t, "go-101", p.Inbound[0].FlowResponse["course"])

	// An unknown template name is Meta's 132001: permanent.
	bad := bundle(nil, events.Content{Type: events.ContentTemplate, Template: &events.Template{Name: "nope", Language: "en"}})
	_, err = s.Send(context.Background(), bot, bad, bad.Messages[0])
	var perm *channel.PermanentError
	require.ErrorAs(t, err, &perm)
	require.Equal(t, "132001", perm.Code)
}

func TestErrorClassificationEveryCode(t *testing.T) {
	type want struct {
		kind        string // retry_after, retryable, permanent
		code        string
		throttled   bool
		minWait     time.Duration
		unreachable bool
	}
	table := map[int]want{
		130429: {kind: "retry_after", code: "130429", throttled: true, minWait: time.Second},
		131056: {kind: "retry_after", code: "131056", minWait: 6 * time.Second},
		80007:  {kind: "retry_after", code: "80007", throttled: true, minWait: 30 * time.Second},
		4:      {kind: "retry_after", code: "4", throttled: true, minWait: 30 * time.Second},
		131000: {kind: "retryable"},
		131016: {kind: "retryable"},
		1:      {kind: "retryable"},
		2:      {kind: "retryable"},
		131057: {kind: "retryable"},
		131047: {kind: "permanent", code: whatsapp.CodeOutsideWindow},
		131026: {kind: "permanent", code: "131026", unreachable: true},
		131048: {kind: "retry_after", code: "131048", throttled: true, minWait: 10 * time.Minute},
		131049: {kind: "retry_after", code: "131049", minWait: 10 * time.Minute},
		368:    {kind: "permanent", code: "368"},
		190:    {kind: "permanent", code: "190"},
		131999: {kind: "permanent", code: "131999"}, // unknown code on a 4xx
	}
	require.Len(t, whatsappdouble.DocumentedCodes, len(table)-1, "every documented code has an expectation")
	for _, c := range whatsappdouble.DocumentedCodes {
		require.Contains(t, table, c)
	}
	bot := testBot(whatsappdouble.DefaultToken)
	for code, w := range table {
		t.Run(w.kind+"/"+http.StatusText(whatsappdouble.HTTPStatus(code))+"/"+itoa(code), func(t *testing.T) {
			d, s := setup(t)
			d.FailNext(1, code)
			out := inWindow(events.Content{Type: events.ContentText, Text: "hi"})
			_, err := s.Send(context.Background(), bot, out, out.Messages[0])
			require.Error(t, err)
			var api *whatsapp.APIError
			require.ErrorAs(t, err, &api, "the Cloud API error is kept for logs")
			require.Equal(t, code, api.Code)
			assertKind(t, err, w.kind, w.code, w.throttled, w.minWait, w.unreachable)

			// The failure was for one request only.
			_, err = s.Send(context.Background(), bot, out, out.Messages[0])
			require.NoError(t, err)
		})
	}
}

func itoa(i int) string { b, _ := json.Marshal(i); return string(b) }

func assertKind(t *testing.T, err error, kind, code string, throttled bool, minWait time.Duration, unreachable bool) {
	t.Helper()
	var ra *channel.RetryAfterError
	var perm *channel.PermanentError
	switch kind {
	case "retry_after":
		require.ErrorAs(t, err, &ra)
		require.Equal(t, code, ra.Code)
		require.Equal(t, throttled, ra.Throttled)
		require.GreaterOrEqual(t, ra.Wait, minWait)
		require.False(t, channel.IsPermanent(err))
	case "retryable":
		require.False(t, errors.As(err, &ra), "plain retryable error, got %v", err)
		require.False(t, channel.IsPermanent(err), "plain retryable error, got %v", err)
	case "permanent":
		require.ErrorAs(t, err, &perm)
		require.Equal(t, code, perm.Code)
		require.Equal(t, unreachable, perm.Unreachable)
		require.False(t, errors.As(err, &ra))
	default:
		t.Fatalf("unknown kind %q", kind)
	}
}

func TestWrongTokenIs190(t *testing.T) {
	d, s := setup(t)
	out := inWindow(events.Content{Type: events.ContentText, Text: "hi"})
	_, err := s.Send(context.Background(), testBot("expired-token"), out, out.Messages[0])
	assertKind(t, err, "permanent", "190", false, 0, false)
	require.NotContains(t, err.Error(), "expired-token")
	var api *whatsapp.APIError
	require.ErrorAs(t, err, &api)
	require.Equal(t, http.StatusUnauthorized, api.HTTPStatus)
	require.EqualValues(t, 1, d.Stats().Rejected[190])
}

func TestDoubleRateLimitAndPairRate(t *testing.T) {
	bot := testBot(whatsappdouble.DefaultToken)
	out := inWindow(events.Content{Type: events.ContentText, Text: "hi"})

	// One token per 100 s: the 6th request is refused however slow the machine.
	d, s := setup(t, whatsappdouble.WithRate(0.01, 5))
	ok, throttled := 0, 0
	for range 6 {
		_, err := s.Send(context.Background(), bot, out, out.Messages[0])
		var ra *channel.RetryAfterError
		switch {
		case err == nil:
			ok++
		case errors.As(err, &ra) && ra.Throttled && ra.Code == "130429":
			throttled++
		default:
			t.Fatalf("unexpected error %v", err)
		}
	}
	require.Equal(t, 5, ok, "the burst passes")
	require.Equal(t, 1, throttled, "the 6th request is throttled")
	require.EqualValues(t, 1, d.Stats().Rejected[130429])

	_, s2 := setup(t, whatsappdouble.WithPairRateLimit(time.Minute))
	_, err := s2.Send(context.Background(), bot, out, out.Messages[0])
	require.NoError(t, err)
	_, err = s2.Send(context.Background(), bot, out, out.Messages[0])
	assertKind(t, err, "retry_after", "131056", false, 6*time.Second, false)
}

func TestFailRecipientUnreachable(t *testing.T) {
	d, s := setup(t)
	d.FailRecipient("+"+to, 131026)
	bot := testBot(whatsappdouble.DefaultToken)
	out := inWindow(events.Content{Type: events.ContentText, Text: "hi"})
	for range 2 {
		_, err := s.Send(context.Background(), bot, out, out.Messages[0])
		assertKind(t, err, "permanent", "131026", false, 0, true)
	}
	other := out
	other.To = "31687654321"
	_, err := s.Send(context.Background(), bot, other, other.Messages[0])
	require.NoError(t, err)
}

func TestAccountAndOptions(t *testing.T) {
	s, err := whatsapp.NewSender()
	require.NoError(t, err)
	require.Equal(t, events.ChannelWhatsApp, s.Channel())
	id, err := s.Account(testBot("tok"))
	require.NoError(t, err)
	require.Equal(t, phoneID, id)

	for name, bot := range map[string]store.Bot{
		"no whatsapp": {ID: "b"},
		"no phone id": {ID: "b", Channels: store.ChannelAccounts{WhatsApp: &store.WhatsAppAccount{AccessToken: "t"}}},
		"no token":    {ID: "b", Channels: store.ChannelAccounts{WhatsApp: &store.WhatsAppAccount{PhoneNumberID: "1"}}},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := s.Account(bot)
			var perm *channel.PermanentError
			require.ErrorAs(t, err, &perm)
			require.Equal(t, whatsapp.CodeNoAccount, perm.Code)
			out := inWindow(events.Content{Type: events.ContentText, Text: "hi"})
			_, err = s.Send(context.Background(), bot, out, out.Messages[0])
			require.ErrorAs(t, err, &perm)
		})
	}

	for _, bad := range []whatsapp.Option{
		whatsapp.WithAPIBase("ftp://x"), whatsapp.WithAPIBase("graph"), whatsapp.WithHTTPClient(nil),
		whatsapp.WithClock(nil), whatsapp.WithTimeout(0), whatsapp.WithWaits(whatsapp.Waits{Spam: -1}),
	} {
		_, err := whatsapp.NewSender(bad)
		require.Error(t, err)
	}

	// The bot account's api_base wins over the option.
	d := whatsappdouble.New(whatsappdouble.WithToken("t2"), whatsappdouble.WithClock(clock))
	defer d.Close()
	s, err = whatsapp.NewSender(whatsapp.WithAPIBase("http://127.0.0.1:1/v21.0"), whatsapp.WithClock(clock),
		whatsapp.WithWaits(whatsapp.Waits{Pair: time.Second, Throughput: 3 * time.Second}))
	require.NoError(t, err)
	bot := testBot("t2")
	bot.Channels.WhatsApp.APIBase = d.APIBase() + "/"
	out := inWindow(events.Content{Type: events.ContentText, Text: "hi"})
	_, err = s.Send(context.Background(), bot, out, out.Messages[0])
	require.NoError(t, err)
	require.Len(t, d.Accepted(), 1)

	// Waits: throughput is configurable, the pair wait never below 6 s.
	d.FailNext(1, 130429)
	d.FailNext(1, 131056)
	_, err = s.Send(context.Background(), bot, out, out.Messages[0])
	assertKind(t, err, "retry_after", "130429", true, 3*time.Second, false)
	_, err = s.Send(context.Background(), bot, out, out.Messages[0])
	assertKind(t, err, "retry_after", "131056", false, 6*time.Second, false)
}

func TestCancelledContextIsNotPermanent(t *testing.T) {
	_, s := setup(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	out := inWindow(events.Content{Type: events.ContentText, Text: "hi"})
	_, err := s.Send(ctx, testBot(whatsappdouble.DefaultToken), out, out.Messages[0])
	require.ErrorIs(t, err, context.Canceled)
	require.False(t, channel.IsPermanent(err))
}

// TestTemplateWithoutLanguageUsesDefault: Recrubo's initialMessage names a
// template by id only; the number's TemplateLanguage, else "en", is sent.
func TestTemplateWithoutLanguageUsesDefault(t *testing.T) {
	d, s := setup(t)
	tpl := events.Content{Type: events.ContentTemplate, Template: &events.Template{Name: "invite"}}
	out := bundle(nil, tpl)
	_, err := s.Send(context.Background(), testBot(whatsappdouble.DefaultToken), out, out.Messages[0])
	require.NoError(t, err)
	bot := testBot(whatsappdouble.DefaultToken)
	bot.Channels.WhatsApp.TemplateLanguage = "pt_BR"
	_, err = s.Send(context.Background(), bot, out, out.Messages[0])
	require.NoError(t, err)
	acc := d.Accepted()
	require.Len(t, acc, 2)
	lang := func(i int) string {
		return acc[i].Map()["template"].(map[string]any)["language"].(map[string]any)["code"].(string)
	}
	require.Equal(t, "en", lang(0))
	require.Equal(t, "pt_BR", lang(1))
	require.Empty(t, tpl.Template.Language, "the caller's content is not modified")
}
