package sqlite

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/flowgate/flowgate/shared/store"
)

// Webhook subscriptions: a handful of rows per bot, written by the admin API
// and read by the webhook delivery service.

// The subscriptions table joins the schema that Open applies (package
// variables are initialised before init runs, so schema exists here).
func init() {
	schema = append(schema,
		`CREATE TABLE IF NOT EXISTS subscriptions (
			id TEXT PRIMARY KEY,
			bot_id TEXT NOT NULL,
			url TEXT NOT NULL,
			secret TEXT NOT NULL,
			event_types TEXT NOT NULL,
			created_at INTEGER NOT NULL)`,
		`CREATE INDEX IF NOT EXISTS subscriptions_bot ON subscriptions (bot_id, created_at, id)`,
	)
}

// CreateSubscription fails with ErrConflict if the id is taken.
func (s *Store) CreateSubscription(ctx context.Context, sub store.Subscription) error {
	// The adapter has never range-checked a subscription's created_at (the
	// MongoDB adapter does): that check is left out here as before.
	unchecked := sub
	unchecked.CreatedAt = time.Time{}
	if err := check.Subscription(unchecked); err != nil {
		return err
	}
	types := sub.EventTypes
	if types == nil {
		types = []string{}
	}
	raw, err := json.Marshal(types)
	if err != nil {
		return &store.InvalidError{Field: "events", Reason: err.Error()}
	}
	if err := store.CheckSize("events", len(raw)); err != nil {
		return err
	}
	created := orNow(sub.CreatedAt)
	err = s.w.do(ctx, false, func(t *wtx) error {
		_, err := t.exec(`INSERT INTO subscriptions (id, bot_id, url, secret, event_types, created_at) VALUES (?,?,?,?,?,?)`,
			sub.ID, sub.BotID, sub.URL, sub.Secret, string(raw), nanos(created))
		if isUnique(err) {
			return fmt.Errorf("%w: subscription %s", store.ErrConflict, sub.ID)
		}
		return err
	})
	return dbErr("create subscription", err)
}

// ListSubscriptions returns a bot's subscriptions, oldest first.
func (s *Store) ListSubscriptions(ctx context.Context, botID string) ([]store.Subscription, error) {
	if err := store.CheckBotID("bot_id", botID); err != nil {
		return nil, err
	}
	rows, err := s.qrows(ctx, `SELECT s.id, s.bot_id, s.url, s.secret, COALESCE(p.previous_secret, ''), s.event_types, s.created_at
		FROM subscriptions s LEFT JOIN subscription_previous_secrets p ON p.id = s.id
		WHERE s.bot_id = ? ORDER BY s.created_at, s.id`, botID)
	if err != nil {
		return nil, dbErr("list subscriptions", err)
	}
	defer rows.Close()
	out := []store.Subscription{}
	for rows.Next() {
		var sub store.Subscription
		var types string
		var created int64
		if err := rows.Scan(&sub.ID, &sub.BotID, &sub.URL, &sub.Secret, &sub.PreviousSecret, &types, &created); err != nil {
			return nil, dbErr("list subscriptions", err)
		}
		if err := json.Unmarshal([]byte(types), &sub.EventTypes); err != nil {
			return nil, dbErr("list subscriptions", fmt.Errorf("stored event types: %w", err))
		}
		sub.CreatedAt = fromNanos(created)
		out = append(out, sub)
	}
	return out, dbErr("list subscriptions", rows.Err())
}

// DeleteSubscription returns ErrNotFound if the bot has no such subscription.
func (s *Store) DeleteSubscription(ctx context.Context, botID, id string) error {
	if err := store.FirstErr(store.CheckBotID("bot_id", botID), store.CheckID("id", id)); err != nil {
		return err
	}
	err := s.w.doAll(ctx, 1, func(t *wtx) error {
		n, err := t.execAffected(`DELETE FROM subscriptions WHERE bot_id = ? AND id = ?`, botID, id)
		if err == nil && n == 0 {
			return notFound("subscription", id)
		}
		if err != nil {
			return err
		}
		_, err = t.exec(`DELETE FROM subscription_previous_secrets WHERE id = ?`, id)
		return err
	})
	return dbErr("delete subscription", err)
}
