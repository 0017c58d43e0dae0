package instrumented

import (
	"context"
	"time"

	"github.com/flowgate/flowgate/shared/store"
)

// The rest of the port: every method of store.Store is declared on Store
// (TestEveryPortMethodIsMeasured), so that a method added to the port and
// forgotten here fails a test instead of passing unmeasured through the
// embedded store.

// UpdateBot delegates and measures.
func (s *Store) UpdateBot(ctx context.Context, b store.Bot) error {
	return measure0(s, "UpdateBot", func() error { return s.Store.UpdateBot(ctx, b) })
}

// ListBots delegates and measures.
func (s *Store) ListBots(ctx context.Context) ([]store.Bot, error) {
	return measure(s, "ListBots", func() ([]store.Bot, error) { return s.Store.ListBots(ctx) })
}

// CreateAPIKey delegates and measures.
func (s *Store) CreateAPIKey(ctx context.Context, k store.APIKey) error {
	return measure0(s, "CreateAPIKey", func() error { return s.Store.CreateAPIKey(ctx, k) })
}

// ListFlowVersions delegates and measures.
func (s *Store) ListFlowVersions(ctx context.Context, botID, flowID string) ([]store.Flow, error) {
	return measure(s, "ListFlowVersions", func() ([]store.Flow, error) { return s.Store.ListFlowVersions(ctx, botID, flowID) })
}

// GetEventByToken delegates and measures.
func (s *Store) GetEventByToken(ctx context.Context, botID, tokenHash string) (store.Event, error) {
	return measure(s, "GetEventByToken", func() (store.Event, error) { return s.Store.GetEventByToken(ctx, botID, tokenHash) })
}

// GetContactByExternalID delegates and measures.
func (s *Store) GetContactByExternalID(ctx context.Context, botID, channel, externalID string) (store.Contact, error) {
	return measure(s, "GetContactByExternalID", func() (store.Contact, error) {
		return s.Store.GetContactByExternalID(ctx, botID, channel, externalID)
	})
}

// ListRunMessages delegates and measures.
func (s *Store) ListRunMessages(ctx context.Context, botID, runID string) ([]store.Message, error) {
	return measure(s, "ListRunMessages", func() ([]store.Message, error) { return s.Store.ListRunMessages(ctx, botID, runID) })
}

// DeleteContact delegates and measures.
func (s *Store) DeleteContact(ctx context.Context, botID, id string) error {
	return measure0(s, "DeleteContact", func() error { return s.Store.DeleteContact(ctx, botID, id) })
}

// ExpireBefore delegates and measures.
func (s *Store) ExpireBefore(ctx context.Context, t time.Time) (int64, error) {
	return measure(s, "ExpireBefore", func() (int64, error) { return s.Store.ExpireBefore(ctx, t) })
}

// SetContactReachability delegates and measures.
func (s *Store) SetContactReachability(ctx context.Context, botID, id string, unreachable bool, reason string) error {
	return measure0(s, "SetContactReachability", func() error {
		return s.Store.SetContactReachability(ctx, botID, id, unreachable, reason)
	})
}

// FindMessageByProviderID delegates and measures.
func (s *Store) FindMessageByProviderID(ctx context.Context, botID, providerID string) (store.Message, error) {
	return measure(s, "FindMessageByProviderID", func() (store.Message, error) {
		return s.Store.FindMessageByProviderID(ctx, botID, providerID)
	})
}

// Close closes the wrapped store (not an operation: not measured).
func (s *Store) Close() error { return s.Store.Close() }
