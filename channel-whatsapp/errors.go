package whatsapp

import (
	"fmt"
	"net/http"
	"strconv"

	"github.com/flowgate/flowgate/shared/channel"
)

// Flowgate's own PermanentError codes. Meta's codes are reported as their
// decimal string ("131026", "190"...).
const (
	// CodeInvalidMessage: the message breaks a documented limit (too many
	// buttons, title too long...) and was not sent.
	CodeInvalidMessage = "invalid_message"
	// CodeOutsideWindow: a free-form message to a contact outside the
	// 24-hour window, with no template to send instead. Meta's 131047 is
	// reported with this code too.
	CodeOutsideWindow = "outside_window"
	// CodeNoAccount: the bot has no WhatsApp account (or no token).
	CodeNoAccount = "no_account"
	// CodeInvalidResponse: Meta answered 2xx with a body that is not a send
	// result. The message may have been accepted, so it is not retried.
	CodeInvalidResponse = "invalid_response"
)

// Cloud API error codes Flowgate branches on (providers.md).
const (
	ErrCodeThroughput      = 130429
	ErrCodePairRate        = 131056
	ErrCodeAccountRate     = 80007
	ErrCodeAppRate         = 4
	ErrCodeGeneric         = 131000
	ErrCodeServiceUnavail  = 131016
	ErrCodeAPIUnknown      = 1
	ErrCodeAPIService      = 2
	ErrCodeHealthStatus    = 131057
	ErrCodeReengagement    = 131047
	ErrCodeUndeliverable   = 131026
	ErrCodeSpamRate        = 131048
	ErrCodeEcosystemHealth = 131049
	ErrCodePolicy          = 368
	ErrCodeAccessToken     = 190
)

// APIError is an error body of the Cloud API:
// {"error":{"message","type","code","error_data":{"details"},"fbtrace_id"}}.
// The classified errors a Sender returns wrap it.
type APIError struct {
	HTTPStatus int
	Code       int
	Subcode    int
	Type       string
	Message    string
	Details    string
	FBTraceID  string
}

func (e *APIError) Error() string {
	s := fmt.Sprintf("whatsapp: cloud api error %d (http %d): %s", e.Code, e.HTTPStatus, e.Message)
	if e.Details != "" {
		s += ": " + e.Details
	}
	return s
}

// classify turns an API error into the error type that tells the runner
// what to do. It branches on Meta's code, not on the HTTP status, except
// for codes providers.md does not list.
func (s *Sender) classify(e *APIError) error {
	code := strconv.Itoa(e.Code)
	if e.Code == 0 {
		code = "http_" + strconv.Itoa(e.HTTPStatus)
	}
	reason := e.Message
	if e.Details != "" {
		reason += ": " + e.Details
	}
	w := s.opts.waits
	switch e.Code {
	case ErrCodeThroughput:
		return &channel.RetryAfterError{Wait: w.Throughput, Code: code, Throttled: true, Err: e}
	case ErrCodePairRate:
		// Only this recipient is sent to too often: the account's pace is fine.
		return &channel.RetryAfterError{Wait: max(w.Pair, minPairWait), Code: code, Err: e}
	case ErrCodeAccountRate, ErrCodeAppRate:
		// Account- or app-wide limits: the whole account should slow down.
		return &channel.RetryAfterError{Wait: w.Account, Code: code, Throttled: true, Err: e}
	case ErrCodeSpamRate:
		// The number is restricted: pause long and slow the account down.
		return &channel.RetryAfterError{Wait: w.Spam, Code: code, Throttled: true, Err: e}
	case ErrCodeEcosystemHealth:
		// Withheld for this user (per-user marketing limit): pause this message only.
		return &channel.RetryAfterError{Wait: w.Spam, Code: code, Err: e}
	case ErrCodeGeneric, ErrCodeServiceUnavail, ErrCodeAPIUnknown, ErrCodeAPIService, ErrCodeHealthStatus:
		return e // transient: the runner's backoff and MaxDeliver limit the retries
	case ErrCodeReengagement:
		return &channel.PermanentError{Code: CodeOutsideWindow, Reason: "more than 24 hours since the user last wrote (131047): " + reason, Err: e}
	case ErrCodeUndeliverable:
		return &channel.PermanentError{Code: code, Reason: reason, Unreachable: true, Err: e}
	case ErrCodePolicy:
		return &channel.PermanentError{Code: code, Reason: "policy block: " + reason, Err: e}
	case ErrCodeAccessToken:
		return &channel.PermanentError{Code: code, Reason: "access token invalid or expired: " + reason, Err: e}
	}
	switch {
	case e.HTTPStatus == http.StatusTooManyRequests:
		return &channel.RetryAfterError{Wait: w.Throughput, Code: code, Throttled: true, Err: e}
	case e.HTTPStatus >= 500:
		return e
	default:
		// Any other 4xx (invalid parameter, template missing...) fails the
		// same way on every retry.
		return &channel.PermanentError{Code: code, Reason: reason, Err: e}
	}
}
