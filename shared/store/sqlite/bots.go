package sqlite

import (
	"context"
	"time"

	"github.com/flowgate/flowgate/shared/store"
)

// Bot deletion: a marker, then chunked deletes of the bot's data.

func init() {
	schema = append(schema,
		`CREATE TABLE IF NOT EXISTS bot_deletions (
			bot_id TEXT PRIMARY KEY,
			requested_at INTEGER NOT NULL)`,
	)
}

// MarkBotDeleting records the request; the first time stays. ErrNotFound
// when the bot does not exist.
func (s *Store) MarkBotDeleting(ctx context.Context, botID string, at time.Time) error {
	if err := store.FirstErr(store.CheckBotID("bot_id", botID), store.CheckTime("at", at)); err != nil {
		return err
	}
	err := s.w.do(ctx, false, func(t *wtx) error {
		// In the write transaction: the marker is written only while the
		// bot exists (a deletion that just finished leaves no marker).
		var n int
		if err := t.queryRow(`SELECT COUNT(*) FROM bots WHERE id = ?`, botID).Scan(&n); err != nil {
			return err
		}
		if n == 0 {
			return notFound("bot", botID)
		}
		_, err := t.exec(`INSERT INTO bot_deletions (bot_id, requested_at) VALUES (?, ?) ON CONFLICT (bot_id) DO NOTHING`,
			botID, nanos(orNow(at)))
		return err
	})
	return dbErr("mark bot deleting", err)
}

// BotDeletions lists unfinished deletions, oldest first.
func (s *Store) BotDeletions(ctx context.Context) ([]store.BotDeletion, error) {
	rows, err := s.qrows(ctx, `SELECT bot_id, requested_at FROM bot_deletions ORDER BY requested_at, bot_id`)
	if err != nil {
		return nil, dbErr("bot deletions", err)
	}
	defer rows.Close()
	out := []store.BotDeletion{}
	for rows.Next() {
		var d store.BotDeletion
		var at int64
		if err := rows.Scan(&d.BotID, &at); err != nil {
			return nil, dbErr("bot deletions", err)
		}
		d.RequestedAt = fromNanos(at)
		out = append(out, d)
	}
	return out, dbErr("bot deletions", rows.Err())
}

// DeleteBotData deletes a chunk of each kind of the bot's data in one
// transaction (indexed by bot), and the bot itself once nothing is left.
func (s *Store) DeleteBotData(ctx context.Context, botID string, limit int) (bool, error) {
	if err := store.CheckBotID("bot_id", botID); err != nil {
		return false, err
	}
	limit, err := store.CheckLimit(limit, 1000, 10000)
	if err != nil {
		return false, err
	}
	done := false
	err = s.w.do(ctx, true, func(t *wtx) error {
		var deleted int64
		for _, q := range []string{
			`DELETE FROM messages WHERE run_id IN (SELECT id FROM runs INDEXED BY runs_bot_created WHERE bot_id = ?1 LIMIT ?2)`,
			`DELETE FROM runs WHERE id IN (SELECT id FROM runs INDEXED BY runs_bot_created WHERE bot_id = ?1 LIMIT ?2)`,
			`DELETE FROM contacts WHERE id IN (SELECT id FROM contacts INDEXED BY contacts_bot_id WHERE bot_id = ?1 LIMIT ?2)`,
			`DELETE FROM triggers WHERE id IN (SELECT id FROM triggers INDEXED BY triggers_bot_created WHERE bot_id = ?1 LIMIT ?2)`,
			`DELETE FROM sandbox WHERE seq IN (SELECT seq FROM sandbox INDEXED BY sandbox_bot WHERE bot_id = ?1 LIMIT ?2)`,
		} {
			n, err := t.execAffected(q, botID, limit)
			if err != nil {
				return err
			}
			deleted += n
		}
		if deleted > 0 {
			return nil // more rounds to come
		}
		// Messages whose run went first (none are expected), then the
		// small records and the bot.
		for _, q := range []string{
			`DELETE FROM messages WHERE bot_id = ?1 AND provider_message_id <> ''`,
			`DELETE FROM flows WHERE bot_id = ?1`,
			`DELETE FROM events WHERE bot_id = ?1`,
			`DELETE FROM api_key_meta WHERE id IN (SELECT id FROM api_keys WHERE bot_id = ?1)`,
			`DELETE FROM api_keys WHERE bot_id = ?1`,
			`DELETE FROM subscription_previous_secrets WHERE id IN (SELECT id FROM subscriptions WHERE bot_id = ?1)`,
			`DELETE FROM subscriptions WHERE bot_id = ?1`,
			`DELETE FROM idempotency_keys WHERE bot_id = ?1`,
			`DELETE FROM bots WHERE id = ?1`,
			`DELETE FROM bot_deletions WHERE bot_id = ?1`,
		} {
			if _, err := t.exec(q, botID); err != nil {
				return err
			}
		}
		done = true
		return nil
	})
	return done, dbErr("delete bot data", err)
}
