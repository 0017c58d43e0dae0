package rcs_test

import (
	"encoding/json"
	"log/slog"
	"net/http"
	"strconv"
	"testing"

	rcs "github.com/flowgate/flowgate/channel-rcs"
	"github.com/flowgate/flowgate/shared/channel"
	"github.com/flowgate/flowgate/shared/channel/sendertest"
	"github.com/flowgate/flowgate/shared/events"
	rcsdouble "github.com/flowgate/flowgate/shared/providerdouble/rcs"
	"github.com/flowgate/flowgate/shared/store"
)

// TestSenderHarness runs the RCS sender through the shared sender harness.
// The service-account key's token endpoint is the RCS double's; the sends go
// to the harness's recording server.
func TestSenderHarness(t *testing.T) {
	tokens := rcsdouble.Start(t)
	key, err := tokens.NewServiceAccountKey(agent)
	if err != nil {
		t.Fatal(err)
	}
	var k struct {
		PrivateKey string `json:"private_key"`
	}
	if err := json.Unmarshal(key, &k); err != nil || k.PrivateKey == "" {
		t.Fatalf("service account key: %v", err)
	}
	const phone, clientToken = "+14155550123", "client-token-harness"
	ok := sendertest.Reply{Body: `{"name":"phones/+14155550123/agentMessages/x","sendTime":"2026-01-01T00:00:00Z"}`}
	send := func(body string) *sendertest.Request {
		return &sendertest.Request{Method: http.MethodPost, Path: "/v1/phones/" + phone + "/agentMessages", JSON: body}
	}
	googleError := func(code int, status, msg string) sendertest.Reply {
		return sendertest.Reply{Status: code, Body: `{"error":{"code":` + strconv.Itoa(code) + `,"message":"` + msg + `","status":"` + status + `"}}`}
	}
	one := func(name string, c events.Content, reply sendertest.Reply, want *sendertest.Request, kind sendertest.Kind, code string) sendertest.Case {
		msg := events.OutboundMessage{ID: "run1:" + name, Seq: 1, Content: c}
		out := events.Outbound{BotID: "acme", RunID: "run1", Channel: events.ChannelRCS, To: phone, Messages: []events.OutboundMessage{msg}}
		id := ""
		if kind == sendertest.Success {
			id = rcs.MessageID(msg.ID) // the messageId makes a resend harmless
		}
		return sendertest.Case{Name: name, Out: out, Msg: msg, Reply: reply, Want: want, Kind: kind, Code: code, ID: id}
	}
	text := events.Content{Type: events.ContentText, Text: "hi"}
	cases := []sendertest.Case{
		one("text", text, ok, send(`{"contentMessage":{"text":"hi"}}`), sendertest.Success, ""),
		one("buttons", events.Content{Type: events.ContentButtons, Text: "Pick", Buttons: []events.Button{{ID: "y", Title: "Yes"}, {Title: "Site", URL: "https://example.com"}}}, ok,
			send(`{"contentMessage":{"text":"Pick","suggestions":[{"reply":{"text":"Yes","postbackData":"y"}},{"action":{"text":"Site","postbackData":"open_url","openUrlAction":{"url":"https://example.com"}}}]}}`), sendertest.Success, ""),
		one("409 already exists is success", text, googleError(409, "ALREADY_EXISTS", "exists"), send(""), sendertest.Success, ""),
		one("template: refused before any request", events.Content{Type: events.ContentTemplate, Template: &events.Template{Name: "t", Language: "en"}}, ok, nil, sendertest.Permanent, "unsupported_content"),
		one("404 not RCS-capable", text, googleError(404, "NOT_FOUND", "not found"), send(""), sendertest.Permanent, "404"),
		one("400", text, googleError(400, "INVALID_ARGUMENT", "feature not supported"), send(""), sendertest.Permanent, "400"),
		one("403", text, googleError(403, "PERMISSION_DENIED", "agent not allowed"), send(""), sendertest.Permanent, "403"),
		one("429", text, googleError(429, "RESOURCE_EXHAUSTED", "quota"), send(""), sendertest.RetryAfter, "429"),
		one("500", text, googleError(500, "INTERNAL", "oops"), send(""), sendertest.Retryable, ""),
		one("503", text, googleError(503, "UNAVAILABLE", "try again"), send(""), sendertest.Retryable, ""),
	}
	for i := range cases {
		switch cases[i].Code {
		case "404":
			cases[i].Unreachable = true
		case "429":
			cases[i].Throttled = true
		}
	}
	sendertest.Run(t, sendertest.Harness{
		NewSender: func(t testing.TB, log *slog.Logger) channel.Sender {
			s, err := rcs.NewSender(rcs.WithLogger(log))
			if err != nil {
				t.Fatal(err)
			}
			return s
		},
		Bot: func(apiBase string) store.Bot {
			return store.Bot{ID: "acme", Channels: store.ChannelAccounts{RCS: &store.RCSAccount{
				AgentID: agent, ServiceAccountJSON: string(key), ClientToken: clientToken, APIBase: apiBase,
			}}}
		},
		Secrets:   []string{k.PrivateKey, clientToken},
		NetworkTo: phone,
	}, cases)
}
