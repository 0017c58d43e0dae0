package whatsapp_test

import (
	"log/slog"
	"net/http"
	"testing"
	"time"

	whatsapp "github.com/flowgate/flowgate/channel-whatsapp"
	"github.com/flowgate/flowgate/shared/channel"
	"github.com/flowgate/flowgate/shared/channel/sendertest"
	"github.com/flowgate/flowgate/shared/events"
	"github.com/flowgate/flowgate/shared/store"
)

// TestSenderHarness runs the WhatsApp sender through the shared sender
// harness: the Cloud API request of each message type, the classification
// of each kind of answer, and no token or app secret in errors or logs.
func TestSenderHarness(t *testing.T) {
	const token, appSecret = "EAAG-harness-token-value", "harness-app-secret"
	ok := sendertest.Reply{Body: `{"messaging_product":"whatsapp","contacts":[{"input":"31612345678","wa_id":"31612345678"}],"messages":[{"id":"wamid.H1"}]}`}
	path := "/v21.0/" + phoneID + "/messages"
	req := func(body string) *sendertest.Request {
		return &sendertest.Request{Method: http.MethodPost, Path: path, JSON: body,
			Header: map[string]string{"Authorization": "Bearer " + token, "Content-Type": "application/json"}}
	}
	text := events.Content{Type: events.ContentText, Text: "hi"}
	metaError := func(status, code int, msg string) sendertest.Reply {
		return sendertest.Reply{Status: status, Body: `{"error":{"message":"` + msg + `","type":"OAuthException","code":` + itoa(code) + `,"fbtrace_id":"x"}}`}
	}
	one := func(name string, c events.Content, reply sendertest.Reply, want *sendertest.Request, kind sendertest.Kind, code string) sendertest.Case {
		out := inWindow(c)
		return sendertest.Case{Name: name, Out: out, Msg: out.Messages[0], Reply: reply, Want: want, Kind: kind, Code: code, ID: map[bool]string{true: "wamid.H1"}[kind == sendertest.Success]}
	}
	neverWrote := bundle(nil, text)

	cases := []sendertest.Case{
		one("text", text, ok, req(`{"messaging_product":"whatsapp","recipient_type":"individual","to":"31612345678","type":"text","text":{"body":"hi","preview_url":false}}`), sendertest.Success, ""),
		one("image by link", events.Content{Type: events.ContentImage, MediaURL: "https://example.com/a.png", Caption: "look"}, ok,
			req(`{"messaging_product":"whatsapp","recipient_type":"individual","to":"31612345678","type":"image","image":{"link":"https://example.com/a.png","caption":"look"}}`), sendertest.Success, ""),
		one("buttons", events.Content{Type: events.ContentButtons, Text: "Pick", Buttons: []events.Button{{ID: "y", Title: "Yes"}, {ID: "n", Title: "No"}}}, ok,
			req(`{"messaging_product":"whatsapp","recipient_type":"individual","to":"31612345678","type":"interactive","interactive":{"type":"button","body":{"text":"Pick"},"action":{"buttons":[{"type":"reply","reply":{"id":"y","title":"Yes"}},{"type":"reply","reply":{"id":"n","title":"No"}}]}}}`), sendertest.Success, ""),
		one("template", events.Content{Type: events.ContentTemplate, Template: &events.Template{Name: "welcome", Language: "en", BodyParams: []string{"John"}}}, ok,
			req(`{"messaging_product":"whatsapp","recipient_type":"individual","to":"31612345678","type":"template","template":{"name":"welcome","language":{"code":"en"},"components":[{"type":"body","parameters":[{"type":"text","text":"John"}]}]}}`), sendertest.Success, ""),
		{Name: "free-form to a contact who never wrote: refused before any request", Out: neverWrote, Msg: neverWrote.Messages[0], NoRequest: true,
			Kind: sendertest.Permanent, Code: whatsapp.CodeOutsideWindow},
		one("too many buttons: refused before any request", events.Content{Type: events.ContentButtons, Text: "Pick",
			Buttons: []events.Button{{ID: "1", Title: "1"}, {ID: "2", Title: "2"}, {ID: "3", Title: "3"}, {ID: "4", Title: "4"}}}, ok, nil, sendertest.Permanent, whatsapp.CodeInvalidMessage),

		// Meta's codes decide, whatever the HTTP status says.
		one("130429 throughput", text, metaError(400, 130429, "Rate limit hit"), req(""), sendertest.RetryAfter, "130429"),
		one("131026 undeliverable", text, metaError(400, 131026, "Message undeliverable"), req(""), sendertest.Permanent, "131026"),
		one("131047 outside the window", text, metaError(400, 131047, "Re-engagement message"), req(""), sendertest.Permanent, whatsapp.CodeOutsideWindow),
		one("368 policy", text, metaError(403, 368, "Temporarily blocked for policies violations"), req(""), sendertest.Permanent, "368"),
		one("190 token expired", text, metaError(401, 190, "Error validating access token"), req(""), sendertest.Permanent, "190"),
		one("131000 transient", text, metaError(500, 131000, "Something went wrong"), req(""), sendertest.Retryable, ""),
		one("throttle code on a 200", text, metaError(200, 130429, "Rate limit hit"), req(""), sendertest.RetryAfter, "130429"),
		// Answers that are not the Graph API's (proxies, outages).
		one("502 html", text, sendertest.Reply{Status: 502, Body: "<html>bad gateway</html>"}, req(""), sendertest.Retryable, ""),
		one("429 empty", text, sendertest.Reply{Status: 429}, req(""), sendertest.RetryAfter, "http_429"),
		one("404 html", text, sendertest.Reply{Status: 404, Body: "<html>not found</html>"}, req(""), sendertest.Permanent, "http_404"),
		one("200 garbage", text, sendertest.Reply{Body: "not json"}, req(""), sendertest.Permanent, whatsapp.CodeInvalidResponse),
		one("200 without an id", text, sendertest.Reply{Body: `{"messaging_product":"whatsapp","messages":[]}`}, req(""), sendertest.Permanent, whatsapp.CodeInvalidResponse),
	}
	for i := range cases {
		switch {
		case cases[i].Kind == sendertest.RetryAfter:
			cases[i].Throttled = true
		case cases[i].Code == "131026":
			cases[i].Unreachable = true // broadcasts skip the contact afterwards
		}
	}
	sendertest.Run(t, sendertest.Harness{
		NewSender: func(t testing.TB, _ *slog.Logger) channel.Sender {
			s, err := whatsapp.NewSender(whatsapp.WithAPIBase("http://127.0.0.1:1/unused"), whatsapp.WithClock(clock),
				whatsapp.WithWaits(whatsapp.Waits{Throughput: time.Second}))
			if err != nil {
				t.Fatal(err)
			}
			return s
		},
		Bot: func(apiBase string) store.Bot {
			return store.Bot{ID: "acme", Channels: store.ChannelAccounts{WhatsApp: &store.WhatsAppAccount{
				PhoneNumberID: phoneID, AccessToken: token, AppSecret: appSecret, VerifyToken: "verify", APIBase: apiBase + "/v21.0",
			}}}
		},
		Secrets:   []string{token, appSecret},
		NetworkTo: to,
		Now:       clock,
	}, cases)
}
