package store

import (
	"context"
	"time"
)

// The store port, one interface per aggregate. Adapters (sqlite, mongo)
// implement Store, the union; each service declares the slice it uses
// where it uses it (ingress.Store, orchestrator.Store, channel.Store).

// Bots stores tenants and deletes them: a deletion is a marker, then
// DeleteBotData until it reports done (by any replica, after a restart too:
// BotDeletions lists what is unfinished).
type Bots interface {
	// CreateBot fails with ErrConflict if the id is taken.
	CreateBot(ctx context.Context, b Bot) error
	GetBot(ctx context.Context, id string) (Bot, error)
	// UpdateBot replaces name and channels.
	UpdateBot(ctx context.Context, b Bot) error
	// ListBots returns every bot ordered by id.
	ListBots(ctx context.Context) ([]Bot, error)
	// MarkBotDeleting records the request (idempotent: the first time stays).
	// ErrNotFound when the bot does not exist (any more): a marker never
	// outlives its bot, even when a deletion finishes at the same moment.
	MarkBotDeleting(ctx context.Context, botID string, at time.Time) error
	// BotDeletions lists the deletions not finished yet, oldest first.
	BotDeletions(ctx context.Context) ([]BotDeletion, error)
	// DeleteBotData deletes up to about limit records of each kind of the
	// bot's data (runs with their messages, contacts, triggers, sandbox
	// messages; flows, events, keys, subscriptions and idempotency keys at
	// once). When nothing is left it deletes the bot and the marker and
	// reports done. Calling it again after done is harmless (done).
	DeleteBotData(ctx context.Context, botID string, limit int) (done bool, err error)
}

// APIKeys stores hashed API keys.
type APIKeys interface {
	CreateAPIKey(ctx context.Context, k APIKey) error
	// GetAPIKeyByHash returns the key whether revoked or not; the caller checks.
	GetAPIKeyByHash(ctx context.Context, hash string) (APIKey, error)
	// ListAPIKeys returns a bot's keys (revoked ones too), oldest first.
	ListAPIKeys(ctx context.Context, botID string) ([]APIKey, error)
	// RevokeAPIKey marks the key revoked; revoking a revoked key is
	// harmless (its RevokedAt stays). ErrNotFound if the bot has no such key.
	RevokeAPIKey(ctx context.Context, botID, id string, at time.Time) error
	// TouchAPIKey records that the key was used at at (never moves back).
	TouchAPIKey(ctx context.Context, id string, at time.Time) error
}

// Flows stores versioned flow definitions.
type Flows interface {
	// PutFlow stores a new version (latest + 1) and returns it.
	PutFlow(ctx context.Context, f Flow) (Flow, error)
	// GetFlow returns the given version, or the latest when version is 0.
	GetFlow(ctx context.Context, botID, flowID string, version int) (Flow, error)
	// ListFlowVersions returns every version, oldest first.
	ListFlowVersions(ctx context.Context, botID, flowID string) ([]Flow, error)
	// ListFlows returns the latest version of each of a bot's flows, by id.
	ListFlows(ctx context.Context, botID string) ([]Flow, error)
	// DeleteFlow deletes every version of a flow; ErrNotFound if none.
	DeleteFlow(ctx context.Context, botID, flowID string) error
}

// Events stores named entry points.
type Events interface {
	// PutEvent creates or replaces an event.
	PutEvent(ctx context.Context, e Event) error
	GetEvent(ctx context.Context, botID, name string) (Event, error)
	GetEventByToken(ctx context.Context, botID, tokenHash string) (Event, error)
	// ListEvents returns a bot's events by name.
	ListEvents(ctx context.Context, botID string) ([]Event, error)
	// DeleteEvent returns ErrNotFound if the bot has no such event.
	DeleteEvent(ctx context.Context, botID, name string) error
}

// Contacts stores users: one at a time, in bulk (imports, a fan-out's
// batches) and their deletion.
type Contacts interface {
	// UpsertContact returns the contact after the change and whether it was created.
	UpsertContact(ctx context.Context, u ContactUpsert) (Contact, bool, error)
	// UpsertContacts upserts many contacts (as UpsertContact) in one write
	// and returns them as stored, in the order of us.
	UpsertContacts(ctx context.Context, us []ContactUpsert) ([]Contact, error)
	// ImportContacts upserts many contacts (as UpsertContact) in one write.
	ImportContacts(ctx context.Context, us []ContactUpsert) (created, updated int, err error)
	GetContact(ctx context.Context, botID, id string) (Contact, error)
	GetContactByExternalID(ctx context.Context, botID, channel, externalID string) (Contact, error)
	// StreamContacts returns the next batch of a bot's contacts in id order;
	// pass the last id as f.After to resume.
	StreamContacts(ctx context.Context, botID string, f ContactFilter) ([]Contact, error)
	// SearchContacts returns a page of matching contacts in id order; next
	// is "" on the last page.
	SearchContacts(ctx context.Context, q ContactSearch) (contacts []Contact, next string, err error)
	// SetLastRequest stores data as the last_request of the bot's contacts
	// named by contactIDs (at most MaxWaitingRunsContacts), in one write;
	// ids of contacts that do not exist are ignored.
	SetLastRequest(ctx context.Context, botID string, contactIDs []string, data map[string]any, at time.Time) error
	// SetContactReachability records that a provider said the contact can
	// (not) be reached; broadcasts skip unreachable contacts.
	SetContactReachability(ctx context.Context, botID, id string, unreachable bool, reason string) error
	// DeleteContact deletes a contact with its runs, their messages and,
	// for a sandbox contact, its sandbox transcript.
	DeleteContact(ctx context.Context, botID, id string) error
}

// Triggers stores accepted requests and their progress.
type Triggers interface {
	// CreateTrigger returns the existing trigger (created=false) if the id exists.
	CreateTrigger(ctx context.Context, t Trigger) (Trigger, bool, error)
	// CreateTriggers is CreateTrigger for several triggers in one write
	// (at most MaxTriggersPerCall): each answer at its trigger's index. An
	// id of another bot's trigger is that trigger's Err; the others are
	// created all the same. Bad input fails the call and writes nothing.
	CreateTriggers(ctx context.Context, ts []Trigger) ([]CreatedTrigger, error)
	GetTrigger(ctx context.Context, botID, id string) (Trigger, error)
	// UpdateTrigger checks and increments Version and returns the stored
	// trigger. It writes status, cursor, spec and the descriptive fields;
	// Counters change only through IncrTriggerCounters.
	UpdateTrigger(ctx context.Context, t Trigger) (Trigger, error)
	// IncrTriggerCounters adds delta to a trigger's counters atomically. It
	// does not change the trigger's Version: counters are owned by this
	// method, and UpdateTrigger leaves them as they are.
	IncrTriggerCounters(ctx context.Context, botID, triggerID string, delta TriggerCounters) error
	// CheckpointTrigger is UpdateTrigger and IncrTriggerCounters(delta) in
	// one write, both or neither: a fan-out's count of a batch with its
	// checkpoint. On ErrVersionConflict the counters are left as they were.
	CheckpointTrigger(ctx context.Context, t Trigger, delta TriggerCounters) (Trigger, error)
	// CheckpointTriggers is CheckpointTrigger for several triggers in one
	// write, for their status and cursor only (the descriptive fields stay
	// as stored), without reading them back. A checkpoint whose trigger is
	// at another version (ErrVersionConflict) or gone (ErrNotFound)
	// changes nothing and has that error at its index in errs; the others
	// are written. Bad input fails the call and writes nothing.
	CheckpointTriggers(ctx context.Context, cps []TriggerCheckpoint) (errs []error, err error)
	// ListTriggers returns a page of triggers, newest first (CreatedAt,
	// then ID, descending); next is "" on the last page.
	ListTriggers(ctx context.Context, f TriggerFilter) (triggers []Trigger, next string, err error)
}

// Runs stores flow runs: one at a time, a fan-out's batches, the timer
// query and retention.
type Runs interface {
	// CreateRun returns the existing run (created=false) if one exists with
	// the same id or the same trigger + contact.
	CreateRun(ctx context.Context, r Run) (Run, bool, error)
	// CreateRuns creates many runs at once, each idempotent as in CreateRun;
	// created[i] tells whether runs[i] is new or the one that already existed.
	CreateRuns(ctx context.Context, rs []Run) (runs []Run, created []bool, err error)
	GetRun(ctx context.Context, botID, id string) (Run, error)
	// UpdateRun writes r if its Version still matches, and returns it with
	// the new Version and UpdatedAt (set by the store); otherwise
	// ErrVersionConflict. BotID, TriggerID, ContactID and CreatedAt never change.
	UpdateRun(ctx context.Context, r Run) (Run, error)
	// UpdateRuns writes many runs as UpdateRun does, in one write. A run
	// whose Version no longer matches, or that is gone, is left as it is and
	// its index is returned in conflicts; the others are written. An invalid
	// run fails the call before anything is written. After another error
	// some runs may be written: a retry with the same runs reports those as
	// conflicts.
	UpdateRuns(ctx context.Context, rs []Run) (conflicts []int, err error)
	// ClaimRuns claims runs for the step named by, until until. A step
	// claims the runs it moves before any of its effects leave (messages,
	// status events), so that of two steps of one run taken at once — in
	// two orchestrator processes — only one goes out. A claim is taken if
	// the run is still at the claim's Version and no other step's claim on
	// it is live (one whose until is after now); a step's own claim is
	// renewed, so the same event redelivered after a crash takes the run
	// back at once. The run's next write (UpdateRun, UpdateRuns) ends the
	// claim, and a claim holds only on the version it was taken on (any
	// other write outdates it); a claim whose step died ends at until. Claims that cannot be
	// taken are returned in refused (the others are taken, in one write);
	// an invalid claim fails the call before anything is written.
	ClaimRuns(ctx context.Context, claims []RunClaim, by string, now, until time.Time) (refused []ClaimRefusal, err error)
	// ListRuns returns a page of runs, newest first (CreatedAt, then ID,
	// descending); next is "" on the last page. Since is inclusive, Until
	// exclusive, both on CreatedAt.
	ListRuns(ctx context.Context, f RunFilter) (runs []Run, next string, err error)
	// WaitingRuns returns the waiting runs of the given contacts of a bot
	// (at most MaxWaitingRunsContacts ids), in no particular order: the runs a broadcast's
	// batch supersedes, found with one query.
	WaitingRuns(ctx context.Context, botID string, contactIDs []string) ([]Run, error)
	// DueRuns returns waiting runs whose WaitUntil is at or before now,
	// earliest first (the timer query).
	DueRuns(ctx context.Context, now time.Time, limit int) ([]Run, error)
	// ExpireBefore deletes runs in a final status last updated before t, with
	// their messages, and returns how many runs it deleted.
	ExpireBefore(ctx context.Context, t time.Time) (int64, error)
}

// Messages stores outbound messages and their delivery status.
type Messages interface {
	// InsertMessages stores messages; ids that exist already are left as they are.
	InsertMessages(ctx context.Context, ms []Message) error
	GetMessage(ctx context.Context, botID, id string) (Message, error)
	// UpdateMessageStatus moves a message forward; it never moves a status
	// back (a late or repeated callback is ignored, without error, but for
	// recording a provider id the message lacks). A zero At means now.
	UpdateMessageStatus(ctx context.Context, u StatusUpdate) error
	// MarkSent records that the provider accepted messages (status sent,
	// with the provider's ids) and adds how many of them this call recorded
	// first to the trigger's sent counter, in one atomic write, so a message
	// recorded twice is counted once. A message is recorded first when it
	// moves from queued to sent, or when it had moved on already (a status
	// callback overtook the worker) without a provider id. Unknown ids and
	// an unknown trigger are ignored; triggerID "" counts nothing.
	MarkSent(ctx context.Context, botID, triggerID string, ms []SentMessage) error
	// ListRunMessages returns a run's messages ordered by Seq.
	ListRunMessages(ctx context.Context, botID, runID string) ([]Message, error)
	// ListContactMessages returns the contact's most recent messages, newest
	// first (limit 0 means 100, at most 1000).
	ListContactMessages(ctx context.Context, botID, contactID string, limit int) ([]Message, error)
	// FindMessageByProviderID finds a message by the provider's message id
	// (delivery callbacks carry only that).
	FindMessageByProviderID(ctx context.Context, botID, providerID string) (Message, error)
}

// Sandbox stores what the sandbox channel delivered.
type Sandbox interface {
	// AppendSandbox stores m once; a second append of the same MessageID is ignored.
	// Several messages are appended in order, in one write.
	AppendSandbox(ctx context.Context, ms ...SandboxMessage) error
	// DeliverSandbox is the sandbox channel's delivery: it appends ms as
	// AppendSandbox does and records them as sent as MarkSent(bot,
	// triggerID, sent) does (DeliverSandboxArgs), in one write where the adapter can
	// make it atomic (SQLite), else in that order (a crash in between
	// leaves a transcript entry the redelivery records). Every message
	// must be of one bot.
	DeliverSandbox(ctx context.Context, triggerID string, ms []SandboxMessage) error
	// DeliverSandboxMany is DeliverSandbox for several bundles (of any
	// bots and triggers) in one write where the adapter can (SQLite: one
	// savepoint, one transcript insert), else one after the other. Bad
	// input in any delivery writes nothing; after another error some may
	// be written, and delivering them again is harmless.
	DeliverSandboxMany(ctx context.Context, ds []SandboxDelivery) error
	// ListSandbox returns a bot's sandbox messages with Seq > afterSeq, oldest
	// first; to filters by recipient; limit 0 means 100, at most 1000.
	ListSandbox(ctx context.Context, botID, to string, afterSeq int64, limit int) ([]SandboxMessage, error)
}

// Subscriptions stores webhook subscriptions and rotates their secrets:
// during a rotation a subscription has two secrets and deliveries are
// signed with both.
type Subscriptions interface {
	// CreateSubscription fails with ErrConflict if the id is taken.
	CreateSubscription(ctx context.Context, sub Subscription) error
	// ListSubscriptions returns a bot's subscriptions, oldest first.
	ListSubscriptions(ctx context.Context, botID string) ([]Subscription, error)
	// DeleteSubscription returns ErrNotFound if the bot has no such subscription.
	DeleteSubscription(ctx context.Context, botID, id string) error
	// RotateSubscriptionSecret makes secret the subscription's secret and
	// keeps the current one as PreviousSecret (replacing an older previous
	// one). ErrNotFound if the bot has no such subscription.
	RotateSubscriptionSecret(ctx context.Context, botID, id, secret string) error
	// DropPreviousSecret ends a rotation (harmless without one).
	DropPreviousSecret(ctx context.Context, botID, id string) error
}

// MediaFiles stores uploaded media and the provider copies of them.
type MediaFiles interface {
	// CreateMedia fails with ErrConflict if the id is taken.
	CreateMedia(ctx context.Context, m Media) error
	// GetMedia returns the file with its Data; a file of another bot is ErrNotFound.
	GetMedia(ctx context.Context, botID, id string) (Media, error)
	// ListMedia returns a bot's files without their Data, oldest first.
	ListMedia(ctx context.Context, botID string) ([]Media, error)
	// DeleteMedia deletes a file and its provider uploads; ErrNotFound if
	// the bot has no such file.
	DeleteMedia(ctx context.Context, botID, id string) error
	// PutMediaUpload creates or replaces the provider copy of a file for
	// one channel account. The file must exist (ErrNotFound otherwise).
	PutMediaUpload(ctx context.Context, u MediaUpload) error
	// GetMediaUpload returns the provider copy, or ErrNotFound.
	GetMediaUpload(ctx context.Context, botID, mediaID, channel, account string) (MediaUpload, error)
}

// Idempotency remembers which request an idempotency key was first used with.
type Idempotency interface {
	// ClaimIdempotencyKey stores hash for the bot's key unless the key has
	// one already, and returns the hash stored for the key (hash itself on
	// first use). A caller whose hash differs from the answer reused the key
	// with another request.
	ClaimIdempotencyKey(ctx context.Context, botID, key, hash string, at time.Time) (stored string, err error)
}
