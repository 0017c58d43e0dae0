package ingress

import (
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/google/uuid"

	"github.com/flowgate/flowgate/ingress/compat"
	"github.com/flowgate/flowgate/shared/recrubo"
	"github.com/flowgate/flowgate/shared/store"
)

// Recrubo webhooks: POST /public/v2/webhooks registers a webhook the way
// Recrubo's API does; it is stored as a webhook subscription whose event
// type says it wants FlowRun changes as Recrubo WebhookPayload documents
// (delivered by orchestrator/webhooks, through the same egress guard,
// retries and per-run order as every subscription).

type recruboWebhookAttributes struct {
	Resource   string   `json:"resource"`
	Event      string   `json:"event"`
	Fields     []string `json:"fields,omitempty"`
	WebhookURL string   `json:"webhookUrl"`
	CreatedAt  string   `json:"createdAt"`
	UpdatedAt  string   `json:"updatedAt"`
}

func (s *server) recruboCreateWebhook(c *gin.Context) {
	bot := botOf(c)
	w, ok := parseBody(s, c, compat.ParseRecruboWebhook)
	if !ok {
		return
	}
	if aerr := s.checkWebhookURL(c.Request.Context(), w.URL); aerr != nil {
		e := *aerr
		e.Field = "/data/attributes/webhookUrl"
		e.Message = strings.Replace(e.Message, "url", "webhookUrl", 1)
		abort(c, &e)
		return
	}
	now := time.Now().UTC()
	sub := store.Subscription{ID: uuid.Must(uuid.NewV7()).String(), BotID: bot.ID, URL: w.URL, Secret: w.Secret,
		EventTypes: []string{w.EventType}, CreatedAt: now}
	if err := s.store.CreateSubscription(c.Request.Context(), sub); err != nil {
		abort(c, storeError(err, "webhook"))
		return
	}
	ts := now.Format(recrubo.TimeLayout)
	doc, _ := json.Marshal(gin.H{"data": recrubo.Resource{ID: sub.ID, Type: compat.RecruboWebhookType,
		Attributes: recruboWebhookAttributes{Resource: recrubo.FlowRunType, Event: w.Event, Fields: w.Fields,
			WebhookURL: w.URL, CreatedAt: ts, UpdatedAt: ts}}}) // strings only
	c.Data(http.StatusCreated, compat.JSONAPIMediaType, doc)
}

// recruboDeleteWebhook deletes a webhook created through the Recrubo API;
// the bot's other subscriptions are not Recrubo webhooks and stay out of
// reach here.
func (s *server) recruboDeleteWebhook(c *gin.Context) {
	bot := botOf(c)
	ctx := c.Request.Context()
	id := c.Param("id")
	notFound := newError(http.StatusNotFound, "not_found", "webhook "+clipText(id, 64)+" not found")
	subs, err := s.store.ListSubscriptions(ctx, bot.ID)
	if err != nil {
		abort(c, storeError(err, "webhook"))
		return
	}
	found := false
	for _, sub := range subs {
		if _, ok := recrubo.ParseSubscription(sub.EventTypes); ok && sub.ID == id {
			found = true
		}
	}
	if !found {
		abort(c, notFound)
		return
	}
	if err := s.store.DeleteSubscription(ctx, bot.ID, id); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			abort(c, notFound)
			return
		}
		abort(c, storeError(err, "webhook"))
		return
	}
	c.Status(http.StatusNoContent)
}
