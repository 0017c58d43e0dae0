package sqlite

import (
	"context"
	"database/sql"
	"errors"

	"github.com/flowgate/flowgate/shared/store"
)

// Webhook secret rotation: the previous secret lives in a table of its own
// (the subscriptions table's statements stay as they were).

func init() {
	schema = append(schema,
		`CREATE TABLE IF NOT EXISTS subscription_previous_secrets (
			id TEXT PRIMARY KEY,
			previous_secret TEXT NOT NULL)`,
	)
}

// RotateSubscriptionSecret makes secret current and keeps the old one.
func (s *Store) RotateSubscriptionSecret(ctx context.Context, botID, id, secret string) error {
	if err := store.FirstErr(store.CheckBotID("bot_id", botID), store.CheckID("id", id), store.CheckSubscriptionSecret(secret)); err != nil {
		return err
	}
	err := s.w.doAll(ctx, 1, func(t *wtx) error {
		var old string
		if err := t.queryRow(`SELECT secret FROM subscriptions WHERE id = ? AND bot_id = ?`, id, botID).Scan(&old); err != nil {
			if errors.Is(err, sql.ErrNoRows) {
				return notFound("subscription", id)
			}
			return err
		}
		if _, err := t.exec(`UPDATE subscriptions SET secret = ? WHERE id = ?`, secret, id); err != nil {
			return err
		}
		_, err := t.exec(`INSERT INTO subscription_previous_secrets (id, previous_secret) VALUES (?, ?)
			ON CONFLICT (id) DO UPDATE SET previous_secret = excluded.previous_secret`, id, old)
		return err
	})
	return dbErr("rotate subscription secret", err)
}

// DropPreviousSecret ends a rotation.
func (s *Store) DropPreviousSecret(ctx context.Context, botID, id string) error {
	if err := store.FirstErr(store.CheckBotID("bot_id", botID), store.CheckID("id", id)); err != nil {
		return err
	}
	err := s.w.do(ctx, false, func(t *wtx) error {
		ok, err := t.exists(`SELECT 1 FROM subscriptions WHERE id = ? AND bot_id = ?`, id, botID)
		if err != nil {
			return err
		}
		if !ok {
			return notFound("subscription", id)
		}
		_, err = t.exec(`DELETE FROM subscription_previous_secrets WHERE id = ?`, id)
		return err
	})
	return dbErr("drop previous secret", err)
}
