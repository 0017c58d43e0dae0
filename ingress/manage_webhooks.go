package ingress

import (
	"errors"
	"net/http"

	"github.com/gin-gonic/gin"

	"github.com/flowgate/flowgate/shared/store"
)

// Webhook secret rotation: during a rotation deliveries are signed with
// the new and the previous secret (Standard Webhooks webhook-signature
// lists both), so a receiver switches at its own pace.

type rotateSecretRequest struct {
	Secret string `json:"secret"`
}

// rotateWebhookSecret is POST /v1/bots/{bot}/webhooks/{id}/rotate-secret.
func (s *server) rotateWebhookSecret(c *gin.Context) {
	body, aerr := s.readBody(c, "application/json")
	if aerr != nil {
		abort(c, aerr)
		return
	}
	var req rotateSecretRequest
	if err := strictJSON(body, &req); err != nil {
		abort(c, newError(http.StatusBadRequest, "invalid_json", err.Error()))
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
	err := s.store.RotateSubscriptionSecret(c.Request.Context(), botOf(c).ID, c.Param("id"), req.Secret)
	if errors.Is(err, store.ErrInvalid) { // a malformed id names no subscription
		err = store.ErrNotFound
	}
	if err != nil {
		abort(c, storeError(err, "subscription"))
		return
	}
	c.JSON(http.StatusOK, gin.H{"subscription": gin.H{"id": c.Param("id"), "rotating": true,
		"note": "deliveries are signed with the new and the previous secret until DELETE …/previous-secret"}})
}

// dropPreviousWebhookSecret is DELETE /v1/bots/{bot}/webhooks/{id}/previous-secret.
func (s *server) dropPreviousWebhookSecret(c *gin.Context) {
	err := s.store.DropPreviousSecret(c.Request.Context(), botOf(c).ID, c.Param("id"))
	if errors.Is(err, store.ErrInvalid) {
		err = store.ErrNotFound
	}
	if err != nil {
		abort(c, storeError(err, "subscription"))
		return
	}
	c.JSON(http.StatusOK, gin.H{"subscription": gin.H{"id": c.Param("id"), "rotating": false}})
}
