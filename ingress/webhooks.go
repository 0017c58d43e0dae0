package ingress

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"github.com/flowgate/flowgate/shared/bus"
	"github.com/flowgate/flowgate/shared/provider"
)

var webhookRequests = promauto.NewCounterVec(prometheus.CounterOpts{
	Name: "flowgate_webhook_requests_total",
	Help: "Provider webhook requests, by provider and outcome (ok, bad_signature, malformed, foreign_account, unavailable...).",
}, []string{"provider", "result"})

var webhookPublishRetries = promauto.NewCounterVec(prometheus.CounterOpts{
	Name: "flowgate_webhook_publish_retries_total",
	Help: "Publishes of a provider webhook's events tried again within the request because the bus was unavailable (a NATS leader election or reconnect), by provider.",
}, []string{"provider"})

// webhookRoutes registers the provider webhooks, /webhooks/{channel}/{bot}
// (POST, and the other methods the provider lists), for every registered
// provider that has one. They
// authenticate with the provider's signature or secret (never an API key),
// answer as soon as the events are durably queued, and 503 with
// Retry-After when the bus stays down for Config.WebhookPublishWait so
// that the provider retries. Retries are harmless: every event's
// Nats-Msg-Id is derived from the provider's message or update id.
func (s *server) webhookRoutes(r *gin.Engine) {
	for _, p := range provider.All() {
		if p.Webhook == nil {
			continue
		}
		methods := p.WebhookMethods
		if len(methods) == 0 {
			methods = []string{http.MethodPost}
		}
		for _, m := range methods {
			r.Handle(m, "/webhooks/"+p.Name+"/:bot", s.webhook(p))
		}
	}
}

// webhook handles one provider's webhook requests.
func (s *server) webhook(p provider.Provider) gin.HandlerFunc {
	return func(c *gin.Context) {
		fail := func(result string, err *apiError) {
			webhookRequests.WithLabelValues(p.Name, result).Inc()
			abort(c, err)
		}
		s.loadBot(c, c.Param("bot"))
		if c.IsAborted() {
			return
		}
		bot := botOf(c)
		if _, ok := p.Account(bot); !ok {
			fail("no_account", newError(http.StatusNotFound, "not_found", "this bot has no account on this channel"))
			return
		}
		var body []byte
		if c.Request.Method == http.MethodPost {
			var aerr *apiError
			if body, aerr = s.readBody(c); aerr != nil {
				fail("bad_body", aerr)
				return
			}
		}
		ctx := c.Request.Context()
		n, err := p.Webhook(ctx, bot, provider.Request{Method: c.Request.Method, Query: c.Request.URL.Query(), Header: c.Request.Header, Body: body})
		if err != nil {
			var we *provider.WebhookError
			if !errors.As(err, &we) {
				we = &provider.WebhookError{Status: http.StatusBadRequest, Code: "invalid_webhook", Result: "malformed", Message: err.Error()}
			}
			fail(we.Result, newError(we.Status, we.Code, we.Message))
			return
		}
		switch {
		case n.Reply != nil:
			webhookRequests.WithLabelValues(p.Name, "verified").Inc()
			c.Data(http.StatusOK, n.Reply.ContentType, n.Reply.Body)
			return
		case n.Ignored != "":
			s.log.WarnContext(ctx, "webhook for an account that is not the bot's; ignored", "channel", p.Name, "bot", bot.ID, "why", n.Ignored)
			webhookRequests.WithLabelValues(p.Name, "foreign_account").Inc()
			c.JSON(http.StatusOK, gin.H{"status": "ignored"})
			return
		}
		if err := s.publishNotification(ctx, bot.ID, p.Name, n); err != nil {
			aerr := errBusUnavailable
			if errors.Is(err, provider.ErrStore) {
				aerr = errStoreDown
			}
			fail("unavailable", aerr)
			return
		}
		if n.After != nil {
			// After the events are queued, off the request, best effort
			// (Telegram: the user's client shows a spinner until a button
			// press is answered).
			go after(n.After, p.Name, s.log)
		}
		webhookRequests.WithLabelValues(p.Name, "ok").Inc()
		c.JSON(http.StatusOK, gin.H{"status": "ok"})
	}
}

// publishNotification queues a webhook's events. While the bus is
// unavailable (the stream taking them has no leader during a NATS
// election, 4–9 s, or the connection is being re-established) it tries
// again within the request, for up to Config.WebhookPublishWait: a
// provider that is answered 503 retries on its own schedule, which for
// Meta can be minutes, and the user's reply would wait that long. Events
// published before a failure are published again, and JetStream drops
// them as duplicates (their ids come from the provider's).
func (s *server) publishNotification(ctx context.Context, botID, channel string, n provider.Notification) error {
	if s.cfg.WebhookPublishWait <= 0 {
		return provider.Publish(ctx, s.bus, s.store, botID, channel, n)
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.WebhookPublishWait)
	defer cancel()
	pause := 100 * time.Millisecond
	for {
		err := provider.Publish(ctx, s.bus, s.store, botID, channel, n)
		if err == nil || !errors.Is(err, bus.ErrUnavailable) {
			return err
		}
		if dl, _ := ctx.Deadline(); time.Until(dl) < pause {
			return err
		}
		webhookPublishRetries.WithLabelValues(channel).Inc()
		select {
		case <-ctx.Done():
			return err
		case <-time.After(pause):
		}
		pause = min(2*pause, time.Second)
	}
}

func after(fn func(context.Context) error, channel string, log *slog.Logger) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := fn(ctx); err != nil {
		log.Warn("webhook follow-up failed", "channel", channel, "err", err)
	}
}
