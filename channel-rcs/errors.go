package rcs

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/flowgate/flowgate/shared/channel"
)

// APIError is an RBM error answer: {"error":{"code","message","status"}}.
// Send wraps it in a channel error type; errors.As reaches it.
type APIError struct {
	// Status is the HTTP status; GoogleStatus the canonical code
	// ("NOT_FOUND", "RESOURCE_EXHAUSTED", ...).
	Status       int
	GoogleStatus string
	Message      string
	// RetryAfter is the Retry-After header, when present.
	RetryAfter time.Duration
}

func (e *APIError) Error() string {
	return fmt.Sprintf("rcs: %d %s: %s", e.Status, e.GoogleStatus, e.Message)
}

func parseAPIError(resp *http.Response, raw []byte) *APIError {
	e := &APIError{Status: resp.StatusCode}
	var body struct {
		Error struct {
			Code    int    `json:"code"`
			Message string `json:"message"`
			Status  string `json:"status"`
		} `json:"error"`
	}
	if json.Unmarshal(raw, &body) == nil && body.Error.Status != "" {
		e.GoogleStatus = body.Error.Status
		e.Message = body.Error.Message
	} else {
		e.Message = http.StatusText(resp.StatusCode)
	}
	if ra := resp.Header.Get("Retry-After"); ra != "" {
		if secs, err := strconv.Atoi(ra); err == nil && secs >= 0 {
			e.RetryAfter = time.Duration(secs) * time.Second
		} else if t, err := http.ParseTime(ra); err == nil {
			e.RetryAfter = max(time.Until(t), 0)
		}
	}
	return e
}

// classify maps an RBM error to the channel error types.
func classify(e *APIError, defaultWait time.Duration) error {
	switch code := e.Status; {
	case code == http.StatusNotFound:
		return &channel.PermanentError{Code: "404", Reason: "not RCS-capable or not reachable: " + e.Message, Unreachable: true, Err: e}
	case code == http.StatusUnauthorized:
		return &channel.PermanentError{Code: "auth", Reason: "RBM refused the access token: " + e.Message, Err: e}
	case code == http.StatusTooManyRequests:
		wait := e.RetryAfter
		if wait <= 0 {
			wait = defaultWait
		}
		return &channel.RetryAfterError{Wait: wait, Code: "429", Throttled: true, Err: e}
	case code == http.StatusRequestTimeout || code >= 500:
		return e
	default: // 400 INVALID_ARGUMENT, 403 PERMISSION_DENIED (agent not launched on the carrier), ...
		return &channel.PermanentError{Code: strconv.Itoa(code), Reason: e.GoogleStatus + ": " + e.Message, Err: e}
	}
}
