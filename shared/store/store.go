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

// Bots stores tenants.
type Bots interface {
	// CreateBot fails with ErrConflict if the id is taken.
	CreateBot(ctx context.Context, b Bot) error
	GetBot(ctx context.Context, id string) (Bot, error)
	// UpdateBot replaces name and channels.
	UpdateBot(ctx context.Context, b Bot) error
	// ListBots returns every bot ordered by id.
	ListBots(ctx context.Context) ([]Bot, error)
}

// APIKeys stores hashed API keys.
type APIKeys interface {
	CreateAPIKey(ctx context.Context, k APIKey) error
	// GetAPIKeyByHash returns the key whether revoked or not; the caller checks.
	GetAPIKeyByHash(ctx context.Context, hash string) (APIKey, error)
}

// Flows stores versioned flow definitions.
type Flows interface {
	// PutFlow stores a new version (latest + 1) and returns it.
	PutFlow(ctx context.Context, f Flow) (Flow, error)
	// GetFlow returns the given version, or the latest when version is 0.
	GetFlow(ctx context.Context, botID, flowID string, version int) (Flow, error)
	// ListFlowVersions returns every version, oldest first.
	ListFlowVersions(ctx context.Context, botID, flowID string) ([]Flow, error)
}

// Events stores named entry points.
type Events interface {
	// PutEvent creates or replaces an event.
	PutEvent(ctx context.Context, e Event) error
	GetEvent(ctx context.Context, botID, name string) (Event, error)
	GetEventByToken(ctx context.Context, botID, tokenHash string) (Event, error)
}

// Contacts stores users.
type Contacts interface {
	// UpsertContact returns the contact after the change and whether it was created.
	UpsertContact(ctx context.Context, u ContactUpsert) (Contact, bool, error)
	GetContact(ctx context.Context, botID, id string) (Contact, error)
	GetContactByExternalID(ctx context.Context, botID, channel, externalID string) (Contact, error)
}

// Triggers stores accepted requests and their progress.
type Triggers interface {
	// CreateTrigger returns the existing trigger (created=false) if the id exists.
	CreateTrigger(ctx context.Context, t Trigger) (Trigger, bool, error)
	GetTrigger(ctx context.Context, botID, id string) (Trigger, error)
	// UpdateTrigger checks and increments Version and returns the stored
	// trigger. It writes status, cursor, spec and the descriptive fields;
	// Counters change only through IncrTriggerCounters.
	UpdateTrigger(ctx context.Context, t Trigger) (Trigger, error)
}

// Runs stores flow runs.
type Runs interface {
	// CreateRun returns the existing run (created=false) if one exists with
	// the same id or the same trigger + contact.
	CreateRun(ctx context.Context, r Run) (Run, bool, error)
	GetRun(ctx context.Context, botID, id string) (Run, error)
	// UpdateRun writes r if its Version still matches, and returns it with
	// the new Version and UpdatedAt (set by the store); otherwise
	// ErrVersionConflict. BotID, TriggerID, ContactID and CreatedAt never change.
	UpdateRun(ctx context.Context, r Run) (Run, error)
	// ListRuns returns a page of runs, newest first (CreatedAt, then ID,
	// descending); next is "" on the last page. Since is inclusive, Until
	// exclusive, both on CreatedAt.
	ListRuns(ctx context.Context, f RunFilter) (runs []Run, next string, err error)
}

// Messages stores outbound messages.
type Messages interface {
	// InsertMessages stores messages; ids that exist already are left as they are.
	InsertMessages(ctx context.Context, ms []Message) error
	GetMessage(ctx context.Context, botID, id string) (Message, error)
	// UpdateMessageStatus moves a message forward; it never moves a status
	// back (a late or repeated callback is ignored, without error). A zero
	// at means now.
	UpdateMessageStatus(ctx context.Context, botID, id, status, providerID, reason string, at time.Time) error
	// ListRunMessages returns a run's messages ordered by Seq.
	ListRunMessages(ctx context.Context, botID, runID string) ([]Message, error)
	// MarkSent records that the provider accepted messages (status sent,
	// with the provider's ids) and adds how many of them this call recorded
	// first to the trigger's sent counter, in one atomic write, so a message
	// recorded twice is counted once. A message is recorded first when it
	// moves from queued to sent, or when it had moved on already (a status
	// callback overtook the worker) without a provider id. Unknown ids and
	// an unknown trigger are ignored; triggerID "" counts nothing.
	MarkSent(ctx context.Context, botID, triggerID string, ms []SentMessage) error
}

// SentMessage is a message a provider accepted.
type SentMessage struct {
	ID                string
	ProviderMessageID string
	// At is when the provider accepted it (zero: now).
	At time.Time
}

// Sandbox stores what the sandbox channel delivered.
type Sandbox interface {
	// AppendSandbox stores m once; a second append of the same MessageID is ignored.
	// Several messages are appended in order, in one write.
	AppendSandbox(ctx context.Context, ms ...SandboxMessage) error
	// ListSandbox returns a bot's sandbox messages with Seq > afterSeq, oldest
	// first; to filters by recipient; limit 0 means 100, at most 1000.
	ListSandbox(ctx context.Context, botID, to string, afterSeq int64, limit int) ([]SandboxMessage, error)
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
	Broadcasts
	Lifecycle
	Subscriptions
	MediaFiles
	KeyAdmin
	FlowAdmin
	EventAdmin
	TriggerAdmin
	ContactAdmin
	Idempotency
	BotAdmin
	SubscriptionSecrets
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

// Broadcasts holds the bulk and fan-out operations of the orchestrator.
type Broadcasts interface {
	// CreateRuns creates many runs at once, each idempotent as in CreateRun;
	// created[i] tells whether runs[i] is new or the one that already existed.
	CreateRuns(ctx context.Context, rs []Run) (runs []Run, created []bool, err error)
	// StreamContacts returns the next batch of a bot's contacts in id order;
	// pass the last id as f.After to resume.
	StreamContacts(ctx context.Context, botID string, f ContactFilter) ([]Contact, error)
	// IncrTriggerCounters adds delta to a trigger's counters atomically. It
	// does not change the trigger's Version: counters are owned by this
	// method, and UpdateTrigger leaves them as they are.
	IncrTriggerCounters(ctx context.Context, botID, triggerID string, delta TriggerCounters) error
	// DueRuns returns waiting runs whose WaitUntil is at or before now,
	// earliest first (the timer query).
	DueRuns(ctx context.Context, now time.Time, limit int) ([]Run, error)
	// UpdateRuns writes many runs as UpdateRun does, in one write. A run
	// whose Version no longer matches, or that is gone, is left as it is and
	// its index is returned in conflicts; the others are written. An invalid
	// run fails the call before anything is written. After another error
	// some runs may be written: a retry with the same runs reports those as
	// conflicts.
	UpdateRuns(ctx context.Context, rs []Run) (conflicts []int, err error)
	// WaitingRuns returns the waiting runs of the given contacts of a bot
	// (at most MaxWaitingRunsContacts ids), in no particular order: the runs a broadcast's
	// batch supersedes, found with one query.
	WaitingRuns(ctx context.Context, botID string, contactIDs []string) ([]Run, error)
	// ImportContacts upserts many contacts (as UpsertContact) in one write.
	ImportContacts(ctx context.Context, us []ContactUpsert) (created, updated int, err error)
	// UpsertContacts upserts many contacts (as UpsertContact) in one write
	// and returns them as stored, in the order of us.
	UpsertContacts(ctx context.Context, us []ContactUpsert) ([]Contact, error)
	// SetLastRequest stores data as the last_request of the bot's contacts
	// named by contactIDs (at most MaxWaitingRunsContacts), in one write;
	// ids of contacts that do not exist are ignored.
	SetLastRequest(ctx context.Context, botID string, contactIDs []string, data map[string]any, at time.Time) error
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

// Subscriptions stores webhook subscriptions.
type Subscriptions interface {
	// CreateSubscription fails with ErrConflict if the id is taken.
	CreateSubscription(ctx context.Context, sub Subscription) error
	// ListSubscriptions returns a bot's subscriptions, oldest first.
	ListSubscriptions(ctx context.Context, botID string) ([]Subscription, error)
	// DeleteSubscription returns ErrNotFound if the bot has no such subscription.
	DeleteSubscription(ctx context.Context, botID, id string) error
}

// Lifecycle deletes data on request or after retention.
type Lifecycle interface {
	// DeleteContact deletes a contact with its runs, their messages and,
	// for a sandbox contact, its sandbox transcript.
	DeleteContact(ctx context.Context, botID, id string) error
	// ExpireBefore deletes runs in a final status last updated before t, with
	// their messages, and returns how many runs it deleted.
	ExpireBefore(ctx context.Context, t time.Time) (int64, error)
	// SetContactReachability records that a provider said the contact can
	// (not) be reached; broadcasts skip unreachable contacts.
	SetContactReachability(ctx context.Context, botID, id string, unreachable bool, reason string) error
	// FindMessageByProviderID finds a message by the provider's message id
	// (delivery callbacks carry only that).
	FindMessageByProviderID(ctx context.Context, botID, providerID string) (Message, error)
}
