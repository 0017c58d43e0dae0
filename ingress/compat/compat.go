// Package compat owns the request shapes of every trigger API Flowgate
// accepts: its native API, BuilderBot dispatch, Botmother External Event,
// Engati API Trigger, Recrubo FlowRuns (JSON:API) and CloudEvents data.
//
// Each parser is a pure function over the request parts the ingress has
// already read (content type, body, query) and returns a normalised Request
// or an *Error that says which field is wrong and which HTTP status to
// answer with. Parsers never panic, never touch the network or the store,
// and refuse a request as a whole: nothing is half-accepted.
package compat

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"

	"github.com/flowgate/flowgate/shared/events"
	"github.com/flowgate/flowgate/shared/provider"
)

// Limits of one request. Larger audiences go through contacts import and a
// filter; larger data belongs in the contact's attributes or the caller's system.
const (
	// MaxAudienceIDs caps users and users_bm lists.
	MaxAudienceIDs = 10_000
	// MaxNameLen caps names, event names, flow ids and ids (in characters).
	MaxNameLen = 256
	// MaxDataBytes caps data, attributes and run state once re-encoded as JSON.
	MaxDataBytes = 64 << 10
	// MaxDepth caps the nesting of objects and arrays in data, attributes and state.
	MaxDepth = 32
	// MaxFilterLen caps an audience filter expression.
	MaxFilterLen = 4096
	// MaxIdempotencyKeyLen caps idempotency keys (they become Nats-Msg-Id headers).
	MaxIdempotencyKeyLen = 256
	// MaxAttributeKeyLen caps attribute names.
	MaxAttributeKeyLen = 128
)

// Error codes. Together with Status and Field they tell the caller what to fix.
const (
	CodeUnsupportedMediaType = "unsupported_media_type" // 415
	CodeInvalidJSON          = "invalid_json"           // 400: not JSON, or not an object
	CodeInvalidDocument      = "invalid_document"       // 400: not a JSON:API document
	CodeTypeMismatch         = "type_mismatch"          // 409: JSON:API resource type of another collection
	CodeMissingField         = "missing_field"          // 422
	CodeInvalidField         = "invalid_field"          // 422: wrong type or value
	CodeUnknownField         = "unknown_field"          // 422: native API only
	CodeConflictingFields    = "conflicting_fields"     // 422: fields that exclude each other
	CodeUnknownPlatform      = "unknown_platform"       // 422
	CodeUnknownChannel       = "unknown_channel"        // 422
	CodeInvalidPhone         = "invalid_phone"          // 422
	CodeInvalidUserID        = "invalid_user_id"        // 422
	CodeInvalidFilter        = "invalid_filter"         // 422
	CodeEmptyAudience        = "empty_audience"         // 422
	CodeAudienceTooLarge     = "audience_too_large"     // 413
	CodeDataTooLarge         = "data_too_large"         // 413
	CodeTooDeep              = "too_deep"               // 422
)

// Error is a refused request. Its JSON form is the native error object
// ({"code","message","field"}); RenderJSONAPIError gives the JSON:API form.
type Error struct {
	// Status is the HTTP status: 400 malformed JSON or JSON:API document,
	// 409 JSON:API type of another collection, 413 too large lists or data,
	// 415 wrong content type, 422 missing or invalid field.
	Status int `json:"-"`
	// Code is one of the Code* constants.
	Code string `json:"code"`
	// Field names the offending input: a JSON path for JSON bodies
	// ("audience.users[3]"), a JSON pointer for JSON:API documents
	// ("/data/attributes/flowId"), a query parameter name, or "Content-Type".
	Field string `json:"field,omitempty"`
	// Message is a sentence for a human.
	Message string `json:"message"`
}

func (e *Error) Error() string {
	if e.Field == "" {
		return fmt.Sprintf("%d %s: %s", e.Status, e.Code, e.Message)
	}
	return fmt.Sprintf("%d %s (%s): %s", e.Status, e.Code, e.Field, e.Message)
}

func newError(status int, code, field, format string, args ...any) *Error {
	return &Error{Status: status, Code: code, Field: field, Message: fmt.Sprintf(format, args...)}
}

func missing(field string) *Error {
	return newError(http.StatusUnprocessableEntity, CodeMissingField, field, "%s is required", field)
}

func invalid(field, format string, args ...any) *Error {
	return newError(http.StatusUnprocessableEntity, CodeInvalidField, field, format, args...)
}

// Request is one trigger request, normalised whatever API it came through.
// The ingress completes it (bot, resolved flow, channel default, idempotency
// key header) into an events.Trigger.
type Request struct {
	// Channel is "", sandbox, whatsapp, telegram or rcs. Empty means the
	// route's or the bot's default; call ResolveChannel once it is known.
	Channel string
	// Audience selects the contacts. Users are normalised for Channel
	// (E.164 for whatsapp and rcs, canonical integers for telegram) unless
	// Channel is empty and Audience.Platform is empty or "any".
	Audience events.Audience
	// Name is the contact's display name, when the caller gave one.
	Name string
	// Data is stored as the contact's last_request and merged into the run.
	// Nil when the request carried none (last_request is then left as it is).
	Data map[string]any
	// Attributes are set on the contact (Engati).
	Attributes map[string]any
	// IdempotencyKey, when given in the body.
	IdempotencyKey string
	// InitialMessage is a template for users outside the WhatsApp 24-hour window.
	InitialMessage *events.Content
	// Event and FlowID, when the request names them (native API, Recrubo).
	Event  string
	FlowID string
	// RunState is a Recrubo flow run's initial state.
	RunState map[string]any
	// Priority is the delivery lane asked for (events.LaneHigh or
	// events.LaneBulk); "" chooses by audience.
	Priority string

	// usersField names where Users came from, for errors raised by ResolveChannel.
	usersField string
}

// ResolveChannel sets the channel of a request that named none (BuilderBot
// dispatch, CloudEvents, a native request without channel or platform) and
// normalises its users for it, so that a phone number reaches the contact
// stored under its E.164 form. A request that already names a channel keeps
// it, and a request for platform "any" stays one (its contacts are on
// several channels; the orchestrator picks each contact's). It returns an
// *Error naming the user field when a user id is not valid on the channel,
// and leaves the request unchanged then.
func (r *Request) ResolveChannel(channel string) *Error {
	if r.Channel != "" || r.Audience.Platform == PlatformAny {
		return nil
	}
	if !provider.Known(channel) {
		return newError(http.StatusUnprocessableEntity, CodeUnknownChannel, "channel",
			"channel %q is not one of sandbox, whatsapp, telegram, rcs", channel)
	}
	if r.Audience.Platform != "" && r.Audience.Platform != channel {
		return newError(http.StatusUnprocessableEntity, CodeConflictingFields, "channel",
			"the request is for platform %s, not %s", r.Audience.Platform, channel)
	}
	field := r.usersField
	if field == "" {
		field = "users"
	}
	users, err := normalizeUsers(channel, r.Audience.Users, field, strings.HasSuffix(field, "users"))
	if err != nil {
		return err
	}
	r.Channel = channel
	r.Audience.Platform = channel
	r.Audience.Users = users
	return nil
}

// RenderError renders e in the native error format,
// {"error":{"code","message","field"}}. A nil e renders a 500.
func RenderError(e *Error) []byte {
	if e == nil {
		e = &Error{Status: http.StatusInternalServerError, Code: "internal_error", Message: "internal error"}
	}
	b, _ := json.Marshal(struct {
		Error *Error `json:"error"`
	}{e})
	return b
}
