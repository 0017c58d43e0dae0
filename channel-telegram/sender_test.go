package telegram_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	telegram "github.com/flowgate/flowgate/channel-telegram"
	"github.com/flowgate/flowgate/shared/channel"
	"github.com/flowgate/flowgate/shared/events"
	telegramdouble "github.com/flowgate/flowgate/shared/providerdouble/telegram"
	"github.com/flowgate/flowgate/shared/store"
)

const testToken = "123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw"

type fixture struct {
	double *telegramdouble.Server
	sender *telegram.Sender
	bot    store.Bot
}

func newFixture(t testing.TB, opts ...telegramdouble.Option) *fixture {
	t.Helper()
	d := telegramdouble.Start(t, opts...)
	d.AddBot(testToken)
	s, err := telegram.NewSender()
	require.NoError(t, err)
	return &fixture{
		double: d,
		sender: s,
		bot: store.Bot{ID: "acme", Channels: store.ChannelAccounts{Telegram: &store.TelegramAccount{
			BotToken: testToken, WebhookSecret: "s3cret_Token-1", APIBase: d.URL,
		}}},
	}
}

func (f *fixture) send(t testing.TB, to string, c events.Content) (channel.Result, error) {
	t.Helper()
	out := events.Outbound{BotID: "acme", RunID: "run1", Channel: events.ChannelTelegram, To: to}
	return f.sender.Send(context.Background(), f.bot, out, events.OutboundMessage{ID: "run1:1", Seq: 1, Content: c})
}

type keyboard struct {
	InlineKeyboard [][]struct {
		Text         string `json:"text"`
		CallbackData string `json:"callback_data"`
		URL          string `json:"url"`
	} `json:"inline_keyboard"`
}

func TestSenderIdentity(t *testing.T) {
	f := newFixture(t)
	require.Equal(t, events.ChannelTelegram, f.sender.Channel())
	acct, err := f.sender.Account(f.bot)
	require.NoError(t, err)
	require.Equal(t, "123456789", acct)
	require.NotContains(t, acct, "AAH")

	_, err = f.sender.Account(store.Bot{ID: "x"})
	var pe *channel.PermanentError
	require.ErrorAs(t, err, &pe)
	require.Equal(t, "no_account", pe.Code)

	_, err = f.sender.Account(store.Bot{ID: "x", Channels: store.ChannelAccounts{Telegram: &store.TelegramAccount{BotToken: "nocolon"}}})
	require.ErrorAs(t, err, &pe)
	require.Equal(t, "invalid_token", pe.Code)
}

func TestSendEveryContentType(t *testing.T) {
	f := newFixture(t, telegramdouble.WithUnlimited())
	cases := []struct {
		name    string
		to      string
		content events.Content
		check   func(t *testing.T, a telegramdouble.Accepted)
	}{
		{"text", "1001", events.Content{Type: events.ContentText, Text: "Hello 👋"}, func(t *testing.T, a telegramdouble.Accepted) {
			require.Equal(t, "sendMessage", a.Method)
			require.Equal(t, "Hello 👋", a.Text)
			require.Nil(t, a.ReplyMarkup)
		}},
		{"image", "1002", events.Content{Type: events.ContentImage, MediaURL: "https://cdn.example.com/a.jpg", Caption: "look"}, func(t *testing.T, a telegramdouble.Accepted) {
			require.Equal(t, "sendPhoto", a.Method)
			require.Equal(t, "https://cdn.example.com/a.jpg", a.Media)
			require.Equal(t, "look", a.Caption)
		}},
		{"document", "1003", events.Content{Type: events.ContentDocument, MediaURL: "https://cdn.example.com/a.pdf", Caption: "invoice", Filename: "a.pdf"}, func(t *testing.T, a telegramdouble.Accepted) {
			require.Equal(t, "sendDocument", a.Method)
			require.Equal(t, "https://cdn.example.com/a.pdf", a.Media)
			require.Equal(t, "invoice", a.Caption)
		}},
		{"video", "1004", events.Content{Type: events.ContentVideo, MediaURL: "https://cdn.example.com/a.mp4"}, func(t *testing.T, a telegramdouble.Accepted) {
			require.Equal(t, "sendVideo", a.Method)
			require.Equal(t, "https://cdn.example.com/a.mp4", a.Media)
			require.Empty(t, a.Caption)
		}},
		{"buttons", "1005", events.Content{Type: events.ContentButtons, Text: "Pick one", Buttons: []events.Button{
			{ID: "yes", Title: "Yes"}, {ID: "no", Title: "No"}, {Title: "Docs", URL: "https://example.com/docs"},
		}}, func(t *testing.T, a telegramdouble.Accepted) {
			require.Equal(t, "sendMessage", a.Method)
			require.Equal(t, "Pick one", a.Text)
			var kb keyboard
			require.NoError(t, json.Unmarshal(a.ReplyMarkup, &kb))
			require.Len(t, kb.InlineKeyboard, 3)
			require.Equal(t, "Yes", kb.InlineKeyboard[0][0].Text)
			require.Equal(t, "yes", kb.InlineKeyboard[0][0].CallbackData)
			require.Equal(t, "no", kb.InlineKeyboard[1][0].CallbackData)
			require.Equal(t, "https://example.com/docs", kb.InlineKeyboard[2][0].URL)
			require.Empty(t, kb.InlineKeyboard[2][0].CallbackData)
		}},
		{"list", "1006", events.Content{Type: events.ContentList, Text: "Menu", List: &events.List{Button: "Open", Sections: []events.ListSection{
			{Title: "Food", Rows: []events.ListRow{{ID: "pizza", Title: "Pizza"}, {ID: "pasta", Title: "Pasta", Description: "fresh"}}},
			{Title: "Drinks", Rows: []events.ListRow{{ID: "tea", Title: "Tea"}}},
		}}}, func(t *testing.T, a telegramdouble.Accepted) {
			require.Equal(t, "sendMessage", a.Method)
			require.Equal(t, "Menu", a.Text)
			var kb keyboard
			require.NoError(t, json.Unmarshal(a.ReplyMarkup, &kb))
			require.Len(t, kb.InlineKeyboard, 3, "one row per list row")
			got := []string{}
			for _, row := range kb.InlineKeyboard {
				require.Len(t, row, 1)
				got = append(got, row[0].CallbackData+"="+row[0].Text)
			}
			require.Equal(t, []string{"pizza=Pizza", "pasta=Pasta", "tea=Tea"}, got)
		}},
		{"negative group id", "-1001234567890123", events.Content{Type: events.ContentText, Text: "to a supergroup"}, func(t *testing.T, a telegramdouble.Accepted) {
			require.Equal(t, "-1001234567890123", a.ChatID)
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			res, err := f.send(t, tc.to, tc.content)
			require.NoError(t, err)
			acc := f.double.AcceptedTo(tc.to)
			require.Len(t, acc, 1)
			require.Equal(t, tc.to+":"+itoa(acc[0].MessageID), res.ProviderMessageID)
			tc.check(t, acc[0])
		})
	}
	// Long (but legal) text: 4096 UTF-16 units, with astral characters.
	_, err := f.send(t, "1007", events.Content{Type: events.ContentText, Text: strings.Repeat("😀", 2048)})
	require.NoError(t, err)
}

func itoa(n int64) string { b, _ := json.Marshal(n); return string(b) }

func requirePermanent(t *testing.T, err error, code string, unreachable bool) *channel.PermanentError {
	t.Helper()
	var pe *channel.PermanentError
	require.ErrorAs(t, err, &pe, "want a permanent error, got %v", err)
	require.Equal(t, code, pe.Code, pe.Reason)
	require.Equal(t, unreachable, pe.Unreachable, pe.Reason)
	return pe
}

func TestInvalidMessagesFailBeforeHTTP(t *testing.T) {
	f := newFixture(t)
	long := strings.Repeat("a", 4097)
	cases := []struct {
		name    string
		content events.Content
		code    string
	}{
		{"empty text", events.Content{Type: events.ContentText, Text: "  "}, "invalid_message"},
		{"text too long", events.Content{Type: events.ContentText, Text: long}, "invalid_message"},
		{"astral text too long", events.Content{Type: events.ContentText, Text: strings.Repeat("😀", 2049)}, "invalid_message"},
		{"caption too long", events.Content{Type: events.ContentImage, MediaURL: "https://x.example/a.png", Caption: strings.Repeat("c", 1025)}, "invalid_message"},
		{"media without url", events.Content{Type: events.ContentVideo}, "invalid_message"},
		{"callback data too long", events.Content{Type: events.ContentButtons, Text: "t", Buttons: []events.Button{{ID: strings.Repeat("x", 65), Title: "X"}}}, "invalid_message"},
		{"empty callback data", events.Content{Type: events.ContentButtons, Text: "t", Buttons: []events.Button{{Title: "X"}}}, "invalid_message"},
		{"buttons without buttons", events.Content{Type: events.ContentButtons, Text: "t"}, "invalid_message"},
		{"list without rows", events.Content{Type: events.ContentList, Text: "t", List: &events.List{}}, "invalid_message"},
		{"template", events.Content{Type: events.ContentTemplate, Template: &events.Template{Name: "hello", Language: "en"}}, "unsupported_content"},
		{"whatsapp flow", events.Content{Type: events.ContentWhatsAppFlow, Text: "go", Flow: &events.InteractiveFlow{FlowID: "1", CTA: "Go"}}, "unsupported_content"},
		{"unknown type", events.Content{Type: "carousel"}, "unsupported_content"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := f.send(t, "42", tc.content)
			requirePermanent(t, err, tc.code, false)
		})
	}
	_, err := f.send(t, "not-a-chat", events.Content{Type: events.ContentText, Text: "hi"})
	requirePermanent(t, err, "invalid_recipient", false)
	require.Zero(t, f.double.Counters().Requests, "no request may reach the API")

	// Exactly 64 bytes of callback_data is fine.
	_, err = f.send(t, "42", events.Content{Type: events.ContentButtons, Text: "t", Buttons: []events.Button{{ID: strings.Repeat("x", 64), Title: "X"}}})
	require.NoError(t, err)
}

func TestErrorClassification(t *testing.T) {
	f := newFixture(t, telegramdouble.WithUnlimited())
	text := events.Content{Type: events.ContentText, Text: "hi"}

	t.Run("blocked", func(t *testing.T) {
		f.double.SetChat(testToken, 501, telegramdouble.ChatBlocked)
		_, err := f.send(t, "501", text)
		pe := requirePermanent(t, err, "403", true)
		require.Contains(t, pe.Reason, "bot was blocked by the user")
		var ae *telegram.APIError
		require.ErrorAs(t, err, &ae)
		require.Equal(t, 403, ae.Code)
	})
	t.Run("deactivated", func(t *testing.T) {
		f.double.SetChat(testToken, 502, telegramdouble.ChatDeactivated)
		_, err := f.send(t, "502", text)
		requirePermanent(t, err, "403", true)
	})
	t.Run("other 403", func(t *testing.T) {
		f.double.FailNext(1, telegramdouble.APIError{Code: 403, Description: "Forbidden: not enough rights to send text messages to the chat"})
		_, err := f.send(t, "503", text)
		requirePermanent(t, err, "403", false)
	})
	t.Run("chat not found", func(t *testing.T) {
		f.double.SetChat(testToken, 504, telegramdouble.ChatNotFound)
		_, err := f.send(t, "504", text)
		requirePermanent(t, err, "400", true)
	})
	t.Run("other 400", func(t *testing.T) {
		f.double.FailNext(1, telegramdouble.APIError{Code: 400, Description: "Bad Request: can't parse entities"})
		_, err := f.send(t, "505", text)
		requirePermanent(t, err, "400", false)
	})
	t.Run("429 retry_after exactly", func(t *testing.T) {
		f.double.FailNext(1, telegramdouble.APIError{Code: 429, Description: "Too Many Requests: retry after 7", RetryAfter: 7})
		_, err := f.send(t, "506", text)
		var ra *channel.RetryAfterError
		require.ErrorAs(t, err, &ra)
		require.Equal(t, 7*time.Second, ra.Wait)
		require.True(t, ra.Throttled)
		require.Equal(t, "429", ra.Code)
		require.False(t, channel.IsPermanent(err))
	})
	for _, code := range []int{500, 502, 503} {
		t.Run("5xx "+itoa(int64(code)), func(t *testing.T) {
			f.double.FailNext(1, telegramdouble.APIError{Code: code, Description: "Internal Server Error"})
			_, err := f.send(t, "507", text)
			requireRetryable(t, err)
		})
	}
	t.Run("network", func(t *testing.T) {
		f.double.DropNext(1)
		_, err := f.send(t, "508", text)
		requireRetryable(t, err)
		require.NotContains(t, err.Error(), "AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw", "token leaked in error")
	})
	t.Run("unknown token", func(t *testing.T) {
		bot := f.bot
		acct := *bot.Channels.Telegram
		acct.BotToken = "999:wrongwrongwrong"
		bot.Channels.Telegram = &acct
		_, err := f.sender.Send(context.Background(), bot, events.Outbound{To: "1"}, events.OutboundMessage{ID: "m", Content: text})
		requirePermanent(t, err, "401", false)
		require.NotContains(t, err.Error(), "wrongwrongwrong")
	})
	t.Run("no account", func(t *testing.T) {
		_, err := f.sender.Send(context.Background(), store.Bot{ID: "b"}, events.Outbound{To: "1"}, events.OutboundMessage{ID: "m", Content: text})
		requirePermanent(t, err, "no_account", false)
	})
	t.Run("unreachable server never leaks the token", func(t *testing.T) {
		dead := telegramdouble.New()
		dead.Close()
		bot := f.bot
		acct := *bot.Channels.Telegram
		acct.APIBase = dead.URL
		bot.Channels.Telegram = &acct
		_, err := f.sender.Send(context.Background(), bot, events.Outbound{To: "1"}, events.OutboundMessage{ID: "m", Content: text})
		requireRetryable(t, err)
		require.NotContains(t, err.Error(), "AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw")
		require.Contains(t, err.Error(), "123456789")
	})
}

func requireRetryable(t *testing.T, err error) {
	t.Helper()
	require.Error(t, err)
	require.False(t, channel.IsPermanent(err), "got permanent %v", err)
	var ra *channel.RetryAfterError
	require.False(t, errors.As(err, &ra), "got retry-after %v", err)
}

// TestDoubleRateLimits sends as fast as possible and honours each 429 the
// way the runner would: the double's limits answer retry_after, and what it
// accepted never exceeds 1/s per chat or 30/s per bot.
func TestDoubleRateLimits(t *testing.T) {
	f := newFixture(t)
	text := events.Content{Type: events.ContentText, Text: "hi"}

	// Per bot: 30 chats at once are accepted, the 31st is throttled.
	for i := range 30 {
		_, err := f.send(t, itoa(int64(2000+i)), text)
		require.NoError(t, err)
	}
	_, err := f.send(t, "2030", text)
	var ra *channel.RetryAfterError
	require.ErrorAs(t, err, &ra)
	require.Equal(t, time.Second, ra.Wait)
	require.Equal(t, 30, f.double.MaxInWindow("123456789", time.Second))

	// Per chat: three messages to one chat, retrying after exactly the
	// announced wait, are accepted at least a second apart.
	time.Sleep(time.Second)
	sent, throttled := 0, 0
	for sent < 3 {
		_, err := f.send(t, "3000", text)
		if errors.As(err, &ra) {
			throttled++
			require.Equal(t, time.Second, ra.Wait)
			time.Sleep(ra.Wait)
			continue
		}
		require.NoError(t, err)
		sent++
	}
	require.GreaterOrEqual(t, throttled, 2)
	d, ok := f.double.MinChatInterval()
	require.True(t, ok)
	require.GreaterOrEqual(t, d, time.Second)
	c := f.double.Counters()
	require.EqualValues(t, 33, c.Accepted)
	require.EqualValues(t, 1+throttled, c.RateLimited)
}

func TestPaidBroadcast(t *testing.T) {
	f := newFixture(t)
	s, err := telegram.NewSender(telegram.WithPaidBroadcast(true))
	require.NoError(t, err)
	for i := range 40 { // beyond 30/s: paid broadcasts may send up to 1,000/s
		out := events.Outbound{To: itoa(int64(8000 + i))}
		_, err := s.Send(context.Background(), f.bot, out, events.OutboundMessage{ID: itoa(int64(i)), Content: events.Content{Type: events.ContentText, Text: "sale"}})
		require.NoError(t, err)
	}
	acc := f.double.Accepted()
	require.Len(t, acc, 40)
	require.True(t, acc[0].PaidBroadcast)
}
