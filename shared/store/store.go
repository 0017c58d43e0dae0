// Package store owns Flowgate's system of record: the domain records (bots,
// API keys, flows, events, contacts, triggers, runs, messages) and the port
// that every storage adapter implements. Adapters live in sub-packages
// (sqlite, mongo) and pass one contract suite.
package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"
)

// Sentinel errors. Adapters wrap them so that callers use errors.Is.
var (
	// ErrNotFound: no record with that key.
	ErrNotFound = errors.New("store: not found")
	// ErrConflict: a record with that unique key already exists.
	ErrConflict = errors.New("store: already exists")
	// ErrVersionConflict: the record changed since it was read.
	ErrVersionConflict = errors.New("store: version conflict")
	// ErrInvalid: the record is malformed (bad id, too large, missing field).
	ErrInvalid = errors.New("store: invalid record")
	// ErrUnavailable: the backing database cannot be reached or written
	// now (down, locked, disk full). It is transient: consumers retry
	// the message for as long as it lasts (see health.go).
	ErrUnavailable error = unavailableError{}
)

// InvalidError says which field of a record is wrong. It matches ErrInvalid.
type InvalidError struct {
	Field  string
	Reason string
}

func (e *InvalidError) Error() string {
	return fmt.Sprintf("store: invalid %s: %s", e.Field, e.Reason)
}

// Is makes InvalidError match ErrInvalid.
func (e *InvalidError) Is(target error) bool { return target == ErrInvalid }

// Bot is a tenant: its channel accounts, keys, flows, events and contacts.
type Bot struct {
	ID        string          `json:"id"`
	Name      string          `json:"name"`
	Channels  ChannelAccounts `json:"channels"`
	CreatedAt time.Time       `json:"created_at"`
	UpdatedAt time.Time       `json:"updated_at"`
}

// ChannelAccounts are a bot's provider credentials. They are secrets: never
// logged, never returned by the API.
type ChannelAccounts struct {
	WhatsApp *WhatsAppAccount `json:"whatsapp,omitempty"`
	Telegram *TelegramAccount `json:"telegram,omitempty"`
	RCS      *RCSAccount      `json:"rcs,omitempty"`
	// DefaultChannel is used when a trigger names none ("sandbox" if empty).
	DefaultChannel string `json:"default_channel,omitempty"`
}

// WhatsAppAccount is a WhatsApp Cloud API business number.
type WhatsAppAccount struct {
	PhoneNumberID string `json:"phone_number_id"`
	AccessToken   string `json:"access_token"`
	AppSecret     string `json:"app_secret"`
	VerifyToken   string `json:"verify_token"`
	// TemplateLanguage is the language of templates sent without one
	// (Recrubo's initialMessage); default "en".
	TemplateLanguage string  `json:"template_language,omitempty"`
	APIBase          string  `json:"api_base,omitempty"` // default https://graph.facebook.com/v21.0
	RatePerSecond    float64 `json:"rate_per_second,omitempty"`
}

// TelegramAccount is a Telegram bot.
type TelegramAccount struct {
	BotToken      string  `json:"bot_token"`
	WebhookSecret string  `json:"webhook_secret"`
	APIBase       string  `json:"api_base,omitempty"` // default https://api.telegram.org
	RatePerSecond float64 `json:"rate_per_second,omitempty"`
}

// RCSAccount is a Google RBM agent.
type RCSAccount struct {
	AgentID string `json:"agent_id"`
	// ServiceAccountJSON is the Google service-account key file content.
	ServiceAccountJSON string  `json:"service_account_json"`
	ClientToken        string  `json:"client_token"`
	APIBase            string  `json:"api_base,omitempty"` // default https://rcsbusinessmessaging.googleapis.com
	RatePerSecond      float64 `json:"rate_per_second,omitempty"`
}

// APIKey authenticates calls for one bot. Only the SHA-256 of the key is stored.
type APIKey struct {
	ID        string    `json:"id"`
	BotID     string    `json:"bot_id"`
	Hash      string    `json:"-"`
	Prefix    string    `json:"prefix"`
	CreatedAt time.Time `json:"created_at"`
	Revoked   bool      `json:"revoked"`
	// Name says what the key is for (e.g. "crm").
	Name string `json:"name,omitempty"`
	// Scope is ScopeAdmin (everything on its bot; "" means admin, as keys
	// made before scopes) or ScopeTrigger (trigger requests only).
	Scope string `json:"scope,omitempty"`
	// Events limits a trigger-scope key to these events (none: any event).
	Events []string `json:"events,omitempty"`
	// LastUsedAt is when the key last authenticated a request (recorded at
	// most about once a minute).
	LastUsedAt *time.Time `json:"last_used_at,omitempty"`
	// RevokedAt is when the key was revoked.
	RevokedAt *time.Time `json:"revoked_at,omitempty"`
}

// Flow is one version of a flow definition.
type Flow struct {
	BotID   string `json:"bot_id"`
	ID      string `json:"id"`
	Version int    `json:"version"`
	// Definition is the flow as canonical JSON.
	Definition json.RawMessage `json:"definition"`
	CreatedAt  time.Time       `json:"created_at"`
}

// Event is a named entry point bound to a flow.
type Event struct {
	BotID  string `json:"bot_id"`
	Name   string `json:"name"`
	FlowID string `json:"flow_id"`
	// TokenHash is the SHA-256 of the secret trigger URL token (Botmother).
	TokenHash string `json:"-"`
	// Input is how a request's own body maps to a trigger (which field is
	// the user, the name, the data) and how its signature is checked; JSON
	// owned by the ingress, opaque to the store (it holds a secret: never
	// logged). Empty: the body is BuilderBot's {from, name, ...}.
	Input     json.RawMessage `json:"-"`
	CreatedAt time.Time       `json:"created_at"`
	UpdatedAt time.Time       `json:"updated_at"`
}

// Contact is one user on one channel.
type Contact struct {
	ID          string         `json:"id"`
	BotID       string         `json:"bot_id"`
	Channel     string         `json:"channel"`
	ExternalID  string         `json:"external_id"`
	Name        string         `json:"name,omitempty"`
	Attributes  map[string]any `json:"attributes,omitempty"`
	LastRequest map[string]any `json:"last_request,omitempty"`
	// LastInboundAt is when the user last wrote (WhatsApp 24-hour window).
	LastInboundAt *time.Time `json:"last_inbound_at,omitempty"`
	OptedOut      bool       `json:"opted_out"`
	// Unreachable is set when a provider said the user cannot be reached
	// (blocked the bot, not on the platform); broadcasts skip such contacts.
	Unreachable       bool      `json:"unreachable"`
	UnreachableReason string    `json:"unreachable_reason,omitempty"`
	CreatedAt         time.Time `json:"created_at"`
	UpdatedAt         time.Time `json:"updated_at"`
}

// ContactUpsert creates a contact or updates the given fields of an existing
// one, keyed by bot + channel + external id.
type ContactUpsert struct {
	BotID      string
	Channel    string
	ExternalID string
	// Name replaces the name when non-empty.
	Name string
	// Attributes are merged into the contact's attributes.
	Attributes map[string]any
	// LastRequest, when non-nil, replaces the contact's last_request.
	LastRequest map[string]any
	// LastInboundAt, when non-nil, is recorded as the last inbound time.
	LastInboundAt *time.Time
	// OptedOut, when non-nil, sets the opted-out flag.
	OptedOut *bool
	// NewID is the id to give the contact if it is created.
	NewID string
	Now   time.Time
}

// Run statuses.
const (
	RunCreated   = "created"
	RunQueued    = "queued"
	RunRunning   = "running"
	RunWaiting   = "waiting"
	RunCompleted = "completed"
	RunFailed    = "failed"
	RunCancelled = "cancelled"
	RunExpired   = "expired"
)

// RunFinal reports whether a run in status s will never change again.
func RunFinal(s string) bool {
	switch s {
	case RunCompleted, RunFailed, RunCancelled, RunExpired:
		return true
	}
	return false
}

// Run is one flow for one contact.
type Run struct {
	ID          string `json:"id"`
	BotID       string `json:"bot_id"`
	TriggerID   string `json:"trigger_id"`
	FlowID      string `json:"flow_id"`
	FlowVersion int    `json:"flow_version"`
	ContactID   string `json:"contact_id"`
	Channel     string `json:"channel"`
	Status      string `json:"status"`
	// State is the interpreter's state, opaque to the store.
	State json.RawMessage `json:"state,omitempty"`
	// Data is the trigger's data.
	Data map[string]any `json:"data,omitempty"`
	// WaitUntil is when a waiting run's timer fires.
	WaitUntil *time.Time `json:"wait_until,omitempty"`
	Error     string     `json:"error,omitempty"`
	// Version increases with every update (optimistic concurrency); a
	// created run has Version 1.
	Version   int64     `json:"version"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

// RunClaim names a run, at the version a step read it, for ClaimRuns.
type RunClaim struct {
	BotID   string
	RunID   string
	Version int64
}

// ClaimRefusal is a claim ClaimRuns did not take: Index is its place in the
// claims. HeldUntil, when set, is when another step's live claim on the
// run lapses (that step is about to write it, or died); otherwise the run
// changed since it was read (Gone: or it no longer exists).
type ClaimRefusal struct {
	Index     int
	HeldUntil time.Time
	Gone      bool
}

// RunFilter selects runs of a bot. Zero fields do not filter.
type RunFilter struct {
	BotID     string
	Status    string
	ContactID string
	TriggerID string
	FlowID    string
	Since     time.Time
	Until     time.Time
	// Limit caps the page (default 100, max 1000).
	Limit int
	// Cursor continues a previous page.
	Cursor string
}

// Message is one outbound message of a run.
type Message struct {
	ID                string          `json:"id"`
	BotID             string          `json:"bot_id"`
	RunID             string          `json:"run_id"`
	TriggerID         string          `json:"trigger_id,omitempty"`
	ContactID         string          `json:"contact_id"`
	Channel           string          `json:"channel"`
	To                string          `json:"to"`
	Seq               int             `json:"seq"`
	Content           json.RawMessage `json:"content"`
	Status            string          `json:"status"`
	ProviderMessageID string          `json:"provider_message_id,omitempty"`
	Error             string          `json:"error,omitempty"`
	// Lane is the delivery lane the message was queued in (high, bulk;
	// "" for messages stored before lanes).
	Lane      string    `json:"lane,omitempty"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

// Trigger statuses.
const (
	TriggerAccepted   = "accepted"
	TriggerFanningOut = "fanning_out"
	TriggerDone       = "done"
	TriggerCancelled  = "cancelled"
	// TriggerPaused: a broadcast's fan-out is held (POST .../pause); it
	// goes on from its checkpoint when resumed.
	TriggerPaused = "paused"
)

// Trigger is one accepted external request and its progress.
type Trigger struct {
	ID             string          `json:"id"`
	BotID          string          `json:"bot_id"`
	Source         string          `json:"source"`
	Event          string          `json:"event,omitempty"`
	FlowID         string          `json:"flow_id"`
	Channel        string          `json:"channel"`
	Spec           json.RawMessage `json:"spec"` // the events.Trigger as published
	IdempotencyKey string          `json:"idempotency_key,omitempty"`
	Status         string          `json:"status"`
	// Cursor is the fan-out checkpoint: the last contact id processed.
	Cursor    string          `json:"cursor,omitempty"`
	Counters  TriggerCounters `json:"counters"`
	Version   int64           `json:"version"`
	CreatedAt time.Time       `json:"created_at"`
	UpdatedAt time.Time       `json:"updated_at"`
}

// TriggerCounters is a trigger's progress.
type TriggerCounters struct {
	Targeted    int64            `json:"targeted"`
	RunsCreated int64            `json:"runs_created"`
	Sent        int64            `json:"sent"`
	Delivered   int64            `json:"delivered"`
	Failed      int64            `json:"failed"`
	Skipped     int64            `json:"skipped"`
	SkipReasons map[string]int64 `json:"skip_reasons,omitempty"`
}

// CreatedTrigger is CreateTriggers' answer for one trigger: the trigger
// stored (Created false when its id existed: the one stored then), or Err
// (ErrConflict: the id is another bot's trigger).
type CreatedTrigger struct {
	Trigger Trigger
	Created bool
	Err     error
}

// TriggerCheckpoint is one trigger's checkpoint for CheckpointTriggers:
// the status and cursor to write if the trigger is at Version, and what to
// add to its counters.
type TriggerCheckpoint struct {
	BotID   string
	ID      string
	Version int64
	Status  string
	Cursor  string
	Delta   TriggerCounters
}

// SandboxDelivery is one bundle the sandbox channel delivers: its
// messages (of one bot) and the trigger they count for (DeliverSandbox).
type SandboxDelivery struct {
	TriggerID string
	Messages  []SandboxMessage
}

// SandboxMessage is what the sandbox channel "delivered" to a user.
type SandboxMessage struct {
	// MessageID is the outbound message id (unique: redelivery is harmless).
	MessageID string          `json:"message_id"`
	BotID     string          `json:"bot_id"`
	RunID     string          `json:"run_id"`
	To        string          `json:"to"`
	Content   json.RawMessage `json:"content"`
	// Seq orders a bot's sandbox messages; assigned by the store.
	Seq       int64     `json:"seq"`
	CreatedAt time.Time `json:"created_at"`
}

// Rules every adapter follows (storetest checks them):
//   - Ids are checked before any I/O: bot ids with CheckBotID, other ids with
//     CheckID, JSON fields with CheckSize and json.Valid. A bad id or record
//     is an *InvalidError (ErrInvalid), also on reads; never a panic.
//   - A missing record is ErrNotFound; records of another bot are missing.
//   - Created runs and triggers have Version 1; updates stamp UpdatedAt.
//     Zero CreatedAt is filled with the store's clock.
//   - Times come back in UTC; SQLite keeps nanoseconds, MongoDB milliseconds.
//   - PutEvent keeps the CreatedAt of an event it replaces.
//   - Every acknowledged write is durable: group commit answers callers only
//     after the batch is written.

// StatusUpdate is what a provider reported about one message.
type StatusUpdate struct {
	BotID, MessageID string
	// Status is where the message moves (sent, delivered, read, failed).
	Status string
	// ProviderMessageID is the provider's id of the message, when the
	// report names it.
	ProviderMessageID string
	// Reason says why the message failed (status failed).
	Reason string
	// At is when the provider reported it (zero: now).
	At time.Time
}

// SentMessage is a message a provider accepted.
type SentMessage struct {
	ID                string
	ProviderMessageID string
	// At is when the provider accepted it (zero: now).
	At time.Time
}

// Store is everything an adapter provides.
type Store interface {
	Bots
	APIKeys
	Flows
	Events
	Contacts
	Triggers
	Runs
	Messages
	Sandbox
	Subscriptions
	MediaFiles
	Idempotency
	// Ping reports whether the database is reachable.
	Ping(ctx context.Context) error
	Close() error
}

// Message statuses. A message only moves forward: queued → sent → delivered →
// read; failed is reachable from queued and sent only.
const (
	MessageQueued    = "queued"
	MessageSent      = "sent"
	MessageDelivered = "delivered"
	MessageRead      = "read"
	MessageFailed    = "failed"
)

// MessageStatusAdvances reports whether a message in status from may move to
// status to. Adapters use it so that late or reordered provider callbacks
// never move a status back.
func MessageStatusAdvances(from, to string) bool {
	if to == MessageFailed {
		return from == MessageQueued || from == MessageSent
	}
	f, t := messageRank(from), messageRank(to)
	return f >= 0 && t >= 0 && t > f
}

// messageRank orders the statuses of progress; -1 for any other.
func messageRank(s string) int {
	switch s {
	case MessageQueued:
		return 0
	case MessageSent:
		return 1
	case MessageDelivered:
		return 2
	case MessageRead:
		return 3
	}
	return -1
}

// Limits every adapter enforces, so that both refuse the same input.
const (
	// MaxIDBytes is the longest id other than a bot id.
	MaxIDBytes = 128
	// MaxFieldBytes caps one JSON field (flow definition, run state and
	// data, message content, attributes, last_request, trigger spec).
	MaxFieldBytes = 1 << 20
)

// CheckBotID returns an *InvalidError unless id is a valid bot id: it
// matches ^[a-z0-9][a-z0-9_-]{0,63}$ (checked by hand: this runs on every
// store call).
func CheckBotID(field, id string) error {
	ok := len(id) >= 1 && len(id) <= 64
	for i := 0; ok && i < len(id); i++ {
		c := id[i]
		ok = c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || i > 0 && (c == '_' || c == '-')
	}
	if !ok {
		return &InvalidError{Field: field, Reason: "must match ^[a-z0-9][a-z0-9_-]{0,63}$"}
	}
	return nil
}

// CheckID returns an *InvalidError unless id is non-empty, at most
// MaxIDBytes long and valid UTF-8 without NUL.
func CheckID(field, id string) error {
	switch {
	case id == "":
		return &InvalidError{Field: field, Reason: "required"}
	case len(id) > MaxIDBytes:
		return &InvalidError{Field: field, Reason: fmt.Sprintf("longer than %d bytes", MaxIDBytes)}
	case !utf8.ValidString(id) || strings.ContainsRune(id, 0):
		return &InvalidError{Field: field, Reason: "not valid UTF-8 text"}
	}
	return nil
}

// CheckSize returns an *InvalidError if an encoded field exceeds MaxFieldBytes.
func CheckSize(field string, n int) error {
	if n > MaxFieldBytes {
		return &InvalidError{Field: field, Reason: fmt.Sprintf("larger than %d bytes", MaxFieldBytes)}
	}
	return nil
}

// ContactFilter selects the audience streamed by StreamContacts.
type ContactFilter struct {
	// Channel restricts to one channel; "" or "any" streams every channel.
	Channel string
	// After is the cursor: only contacts whose id sorts after it.
	After string
	// Limit caps the batch (default 100, max 10000).
	Limit int
	// SkipOptedOut and SkipUnreachable leave out contacts that cannot be messaged.
	SkipOptedOut    bool
	SkipUnreachable bool
}

// Subscription is a bot's webhook subscription to run status changes.
type Subscription struct {
	ID    string `json:"id"`
	BotID string `json:"bot_id"`
	// URL receives the events (http or https).
	URL string `json:"url"`
	// Secret signs every delivery (HMAC-SHA256). It is a secret: never
	// logged, never returned by the API after creation.
	Secret string `json:"-"`
	// PreviousSecret, during a secret rotation, is the secret before
	// Secret: deliveries are signed with both (Standard Webhooks
	// webhook-signature), so receivers switch at their own pace.
	PreviousSecret string `json:"-"`
	// EventTypes are "run.status" (every status change) or "run.<status>"
	// (e.g. "run.completed").
	EventTypes []string  `json:"events"`
	CreatedAt  time.Time `json:"created_at"`
}
