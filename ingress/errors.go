package ingress

import (
	"errors"
	"net/http"

	"github.com/gin-gonic/gin"

	"github.com/flowgate/flowgate/ingress/compat"
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
	// summary, when set, is answered beside the error (what a contacts
	// import did before it broke off).
	summary any
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

// abort is how every handler refuses a request: it answers with err and
// stops the handler chain. The route decides the rest (rejectAs): a
// trigger API's refusals are counted by API and code, and Recrubo's routes
// answer JSON:API error documents instead of {"error":{...}}.
func abort(c *gin.Context, err *apiError) {
	if (err.Status == http.StatusServiceUnavailable || err.Status == http.StatusTooManyRequests) && c.Writer.Header().Get("Retry-After") == "" {
		c.Header("Retry-After", "5")
	}
	if api := c.GetString(ctxTriggerAPI); api != "" {
		triggersRejected.WithLabelValues(api, err.Code).Inc()
	}
	if c.GetBool(ctxJSONAPI) {
		c.Data(err.Status, "application/vnd.api+json", compat.RenderJSONAPIError(
			&compat.Error{Status: err.Status, Code: err.Code, Field: err.Field, Message: err.Message}))
		c.Abort()
		return
	}
	e := *err // the package's error values are shared: copy before stamping
	e.RequestID = c.GetString(ctxRequestID)
	body := gin.H{"error": &e}
	if e.summary != nil {
		body["summary"] = e.summary
	}
	c.AbortWithStatusJSON(e.Status, body)
}

// Context keys of rejectAs.
const (
	ctxTriggerAPI = "flowgate.trigger_api"
	ctxJSONAPI    = "flowgate.jsonapi"
)

// rejectAs is the middleware of a trigger API's routes: abort counts
// their refusals under api (flowgate_triggers_rejected_total) and, for
// Recrubo, answers JSON:API documents.
func rejectAs(api string, jsonapi bool) gin.HandlerFunc {
	return func(c *gin.Context) {
		c.Set(ctxTriggerAPI, api)
		if jsonapi {
			c.Set(ctxJSONAPI, true)
		}
	}
}

// compatError is a parse error of the compat package as an API error.
func compatError(e *compat.Error) *apiError {
	return &apiError{Status: e.Status, Code: e.Code, Field: e.Field, Message: e.Message}
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
