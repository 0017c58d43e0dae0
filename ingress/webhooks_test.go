package ingress_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"

	"github.com/flowgate/flowgate/cmd/flowgate/app"
	"github.com/flowgate/flowgate/ingress"
	"github.com/flowgate/flowgate/shared/bus"
	"github.com/flowgate/flowgate/shared/bus/bustest"
	"github.com/flowgate/flowgate/shared/events"
	rcsdouble "github.com/flowgate/flowgate/shared/providerdouble/rcs"
	telegramdouble "github.com/flowgate/flowgate/shared/providerdouble/telegram"
	whatsappdouble "github.com/flowgate/flowgate/shared/providerdouble/whatsapp"
	"github.com/flowgate/flowgate/shared/store"
	"github.com/flowgate/flowgate/shared/store/sqlite/sqlitetest"
)

const (
	hookPhoneID     = "106540352242922"
	hookAppSecret   = "meta-app-secret"
	hookVerifyToken = "verify-me-please"
	hookTGToken     = "7012345678:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw"
	hookTGSecret    = "tg-webhook-secret_1"
	hookRCSAgent    = "shop-agent"
	hookRCSToken    = "rbm-client-token"
)

type hookEnv struct {
	t    *testing.T
	srv  *httptest.Server
	st   store.Store
	nats *bus.Embedded
	js   jetstream.JetStream
	tg   *telegramdouble.Server
}

// newHookEnv runs the real ingress handler on embedded NATS and the SQLite
// store, with bot "shop" configured on every channel and bot "bare" on none.
func newHookEnv(t *testing.T) *hookEnv {
	t.Helper()
	return newHookEnvWaiting(t, hookPublishWait)
}

// newHookEnvWaiting is newHookEnv with Config.WebhookPublishWait wait.
func newHookEnvWaiting(t *testing.T, wait time.Duration) *hookEnv {
	t.Helper()
	ctx := context.Background()
	e, b := bustest.Bus(t, bus.Config{Source: "/test", PublishTimeout: time.Second})
	st := sqlitetest.Open(t)
	tg := telegramdouble.Start(t)
	tg.AddBot(hookTGToken)
	now := time.Now().UTC()
	require.NoError(t, st.CreateBot(ctx, store.Bot{ID: "shop", Name: "Shop", CreatedAt: now, UpdatedAt: now,
		Channels: store.ChannelAccounts{
			WhatsApp: &store.WhatsAppAccount{PhoneNumberID: hookPhoneID, AccessToken: "t", AppSecret: hookAppSecret, VerifyToken: hookVerifyToken},
			Telegram: &store.TelegramAccount{BotToken: hookTGToken, WebhookSecret: hookTGSecret, APIBase: tg.URL},
			RCS:      &store.RCSAccount{AgentID: hookRCSAgent, ClientToken: hookRCSToken},
		}}))
	require.NoError(t, st.CreateBot(ctx, store.Bot{ID: "bare", Name: "Bare", CreatedAt: now, UpdatedAt: now}))
	h, err := ingress.NewHandler(ingress.Config{AdminKey: "test-admin-key-0123456789", CacheTTL: -1, WebhookPublishWait: wait},
		ingress.Deps{Store: st, Bus: b, CompileFlow: app.CompileFlow})
	require.NoError(t, err)
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return &hookEnv{t: t, srv: srv, st: st, nats: e, js: b.JetStream(), tg: tg}
}

func (e *hookEnv) post(path string, body []byte, hdr ...string) (int, http.Header, []byte) {
	e.t.Helper()
	req, err := http.NewRequest(http.MethodPost, e.srv.URL+path, bytes.NewReader(body))
	require.NoError(e.t, err)
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	return e.send(req)
}

func (e *hookEnv) send(req *http.Request) (int, http.Header, []byte) {
	e.t.Helper()
	resp, err := http.DefaultClient.Do(req)
	require.NoError(e.t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(e.t, err)
	return resp.StatusCode, resp.Header, b
}

// published returns the payloads queued on subjects matching filter (the
// events stream is a work queue: its messages are read by sequence).
func published[T any](e *hookEnv, filter string) []T {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	stream, err := e.js.Stream(ctx, bus.StreamEvents)
	require.NoError(e.t, err)
	info, err := stream.Info(ctx)
	require.NoError(e.t, err)
	var out []T
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		m, err := stream.GetMsg(ctx, seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue
		}
		require.NoError(e.t, err)
		if !subjectMatches(filter, m.Subject) {
			continue
		}
		var v T
		require.NoError(e.t, json.Unmarshal(m.Data, &v))
		out = append(out, v)
	}
	return out
}

// subjectMatches is NATS subject matching with "*" and a final ">".
func subjectMatches(filter, subject string) bool {
	f, s := strings.Split(filter, "."), strings.Split(subject, ".")
	for i, tok := range f {
		if tok == ">" {
			return len(s) > i
		}
		if i >= len(s) || (tok != "*" && tok != s[i]) {
			return false
		}
	}
	return len(f) == len(s)
}

func requireErrorCode(t *testing.T, body []byte, code string) {
	t.Helper()
	var eb struct {
		Error struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	require.NoError(t, json.Unmarshal(body, &eb), string(body))
	require.Equal(t, code, eb.Error.Code, string(body))
	require.NotEmpty(t, eb.Error.Message)
}

func TestWhatsAppWebhookVerification(t *testing.T) {
	e := newHookEnv(t)
	get := func(bot string, q string) (int, []byte) {
		resp, err := http.Get(e.srv.URL + "/webhooks/whatsapp/" + bot + "?" + q)
		require.NoError(t, err)
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, b
	}
	code, body := get("shop", whatsappdouble.ChallengeQuery(hookVerifyToken, "1158201444").Encode())
	require.Equal(t, 200, code)
	require.Equal(t, "1158201444", string(body))
	code, body = get("shop", whatsappdouble.ChallengeQuery("wrong", "1158201444").Encode())
	require.Equal(t, 403, code)
	requireErrorCode(t, body, "forbidden")
	code, _ = get("nobody", whatsappdouble.ChallengeQuery(hookVerifyToken, "1").Encode())
	require.Equal(t, 404, code)
	code, _ = get("bare", whatsappdouble.ChallengeQuery(hookVerifyToken, "1").Encode())
	require.Equal(t, 404, code)
}

func TestWhatsAppWebhookSignatures(t *testing.T) {
	e := newHookEnv(t)
	at := time.Now().Add(-time.Minute)
	n := whatsappdouble.NewNotification(hookPhoneID).
		AddMessage("Ana", whatsappdouble.TextMessage("+34600111222", "wamid.IN1", "hola", at)).
		AddMessage("Ana", whatsappdouble.ButtonReply("+34600111222", "wamid.IN2", "yes", "Yes", at)).
		AddStatus(whatsappdouble.StatusUpdate("wamid.OUT1", "delivered", "+34600111222", at))
	body, sig := whatsappdouble.SignedWebhook(hookAppSecret, n)

	// Missing and wrong signatures: 401 in the API's error shape, nothing queued.
	code, _, resp := e.post("/webhooks/whatsapp/shop", body)
	require.Equal(t, 401, code)
	requireErrorCode(t, resp, "invalid_signature")
	_, wrong := whatsappdouble.SignedWebhook("another-secret", n)
	code, _, resp = e.post("/webhooks/whatsapp/shop", body, "X-Hub-Signature-256", wrong)
	require.Equal(t, 401, code)
	requireErrorCode(t, resp, "invalid_signature")
	code, _, _ = e.post("/webhooks/whatsapp/shop", body, "X-Hub-Signature-256", "sha256=zz")
	require.Equal(t, 401, code)
	// A body changed after signing.
	tampered := bytes.Replace(body, []byte("hola"), []byte("HOLA"), 1)
	code, _, _ = e.post("/webhooks/whatsapp/shop", tampered, "X-Hub-Signature-256", sig)
	require.Equal(t, 401, code)
	require.Empty(t, published[events.Inbound](e, events.SubjectInbound+".>"))

	// Valid: every message and status queued.
	code, _, _ = e.post("/webhooks/whatsapp/shop", body, "X-Hub-Signature-256", sig)
	require.Equal(t, 200, code)
	in := published[events.Inbound](e, events.InboundSubject(events.ChannelWhatsApp, "shop"))
	require.Len(t, in, 2)
	require.Equal(t, "+34600111222", in[0].From) // E.164, as contacts are stored
	require.Equal(t, "hola", in[0].Text)
	require.Equal(t, "Ana", in[0].Name)
	require.Equal(t, "yes", in[1].ButtonID)
	dl := published[events.Delivery](e, events.DeliverySubject(events.ChannelWhatsApp, "shop"))
	require.Len(t, dl, 1)
	require.Equal(t, "wamid.OUT1", dl[0].ProviderMessageID)
	require.Equal(t, events.StatusDelivered, dl[0].Status)

	// Meta retries the same notification: nothing new is queued.
	code, _, _ = e.post("/webhooks/whatsapp/shop", body, "X-Hub-Signature-256", sig)
	require.Equal(t, 200, code)
	require.Len(t, published[events.Inbound](e, events.SubjectInbound+".>"), 2)
	require.Len(t, published[events.Delivery](e, events.SubjectDelivery+".>"), 1)

	// Unknown bot and bot without WhatsApp: 404.
	code, _, _ = e.post("/webhooks/whatsapp/nobody", body, "X-Hub-Signature-256", sig)
	require.Equal(t, 404, code)
	code, _, _ = e.post("/webhooks/whatsapp/bare", body, "X-Hub-Signature-256", sig)
	require.Equal(t, 404, code)

	// Another number's events (same Meta app): acknowledged, not routed.
	other, osig := whatsappdouble.SignedWebhook(hookAppSecret, whatsappdouble.NewNotification("999").
		AddMessage("Bo", whatsappdouble.TextMessage("+34600999999", "wamid.IN9", "hi", at)))
	code, _, _ = e.post("/webhooks/whatsapp/shop", other, "X-Hub-Signature-256", osig)
	require.Equal(t, 200, code)
	require.Len(t, published[events.Inbound](e, events.SubjectInbound+".>"), 2)

	// Signed but not a WhatsApp notification: 400.
	junk, jsig := whatsappdouble.SignedWebhook(hookAppSecret, []byte(`{"object":"page","entry":[]}`))
	code, _, _ = e.post("/webhooks/whatsapp/shop", junk, "X-Hub-Signature-256", jsig)
	require.Equal(t, 400, code)
}

func TestWhatsAppWebhookFlowReplyAndFailedStatus(t *testing.T) {
	e := newHookEnv(t)
	at := time.Now()
	n := whatsappdouble.NewNotification(hookPhoneID).
		AddMessage("Ana", whatsappdouble.FlowReply("+34600111222", "wamid.F1", "tok-42", map[string]any{"size": "M"}, at)).
		AddStatus(whatsappdouble.FailedStatus("wamid.OUT2", "+34600111222", at, 131026, "Message undeliverable", "not a WhatsApp user"))
	body, sig := whatsappdouble.SignedWebhook(hookAppSecret, n)
	code, _, _ := e.post("/webhooks/whatsapp/shop", body, "X-Hub-Signature-256", sig)
	require.Equal(t, 200, code)
	in := published[events.Inbound](e, events.SubjectInbound+".>")
	require.Len(t, in, 1)
	require.Equal(t, "tok-42", in[0].FlowToken)
	require.Equal(t, "M", in[0].FlowResponse["size"])
	dl := published[events.Delivery](e, events.SubjectDelivery+".>")
	require.Len(t, dl, 1)
	require.Equal(t, events.StatusFailed, dl[0].Status)
	require.Equal(t, "131026", dl[0].Code)
	require.True(t, dl[0].Unreachable)
}

// hookPublishWait is the hook tests' Config.WebhookPublishWait.
const hookPublishWait = 800 * time.Millisecond

// TestWebhookBusDownIs503: with NATS gone for longer than
// WebhookPublishWait the provider is answered 503 with Retry-After, once
// that wait is over.
func TestWebhookBusDownIs503(t *testing.T) {
	e := newHookEnv(t)
	e.nats.Shutdown()
	body, sig := whatsappdouble.SignedWebhook(hookAppSecret, whatsappdouble.NewNotification(hookPhoneID).
		AddMessage("Ana", whatsappdouble.TextMessage("+34600111222", "wamid.X", "hola", time.Now())))
	start := time.Now()
	code, hdr, resp := e.post("/webhooks/whatsapp/shop", body, "X-Hub-Signature-256", sig)
	require.GreaterOrEqual(t, time.Since(start), hookPublishWait/2, "tried again within the request first")
	require.Equal(t, 503, code)
	require.NotEmpty(t, hdr.Get("Retry-After"))
	requireErrorCode(t, resp, "unavailable")
	u := telegramdouble.TextUpdate(5, telegramdouble.User{ID: 77, FirstName: "Ivan"}, 1, "hi")
	code, hdr, _ = e.post("/webhooks/telegram/shop", u.JSON(), telegramdouble.SecretHeader, hookTGSecret)
	require.Equal(t, 503, code)
	require.NotEmpty(t, hdr.Get("Retry-After"))
}

// webhookWait is TestWebhookRidesOutAStreamWithoutLeader's
// WebhookPublishWait (with -1 the test fails: 503).
const webhookWait = 5 * time.Second

// TestWebhookRidesOutAStreamWithoutLeader: while the stream that takes
// replies cannot (here: gone, as a stream without a leader during a NATS
// election answers no one) the webhook request tries again, and is
// answered 200 once the stream is back, with the reply queued once.
func TestWebhookRidesOutAStreamWithoutLeader(t *testing.T) {
	e := newHookEnvWaiting(t, webhookWait)
	ctx := context.Background()
	s, err := e.js.Stream(ctx, bus.StreamEvents)
	require.NoError(t, err)
	cfg := s.CachedInfo().Config
	require.NoError(t, e.js.DeleteStream(ctx, bus.StreamEvents))
	back := make(chan error, 1)
	go func() {
		// Longer than the bus's own tries (bus.DefaultRetryWait, 2 s
		// from the first).
		time.Sleep(bus.DefaultRetryWait + time.Second)
		_, err := e.js.CreateStream(ctx, cfg)
		back <- err
	}()
	retries := testutil.ToFloat64(ingress.WebhookPublishRetries.WithLabelValues("whatsapp"))
	body, sig := whatsappdouble.SignedWebhook(hookAppSecret, whatsappdouble.NewNotification(hookPhoneID).
		AddMessage("Ana", whatsappdouble.TextMessage("+34600111222", "wamid.R1", "hola", time.Now())))
	code, _, resp := e.post("/webhooks/whatsapp/shop", body, "X-Hub-Signature-256", sig)
	require.NoError(t, <-back)
	require.Equal(t, 200, code, "%s", resp)
	require.Greater(t, testutil.ToFloat64(ingress.WebhookPublishRetries.WithLabelValues("whatsapp")), retries)
	in := published[events.Inbound](e, events.SubjectInbound+".>")
	require.Len(t, in, 1)
	require.Equal(t, "hola", in[0].Text)
}

func TestTelegramWebhook(t *testing.T) {
	e := newHookEnv(t)
	ctx := context.Background()
	user := telegramdouble.User{ID: 424242, FirstName: "Ivan", LastName: "P"}
	msg := telegramdouble.TextUpdate(1001, user, 7, "hello").JSON()

	code, _, resp := e.post("/webhooks/telegram/shop", msg)
	require.Equal(t, 401, code)
	requireErrorCode(t, resp, "invalid_signature")
	code, _, _ = e.post("/webhooks/telegram/shop", msg, telegramdouble.SecretHeader, "wrong")
	require.Equal(t, 401, code)
	code, _, _ = e.post("/webhooks/telegram/bare", msg, telegramdouble.SecretHeader, hookTGSecret)
	require.Equal(t, 404, code)
	require.Empty(t, published[events.Inbound](e, events.SubjectInbound+".>"))

	for range 2 { // Telegram's retry of the same update_id is dropped
		code, _, _ = e.post("/webhooks/telegram/shop", msg, telegramdouble.SecretHeader, hookTGSecret)
		require.Equal(t, 200, code)
	}
	in := published[events.Inbound](e, events.InboundSubject(events.ChannelTelegram, "shop"))
	require.Len(t, in, 1)
	require.Equal(t, "424242", in[0].From)
	require.Equal(t, "hello", in[0].Text)
	require.Equal(t, "Ivan P", in[0].Name)

	// A button press: an Inbound with the button id, and the query answered.
	cb := telegramdouble.CallbackUpdate(1002, user, 9, "plan_pro")
	code, _, _ = e.post("/webhooks/telegram/shop", cb.JSON(), telegramdouble.SecretHeader, hookTGSecret)
	require.Equal(t, 200, code)
	in = published[events.Inbound](e, events.InboundSubject(events.ChannelTelegram, "shop"))
	require.Len(t, in, 2)
	require.Equal(t, "plan_pro", in[1].ButtonID)
	require.Eventually(t, func() bool {
		return len(e.tg.AnsweredCallbacks(hookTGToken)) == 1
	}, 5*time.Second, 20*time.Millisecond)
	require.Equal(t, cb.CallbackQuery.ID, e.tg.AnsweredCallbacks(hookTGToken)[0])

	// The user blocks the bot: the contact becomes unreachable; unblocking reverses it.
	c, _, err := e.st.UpsertContact(ctx, store.ContactUpsert{BotID: "shop", Channel: events.ChannelTelegram,
		ExternalID: "424242", NewID: "c424242", Now: time.Now().UTC()})
	require.NoError(t, err)
	code, _, _ = e.post("/webhooks/telegram/shop", telegramdouble.BlockedUpdate(1003, user, 7012345678).JSON(), telegramdouble.SecretHeader, hookTGSecret)
	require.Equal(t, 200, code)
	c, err = e.st.GetContact(ctx, "shop", c.ID)
	require.NoError(t, err)
	require.True(t, c.Unreachable)
	code, _, _ = e.post("/webhooks/telegram/shop", telegramdouble.UnblockedUpdate(1004, user, 7012345678).JSON(), telegramdouble.SecretHeader, hookTGSecret)
	require.Equal(t, 200, code)
	c, err = e.st.GetContact(ctx, "shop", c.ID)
	require.NoError(t, err)
	require.False(t, c.Unreachable)

	code, _, _ = e.post("/webhooks/telegram/shop", []byte(`{"no_update_id":1}`), telegramdouble.SecretHeader, hookTGSecret)
	require.Equal(t, 400, code)
}

func TestRCSWebhook(t *testing.T) {
	e := newHookEnv(t)
	// Setup handshake: the secret is echoed only for the agent's client token.
	code, _, body := e.post("/webhooks/rcs/shop", rcsdouble.HandshakeBody(hookRCSToken, "s3cr3t"))
	require.Equal(t, 200, code)
	require.Equal(t, "s3cr3t", string(body))
	code, _, _ = e.post("/webhooks/rcs/shop", rcsdouble.HandshakeBody("other-token", "s3cr3t"))
	require.Equal(t, 403, code)

	data := rcsdouble.UserText("+14155550100", hookRCSAgent, "msg-1", "hi there")
	send := func(token string, data []byte) (int, []byte) {
		req, err := rcsdouble.WebhookRequest(e.srv.URL+"/webhooks/rcs/shop", token, data)
		require.NoError(t, err)
		code, _, b := e.send(req)
		return code, b
	}
	code, body = send("", data)
	require.Equal(t, 401, code)
	requireErrorCode(t, body, "invalid_signature")
	code, _ = send("wrong-token", data)
	require.Equal(t, 401, code)
	require.Empty(t, published[events.Inbound](e, events.SubjectInbound+".>"))

	for range 2 { // RBM's redelivery is dropped
		code, _ = send(hookRCSToken, data)
		require.Equal(t, 200, code)
	}
	code, _ = send(hookRCSToken, rcsdouble.UserSuggestionResponse("+14155550100", hookRCSAgent, "msg-2", "opt_b", "Option B"))
	require.Equal(t, 200, code)
	in := published[events.Inbound](e, events.InboundSubject(events.ChannelRCS, "shop"))
	require.Len(t, in, 2)
	require.Equal(t, "hi there", in[0].Text)
	require.Equal(t, "opt_b", in[1].ButtonID)

	code, _ = send(hookRCSToken, rcsdouble.UserEvent("+14155550100", hookRCSAgent, "evt-1", "READ", "agent-msg-1"))
	require.Equal(t, 200, code)
	dl := published[events.Delivery](e, events.DeliverySubject(events.ChannelRCS, "shop"))
	require.Len(t, dl, 1)
	require.Equal(t, events.StatusRead, dl[0].Status)
	require.Equal(t, "agent-msg-1", dl[0].ProviderMessageID)

	// Another agent's events are not this bot's.
	code, _ = send(hookRCSToken, rcsdouble.UserText("+14155550100", "someone-else", "msg-3", "x"))
	require.Equal(t, 200, code)
	require.Len(t, published[events.Inbound](e, events.SubjectInbound+".>"), 2)

	code, _, _ = e.post("/webhooks/rcs/shop", []byte(`{"message":{}}`), "X-Goog-Signature", "abc")
	require.Equal(t, 400, code)
	code, _, _ = e.post("/webhooks/rcs/bare", rcsdouble.HandshakeBody(hookRCSToken, "s"))
	require.Equal(t, 404, code)
}
