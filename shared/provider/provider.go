// Package provider owns the seam between Flowgate's services and its
// channels. A channel is one package that builds one Provider value (its
// name, default rate, capabilities, account lookup and checks, webhook
// handling and worker) and registers it here; the ingress, the pacer, the
// orchestrator and cmd/flowgate/app iterate over the registered providers
// instead of naming channels.
package provider

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"time"

	"github.com/flowgate/flowgate/shared/channel"
	"github.com/flowgate/flowgate/shared/events"
	"github.com/flowgate/flowgate/shared/media"
	"github.com/flowgate/flowgate/shared/store"
)

// Provider is one channel.
type Provider struct {
	// Name is the channel's name: events' Channel, bus subjects, the
	// webhook path /webhooks/{Name}/{bot}.
	Name string
	// Rate is the default messages per second of one sender account when
	// the bot's account sets none; 0 means the channel is not paced (the
	// sandbox).
	Rate float64
	// Capabilities are declared as data; the runner and pacer adapt.
	Capabilities Capabilities
	// Account is the bot's account on this channel; ok is false when the
	// bot has none (triggers on the channel are refused).
	Account func(bot store.Bot) (a Account, ok bool)
	// CheckAccounts refuses channel accounts the provider could not work
	// with when a bot is created or changed (nil: none to check). The
	// error is a *FieldError naming the field.
	CheckAccounts func(store.ChannelAccounts) error
	// AccountView is the bot's account as the API shows it (nil: the bot
	// has none): its settings, and of each secret only whether it is set.
	// nil: the channel shows {"configured": true} for every bot that has
	// an account.
	AccountView func(store.ChannelAccounts) map[string]any
	// MergeAccount applies PATCH /v1/bots/{bot}'s channels.{Name} object
	// onto ch (fields it does not name stay; null removes the account).
	// nil: the channel's account cannot be changed through the API.
	MergeAccount func(ch *store.ChannelAccounts, raw json.RawMessage) error
	// Webhook verifies and parses one webhook request of bot
	// (/webhooks/{Name}/{bot}, any method) into channel-neutral events.
	// nil: the channel has no webhook. Errors are *WebhookError.
	Webhook func(ctx context.Context, bot store.Bot, r Request) (Notification, error)
	// WebhookMethods are the HTTP methods the webhook takes (default
	// POST; WhatsApp also answers a GET subscription check).
	WebhookMethods []string
	// NewSender builds the worker's sender.
	NewSender func(SenderDeps) (channel.Sender, error)
	// Background, when set, runs beside the worker's runner for as long as
	// it runs (Telegram: set webhooks, or poll for updates). It returns
	// when ctx ends.
	Background func(ctx context.Context, w Background) error
}

// Capabilities are what a provider's sends allow.
type Capabilities struct {
	// IdempotentSends: a repeated send of one message is deduplicated by
	// the provider (RCS messageId, the sandbox transcript).
	IdempotentSends bool
	// Bundles: the sender takes a bundle in one call (channel.BundleSender).
	Bundles bool
	// RecordsSent: the sender's SendBundle records the messages it
	// delivered as sent itself, in the same write as the delivery (the
	// sandbox: its transcript is in the store). Needs Bundles.
	RecordsSent bool
	// RecipientRate is the most messages per second to one recipient
	// (Telegram: 1 per chat); 0 means no per-recipient pacing.
	RecipientRate float64
	// ReplyWindow, when set, is how long after a contact last wrote the
	// bot may send it free-form messages (WhatsApp: 24 hours); outside it
	// only templates go, so a run opens the window with the trigger's
	// template initial message (Recrubo's initialMessage).
	ReplyWindow time.Duration
}

// InWindow reports whether a contact who last wrote at lastInbound
// (nil: never) may get free-form messages at now. Always true on a
// channel without a reply window.
func (c Capabilities) InWindow(lastInbound *time.Time, now time.Time) bool {
	if c.ReplyWindow <= 0 {
		return true
	}
	return lastInbound != nil && now.Sub(*lastInbound) < c.ReplyWindow
}

// Runner returns the capabilities the channel runner uses.
func (c Capabilities) Runner() channel.Capabilities {
	return channel.Capabilities{IdempotentSends: c.IdempotentSends, Bundles: c.Bundles, RecordsSent: c.RecordsSent}
}

// Account is a bot's sender account on one channel.
type Account struct {
	// Key identifies the account for pacing (phone-number id, Telegram bot
	// id, RCS agent id).
	Key string
	// Rate is the bot's own messages per second for it (0: the default).
	Rate float64
}

// SenderDeps are what a sender may use.
type SenderDeps struct {
	// Store holds the bots' uploaded files (media:<id> references) and,
	// for the sandbox, the transcript.
	Store store.Store
	// Links returns the signer of public links to uploaded files (nil:
	// none), for providers that fetch files by URL (RCS). It is called
	// only by those: it may create a key in the data directory.
	Links func() (*media.Signer, error)
}

// Request is a webhook request as the provider sees it.
type Request struct {
	Method string
	Query  url.Values
	Header http.Header
	Body   []byte
}

// Notification is what a webhook request or a poll brought: channel-neutral
// events, and what to answer.
type Notification struct {
	Inbound    []events.Inbound
	Deliveries []events.Delivery
	// Reachability changes of contacts (blocked / unblocked the bot).
	Reachability []Reachability
	// Reply, when set, is the body of the 200 answer (a subscription
	// check's challenge, a handshake's secret); nothing is published.
	Reply *Reply
	// Ignored names why the request is answered 200 with nothing done
	// (an account that is not the bot's), so that the provider stops
	// retrying it.
	Ignored string
	// After runs once the events are durable, off the request and best
	// effort (Telegram answers a button press).
	After func(ctx context.Context) error
}

// Reachability is a contact's change of reachability.
type Reachability struct {
	ExternalID string
	Reachable  bool
	Reason     string
}

// Reply is a plain answer to a webhook request.
type Reply struct {
	ContentType string
	Body        []byte
}

// WebhookError refuses a webhook request.
type WebhookError struct {
	Status int
	// Code is the JSON error code; Result the metric label (bad_signature,
	// malformed, no_account...).
	Code, Result, Message string
	Err                   error
}

func (e *WebhookError) Error() string { return e.Message }

func (e *WebhookError) Unwrap() error { return e.Err }

// NoAccount refuses a request for a bot with no account on the channel.
func NoAccount() error {
	return &WebhookError{Status: http.StatusNotFound, Code: "not_found", Result: "no_account", Message: "this bot has no account on this channel"}
}

// BadSignature refuses a request whose signature or secret is missing or wrong.
func BadSignature(err error) error {
	return &WebhookError{Status: http.StatusUnauthorized, Code: "invalid_signature", Result: "bad_signature",
		Message: "missing or invalid webhook signature", Err: err}
}

// Forbidden refuses a verification request whose token does not match.
func Forbidden(msg string) error {
	return &WebhookError{Status: http.StatusForbidden, Code: "forbidden", Result: "bad_signature", Message: msg}
}

// Malformed refuses a body the provider never sends.
func Malformed(err error) error {
	return &WebhookError{Status: http.StatusBadRequest, Code: "invalid_webhook", Result: "malformed", Message: err.Error(), Err: err}
}

// NotAllowed refuses a method the webhook does not take.
func NotAllowed(method string) error {
	return &WebhookError{Status: http.StatusMethodNotAllowed, Code: "method_not_allowed", Result: "bad_method",
		Message: method + " is not accepted on this webhook"}
}

// FieldError is a channel account setting a provider cannot work with.
type FieldError struct {
	// Code is "missing_field" or "invalid".
	Code, Field, Message string
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Message }

// Missing is a *FieldError for a required field.
func Missing(field string) error {
	return &FieldError{Code: "missing_field", Field: field, Message: field + " is required"}
}

// Invalid is a *FieldError for a wrong value.
func Invalid(field, msg string) error {
	return &FieldError{Code: "invalid", Field: field, Message: msg}
}

// CheckAPIBase accepts an empty base (the provider's) or an http(s) URL.
func CheckAPIBase(base, field string) error {
	if base == "" {
		return nil
	}
	u, err := url.Parse(base)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return Invalid(field, field+" must be an http or https URL")
	}
	return nil
}

// MergeJSON applies a JSON object onto a copy of *old (the fields it does
// not name stay) and returns it; JSON null returns nil (no account).
// Unknown fields are refused. For MergeAccount.
func MergeJSON[A any](old *A, raw json.RawMessage) (*A, error) {
	if bytes.Equal(bytes.TrimSpace(raw), []byte("null")) {
		return nil, nil
	}
	var a A
	if old != nil {
		a = *old
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&a); err != nil {
		return nil, err
	}
	return &a, nil
}

// validate reports a provider value that cannot be served.
func (p Provider) validate() error {
	switch {
	case p.Name == "":
		return errors.New("provider: name is required")
	case p.Account == nil:
		return fmt.Errorf("provider %s: Account is required", p.Name)
	case p.NewSender == nil:
		return fmt.Errorf("provider %s: NewSender is required", p.Name)
	case p.Rate < 0 || p.Capabilities.RecipientRate < 0:
		return fmt.Errorf("provider %s: rates must not be negative", p.Name)
	case p.Capabilities.Bundles && !p.Capabilities.IdempotentSends:
		return fmt.Errorf("provider %s: bundles need idempotent sends", p.Name)
	case p.Capabilities.RecordsSent && !p.Capabilities.Bundles:
		return fmt.Errorf("provider %s: recording its sends needs bundles", p.Name)
	}
	return nil
}
