package ingress

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	rcs "github.com/flowgate/flowgate/channel-rcs"
	telegram "github.com/flowgate/flowgate/channel-telegram"
	whatsapp "github.com/flowgate/flowgate/channel-whatsapp"
	"github.com/flowgate/flowgate/shared/bus"
	"github.com/flowgate/flowgate/shared/events"
	"github.com/flowgate/flowgate/shared/store"
)

var webhookRequests = promauto.NewCounterVec(prometheus.CounterOpts{
	Name: "flowgate_webhook_requests_total",
	Help: "Provider webhook requests, by provider and outcome (ok, bad_signature, malformed, foreign_account, unavailable...).",
}, []string{"provider", "result"})

var (
	errBadSignature = newError(http.StatusUnauthorized, "invalid_signature", "missing or invalid webhook signature")
	errNoChannel    = newError(http.StatusNotFound, "not_found", "this bot has no account on this channel")
)

// webhookRoutes registers the provider webhooks: /webhooks/whatsapp/{bot},
// /webhooks/telegram/{bot}, /webhooks/rcs/{bot}. They authenticate with the
// provider's signature or secret (never an API key), answer as soon as the
// events are durably queued, and 503 with Retry-After when the bus is down
// so that the provider retries. Retries are harmless: every event's
// Nats-Msg-Id is derived from the provider's message or update id.
func (s *server) webhookRoutes(r *gin.Engine) {
	r.GET("/webhooks/whatsapp/:bot", s.whatsappVerify)
	r.POST("/webhooks/whatsapp/:bot", s.whatsappWebhook)
	r.POST("/webhooks/telegram/:bot", s.telegramWebhook)
	r.POST("/webhooks/rcs/:bot", s.rcsWebhook)
}

// webhookBot loads the path's bot; unknown bots answer 404.
func (s *server) webhookBot(c *gin.Context) (store.Bot, bool) {
	s.loadBot(c, c.Param("bot"))
	if c.IsAborted() {
		return store.Bot{}, false
	}
	return botOf(c), true
}

func (s *server) webhookFail(c *gin.Context, provider, result string, err *apiError) {
	webhookRequests.WithLabelValues(provider, result).Inc()
	abort(c, err)
}

// whatsappVerify answers Meta's subscription check with the challenge when
// the verify token is the bot's.
func (s *server) whatsappVerify(c *gin.Context) {
	_, acct, ok := webhookAccount(s, c, events.ChannelWhatsApp, func(a store.ChannelAccounts) *store.WhatsAppAccount { return a.WhatsApp })
	if !ok {
		return
	}
	challenge, ok := whatsapp.VerifyChallenge(c.Request.URL.Query(), acct.VerifyToken)
	if !ok {
		s.webhookFail(c, events.ChannelWhatsApp, "bad_verify_token", newError(http.StatusForbidden, "forbidden", "verify token mismatch"))
		return
	}
	webhookRequests.WithLabelValues(events.ChannelWhatsApp, "verified").Inc()
	c.Data(http.StatusOK, "text/plain; charset=utf-8", []byte(challenge))
}

// whatsappWebhook takes Meta's notifications: user messages become
// Inbound events, statuses Delivery events.
func (s *server) whatsappWebhook(c *gin.Context) {
	const provider = events.ChannelWhatsApp
	bot, acct, ok := webhookAccount(s, c, provider, func(a store.ChannelAccounts) *store.WhatsAppAccount { return a.WhatsApp })
	if !ok {
		return
	}
	body, aerr := s.readBody(c)
	if aerr != nil {
		s.webhookFail(c, provider, "bad_body", aerr)
		return
	}
	if err := whatsapp.VerifySignature(body, c.GetHeader(whatsapp.SignatureHeader), acct.AppSecret); err != nil {
		s.webhookFail(c, provider, "bad_signature", errBadSignature)
		return
	}
	p, err := whatsapp.ParseWebhook(bot.ID, body)
	if err != nil {
		s.webhookFail(c, provider, "malformed", newError(http.StatusBadRequest, "invalid_webhook", err.Error()))
		return
	}
	for _, id := range p.PhoneNumberIDs {
		if id != acct.PhoneNumberID {
			// One Meta app can serve several numbers; events of a number
			// that is not this bot's cannot be routed. Answer 200 so that
			// Meta does not retry them for days.
			s.log.WarnContext(c.Request.Context(), "whatsapp webhook for a number that is not the bot's; ignored", "bot", bot.ID, "phone_number_id", id)
			webhookRequests.WithLabelValues(provider, "foreign_account").Inc()
			c.JSON(http.StatusOK, gin.H{"status": "ignored"})
			return
		}
	}
	for _, in := range p.Inbound {
		if aerr := s.publishInbound(c, in); aerr != nil {
			s.webhookFail(c, provider, "unavailable", aerr)
			return
		}
	}
	for _, d := range p.Deliveries {
		if aerr := s.publishDelivery(c, d); aerr != nil {
			s.webhookFail(c, provider, "unavailable", aerr)
			return
		}
	}
	webhookOK(c, provider)
}

// webhookAccount loads the path's bot and its account on provider's
// channel; a missing bot or account has been answered (404) when ok is false.
func webhookAccount[A any](s *server, c *gin.Context, provider string, pick func(store.ChannelAccounts) *A) (store.Bot, *A, bool) {
	bot, ok := s.webhookBot(c)
	if !ok {
		return bot, nil, false
	}
	acct := pick(bot.Channels)
	if acct == nil {
		s.webhookFail(c, provider, "no_account", errNoChannel)
		return bot, nil, false
	}
	return bot, acct, true
}

// webhookOK answers a provider that its notification was taken.
func webhookOK(c *gin.Context, provider string) {
	webhookRequests.WithLabelValues(provider, "ok").Inc()
	c.JSON(http.StatusOK, gin.H{"status": "ok"})
}

// telegramWebhook takes one Bot API update.
func (s *server) telegramWebhook(c *gin.Context) {
	const provider = events.ChannelTelegram
	bot, acct, ok := webhookAccount(s, c, provider, func(a store.ChannelAccounts) *store.TelegramAccount { return a.Telegram })
	if !ok {
		return
	}
	if err := telegram.VerifySecret(c.GetHeader(telegram.SecretHeader), acct.WebhookSecret); err != nil {
		s.webhookFail(c, provider, "bad_signature", errBadSignature)
		return
	}
	body, aerr := s.readBody(c)
	if aerr != nil {
		s.webhookFail(c, provider, "bad_body", aerr)
		return
	}
	u, err := telegram.ParseUpdate(bot.ID, body)
	if err != nil {
		s.webhookFail(c, provider, "malformed", newError(http.StatusBadRequest, "invalid_webhook", err.Error()))
		return
	}
	switch u.Kind {
	case telegram.UpdateMessage, telegram.UpdateCallback:
		if aerr := s.publishInbound(c, *u.Inbound); aerr != nil {
			s.webhookFail(c, provider, "unavailable", aerr)
			return
		}
		if u.Kind == telegram.UpdateCallback {
			// After the press is queued: the user's client shows a spinner
			// until the query is answered. Best effort, off the request.
			go answerCallback(*acct, u.CallbackQueryID, s.log)
		}
	case telegram.UpdateBlocked, telegram.UpdateUnblocked:
		blocked := u.Kind == telegram.UpdateBlocked
		reason := ""
		if blocked {
			reason = "blocked the bot"
		}
		if aerr := s.setReachability(c, bot.ID, provider, u.ChatID, !blocked, reason); aerr != nil {
			s.webhookFail(c, provider, "unavailable", aerr)
			return
		}
	}
	webhookOK(c, provider)
}

// telegramAPI answers callback queries. It holds no credentials: each call
// uses the bot's account (token and API base).
var telegramAPI = sync.OnceValues(func() (*telegram.Sender, error) { return telegram.NewSender() })

func answerCallback(acct store.TelegramAccount, id string, log *slog.Logger) {
	api, err := telegramAPI()
	if err == nil {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		err = api.AnswerCallbackQuery(ctx, acct, id)
	}
	if err != nil {
		log.Warn("telegram answerCallbackQuery failed", "err", err)
	}
}

// setReachability records that a contact blocked (or unblocked) the bot,
// so that broadcasts skip it. A chat Flowgate never saw needs nothing.
func (s *server) setReachability(c *gin.Context, botID, channel, externalID string, reachable bool, reason string) *apiError {
	ctx := c.Request.Context()
	contact, err := s.store.GetContactByExternalID(ctx, botID, channel, externalID)
	if errors.Is(err, store.ErrNotFound) || errors.Is(err, store.ErrInvalid) {
		return nil
	}
	if err != nil {
		return errStoreDown
	}
	if err := s.store.SetContactReachability(ctx, botID, contact.ID, !reachable, reason); err != nil && !errors.Is(err, store.ErrNotFound) {
		return errStoreDown
	}
	return nil
}

// rcsWebhook takes RBM's setup handshake and its signed Pub/Sub envelopes.
func (s *server) rcsWebhook(c *gin.Context) {
	const provider = events.ChannelRCS
	bot, acct, ok := webhookAccount(s, c, provider, func(a store.ChannelAccounts) *store.RCSAccount { return a.RCS })
	if !ok {
		return
	}
	body, aerr := s.readBody(c)
	if aerr != nil {
		s.webhookFail(c, provider, "bad_body", aerr)
		return
	}
	if secret, ok := rcs.HandshakeResponse(body); ok {
		tok := rcs.HandshakeClientToken(body)
		if acct.ClientToken == "" || subtle.ConstantTimeCompare([]byte(tok), []byte(acct.ClientToken)) != 1 {
			s.webhookFail(c, provider, "bad_signature", newError(http.StatusForbidden, "forbidden", "client token mismatch"))
			return
		}
		webhookRequests.WithLabelValues(provider, "handshake").Inc()
		c.Data(http.StatusOK, "text/plain; charset=utf-8", []byte(secret))
		return
	}
	sig := c.GetHeader(rcs.SignatureHeader)
	if sig == "" {
		s.webhookFail(c, provider, "bad_signature", errBadSignature)
		return
	}
	decoded, ev, err := rcs.ParseEnvelope(bot.ID, body)
	if err != nil {
		s.webhookFail(c, provider, "malformed", newError(http.StatusBadRequest, "invalid_webhook", err.Error()))
		return
	}
	if err := rcs.VerifySignature(decoded, sig, acct.ClientToken); err != nil {
		s.webhookFail(c, provider, "bad_signature", errBadSignature)
		return
	}
	if ev.AgentID != "" && ev.AgentID != acct.AgentID {
		s.log.WarnContext(c.Request.Context(), "rcs webhook for an agent that is not the bot's; ignored", "bot", bot.ID, "agent", ev.AgentID)
		webhookRequests.WithLabelValues(provider, "foreign_account").Inc()
		c.JSON(http.StatusOK, gin.H{"status": "ignored"})
		return
	}
	switch ev.Kind {
	case rcs.EventMessage:
		aerr = s.publishInbound(c, *ev.Inbound)
	case rcs.EventDelivery:
		aerr = s.publishDelivery(c, *ev.Delivery)
	}
	if aerr != nil {
		s.webhookFail(c, provider, "unavailable", aerr)
		return
	}
	webhookOK(c, provider)
}

// publishDelivery queues a provider's status report of a message. Its id
// names the provider message and the status, so a retried callback is
// dropped by JetStream; the orchestrator finds the message by provider id.
func (s *server) publishDelivery(c *gin.Context, d events.Delivery) *apiError {
	if d.At.IsZero() {
		d.At = time.Now().UTC()
	}
	id := fmt.Sprintf("wh-dlv:%s:%s:%s:%s", d.BotID, d.Channel, d.ProviderMessageID, d.Status)
	// The event subject keys the orchestrator's ordering: statuses of one
	// provider message are applied one at a time.
	ev, err := bus.NewEvent(id, events.TypeDelivery, d.Channel+":"+d.ProviderMessageID, d)
	if err != nil {
		return newError(http.StatusUnprocessableEntity, "invalid", err.Error())
	}
	if _, err := s.bus.Publish(c.Request.Context(), events.DeliverySubject(d.Channel, d.BotID), ev); err != nil {
		return errBusUnavailable
	}
	return nil
}
