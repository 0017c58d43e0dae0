package ingress

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/flowgate/flowgate/shared/egress"
	"github.com/flowgate/flowgate/shared/store"
)

// Webhook subscriptions: a bot's URLs that receive its run status changes
// (delivered, signed and retried by orchestrator/webhooks).

// subscriptionEventTypes are the event types a subscription may name:
// every status change, or one status.
var subscriptionEventTypes = []string{"run.status",
	"run." + store.RunCreated, "run." + store.RunQueued, "run." + store.RunRunning, "run." + store.RunWaiting,
	"run." + store.RunCompleted, "run." + store.RunFailed, "run." + store.RunCancelled, "run." + store.RunExpired}

const (
	minWebhookSecret = 16
	maxWebhookSecret = 256
	maxWebhookURL    = 2048
)

func (s *server) subscriptionRoutes(bot *gin.RouterGroup) {
	bot.POST("/webhooks", s.createSubscription)
	bot.GET("/webhooks", s.listSubscriptions)
	bot.DELETE("/webhooks/:id", s.deleteSubscription)
}

// subscriptionView is a subscription as the API shows it: never the secret.
type subscriptionView struct {
	ID        string    `json:"id"`
	URL       string    `json:"url"`
	Events    []string  `json:"events"`
	CreatedAt time.Time `json:"created_at"`
}

func viewSubscription(sub store.Subscription) subscriptionView {
	return subscriptionView{ID: sub.ID, URL: sub.URL, Events: sub.EventTypes, CreatedAt: sub.CreatedAt}
}

type createSubscriptionRequest struct {
	URL    string   `json:"url"`
	Secret string   `json:"secret"`
	Events []string `json:"events"`
}

func (s *server) createSubscription(c *gin.Context) {
	body, aerr := s.readBody(c, "application/json")
	if aerr != nil {
		abort(c, aerr)
		return
	}
	var req createSubscriptionRequest
	if err := strictJSON(body, &req); err != nil {
		abort(c, newError(http.StatusBadRequest, "invalid_json", err.Error()))
		return
	}
	if aerr := s.checkWebhookURL(c.Request.Context(), req.URL); aerr != nil {
		abort(c, aerr)
		return
	}
	switch {
	case req.Secret == "":
		abort(c, fieldError(http.StatusUnprocessableEntity, "required", "secret", "secret is required"))
		return
	case len(req.Secret) < minWebhookSecret || len(req.Secret) > maxWebhookSecret:
		abort(c, fieldError(http.StatusUnprocessableEntity, "invalid", "secret", "secret must be 16 to 256 characters"))
		return
	}
	if len(req.Events) == 0 {
		req.Events = []string{"run.status"}
	}
	for _, e := range req.Events {
		if !slices.Contains(subscriptionEventTypes, e) {
			abort(c, fieldError(http.StatusUnprocessableEntity, "invalid", "events",
				"unknown event type "+clipText(e, 64)+"; use one of "+strings.Join(subscriptionEventTypes, ", ")))
			return
		}
	}
	slices.Sort(req.Events)
	sub := store.Subscription{ID: newSubscriptionID(), BotID: botOf(c).ID, URL: req.URL, Secret: req.Secret,
		EventTypes: slices.Compact(req.Events), CreatedAt: time.Now().UTC()}
	if err := s.store.CreateSubscription(c.Request.Context(), sub); err != nil {
		abort(c, storeError(err, "subscription"))
		return
	}
	c.JSON(http.StatusCreated, gin.H{"subscription": viewSubscription(sub)})
}

func (s *server) listSubscriptions(c *gin.Context) {
	subs, err := s.store.ListSubscriptions(c.Request.Context(), botOf(c).ID)
	if err != nil {
		abort(c, storeError(err, "subscriptions"))
		return
	}
	out := make([]subscriptionView, 0, len(subs))
	for _, sub := range subs {
		out = append(out, viewSubscription(sub))
	}
	c.JSON(http.StatusOK, gin.H{"subscriptions": out})
}

func (s *server) deleteSubscription(c *gin.Context) {
	if err := s.store.DeleteSubscription(c.Request.Context(), botOf(c).ID, c.Param("id")); err != nil {
		abort(c, storeError(err, "subscription"))
		return
	}
	c.Status(http.StatusNoContent)
}

// newSubscriptionID is "wh_" and 16 random hex digits: safe as a NATS
// subject token and consumer name.
func newSubscriptionID() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return "wh_" + hex.EncodeToString(b)
}

// checkWebhookURL accepts absolute http(s) URLs. Unless private webhooks
// are allowed, it refuses hosts that are, or resolve to, loopback, private
// or link-local addresses. A name that does not resolve now is accepted:
// the delivery service checks the address it connects to on every attempt,
// which is the guard that counts (DNS can change after this check).
func (s *server) checkWebhookURL(ctx context.Context, raw string) *apiError {
	bad := func(msg string) *apiError {
		return fieldError(http.StatusUnprocessableEntity, "invalid", "url", msg)
	}
	if raw == "" {
		return fieldError(http.StatusUnprocessableEntity, "required", "url", "url is required")
	}
	if len(raw) > maxWebhookURL {
		return bad("url is longer than 2048 characters")
	}
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.Hostname() == "" {
		return bad("url must be an absolute http or https URL")
	}
	if u.User != nil {
		return bad("url must not carry credentials; authenticate deliveries with the signature")
	}
	rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	err = s.egress.CheckHost(rctx, u.Hostname())
	var dnsErr *net.DNSError
	switch {
	case err == nil, errors.As(err, &dnsErr), errors.Is(err, context.DeadlineExceeded):
		return nil
	case errors.Is(err, egress.ErrRefused):
		return bad("url must not point at a private or loopback address")
	default:
		return bad("url host cannot be resolved")
	}
}

func clipText(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}
