package ingress

import (
	"context"
	"time"

	"github.com/flowgate/flowgate/shared/store"
)

// Store is the part of the store port the ingress uses (the adapters
// implement all of store.Store), declared where it is used. The ingress
// reads what requests are checked against (bots, keys, events, flows) and
// serves the management API; it never writes runs, messages or counters:
// those are the orchestrator's and the channel workers'.
type Store interface {
	// bots, and their deletion
	CreateBot(ctx context.Context, b store.Bot) error
	GetBot(ctx context.Context, id string) (store.Bot, error)
	UpdateBot(ctx context.Context, b store.Bot) error
	ListBots(ctx context.Context) ([]store.Bot, error)
	MarkBotDeleting(ctx context.Context, botID string, at time.Time) error
	BotDeletions(ctx context.Context) ([]store.BotDeletion, error)
	DeleteBotData(ctx context.Context, botID string, limit int) (done bool, err error)
	// API keys
	CreateAPIKey(ctx context.Context, k store.APIKey) error
	GetAPIKeyByHash(ctx context.Context, hash string) (store.APIKey, error)
	ListAPIKeys(ctx context.Context, botID string) ([]store.APIKey, error)
	RevokeAPIKey(ctx context.Context, botID, id string, at time.Time) error
	TouchAPIKey(ctx context.Context, id string, at time.Time) error
	// flows and events
	PutFlow(ctx context.Context, f store.Flow) (store.Flow, error)
	GetFlow(ctx context.Context, botID, flowID string, version int) (store.Flow, error)
	ListFlowVersions(ctx context.Context, botID, flowID string) ([]store.Flow, error)
	ListFlows(ctx context.Context, botID string) ([]store.Flow, error)
	DeleteFlow(ctx context.Context, botID, flowID string) error
	PutEvent(ctx context.Context, e store.Event) error
	GetEvent(ctx context.Context, botID, name string) (store.Event, error)
	GetEventByToken(ctx context.Context, botID, tokenHash string) (store.Event, error)
	ListEvents(ctx context.Context, botID string) ([]store.Event, error)
	DeleteEvent(ctx context.Context, botID, name string) error
	// contacts (the contacts API and imports)
	UpsertContact(ctx context.Context, u store.ContactUpsert) (store.Contact, bool, error)
	ImportContacts(ctx context.Context, us []store.ContactUpsert) (created, updated int, err error)
	GetContact(ctx context.Context, botID, id string) (store.Contact, error)
	SearchContacts(ctx context.Context, q store.ContactSearch) (contacts []store.Contact, next string, err error)
	DeleteContact(ctx context.Context, botID, id string) error
	// what provider webhooks record (provider.Contacts)
	GetContactByExternalID(ctx context.Context, botID, channel, externalID string) (store.Contact, error)
	SetContactReachability(ctx context.Context, botID, id string, unreachable bool, reason string) error
	// triggers, runs and messages: read, and a trigger's pause, resume and cancel
	GetTrigger(ctx context.Context, botID, id string) (store.Trigger, error)
	UpdateTrigger(ctx context.Context, t store.Trigger) (store.Trigger, error)
	ListTriggers(ctx context.Context, f store.TriggerFilter) (triggers []store.Trigger, next string, err error)
	GetRun(ctx context.Context, botID, id string) (store.Run, error)
	ListRuns(ctx context.Context, f store.RunFilter) (runs []store.Run, next string, err error)
	ListRunMessages(ctx context.Context, botID, runID string) ([]store.Message, error)
	ListContactMessages(ctx context.Context, botID, contactID string, limit int) ([]store.Message, error)
	ListSandbox(ctx context.Context, botID, to string, afterSeq int64, limit int) ([]store.SandboxMessage, error)
	// webhook subscriptions, media, idempotency keys
	CreateSubscription(ctx context.Context, sub store.Subscription) error
	ListSubscriptions(ctx context.Context, botID string) ([]store.Subscription, error)
	DeleteSubscription(ctx context.Context, botID, id string) error
	RotateSubscriptionSecret(ctx context.Context, botID, id, secret string) error
	DropPreviousSecret(ctx context.Context, botID, id string) error
	CreateMedia(ctx context.Context, m store.Media) error
	GetMedia(ctx context.Context, botID, id string) (store.Media, error)
	ListMedia(ctx context.Context, botID string) ([]store.Media, error)
	DeleteMedia(ctx context.Context, botID, id string) error
	ClaimIdempotencyKey(ctx context.Context, botID, key, hash string, at time.Time) (stored string, err error)
	// Ping reports whether the database is reachable (readiness).
	Ping(ctx context.Context) error
}

// Every adapter is an ingress Store.
var _ Store = store.Store(nil)
