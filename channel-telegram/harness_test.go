package telegram_test

import (
	"log/slog"
	"net/http"
	"testing"

	telegram "github.com/flowgate/flowgate/channel-telegram"
	"github.com/flowgate/flowgate/shared/channel"
	"github.com/flowgate/flowgate/shared/channel/sendertest"
	"github.com/flowgate/flowgate/shared/events"
	"github.com/flowgate/flowgate/shared/store"
)

// TestSenderHarness runs the Telegram sender through the shared sender
// harness. The token is part of every request's path, so the harness's
// checks that it never reaches an error or a log line matter most here.
func TestSenderHarness(t *testing.T) {
	const secret = "s3cret_Token-1"
	ok := sendertest.Reply{Body: `{"ok":true,"result":{"message_id":77,"chat":{"id":501,"type":"private"},"date":1,"text":"hi"}}`}
	method := func(m, body string) *sendertest.Request {
		return &sendertest.Request{Method: http.MethodPost, Path: "/bot" + testToken + "/" + m, JSON: body,
			Header: map[string]string{"Content-Type": "application/json"}}
	}
	fail := func(code int, desc string, retryAfter int) sendertest.Reply {
		body := `{"ok":false,"error_code":` + itoa(int64(code)) + `,"description":"` + desc + `"`
		if retryAfter > 0 {
			body += `,"parameters":{"retry_after":` + itoa(int64(retryAfter)) + `}`
		}
		return sendertest.Reply{Status: code, Body: body + "}"}
	}
	one := func(name string, c events.Content, reply sendertest.Reply, want *sendertest.Request, kind sendertest.Kind, code string) sendertest.Case {
		out := events.Outbound{BotID: "acme", RunID: "run1", Channel: events.ChannelTelegram, To: "501"}
		msg := events.OutboundMessage{ID: "run1:1", Seq: 1, Content: c}
		out.Messages = []events.OutboundMessage{msg}
		id := ""
		if kind == sendertest.Success {
			id = "501:77" // chat id and message id: a message id is unique only within its chat
		}
		return sendertest.Case{Name: name, Out: out, Msg: msg, Reply: reply, Want: want, Kind: kind, Code: code, ID: id}
	}
	text := events.Content{Type: events.ContentText, Text: "hi"}
	cases := []sendertest.Case{
		one("text", text, ok, method("sendMessage", `{"chat_id":501,"text":"hi"}`), sendertest.Success, ""),
		one("buttons", events.Content{Type: events.ContentButtons, Text: "Pick", Buttons: []events.Button{{ID: "y", Title: "Yes"}, {Title: "Site", URL: "https://example.com"}}}, ok,
			method("sendMessage", `{"chat_id":501,"text":"Pick","reply_markup":{"inline_keyboard":[[{"text":"Yes","callback_data":"y"}],[{"text":"Site","url":"https://example.com"}]]}}`), sendertest.Success, ""),
		one("image", events.Content{Type: events.ContentImage, MediaURL: "https://example.com/a.png", Caption: "look"}, ok,
			method("sendPhoto", `{"chat_id":501,"photo":"https://example.com/a.png","caption":"look"}`), sendertest.Success, ""),
		one("template: refused before any request", events.Content{Type: events.ContentTemplate, Template: &events.Template{Name: "t", Language: "en"}}, ok, nil, sendertest.Permanent, "unsupported_content"),

		one("blocked", text, fail(403, "Forbidden: bot was blocked by the user", 0), method("sendMessage", ""), sendertest.Permanent, "403"),
		one("other 403", text, fail(403, "Forbidden: not enough rights to send text messages to the chat", 0), method("sendMessage", ""), sendertest.Permanent, "403"),
		one("chat not found", text, fail(400, "Bad Request: chat not found", 0), method("sendMessage", ""), sendertest.Permanent, "400"),
		one("other 400", text, fail(400, "Bad Request: can't parse entities", 0), method("sendMessage", ""), sendertest.Permanent, "400"),
		one("401 token refused", text, fail(401, "Unauthorized", 0), method("sendMessage", ""), sendertest.Permanent, "401"),
		one("429 retry after 7", text, fail(429, "Too Many Requests: retry after 7", 7), method("sendMessage", ""), sendertest.RetryAfter, "429"),
		one("500", text, fail(500, "Internal Server Error", 0), method("sendMessage", ""), sendertest.Retryable, ""),
		one("502 html", text, sendertest.Reply{Status: 502, Body: "<html>bad gateway</html>"}, method("sendMessage", ""), sendertest.Retryable, ""),
	}
	for i := range cases {
		switch cases[i].Name {
		case "blocked", "chat not found":
			cases[i].Unreachable = true
		case "429 retry after 7":
			cases[i].Throttled, cases[i].Wait = true, 7e9
		}
	}
	sendertest.Run(t, sendertest.Harness{
		NewSender: func(t testing.TB, log *slog.Logger) channel.Sender {
			s, err := telegram.NewSender(telegram.WithLogger(log))
			if err != nil {
				t.Fatal(err)
			}
			return s
		},
		Bot: func(apiBase string) store.Bot {
			return store.Bot{ID: "acme", Channels: store.ChannelAccounts{Telegram: &store.TelegramAccount{
				BotToken: testToken, WebhookSecret: secret, APIBase: apiBase,
			}}}
		},
		// The bot id before the colon is public; the part after it is the secret.
		Secrets:   []string{testToken[len("123456789:"):], secret},
		NetworkTo: "501",
	}, cases)
}
