package rcs_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	rcs "github.com/flowgate/flowgate/channel-rcs"
	"github.com/flowgate/flowgate/shared/channel"
	"github.com/flowgate/flowgate/shared/events"
	rcsdouble "github.com/flowgate/flowgate/shared/providerdouble/rcs"
	"github.com/flowgate/flowgate/shared/store"
)

const agent = "flowgate-agent"

type fixture struct {
	double *rcsdouble.Server
	sender *rcs.Sender
	bot    store.Bot
}

func newFixture(t testing.TB, opts ...rcsdouble.Option) *fixture {
	t.Helper()
	d := rcsdouble.Start(t, opts...)
	key, err := d.NewServiceAccountKey(agent)
	require.NoError(t, err)
	s, err := rcs.NewSender()
	require.NoError(t, err)
	return &fixture{double: d, sender: s, bot: store.Bot{ID: "acme", Channels: store.ChannelAccounts{RCS: &store.RCSAccount{
		AgentID: agent, ServiceAccountJSON: string(key), ClientToken: "client-token-1", APIBase: d.URL,
	}}}}
}

func (f *fixture) sendID(t testing.TB, id, to string, c events.Content) (channel.Result, error) {
	t.Helper()
	out := events.Outbound{BotID: "acme", RunID: "run1", Channel: events.ChannelRCS, To: to}
	return f.sender.Send(context.Background(), f.bot, out, events.OutboundMessage{ID: id, Seq: 1, Content: c})
}

func (f *fixture) send(t testing.TB, to string, c events.Content) (channel.Result, error) {
	return f.sendID(t, "run1:"+uuid.NewString(), to, c)
}

func TestSenderIdentity(t *testing.T) {
	f := newFixture(t)
	require.Equal(t, events.ChannelRCS, f.sender.Channel())
	a, err := f.sender.Account(f.bot)
	require.NoError(t, err)
	require.Equal(t, agent, a)
	_, err = f.sender.Account(store.Bot{ID: "x"})
	requirePermanent(t, err, "no_account", false)
}

func TestMessageIDIsDeterministicUUID(t *testing.T) {
	a, b := rcs.MessageID("run1:1"), rcs.MessageID("run1:1")
	require.Equal(t, a, b)
	require.NotEqual(t, a, rcs.MessageID("run1:2"))
	u, err := uuid.Parse(a)
	require.NoError(t, err)
	require.Equal(t, uuid.Version(5), u.Version())
}

func TestSendEveryContentType(t *testing.T) {
	f := newFixture(t)
	cases := []struct {
		name    string
		content events.Content
		check   func(t *testing.T, a rcsdouble.Accepted)
	}{
		{"text", events.Content{Type: events.ContentText, Text: "Hello"}, func(t *testing.T, a rcsdouble.Accepted) {
			require.Equal(t, "Hello", a.Text)
			require.Empty(t, a.Suggestions)
			require.JSONEq(t, `{"contentMessage":{"text":"Hello"}}`, string(a.Body))
		}},
		{"text with buttons", events.Content{Type: events.ContentText, Text: "Hi", Buttons: []events.Button{{ID: "a", Title: "A"}}}, func(t *testing.T, a rcsdouble.Accepted) {
			require.Equal(t, []rcsdouble.Suggestion{{Text: "A", PostbackData: "a"}}, a.Suggestions)
		}},
		{"buttons", events.Content{Type: events.ContentButtons, Text: "Pick", Buttons: []events.Button{
			{ID: "yes", Title: "Yes"}, {ID: "no", Title: "No"}, {ID: "docs", Title: "Docs", URL: "https://example.com/docs"},
		}}, func(t *testing.T, a rcsdouble.Accepted) {
			require.Equal(t, "Pick", a.Text)
			require.Equal(t, []rcsdouble.Suggestion{
				{Text: "Yes", PostbackData: "yes"}, {Text: "No", PostbackData: "no"},
				{Text: "Docs", PostbackData: "docs", URL: "https://example.com/docs"},
			}, a.Suggestions)
			require.Contains(t, string(a.Body), `"action":{"text":"Docs","postbackData":"docs","openUrlAction":{"url":"https://example.com/docs"}}`)
			require.Contains(t, string(a.Body), `"reply":{"text":"Yes","postbackData":"yes"}`)
		}},
		{"list", events.Content{Type: events.ContentList, Text: "Menu", List: &events.List{Button: "Open", Sections: []events.ListSection{
			{Title: "Food", Rows: []events.ListRow{{ID: "pizza", Title: "Pizza"}, {ID: "pasta", Title: "Pasta"}}},
			{Title: "Drinks", Rows: []events.ListRow{{ID: "tea", Title: "Tea"}}},
		}}}, func(t *testing.T, a rcsdouble.Accepted) {
			require.Equal(t, "Menu", a.Text)
			require.Equal(t, []rcsdouble.Suggestion{{Text: "Pizza", PostbackData: "pizza"}, {Text: "Pasta", PostbackData: "pasta"}, {Text: "Tea", PostbackData: "tea"}}, a.Suggestions)
		}},
		{"image", events.Content{Type: events.ContentImage, MediaURL: "https://cdn.example.com/a.jpg", Caption: "Our new shoe"}, func(t *testing.T, a rcsdouble.Accepted) {
			require.Equal(t, "https://cdn.example.com/a.jpg", a.FileURL)
			require.Equal(t, "Our new shoe", a.Description)
			require.Empty(t, a.Text)
			require.JSONEq(t, `{"contentMessage":{"richCard":{"standaloneCard":{"cardOrientation":"VERTICAL","cardContent":{
				"description":"Our new shoe","media":{"height":"MEDIUM","contentInfo":{"fileUrl":"https://cdn.example.com/a.jpg"}}}}}}}`, string(a.Body))
		}},
		{"video with button", events.Content{Type: events.ContentVideo, MediaURL: "https://cdn.example.com/a.mp4", Buttons: []events.Button{{ID: "more", Title: "More"}}}, func(t *testing.T, a rcsdouble.Accepted) {
			require.Equal(t, "https://cdn.example.com/a.mp4", a.FileURL)
			require.Equal(t, []rcsdouble.Suggestion{{Text: "More", PostbackData: "more"}}, a.Suggestions)
		}},
		{"document", events.Content{Type: events.ContentDocument, MediaURL: "https://cdn.example.com/a.pdf", Filename: "invoice.pdf", Caption: "Your invoice"}, func(t *testing.T, a rcsdouble.Accepted) {
			require.Equal(t, "https://cdn.example.com/a.pdf", a.FileURL)
			require.Equal(t, "invoice.pdf", a.Title)
			require.Equal(t, "Your invoice", a.Description)
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			id := "run1:" + tc.name
			res, err := f.sendID(t, id, "+14155550100", tc.content)
			require.NoError(t, err)
			require.Equal(t, rcs.MessageID(id), res.ProviderMessageID)
			all := f.double.Accepted()
			a := all[len(all)-1]
			require.Equal(t, res.ProviderMessageID, a.MessageID)
			require.Equal(t, agent, a.AgentID)
			require.Equal(t, "+14155550100", a.Phone)
			tc.check(t, a)
		})
	}
}

func TestRetriedSendIsAcceptedOnce(t *testing.T) {
	f := newFixture(t)
	c := events.Content{Type: events.ContentText, Text: "once"}
	r1, err := f.sendID(t, "run9:1", "+14155550100", c)
	require.NoError(t, err)
	r2, err := f.sendID(t, "run9:1", "+14155550100", c)
	require.NoError(t, err)
	require.Equal(t, r1, r2)
	require.Len(t, f.double.Accepted(), 1)
	require.EqualValues(t, 1, f.double.Counters().Duplicates)
}

func requirePermanent(t *testing.T, err error, code string, unreachable bool) *channel.PermanentError {
	t.Helper()
	var pe *channel.PermanentError
	require.ErrorAs(t, err, &pe, "want a permanent error, got %v", err)
	require.Equal(t, code, pe.Code, pe.Reason)
	require.Equal(t, unreachable, pe.Unreachable, pe.Reason)
	return pe
}

func requireRetryable(t *testing.T, err error) {
	t.Helper()
	require.Error(t, err)
	require.False(t, channel.IsPermanent(err), "got permanent %v", err)
	var ra *channel.RetryAfterError
	require.False(t, errors.As(err, &ra), "got retry-after %v", err)
}

func TestInvalidMessagesFailBeforeHTTP(t *testing.T) {
	f := newFixture(t)
	many := make([]events.Button, 12)
	for i := range many {
		many[i] = events.Button{ID: string(rune('a' + i)), Title: "B"}
	}
	cases := []struct {
		name    string
		content events.Content
		code    string
	}{
		{"empty text", events.Content{Type: events.ContentText, Text: " "}, "invalid_message"},
		{"text too long", events.Content{Type: events.ContentText, Text: strings.Repeat("a", 3073)}, "invalid_message"},
		{"12 suggestions", events.Content{Type: events.ContentButtons, Text: "t", Buttons: many}, "invalid_message"},
		{"5 card suggestions", events.Content{Type: events.ContentImage, MediaURL: "https://e.x/a.png", Buttons: many[:5]}, "invalid_message"},
		{"suggestion title too long", events.Content{Type: events.ContentButtons, Text: "t", Buttons: []events.Button{{ID: "a", Title: strings.Repeat("t", 26)}}}, "invalid_message"},
		{"reply without id", events.Content{Type: events.ContentButtons, Text: "t", Buttons: []events.Button{{Title: "T"}}}, "invalid_message"},
		{"bad media url", events.Content{Type: events.ContentImage, MediaURL: "ftp://e.x/a.png"}, "invalid_message"},
		{"caption too long", events.Content{Type: events.ContentImage, MediaURL: "https://e.x/a.png", Caption: strings.Repeat("c", 2001)}, "invalid_message"},
		{"list without rows", events.Content{Type: events.ContentList, Text: "t", List: &events.List{}}, "invalid_message"},
		{"template", events.Content{Type: events.ContentTemplate, Template: &events.Template{Name: "x", Language: "en"}}, "unsupported_content"},
		{"whatsapp flow", events.Content{Type: events.ContentWhatsAppFlow, Text: "x", Flow: &events.InteractiveFlow{FlowID: "1"}}, "unsupported_content"},
		{"unknown", events.Content{Type: "sticker"}, "unsupported_content"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := f.send(t, "+14155550100", tc.content)
			requirePermanent(t, err, tc.code, false)
		})
	}
	_, err := f.send(t, "4155550100", events.Content{Type: events.ContentText, Text: "x"})
	requirePermanent(t, err, "invalid_recipient", false)
	c := f.double.Counters()
	require.Zero(t, c.Requests)
	require.Zero(t, c.TokenRequests)
}

func TestErrorClassification(t *testing.T) {
	f := newFixture(t)
	text := events.Content{Type: events.ContentText, Text: "hi"}
	const phone = "+14155550123"

	t.Run("404 not RCS-capable", func(t *testing.T) {
		f.double.SetNotCapable("+14155550999", true)
		_, err := f.send(t, "+14155550999", text)
		pe := requirePermanent(t, err, "404", true)
		var ae *rcs.APIError
		require.ErrorAs(t, pe, &ae)
		require.Equal(t, "NOT_FOUND", ae.GoogleStatus)
	})
	t.Run("400", func(t *testing.T) {
		f.double.FailNext(1, rcsdouble.Failure{Code: 400, Status: "INVALID_ARGUMENT", Message: "feature not supported"})
		_, err := f.send(t, phone, text)
		requirePermanent(t, err, "400", false)
	})
	t.Run("403 agent not allowed", func(t *testing.T) {
		bot := f.bot
		acct := *bot.Channels.RCS
		acct.AgentID = "someone-elses-agent"
		bot.Channels.RCS = &acct
		_, err := f.sender.Send(context.Background(), bot, events.Outbound{To: phone}, events.OutboundMessage{ID: "x", Content: text})
		pe := requirePermanent(t, err, "403", false)
		require.Contains(t, pe.Reason, "PERMISSION_DENIED")
	})
	t.Run("429 default wait", func(t *testing.T) {
		f.double.FailNext(1, rcsdouble.Failure{Code: 429, Status: "RESOURCE_EXHAUSTED", Message: "quota"})
		_, err := f.send(t, phone, text)
		var ra *channel.RetryAfterError
		require.ErrorAs(t, err, &ra)
		require.Equal(t, time.Second, ra.Wait)
		require.True(t, ra.Throttled)
	})
	t.Run("429 Retry-After header", func(t *testing.T) {
		f.double.FailNext(1, rcsdouble.Failure{Code: 429, Status: "RESOURCE_EXHAUSTED", Message: "quota", RetryAfter: 7})
		_, err := f.send(t, phone, text)
		var ra *channel.RetryAfterError
		require.ErrorAs(t, err, &ra)
		require.Equal(t, 7*time.Second, ra.Wait)
	})
	for _, code := range []int{500, 503} {
		t.Run("5xx", func(t *testing.T) {
			f.double.FailNext(1, rcsdouble.Failure{Code: code, Status: "UNAVAILABLE", Message: "try again"})
			_, err := f.send(t, phone, text)
			requireRetryable(t, err)
		})
	}
	t.Run("401 once: fresh token, success", func(t *testing.T) {
		before := f.double.Counters().TokensIssued
		f.double.RevokeTokens()
		_, err := f.send(t, phone, text)
		require.NoError(t, err)
		require.Equal(t, before+1, f.double.Counters().TokensIssued)
	})
	t.Run("401 twice: permanent auth", func(t *testing.T) {
		f.double.FailNext(2, rcsdouble.Failure{Code: 401, Status: "UNAUTHENTICATED", Message: "bad token"})
		_, err := f.send(t, phone, text)
		requirePermanent(t, err, "auth", false)
	})
	t.Run("409 already exists is success", func(t *testing.T) {
		f.double.FailNext(1, rcsdouble.Failure{Code: 409, Status: "ALREADY_EXISTS", Message: "exists"})
		res, err := f.sendID(t, "run1:conflict", phone, text)
		require.NoError(t, err)
		require.Equal(t, rcs.MessageID("run1:conflict"), res.ProviderMessageID)
	})
	t.Run("network", func(t *testing.T) {
		dead := rcsdouble.New()
		dead.Close()
		bot := f.bot
		acct := *bot.Channels.RCS
		acct.APIBase = dead.URL
		bot.Channels.RCS = &acct
		_, err := f.sender.Send(context.Background(), bot, events.Outbound{To: phone}, events.OutboundMessage{ID: "x", Content: text})
		requireRetryable(t, err)
	})
	t.Run("rate limit of the double", func(t *testing.T) {
		f.double.SetAgentRate(agent, rcsdouble.Rate{N: 2, Window: time.Second})
		defer f.double.SetAgentRate(agent, rcsdouble.Rate{})
		var throttled int
		for range 3 {
			_, err := f.send(t, phone, text)
			var ra *channel.RetryAfterError
			if errors.As(err, &ra) {
				throttled++
				var ae *rcs.APIError
				require.ErrorAs(t, err, &ae)
				require.Equal(t, "RESOURCE_EXHAUSTED", ae.GoogleStatus)
			} else {
				require.NoError(t, err)
			}
		}
		require.Equal(t, 1, throttled)
		require.LessOrEqual(t, f.double.MaxInWindow(agent, time.Second), 2+3) // earlier subtests sent a few
	})
}

func TestAuthFailures(t *testing.T) {
	f := newFixture(t)
	text := events.Content{Type: events.ContentText, Text: "hi"}
	withKey := func(key string) store.Bot {
		bot := f.bot
		acct := *bot.Channels.RCS
		acct.ServiceAccountJSON = key
		bot.Channels.RCS = &acct
		return bot
	}
	send := func(bot store.Bot) error {
		_, err := f.sender.Send(context.Background(), bot, events.Outbound{To: "+14155550100"}, events.OutboundMessage{ID: uuid.NewString(), Content: text})
		return err
	}
	t.Run("not a key", func(t *testing.T) {
		pe := requirePermanent(t, send(withKey(`{"type":"authorized_user"}`)), "auth", false)
		require.NotContains(t, pe.Error(), "PRIVATE KEY")
	})
	t.Run("key unknown to Google", func(t *testing.T) {
		other := rcsdouble.Start(t)
		key, err := other.NewServiceAccountKey(agent)
		require.NoError(t, err)
		// Same key format, but pointed at our double, which never issued it.
		var m map[string]string
		require.NoError(t, json.Unmarshal(key, &m))
		m["token_uri"] = f.double.TokenURL
		rewired, _ := json.Marshal(m)
		requirePermanent(t, send(withKey(string(rewired))), "auth", false)
	})
	t.Run("token endpoint down", func(t *testing.T) {
		var m map[string]string
		require.NoError(t, json.Unmarshal([]byte(f.bot.Channels.RCS.ServiceAccountJSON), &m))
		dead := rcsdouble.New()
		dead.Close()
		m["token_uri"] = dead.TokenURL
		rewired, _ := json.Marshal(m)
		requireRetryable(t, send(withKey(string(rewired))))
	})
}

func TestTokenCachedAcrossSends(t *testing.T) {
	f := newFixture(t)
	var wg sync.WaitGroup
	for i := range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := f.sendID(t, "run:"+string(rune('A'+i)), "+14155550100", events.Content{Type: events.ContentText, Text: "x"})
			require.NoError(t, err)
		}()
	}
	wg.Wait()
	c := f.double.Counters()
	require.EqualValues(t, 1, c.TokenRequests, "one token for 50 concurrent sends")
	require.EqualValues(t, 50, c.Accepted)
}

func TestTokenRefreshedBeforeExpiry(t *testing.T) {
	// The oauth2 library refreshes a token 10s before it expires: an 11s
	// token is good for about one second.
	f := newFixture(t, rcsdouble.WithTokenLifetime(11*time.Second))
	text := events.Content{Type: events.ContentText, Text: "x"}
	for range 3 {
		_, err := f.send(t, "+14155550100", text)
		require.NoError(t, err)
	}
	require.EqualValues(t, 1, f.double.Counters().TokenRequests)
	time.Sleep(1100 * time.Millisecond)
	_, err := f.send(t, "+14155550100", text)
	require.NoError(t, err)
	require.EqualValues(t, 2, f.double.Counters().TokenRequests)
}

func TestKeyRotationGetsNewToken(t *testing.T) {
	f := newFixture(t)
	_, err := f.send(t, "+14155550100", events.Content{Type: events.ContentText, Text: "x"})
	require.NoError(t, err)
	key, err := f.double.NewServiceAccountKey(agent)
	require.NoError(t, err)
	f.bot.Channels.RCS.ServiceAccountJSON = string(key)
	_, err = f.send(t, "+14155550100", events.Content{Type: events.ContentText, Text: "y"})
	require.NoError(t, err)
	require.EqualValues(t, 2, f.double.Counters().TokenRequests)
}

func TestCapabilities(t *testing.T) {
	f := newFixture(t)
	feats, err := f.sender.Capabilities(context.Background(), *f.bot.Channels.RCS, "+14155550100")
	require.NoError(t, err)
	require.Contains(t, feats, "RICHCARD_STANDALONE")
	f.double.SetNotCapable("+14155550101", true)
	_, err = f.sender.Capabilities(context.Background(), *f.bot.Channels.RCS, "+14155550101")
	requirePermanent(t, err, "404", true)
}

func TestMessageTTL(t *testing.T) {
	f := newFixture(t)
	s, err := rcs.NewSender(rcs.WithMessageTTL(time.Hour))
	require.NoError(t, err)
	_, err = s.Send(context.Background(), f.bot, events.Outbound{To: "+14155550100"}, events.OutboundMessage{ID: "ttl", Content: events.Content{Type: events.ContentText, Text: "x"}})
	require.NoError(t, err)
	require.Contains(t, string(f.double.Accepted()[0].Body), `"ttl":"3600s"`)
}

func TestWithTokenURLOverridesKeyFile(t *testing.T) {
	f := newFixture(t)
	var m map[string]string
	require.NoError(t, json.Unmarshal([]byte(f.bot.Channels.RCS.ServiceAccountJSON), &m))
	m["token_uri"] = "https://oauth2.invalid/token"
	rewired, _ := json.Marshal(m)
	f.bot.Channels.RCS.ServiceAccountJSON = string(rewired)

	s, err := rcs.NewSender(rcs.WithTokenURL(f.double.TokenURL))
	require.NoError(t, err)
	_, err = s.Send(context.Background(), f.bot, events.Outbound{To: "+14155550100"}, events.OutboundMessage{ID: "o", Content: events.Content{Type: events.ContentText, Text: "x"}})
	require.NoError(t, err)
	require.EqualValues(t, 1, f.double.Counters().TokensIssued)

	_, err = rcs.NewSender(rcs.WithTokenURL("not a url"))
	require.Error(t, err)
}
