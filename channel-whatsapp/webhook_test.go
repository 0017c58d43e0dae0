package whatsapp_test

import (
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	whatsapp "github.com/flowgate/flowgate/channel-whatsapp"
	"github.com/flowgate/flowgate/shared/events"
	whatsappdouble "github.com/flowgate/flowgate/shared/providerdouble/whatsapp"
)

func TestVerifySignature(t *testing.T) {
	body, sig := whatsappdouble.SignedWebhook("app-secret", whatsappdouble.NewNotification(phoneID))
	require.NoError(t, whatsapp.VerifySignature(body, sig, "app-secret"))
	require.Equal(t, sig, whatsapp.Sign(body, "app-secret"))
	// Hex digits in upper case are the same signature.
	require.NoError(t, whatsapp.VerifySignature(body, "sha256="+strings.ToUpper(strings.TrimPrefix(sig, "sha256=")), "app-secret"))

	tampered := append([]byte(nil), body...)
	tampered[len(tampered)-2] ^= 1
	cases := []struct {
		name   string
		body   []byte
		header string
		secret string
		want   error
	}{
		{"missing", body, "", "app-secret", whatsapp.ErrSignatureMissing},
		{"no prefix", body, strings.TrimPrefix(sig, "sha256="), "app-secret", whatsapp.ErrSignatureMalformed},
		{"sha1", body, "sha1=" + strings.TrimPrefix(sig, "sha256="), "app-secret", whatsapp.ErrSignatureMalformed},
		{"not hex", body, "sha256=" + strings.Repeat("zz", 32), "app-secret", whatsapp.ErrSignatureMalformed},
		{"short", body, sig[:len(sig)-2], "app-secret", whatsapp.ErrSignatureMalformed},
		{"wrong secret", body, sig, "other-secret", whatsapp.ErrSignatureMismatch},
		{"tampered body", tampered, sig, "app-secret", whatsapp.ErrSignatureMismatch},
		{"no secret configured", body, sig, "", whatsapp.ErrNoAppSecret},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			require.ErrorIs(t, whatsapp.VerifySignature(tc.body, tc.header, tc.secret), tc.want)
		})
	}
}

func TestVerifyChallenge(t *testing.T) {
	q := func(mode, token, challenge string) url.Values {
		v := url.Values{}
		if mode != "" {
			v.Set("hub.mode", mode)
		}
		if token != "" {
			v.Set("hub.verify_token", token)
		}
		if challenge != "" {
			v.Set("hub.challenge", challenge)
		}
		return v
	}
	c, ok := whatsapp.VerifyChallenge(q("subscribe", "T", "1158201444"), "T")
	require.True(t, ok)
	require.Equal(t, "1158201444", c)

	// Parsed from a real query string.
	v, err := url.ParseQuery("hub.mode=subscribe&hub.challenge=CH&hub.verify_token=s%26cret")
	require.NoError(t, err)
	c, ok = whatsapp.VerifyChallenge(v, "s&cret")
	require.True(t, ok)
	require.Equal(t, "CH", c)

	for name, tc := range map[string]struct {
		v     url.Values
		token string
	}{
		"wrong token":       {q("subscribe", "X", "C"), "T"},
		"missing token":     {q("subscribe", "", "C"), "T"},
		"unsubscribe":       {q("unsubscribe", "T", "C"), "T"},
		"no mode":           {q("", "T", "C"), "T"},
		"no challenge":      {q("subscribe", "T", ""), "T"},
		"nothing expected":  {q("subscribe", "", "C"), ""},
		"token prefix only": {q("subscribe", "T", "C"), "TT"},
	} {
		t.Run(name, func(t *testing.T) {
			c, ok := whatsapp.VerifyChallenge(tc.v, tc.token)
			require.False(t, ok)
			require.Empty(t, c)
		})
	}
}

// realPayload is a webhook body as Meta documents it, written by hand (not
// by the double's builders), with a text, a button reply, a list reply, an
// nfm_reply, a template button, an image, a reaction, a system message and
// four statuses.
const realPayload = `{
  "object": "whatsapp_business_account",
  "entry": [{
    "id": "102290129340398",
    "changes": [{
      "field": "messages",
      "value": {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "15550783881", "phone_number_id": "106540352242922"},
        "contacts": [
          {"profile": {"name": "Sheena Nelson"}, "wa_id": "16505551234"},
          {"profile": {"name": "Anna"}, "wa_id": "31612345678"}
        ],
        "messages": [
          {"from": "16505551234", "id": "wamid.HBgLMTY1MDM4Nzk0MzkVAgASGBQzQTRBNjU5OUFFRTAzODEwMTQ0RgA=", "timestamp": "1749416383", "type": "text", "text": {"body": "Does it come in another color?"}},
          {"context": {"from": "15550783881", "id": "wamid.ctx"}, "from": "16505551234", "id": "wamid.btn", "timestamp": "1749416390", "type": "interactive",
           "interactive": {"type": "button_reply", "button_reply": {"id": "yes", "title": "Yes please"}}},
          {"from": "16505551234", "id": "wamid.list", "timestamp": "1749416391", "type": "interactive",
           "interactive": {"type": "list_reply", "list_reply": {"id": "slot-9", "title": "9:00", "description": "Morning"}}},
          {"context": {"from": "15550783881", "id": "wamid.flowmsg"}, "from": "31612345678", "id": "wamid.nfm", "timestamp": "1749416400", "type": "interactive",
           "interactive": {"type": "nfm_reply", "nfm_reply": {"response_json": "{\"flow_token\": \"flow_demo_00001\", \"fname\": \"Anna\", \"age\": 30, \"courses\": [\"go\", \"sql\"]}", "body": "Sent", "name": "flow"}}},
          {"from": "31612345678", "id": "wamid.tbtn", "timestamp": "1749416401", "type": "button", "button": {"payload": "STOP", "text": "Stop promotions"}},
          {"from": "31612345678", "id": "wamid.img", "timestamp": "1749416402", "type": "image", "image": {"caption": "my receipt", "mime_type": "image/jpeg", "sha256": "abc", "id": "2754859441498128"}},
          {"from": "31612345678", "id": "wamid.react", "timestamp": "1749416403", "type": "reaction", "reaction": {"message_id": "wamid.x", "emoji": "👍"}},
          {"from": "31612345678", "id": "wamid.sys", "timestamp": "1749416404", "type": "system", "system": {"body": "changed number", "type": "user_changed_number"}}
        ],
        "statuses": [
          {"id": "wamid.out1", "status": "sent", "timestamp": "1749416500", "recipient_id": "16505551234",
           "conversation": {"id": "c1", "origin": {"type": "utility"}}, "pricing": {"billable": true, "pricing_model": "PMP", "category": "utility"}},
          {"id": "wamid.out1", "status": "delivered", "timestamp": "1749416501", "recipient_id": "16505551234"},
          {"id": "wamid.out1", "status": "read", "timestamp": "1749416502", "recipient_id": "16505551234"},
          {"id": "wamid.out2", "status": "failed", "timestamp": "1749416503", "recipient_id": "16505550000",
           "errors": [{"code": 131026, "title": "Message undeliverable", "message": "Message undeliverable", "error_data": {"details": "Message Undeliverable."}}]},
          {"id": "wamid.out3", "status": "deleted", "timestamp": "1749416504", "recipient_id": "16505550000"}
        ]
      }
    }]
  }, {
    "id": "102290129340398",
    "changes": [{"field": "message_template_status_update", "value": {"event": "APPROVED", "message_template_id": 1}}]
  }]
}`

func TestParseWebhookRealShapes(t *testing.T) {
	p, err := whatsapp.ParseWebhook("acme", []byte(realPayload))
	require.NoError(t, err)
	require.Equal(t, []string{"106540352242922"}, p.PhoneNumberIDs)
	at := func(sec int64) time.Time { return time.Unix(sec, 0).UTC() }
	in := func(from, name, id string, sec int64) events.Inbound {
		return events.Inbound{BotID: "acme", Channel: events.ChannelWhatsApp, From: "+" + from, Name: name, ProviderMessageID: id, ReceivedAt: at(sec)}
	}
	text := in("16505551234", "Sheena Nelson", "wamid.HBgLMTY1MDM4Nzk0MzkVAgASGBQzQTRBNjU5OUFFRTAzODEwMTQ0RgA=", 1749416383)
	text.Text = "Does it come in another color?"
	btn := in("16505551234", "Sheena Nelson", "wamid.btn", 1749416390)
	btn.ButtonID, btn.Text = "yes", "Yes please"
	lst := in("16505551234", "Sheena Nelson", "wamid.list", 1749416391)
	lst.ButtonID, lst.Text = "slot-9", "9:00"
	nfm := in("31612345678", "Anna", "wamid.nfm", 1749416400)
	nfm.Text, nfm.FlowToken = "Sent", "flow_demo_00001"
	nfm.FlowResponse = map[string]any{"flow_token": "flow_demo_00001", "fname": "Anna", "age": float64(30), "courses": []any{"go", "sql"}}
	tb := in("31612345678", "Anna", "wamid.tbtn", 1749416401)
	tb.ButtonID, tb.Text = "STOP", "Stop promotions"
	img := in("31612345678", "Anna", "wamid.img", 1749416402)
	img.Text = "my receipt"
	require.Equal(t, []events.Inbound{text, btn, lst, nfm, tb, img}, p.Inbound)

	del := func(id, status string, sec int64) events.Delivery {
		return events.Delivery{BotID: "acme", Channel: events.ChannelWhatsApp, ProviderMessageID: id, Status: status, At: at(sec)}
	}
	failed := del("wamid.out2", events.StatusFailed, 1749416503)
	failed.Code, failed.Reason, failed.Unreachable = "131026", "Message undeliverable: Message Undeliverable.", true
	require.Equal(t, []events.Delivery{
		del("wamid.out1", events.StatusSent, 1749416500),
		del("wamid.out1", events.StatusDelivered, 1749416501),
		del("wamid.out1", events.StatusRead, 1749416502),
		failed,
	}, p.Deliveries)
}

func TestParseWebhookBuilders(t *testing.T) {
	at := now.Truncate(time.Second)
	n := whatsappdouble.NewNotification(phoneID).
		AddMessage("John", whatsappdouble.TextMessage("31600000001", "wamid.a", "hello", at)).
		AddMessage("John", whatsappdouble.ButtonReply("31600000001", "wamid.b", "yes", "Yes", at)).
		AddMessage("Mia", whatsappdouble.ListReply("31600000002", "wamid.c", "r1", "Row 1", "first", at)).
		AddMessage("Mia", whatsappdouble.FlowReply("31600000002", "wamid.d", "tok-1", map[string]any{"email": "mia@example.com"}, at)).
		AddMessage("Mia", whatsappdouble.TemplateButtonReply("31600000002", "wamid.e", "more", "Tell me more", at)).
		AddStatus(whatsappdouble.StatusUpdate("wamid.o", "delivered", "31600000001", at)).
		AddStatus(whatsappdouble.FailedStatus("wamid.p", "31600000002", at, 131047, "Re-engagement message", "more than 24 hours"))
	body, sig := whatsappdouble.SignedWebhook("s", n)
	require.NoError(t, whatsapp.VerifySignature(body, sig, "s"))
	p, err := whatsapp.ParseWebhook("b1", body)
	require.NoError(t, err)
	require.Len(t, p.Inbound, 5)
	require.Equal(t, "hello", p.Inbound[0].Text)
	require.Equal(t, "+31600000001", p.Inbound[0].From, "wa_id in E.164 form")
	require.Equal(t, "John", p.Inbound[0].Name)
	require.Equal(t, at, p.Inbound[0].ReceivedAt)
	require.Equal(t, "yes", p.Inbound[1].ButtonID)
	require.Equal(t, "r1", p.Inbound[2].ButtonID)
	require.Equal(t, "Mia", p.Inbound[2].Name)
	require.Equal(t, "tok-1", p.Inbound[3].FlowToken)
	require.Equal(t, "mia@example.com", p.Inbound[3].FlowResponse["email"])
	require.Equal(t, "more", p.Inbound[4].ButtonID)

	// A wa_id the numbering metadata does not know still gets its "+".
	odd := whatsappdouble.NewNotification(phoneID).AddMessage("X", whatsappdouble.TextMessage("99912", "wamid.z", "x", at))
	body, _ = whatsappdouble.SignedWebhook("s", odd)
	p2, err := whatsapp.ParseWebhook("b1", body)
	require.NoError(t, err)
	require.Equal(t, "+99912", p2.Inbound[0].From)
	require.Equal(t, "X", p2.Inbound[0].Name)
	require.Len(t, p.Deliveries, 2)
	require.Equal(t, events.StatusDelivered, p.Deliveries[0].Status)
	require.Equal(t, "131047", p.Deliveries[1].Code)
	require.False(t, p.Deliveries[1].Unreachable)
}

func TestParseWebhookThousandUpdates(t *testing.T) {
	n := whatsappdouble.NewNotification(phoneID)
	for i := range 600 {
		n.AddMessage("U", whatsappdouble.TextMessage(fmt.Sprintf("3160000%04d", i), fmt.Sprintf("wamid.in%d", i), "hi", now))
	}
	for i := range 400 {
		n.AddStatus(whatsappdouble.StatusUpdate(fmt.Sprintf("wamid.out%d", i), "read", "31600000000", now))
	}
	body, _ := whatsappdouble.SignedWebhook("s", n)
	p, err := whatsapp.ParseWebhook("acme", body)
	require.NoError(t, err)
	require.Len(t, p.Inbound, 600)
	require.Len(t, p.Deliveries, 400)
	require.Equal(t, "wamid.in599", p.Inbound[599].ProviderMessageID)
	// A retry of the same POST yields the same ids: downstream dedup works on them.
	again, err := whatsapp.ParseWebhook("acme", body)
	require.NoError(t, err)
	require.Equal(t, p, again)
}

func TestParseWebhookRejectsMalformed(t *testing.T) {
	for name, body := range map[string]string{
		"empty":                 ``,
		"not json":              `<xml/>`,
		"truncated":             realPayload[:len(realPayload)/2],
		"trailing data":         `{"object":"whatsapp_business_account","entry":[]} {}`,
		"wrong object":          `{"object":"page","entry":[]}`,
		"no object":             `{"entry":[]}`,
		"entry not a list":      `{"object":"whatsapp_business_account","entry":{}}`,
		"bad timestamp":         `{"object":"whatsapp_business_account","entry":[{"changes":[{"field":"messages","value":{"messages":[{"from":"1","id":"w","timestamp":"soon","type":"text","text":{"body":"x"}}]}}]}]}`,
		"response_json garbage": `{"object":"whatsapp_business_account","entry":[{"changes":[{"field":"messages","value":{"messages":[{"from":"1","id":"w","timestamp":"1","type":"interactive","interactive":{"type":"nfm_reply","nfm_reply":{"name":"flow","body":"Sent","response_json":"{flow"}}}]}}]}]}`,
	} {
		t.Run(name, func(t *testing.T) {
			_, err := whatsapp.ParseWebhook("acme", []byte(body))
			require.Error(t, err)
		})
	}
	// A notification with nothing for Flowgate is fine and empty.
	p, err := whatsapp.ParseWebhook("acme", []byte(`{"object":"whatsapp_business_account","entry":[]}`))
	require.NoError(t, err)
	require.Empty(t, p.Inbound)
	require.Empty(t, p.Deliveries)
}

func FuzzParseWebhook(f *testing.F) {
	f.Add([]byte(realPayload))
	n := whatsappdouble.NewNotification(phoneID).
		AddMessage("A", whatsappdouble.FlowReply("316", "wamid.f", "tok", map[string]any{"a": 1}, now)).
		AddStatus(whatsappdouble.FailedStatus("wamid.o", "316", now, 131026, "x", "y"))
	body, _ := whatsappdouble.SignedWebhook("s", n)
	f.Add(body)
	f.Add([]byte(`{"object":"whatsapp_business_account","entry":[{"changes":[{"field":"messages","value":{"messages":[{"from":"1","id":"w","timestamp":1,"type":"text"}]}}]}]}`))
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := whatsapp.ParseWebhook("bot", b)
		if err != nil {
			require.Empty(t, p.Inbound)
			require.Empty(t, p.Deliveries)
			return
		}
		for _, in := range p.Inbound {
			require.Equal(t, "bot", in.BotID)
			require.Equal(t, events.ChannelWhatsApp, in.Channel)
			require.NotEmpty(t, in.From)
			require.NotEmpty(t, in.ProviderMessageID)
			if in.FlowToken != "" {
				require.Equal(t, in.FlowToken, in.FlowResponse["flow_token"])
			}
		}
		for _, d := range p.Deliveries {
			require.NotEmpty(t, d.ProviderMessageID)
			require.Contains(t, []string{events.StatusSent, events.StatusDelivered, events.StatusRead, events.StatusFailed}, d.Status)
		}
		// Parsing is deterministic.
		again, err := whatsapp.ParseWebhook("bot", b)
		require.NoError(t, err)
		require.Equal(t, p, again)
	})
}
