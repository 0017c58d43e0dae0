package telegram

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/flowgate/flowgate/shared/channel"
	"github.com/flowgate/flowgate/shared/store"
)

// maxResponse caps how much of an answer is read.
const maxResponse = 4 << 20

// APIError is an unsuccessful Bot API answer: {"ok":false,"error_code",
// "description","parameters"}. Send wraps it in a channel error type; the
// original stays reachable with errors.As.
type APIError struct {
	Method string
	// Status is the HTTP status; Code is the answer's error_code (they agree
	// on the real API).
	Status      int
	Code        int
	Description string
	// RetryAfter is parameters.retry_after in seconds (429 only).
	RetryAfter int
	// MigrateToChatID is set when a group became a supergroup.
	MigrateToChatID int64
}

func (e *APIError) Error() string {
	return fmt.Sprintf("telegram %s: %d %s", e.Method, e.Code, e.Description)
}

type apiResponse struct {
	OK          bool            `json:"ok"`
	Result      json.RawMessage `json:"result"`
	ErrorCode   int             `json:"error_code"`
	Description string          `json:"description"`
	Parameters  *struct {
		RetryAfter      int   `json:"retry_after"`
		MigrateToChatID int64 `json:"migrate_to_chat_id"`
	} `json:"parameters"`
}

// BotID returns the bot id part of a token ("123456:AA..." → "123456"), or
// an error when the token is not shaped like a Bot API token.
func BotID(token string) (string, error) {
	id, secret, ok := strings.Cut(token, ":")
	if !ok || id == "" || secret == "" || len(id) > 20 {
		return "", errors.New("telegram: bot token is not of the form <bot id>:<secret>")
	}
	for _, c := range id {
		if c < '0' || c > '9' {
			return "", errors.New("telegram: bot token is not of the form <bot id>:<secret>")
		}
	}
	for _, c := range secret {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return "", errors.New("telegram: bot token has characters outside [A-Za-z0-9_-]")
		}
	}
	return id, nil
}

// call performs one Bot API method and decodes result into out (if non-nil).
// Errors are classified: *channel.PermanentError, *channel.RetryAfterError,
// or a plain (retryable) error. The token never appears in an error.
func (s *Sender) call(ctx context.Context, acct store.TelegramAccount, method string, req, out any) error {
	botID, err := BotID(acct.BotToken)
	if err != nil {
		return &channel.PermanentError{Code: "invalid_token", Reason: err.Error()}
	}
	body, err := json.Marshal(req)
	if err != nil {
		return &channel.PermanentError{Code: "invalid_message", Reason: "cannot encode request", Err: err}
	}
	return s.post(ctx, acct, botID, method, "application/json", body, out)
}

// post sends one Bot API request body and decodes the answer like call.
func (s *Sender) post(ctx context.Context, acct store.TelegramAccount, botID, method, contentType string, body []byte, out any) error {
	base := s.opts.apiBase
	if acct.APIBase != "" {
		base = strings.TrimRight(acct.APIBase, "/")
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, s.opts.requestTimeout)
		defer cancel()
	}
	hr, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/bot"+acct.BotToken+"/"+method, bytes.NewReader(body))
	if err != nil {
		return &channel.PermanentError{Code: "invalid_api_base", Reason: "cannot build request for bot " + botID, Err: redact(err, acct.BotToken, botID)}
	}
	hr.Header.Set("Content-Type", contentType)
	resp, err := s.opts.client.Do(hr)
	if err != nil {
		return fmt.Errorf("telegram %s (bot %s): %w", method, botID, redact(err, acct.BotToken, botID))
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxResponse))
	if err != nil {
		return fmt.Errorf("telegram %s (bot %s): reading answer: %w", method, botID, redact(err, acct.BotToken, botID))
	}
	var ar apiResponse
	if err := json.Unmarshal(raw, &ar); err != nil || (!ar.OK && ar.ErrorCode == 0) {
		return classifyUndecodable(method, resp)
	}
	if !ar.OK {
		e := &APIError{Method: method, Status: resp.StatusCode, Code: ar.ErrorCode, Description: ar.Description}
		if ar.Parameters != nil {
			e.RetryAfter = ar.Parameters.RetryAfter
			e.MigrateToChatID = ar.Parameters.MigrateToChatID
		}
		s.opts.logger.DebugContext(ctx, "telegram API error", "bot_id", botID, "method", method, "code", e.Code, "description", e.Description)
		return classify(e)
	}
	if out != nil {
		if err := json.Unmarshal(ar.Result, out); err != nil {
			// Accepted, but we cannot tell what was created: retrying could
			// double-send, so say so instead of guessing.
			return &channel.PermanentError{Code: "bad_response", Reason: method + " answered ok with an unreadable result", Err: err}
		}
	}
	return nil
}

// classify maps a Bot API error to the channel error types.
func classify(e *APIError) error {
	desc := strings.ToLower(e.Description)
	code := e.Code
	if code == 0 {
		code = e.Status
	}
	switch {
	case code == http.StatusTooManyRequests:
		wait := time.Duration(e.RetryAfter) * time.Second
		if wait <= 0 {
			wait = time.Second
		}
		return &channel.RetryAfterError{Wait: wait, Code: "429", Throttled: true, Err: e}
	case code == http.StatusForbidden:
		unreachable := strings.Contains(desc, "bot was blocked by the user") ||
			strings.Contains(desc, "user is deactivated") ||
			strings.Contains(desc, "bot was kicked") ||
			strings.Contains(desc, "bot can't initiate conversation")
		return &channel.PermanentError{Code: "403", Reason: e.Description, Unreachable: unreachable, Err: e}
	case code == http.StatusBadRequest:
		if e.MigrateToChatID != 0 {
			return &channel.PermanentError{Code: "400", Reason: fmt.Sprintf("%s (group migrated to chat %d)", e.Description, e.MigrateToChatID), Err: e}
		}
		unreachable := strings.Contains(desc, "chat not found") || strings.Contains(desc, "user not found")
		return &channel.PermanentError{Code: "400", Reason: e.Description, Unreachable: unreachable, Err: e}
	case code >= 500 || code == http.StatusRequestTimeout:
		return e
	default:
		return &channel.PermanentError{Code: fmt.Sprint(code), Reason: e.Description, Err: e}
	}
}

// classifyUndecodable handles answers that are not Bot API JSON (a proxy's
// error page, a truncated body).
func classifyUndecodable(method string, resp *http.Response) error {
	e := &APIError{Method: method, Status: resp.StatusCode, Code: resp.StatusCode, Description: "unreadable answer: " + resp.Status}
	switch {
	case resp.StatusCode == http.StatusTooManyRequests:
		return &channel.RetryAfterError{Wait: time.Second, Code: "429", Throttled: true, Err: e}
	case resp.StatusCode >= 200 && resp.StatusCode < 300, resp.StatusCode >= 500, resp.StatusCode == http.StatusRequestTimeout:
		return e
	default:
		return &channel.PermanentError{Code: fmt.Sprint(resp.StatusCode), Reason: e.Description, Err: e}
	}
}

// redact removes the token from an error that may quote the request URL.
func redact(err error, token, botID string) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		c := *ue
		c.URL = strings.ReplaceAll(c.URL, token, botID+":REDACTED")
		if c.Err != nil && strings.Contains(c.Err.Error(), token) {
			c.Err = errors.New(strings.ReplaceAll(c.Err.Error(), token, botID+":REDACTED"))
		}
		return &c
	}
	if strings.Contains(err.Error(), token) {
		return errors.New(strings.ReplaceAll(err.Error(), token, botID+":REDACTED"))
	}
	return err
}
