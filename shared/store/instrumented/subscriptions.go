package instrumented

import (
	"context"

	"github.com/flowgate/flowgate/shared/store"
)

// CreateSubscription delegates and measures.
func (s *Store) CreateSubscription(ctx context.Context, sub store.Subscription) error {
	return measure0(s, "CreateSubscription", func() error { return s.Store.CreateSubscription(ctx, sub) })
}

// ListSubscriptions delegates and measures (the webhook fan-out calls it per
// status change when its cache is cold).
func (s *Store) ListSubscriptions(ctx context.Context, botID string) ([]store.Subscription, error) {
	return measure(s, "ListSubscriptions", func() ([]store.Subscription, error) { return s.Store.ListSubscriptions(ctx, botID) })
}

// DeleteSubscription delegates and measures.
func (s *Store) DeleteSubscription(ctx context.Context, botID, id string) error {
	return measure0(s, "DeleteSubscription", func() error { return s.Store.DeleteSubscription(ctx, botID, id) })
}
