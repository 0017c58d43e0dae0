package ingress

import (
	"errors"
	"net/http"

	"github.com/gin-gonic/gin"

	"github.com/flowgate/flowgate/shared/store"
)

// apiError is the JSON error every endpoint answers with:
// {"error":{"code":"...","message":"...","field":"..."}}.
type apiError struct {
	Status  int    `json:"-"`
	Code    string `json:"code"`
	Message string `json:"message"`
	Field   string `json:"field,omitempty"`
	// Details lists every invalid field when there are several.
	Details []FieldProblem `json:"details,omitempty"`
	// RequestID is the request's X-Request-Id, to quote when reporting it.
	RequestID string `json:"request_id,omitempty"`
	// TriggerID and IdempotencyKey come with code outcome_unknown: the
	// trigger the request may have queued, and the key to retry it with.
	TriggerID      string `json:"trigger_id,omitempty"`
	IdempotencyKey string `json:"idempotency_key,omitempty"`
}

// outcomeUnknown answers a publish whose acknowledgement did not come back:
// the trigger may be queued. 503 like every bus failure, with its own code
// and what to check or retry with.
func outcomeUnknown(botID, triggerID, retryKey string) *apiError {
	msg := "the message bus did not confirm in time; the trigger may have been queued: check GET /v1/bots/" +
		botID + "/triggers/" + triggerID
	if retryKey != "" {
		msg += " or retry with the header Idempotency-Key: " + retryKey + " (it runs at most once)"
	}
	return &apiError{Status: http.StatusServiceUnavailable, Code: "outcome_unknown", Message: msg,
		TriggerID: triggerID, IdempotencyKey: retryKey}
}

func (e *apiError) Error() string { return e.Code + ": " + e.Message }

func newError(status int, code, msg string) *apiError {
	return &apiError{Status: status, Code: code, Message: msg}
}

func fieldError(status int, code, field, msg string) *apiError {
	return &apiError{Status: status, Code: code, Field: field, Message: msg}
}

var (
	errUnauthenticated = newError(http.StatusUnauthorized, "unauthenticated", "missing or invalid API key")
	errForbidden       = newError(http.StatusForbidden, "forbidden", "this API key cannot access this bot")
	errAdminOnly       = newError(http.StatusForbidden, "forbidden", "this operation needs the admin key")
	errTriggerScope    = newError(http.StatusForbidden, "insufficient_scope", "this API key has the trigger scope: it may only trigger flows")
	errBusUnavailable  = newError(http.StatusServiceUnavailable, "unavailable", "the message bus is unavailable; nothing was queued, retry later")
	errStoreDown       = newError(http.StatusServiceUnavailable, "unavailable", "the store is unavailable; retry later")
)

// abort answers with err and stops the handler chain.
func abort(c *gin.Context, err *apiError) {
	if (err.Status == http.StatusServiceUnavailable || err.Status == http.StatusTooManyRequests) && c.Writer.Header().Get("Retry-After") == "" {
		c.Header("Retry-After", "5")
	}
	e := *err // the package's error values are shared: copy before stamping
	e.RequestID = c.GetString(ctxRequestID)
	c.AbortWithStatusJSON(e.Status, gin.H{"error": &e})
}

// storeError maps a store error to an API error.
func storeError(err error, what string) *apiError {
	var inv *store.InvalidError
	switch {
	case errors.As(err, &inv):
		return fieldError(http.StatusUnprocessableEntity, "invalid", inv.Field, inv.Reason)
	case errors.Is(err, store.ErrNotFound):
		return newError(http.StatusNotFound, "not_found", what+" not found")
	case errors.Is(err, store.ErrConflict):
		return newError(http.StatusConflict, "conflict", what+" already exists")
	case errors.Is(err, store.ErrVersionConflict):
		return newError(http.StatusConflict, "conflict", what+" changed concurrently; retry")
	case errors.Is(err, store.ErrInvalid):
		return newError(http.StatusUnprocessableEntity, "invalid", err.Error())
	default:
		return errStoreDown
	}
}
