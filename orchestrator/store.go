package orchestrator

import (
	"context"
	"time"

	"github.com/flowgate/flowgate/shared/store"
)

// Store is the part of the store port the orchestrator uses (the adapters
// implement all of store.Store). Declared here, where it is used, so that
// what the orchestrator may write is visible and a test double needs only
// these methods.
type Store interface {
	// bots and flows: read only
	GetBot(ctx context.Context, id string) (store.Bot, error)
	GetFlow(ctx context.Context, botID, flowID string, version int) (store.Flow, error)
	// contacts
	UpsertContact(ctx context.Context, u store.ContactUpsert) (store.Contact, bool, error)
	UpsertContacts(ctx context.Context, us []store.ContactUpsert) ([]store.Contact, error)
	ImportContacts(ctx context.Context, us []store.ContactUpsert) (created, updated int, err error)
	GetContact(ctx context.Context, botID, id string) (store.Contact, error)
	GetContactByExternalID(ctx context.Context, botID, channel, externalID string) (store.Contact, error)
	StreamContacts(ctx context.Context, botID string, f store.ContactFilter) ([]store.Contact, error)
	SetLastRequest(ctx context.Context, botID string, contactIDs []string, data map[string]any, at time.Time) error
	SetContactReachability(ctx context.Context, botID, id string, unreachable bool, reason string) error
	// triggers
	CreateTrigger(ctx context.Context, t store.Trigger) (store.Trigger, bool, error)
	CreateTriggers(ctx context.Context, ts []store.Trigger) ([]store.CreatedTrigger, error)
	GetTrigger(ctx context.Context, botID, id string) (store.Trigger, error)
	UpdateTrigger(ctx context.Context, t store.Trigger) (store.Trigger, error)
	IncrTriggerCounters(ctx context.Context, botID, triggerID string, delta store.TriggerCounters) error
	CheckpointTrigger(ctx context.Context, t store.Trigger, delta store.TriggerCounters) (store.Trigger, error)
	CheckpointTriggers(ctx context.Context, cps []store.TriggerCheckpoint) (errs []error, err error)
	// runs
	CreateRuns(ctx context.Context, rs []store.Run) (runs []store.Run, created []bool, err error)
	GetRun(ctx context.Context, botID, id string) (store.Run, error)
	UpdateRuns(ctx context.Context, rs []store.Run) (conflicts []int, err error)
	ClaimRuns(ctx context.Context, claims []store.RunClaim, by string, now, until time.Time) ([]store.ClaimRefusal, error)
	ListRuns(ctx context.Context, f store.RunFilter) (runs []store.Run, next string, err error)
	WaitingRuns(ctx context.Context, botID string, contactIDs []string) ([]store.Run, error)
	DueRuns(ctx context.Context, now time.Time, limit int) ([]store.Run, error)
	// messages
	InsertMessages(ctx context.Context, ms []store.Message) error
	GetMessage(ctx context.Context, botID, id string) (store.Message, error)
	UpdateMessageStatus(ctx context.Context, u store.StatusUpdate) error
	FindMessageByProviderID(ctx context.Context, botID, providerID string) (store.Message, error)
	// webhook subscriptions: whether a bot has any (statusevents.go)
	ListSubscriptions(ctx context.Context, botID string) ([]store.Subscription, error)
}

var _ Store = store.Store(nil)
