package instrumented

import (
	"context"
	"time"

	"github.com/flowgate/flowgate/shared/store"
)

// The management methods: admin API calls, measured like the rest.

// ListAPIKeys delegates and measures.
func (s *Store) ListAPIKeys(ctx context.Context, botID string) ([]store.APIKey, error) {
	return measure(s, "ListAPIKeys", func() ([]store.APIKey, error) { return s.Store.ListAPIKeys(ctx, botID) })
}

// RevokeAPIKey delegates and measures.
func (s *Store) RevokeAPIKey(ctx context.Context, botID, id string, at time.Time) error {
	return measure0(s, "RevokeAPIKey", func() error { return s.Store.RevokeAPIKey(ctx, botID, id, at) })
}

// TouchAPIKey delegates and measures.
func (s *Store) TouchAPIKey(ctx context.Context, id string, at time.Time) error {
	return measure0(s, "TouchAPIKey", func() error { return s.Store.TouchAPIKey(ctx, id, at) })
}

// ListFlows delegates and measures.
func (s *Store) ListFlows(ctx context.Context, botID string) ([]store.Flow, error) {
	return measure(s, "ListFlows", func() ([]store.Flow, error) { return s.Store.ListFlows(ctx, botID) })
}

// DeleteFlow delegates and measures.
func (s *Store) DeleteFlow(ctx context.Context, botID, flowID string) error {
	return measure0(s, "DeleteFlow", func() error { return s.Store.DeleteFlow(ctx, botID, flowID) })
}

// ListEvents delegates and measures.
func (s *Store) ListEvents(ctx context.Context, botID string) ([]store.Event, error) {
	return measure(s, "ListEvents", func() ([]store.Event, error) { return s.Store.ListEvents(ctx, botID) })
}

// DeleteEvent delegates and measures.
func (s *Store) DeleteEvent(ctx context.Context, botID, name string) error {
	return measure0(s, "DeleteEvent", func() error { return s.Store.DeleteEvent(ctx, botID, name) })
}

// ListTriggers delegates and measures.
func (s *Store) ListTriggers(ctx context.Context, f store.TriggerFilter) ([]store.Trigger, string, error) {
	var next string
	ts, err := measure(s, "ListTriggers", func() ([]store.Trigger, error) {
		ts, n, err := s.Store.ListTriggers(ctx, f)
		next = n
		return ts, err
	})
	return ts, next, err
}

// SearchContacts delegates and measures.
func (s *Store) SearchContacts(ctx context.Context, q store.ContactSearch) ([]store.Contact, string, error) {
	var next string
	cs, err := measure(s, "SearchContacts", func() ([]store.Contact, error) {
		cs, n, err := s.Store.SearchContacts(ctx, q)
		next = n
		return cs, err
	})
	return cs, next, err
}

// ListContactMessages delegates and measures.
func (s *Store) ListContactMessages(ctx context.Context, botID, contactID string, limit int) ([]store.Message, error) {
	return measure(s, "ListContactMessages", func() ([]store.Message, error) {
		return s.Store.ListContactMessages(ctx, botID, contactID, limit)
	})
}

// ClaimIdempotencyKey delegates and measures.
func (s *Store) ClaimIdempotencyKey(ctx context.Context, botID, key, hash string, at time.Time) (string, error) {
	return measure(s, "ClaimIdempotencyKey", func() (string, error) { return s.Store.ClaimIdempotencyKey(ctx, botID, key, hash, at) })
}

// MarkBotDeleting delegates and measures.
func (s *Store) MarkBotDeleting(ctx context.Context, botID string, at time.Time) error {
	return measure0(s, "MarkBotDeleting", func() error { return s.Store.MarkBotDeleting(ctx, botID, at) })
}

// BotDeletions delegates and measures.
func (s *Store) BotDeletions(ctx context.Context) ([]store.BotDeletion, error) {
	return measure(s, "BotDeletions", func() ([]store.BotDeletion, error) { return s.Store.BotDeletions(ctx) })
}

// DeleteBotData delegates and measures.
func (s *Store) DeleteBotData(ctx context.Context, botID string, limit int) (bool, error) {
	return measure(s, "DeleteBotData", func() (bool, error) { return s.Store.DeleteBotData(ctx, botID, limit) })
}

// RotateSubscriptionSecret delegates and measures.
func (s *Store) RotateSubscriptionSecret(ctx context.Context, botID, id, secret string) error {
	return measure0(s, "RotateSubscriptionSecret", func() error { return s.Store.RotateSubscriptionSecret(ctx, botID, id, secret) })
}

// DropPreviousSecret delegates and measures.
func (s *Store) DropPreviousSecret(ctx context.Context, botID, id string) error {
	return measure0(s, "DropPreviousSecret", func() error { return s.Store.DropPreviousSecret(ctx, botID, id) })
}
