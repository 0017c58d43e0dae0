package storetest

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/flowgate/flowgate/shared/store"
)

// RunSubscriptions checks the webhook subscription part of the port: create,
// list (oldest first, per bot, secret kept), conflicts, invalid input and
// delete. s must hold no subscriptions of the bots "sub-a" and "sub-b".
func RunSubscriptions(t *testing.T, s store.Store, precision time.Duration) {
	ctx := context.Background()
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	a1 := store.Subscription{ID: "wh_a1", BotID: "sub-a", URL: "https://example.com/hook", Secret: "0123456789abcdef",
		EventTypes: []string{"run.status"}, CreatedAt: t0}
	a2 := store.Subscription{ID: "wh_a2", BotID: "sub-a", URL: "http://example.net/h?x=1", Secret: "fedcba9876543210",
		EventTypes: []string{"run.completed", "run.failed"}, CreatedAt: t0.Add(time.Second)}
	b1 := store.Subscription{ID: "wh_b1", BotID: "sub-b", URL: "https://b.example/hook", Secret: "bbbbbbbbbbbbbbbb",
		EventTypes: []string{"run.status"}, CreatedAt: t0}

	empty, err := s.ListSubscriptions(ctx, "sub-a")
	require.NoError(t, err)
	require.Empty(t, empty)

	// Created out of order: the list is oldest first.
	require.NoError(t, s.CreateSubscription(ctx, a2))
	require.NoError(t, s.CreateSubscription(ctx, a1))
	require.NoError(t, s.CreateSubscription(ctx, b1))
	err = s.CreateSubscription(ctx, a1)
	require.ErrorIs(t, err, store.ErrConflict)

	got, err := s.ListSubscriptions(ctx, "sub-a")
	require.NoError(t, err)
	require.Len(t, got, 2)
	for i, want := range []store.Subscription{a1, a2} {
		require.Equal(t, want.ID, got[i].ID)
		require.Equal(t, want.BotID, got[i].BotID)
		require.Equal(t, want.URL, got[i].URL)
		require.Equal(t, want.Secret, got[i].Secret, "the store keeps the secret (the API hides it)")
		require.Equal(t, want.EventTypes, got[i].EventTypes)
		require.WithinDuration(t, want.CreatedAt, got[i].CreatedAt, precision)
		require.Equal(t, time.UTC, got[i].CreatedAt.Location())
	}

	// Another bot cannot delete a's subscription; a's list is unaffected.
	require.ErrorIs(t, s.DeleteSubscription(ctx, "sub-b", "wh_a1"), store.ErrNotFound)
	require.NoError(t, s.DeleteSubscription(ctx, "sub-a", "wh_a1"))
	require.ErrorIs(t, s.DeleteSubscription(ctx, "sub-a", "wh_a1"), store.ErrNotFound)
	got, err = s.ListSubscriptions(ctx, "sub-a")
	require.NoError(t, err)
	require.Len(t, got, 1)
	require.Equal(t, "wh_a2", got[0].ID)
	got, err = s.ListSubscriptions(ctx, "sub-b")
	require.NoError(t, err)
	require.Len(t, got, 1)

	// Secret rotation: the new secret is current, the old one previous;
	// another rotation replaces the previous; dropping ends it.
	require.NoError(t, s.RotateSubscriptionSecret(ctx, "sub-a", "wh_a2", "new-secret-0123456789"))
	got, err = s.ListSubscriptions(ctx, "sub-a")
	require.NoError(t, err)
	require.Equal(t, "new-secret-0123456789", got[0].Secret)
	require.Equal(t, a2.Secret, got[0].PreviousSecret)
	require.NoError(t, s.RotateSubscriptionSecret(ctx, "sub-a", "wh_a2", "newer-secret-0123456789"))
	got, err = s.ListSubscriptions(ctx, "sub-a")
	require.NoError(t, err)
	require.Equal(t, "newer-secret-0123456789", got[0].Secret)
	require.Equal(t, "new-secret-0123456789", got[0].PreviousSecret)
	require.NoError(t, s.DropPreviousSecret(ctx, "sub-a", "wh_a2"))
	require.NoError(t, s.DropPreviousSecret(ctx, "sub-a", "wh_a2"), "twice is harmless")
	got, err = s.ListSubscriptions(ctx, "sub-a")
	require.NoError(t, err)
	require.Empty(t, got[0].PreviousSecret)
	require.ErrorIs(t, s.RotateSubscriptionSecret(ctx, "sub-b", "wh_a2", "x-secret-0123456789"), store.ErrNotFound, "another bot's")
	require.ErrorIs(t, s.DropPreviousSecret(ctx, "sub-a", "nope"), store.ErrNotFound)
	require.ErrorIs(t, s.RotateSubscriptionSecret(ctx, "sub-a", "wh_a2", "short"), store.ErrInvalid)
	got, err = s.ListSubscriptions(ctx, "sub-b")
	require.NoError(t, err)
	require.Equal(t, b1.Secret, got[0].Secret, "another bot's subscription is untouched")
	require.Empty(t, got[0].PreviousSecret)

	// Invalid input is refused before any I/O, as an *InvalidError.
	var inv *store.InvalidError
	for name, bad := range map[string]store.Subscription{
		"bot id":    {ID: "x", BotID: "Bad Bot", URL: "https://e.x", Secret: "s"},
		"empty id":  {BotID: "sub-a", URL: "https://e.x", Secret: "s"},
		"no secret": {ID: "x", BotID: "sub-a", URL: "https://e.x"},
		"no url":    {ID: "x", BotID: "sub-a", Secret: "s"},
	} {
		err := s.CreateSubscription(ctx, bad)
		require.True(t, errors.As(err, &inv), "%s: %v", name, err)
	}
	_, err = s.ListSubscriptions(ctx, "Bad Bot")
	require.ErrorIs(t, err, store.ErrInvalid)
	require.ErrorIs(t, s.DeleteSubscription(ctx, "sub-a", ""), store.ErrInvalid)
}
