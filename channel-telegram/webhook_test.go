package telegram_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	telegram "github.com/flowgate/flowgate/channel-telegram"
	"github.com/flowgate/flowgate/shared/events"
	telegramdouble "github.com/flowgate/flowgate/shared/providerdouble/telegram"
)

var alice = telegramdouble.User{ID: 7000000001, FirstName: "Alice", LastName: "Liddell", Username: "alice", LanguageCode: "en"}

func TestVerifySecret(t *testing.T) {
	require.NoError(t, telegram.VerifySecret("s3cret", "s3cret"))
	require.ErrorIs(t, telegram.VerifySecret("", "s3cret"), telegram.ErrMissingSecret)
	require.ErrorIs(t, telegram.VerifySecret("s3creT", "s3cret"), telegram.ErrWrongSecret)
	require.ErrorIs(t, telegram.VerifySecret("s3cret-longer", "s3cret"), telegram.ErrWrongSecret)
	require.ErrorIs(t, telegram.VerifySecret("anything", ""), telegram.ErrNoSecretConfigured)
	require.ErrorIs(t, telegram.VerifySecret("", ""), telegram.ErrNoSecretConfigured)
}

func TestParseMessage(t *testing.T) {
	u := telegramdouble.TextUpdate(9007199254740993, alice, 55, "hello bot")
	p, err := telegram.ParseUpdate("acme", u.JSON())
	require.NoError(t, err)
	require.Equal(t, telegram.UpdateMessage, p.Kind)
	require.EqualValues(t, 9007199254740993, p.UpdateID, "ids beyond 2^53 survive")
	require.Equal(t, "tg-update-9007199254740993", p.DedupID)
	require.Equal(t, "7000000001", p.ChatID)
	require.Equal(t, &events.Inbound{
		BotID: "acme", Channel: events.ChannelTelegram, From: "7000000001", Name: "Alice Liddell",
		ProviderMessageID: "tg-update-9007199254740993", Text: "hello bot", ReceivedAt: p.At,
	}, p.Inbound)
	require.False(t, p.At.IsZero())
}

func TestParseGroupMessageUsesChatID(t *testing.T) {
	body := `{"update_id":1,"message":{"message_id":3,"from":{"id":42,"is_bot":false,"first_name":"Bob"},
	"chat":{"id":-1001234567890123,"type":"supergroup","title":"Fans"},"date":1700000000,"text":"hi all"}}`
	p, err := telegram.ParseUpdate("acme", []byte(body))
	require.NoError(t, err)
	require.Equal(t, "-1001234567890123", p.Inbound.From)
	require.Equal(t, "Bob", p.Inbound.Name)
	require.Equal(t, int64(1700000000), p.At.Unix())
}

func TestParseCallbackQuery(t *testing.T) {
	u := telegramdouble.CallbackUpdate(100, alice, 77, "yes")
	p, err := telegram.ParseUpdate("acme", u.JSON())
	require.NoError(t, err)
	require.Equal(t, telegram.UpdateCallback, p.Kind)
	require.Equal(t, u.CallbackQuery.ID, p.CallbackQueryID)
	require.Equal(t, "yes", p.Inbound.ButtonID)
	require.Equal(t, "7000000001", p.Inbound.From)
	require.Equal(t, "tg-update-100", p.Inbound.ProviderMessageID)
	require.Equal(t, "Alice Liddell", p.Inbound.Name)
}

func TestParseMyChatMember(t *testing.T) {
	p, err := telegram.ParseUpdate("acme", telegramdouble.BlockedUpdate(200, alice, 123456789).JSON())
	require.NoError(t, err)
	require.Equal(t, telegram.UpdateBlocked, p.Kind)
	require.Equal(t, "7000000001", p.ChatID)
	require.Nil(t, p.Inbound)

	p, err = telegram.ParseUpdate("acme", telegramdouble.UnblockedUpdate(201, alice, 123456789).JSON())
	require.NoError(t, err)
	require.Equal(t, telegram.UpdateUnblocked, p.Kind)
	require.Equal(t, "7000000001", p.ChatID)
}

func TestParseIgnoredAndMalformed(t *testing.T) {
	edited := telegramdouble.Update{UpdateID: 5, EditedMessage: telegramdouble.TextUpdate(0, alice, 1, "x").Message}
	p, err := telegram.ParseUpdate("acme", edited.JSON())
	require.NoError(t, err)
	require.Equal(t, telegram.UpdateIgnored, p.Kind)
	require.Equal(t, "tg-update-5", p.DedupID)

	for name, body := range map[string]string{
		"not json":             `{"update_id":`,
		"array":                `[1,2]`,
		"no update_id":         `{"message":{"message_id":1,"chat":{"id":1,"type":"private"},"date":1,"text":"x"}}`,
		"string id":            `{"update_id":"1"}`,
		"message without chat": `{"update_id":1,"message":{"message_id":1,"date":1,"text":"x"}}`,
		"callback without id":  `{"update_id":1,"callback_query":{"from":{"id":1,"first_name":"a"},"data":"x"}}`,
		"id overflow":          `{"update_id":99999999999999999999}`,
	} {
		_, err := telegram.ParseUpdate("acme", []byte(body))
		require.ErrorIs(t, err, telegram.ErrMalformedUpdate, name)
	}
}

// webhookReceiver plays the ingress: secret check, parse, dedupe on the
// update id; it answers 401 to unauthenticated updates.
type webhookReceiver struct {
	secret string
	mu     sync.Mutex
	seen   map[string]bool
	got    []telegram.ParsedUpdate
}

func (h *webhookReceiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if err := telegram.VerifySecret(r.Header.Get(telegram.SecretHeader), h.secret); err != nil {
		http.Error(w, err.Error(), http.StatusUnauthorized)
		return
	}
	body, _ := io.ReadAll(r.Body)
	p, err := telegram.ParseUpdate("acme", body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.seen[p.DedupID] {
		h.seen[p.DedupID] = true
		h.got = append(h.got, p)
	}
}

func TestWebhookEndToEnd(t *testing.T) {
	f := newFixture(t)
	recv := &webhookReceiver{secret: f.bot.Channels.Telegram.WebhookSecret, seen: map[string]bool{}}
	ingress := httptest.NewServer(recv)
	defer ingress.Close()
	ctx := context.Background()
	acct := *f.bot.Channels.Telegram

	require.NoError(t, f.sender.SetWebhook(ctx, acct, ingress.URL+"/webhooks/telegram/acme", acct.WebhookSecret))
	url, secret := f.double.Webhook(testToken)
	require.Equal(t, ingress.URL+"/webhooks/telegram/acme", url)
	require.Equal(t, acct.WebhookSecret, secret)

	msg := telegramdouble.TextUpdate(300, alice, 1, "hi")
	status, err := f.double.DeliverWebhook(ctx, testToken, msg)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, status)
	// Telegram retries the same update: it is recognised and dropped.
	status, err = f.double.DeliverWebhook(ctx, testToken, msg)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, status)
	status, err = f.double.DeliverWebhook(ctx, testToken, telegramdouble.CallbackUpdate(301, alice, 1, "yes"))
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, status)
	require.Len(t, recv.got, 2)
	require.Equal(t, "hi", recv.got[0].Inbound.Text)
	require.Equal(t, "yes", recv.got[1].Inbound.ButtonID)

	// The ingress answers the button press.
	require.NoError(t, f.sender.AnswerCallbackQuery(ctx, acct, recv.got[1].CallbackQueryID))
	require.Equal(t, []string{recv.got[1].CallbackQueryID}, f.double.AnsweredCallbacks(testToken))

	// Wrong and missing secrets are refused.
	for _, s := range []string{"wrong", ""} {
		req, err := telegramdouble.WebhookRequest(ingress.URL, s, telegramdouble.TextUpdate(302, alice, 2, "x").JSON())
		require.NoError(t, err)
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		resp.Body.Close()
		require.Equal(t, http.StatusUnauthorized, resp.StatusCode, "secret %q", s)
	}
	require.Len(t, recv.got, 2)

	require.NoError(t, f.sender.DeleteWebhook(ctx, acct))
	url, _ = f.double.Webhook(testToken)
	require.Empty(t, url)
}

func TestSetWebhookRefusesBadSecret(t *testing.T) {
	f := newFixture(t)
	acct := *f.bot.Channels.Telegram
	err := f.sender.SetWebhook(context.Background(), acct, "https://example.com/hook", "has space")
	requirePermanent(t, err, "invalid_request", false)
	err = f.sender.SetWebhook(context.Background(), acct, "https://example.com/hook", "")
	requirePermanent(t, err, "invalid_request", false)
	require.Zero(t, f.double.Counters().Requests)
	require.Error(t, f.sender.AnswerCallbackQuery(context.Background(), acct, ""))
}

func FuzzParseUpdate(f *testing.F) {
	f.Add(telegramdouble.TextUpdate(1, alice, 2, "hi").JSON())
	f.Add(telegramdouble.CallbackUpdate(2, alice, 3, "btn").JSON())
	f.Add(telegramdouble.BlockedUpdate(3, alice, 9).JSON())
	f.Add(telegramdouble.UnblockedUpdate(4, alice, 9).JSON())
	f.Add([]byte(`{"update_id":-1,"message":{"chat":{"id":-100}}}`))
	f.Add([]byte(`{"update_id":1,"callback_query":{"id":"x","from":{"id":1},"message":{"chat":{"id":0}}}}`))
	f.Add([]byte(`not json`))
	f.Fuzz(func(t *testing.T, body []byte) {
		p, err := telegram.ParseUpdate("acme", body)
		if err != nil {
			require.Equal(t, telegram.ParsedUpdate{}, p)
			return
		}
		require.Equal(t, "tg-update-"+strconv.FormatInt(p.UpdateID, 10), p.DedupID)
		switch p.Kind {
		case telegram.UpdateMessage, telegram.UpdateCallback:
			require.NotNil(t, p.Inbound)
			require.Equal(t, p.DedupID, p.Inbound.ProviderMessageID)
			require.Equal(t, p.ChatID, p.Inbound.From)
			require.Equal(t, "acme", p.Inbound.BotID)
			id, err := strconv.ParseInt(p.ChatID, 10, 64)
			require.NoError(t, err)
			require.NotZero(t, id)
			if p.Kind == telegram.UpdateCallback {
				require.NotEmpty(t, p.CallbackQueryID)
			}
		case telegram.UpdateBlocked, telegram.UpdateUnblocked:
			require.Nil(t, p.Inbound)
			_, err := strconv.ParseInt(p.ChatID, 10, 64)
			require.NoError(t, err)
		case telegram.UpdateIgnored:
			require.Nil(t, p.Inbound)
		default:
			t.Fatalf("unknown kind %q", p.Kind)
		}
	})
}
