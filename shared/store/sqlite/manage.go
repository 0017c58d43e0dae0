package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/flowgate/flowgate/shared/store"
)

// The management part of the port: API key administration, flow, event and
// trigger listings, contact search and idempotency keys.

// API keys made before scopes have no api_key_meta row: they are admin keys.
// A table of its own (rather than new api_keys columns) keeps the schema
// statements idempotent on existing databases.
func init() {
	schema = append(schema,
		`CREATE TABLE IF NOT EXISTS api_key_meta (
			id TEXT PRIMARY KEY,
			name TEXT NOT NULL DEFAULT '',
			scope TEXT NOT NULL DEFAULT '',
			events TEXT,
			last_used_at INTEGER,
			revoked_at INTEGER)`,
		`CREATE INDEX IF NOT EXISTS api_keys_bot ON api_keys (bot_id, created_at, id)`,
		`CREATE INDEX IF NOT EXISTS triggers_bot_created ON triggers (bot_id, created_at, id)`,
		`CREATE TABLE IF NOT EXISTS idempotency_keys (
			bot_id TEXT NOT NULL,
			key TEXT NOT NULL,
			hash TEXT NOT NULL,
			created_at INTEGER NOT NULL,
			PRIMARY KEY (bot_id, key)) WITHOUT ROWID`,
	)
}

const apiKeyCols = `api_keys.id, api_keys.bot_id, api_keys.hash, api_keys.prefix, api_keys.created_at, api_keys.revoked,
	COALESCE(m.name, ''), COALESCE(m.scope, ''), m.events, m.last_used_at, m.revoked_at`

func scanAPIKey(r scanner) (store.APIKey, error) {
	var k store.APIKey
	var c int64
	var revoked int
	var events sql.NullString
	var used, revokedAt sql.NullInt64
	if err := r.Scan(&k.ID, &k.BotID, &k.Hash, &k.Prefix, &c, &revoked, &k.Name, &k.Scope, &events, &used, &revokedAt); err != nil {
		return k, err
	}
	k.CreatedAt, k.Revoked = fromNanos(c), revoked != 0
	k.LastUsedAt, k.RevokedAt = fromNullNanos(used), fromNullNanos(revokedAt)
	if events.Valid && events.String != "" {
		if err := json.Unmarshal([]byte(events.String), &k.Events); err != nil {
			return k, fmt.Errorf("stored key events: %w", err)
		}
	}
	return k, nil
}

func insertKeyMeta(t *wtx, k store.APIKey) error {
	var events any
	if len(k.Events) > 0 {
		b, err := json.Marshal(k.Events)
		if err != nil {
			return &store.InvalidError{Field: "events", Reason: err.Error()}
		}
		events = string(b)
	}
	_, err := t.exec(`INSERT INTO api_key_meta (id, name, scope, events, revoked_at) VALUES (?,?,?,?,?)`,
		k.ID, k.Name, k.Scope, events, nullNanos(k.RevokedAt))
	return err
}

// ListAPIKeys returns a bot's keys, oldest first.
func (s *Store) ListAPIKeys(ctx context.Context, botID string) ([]store.APIKey, error) {
	if err := store.CheckBotID("bot_id", botID); err != nil {
		return nil, err
	}
	rows, err := s.qrows(ctx, `SELECT `+apiKeyCols+` FROM api_keys LEFT JOIN api_key_meta m ON m.id = api_keys.id
		WHERE api_keys.bot_id = ? ORDER BY api_keys.created_at, api_keys.id`, botID)
	if err != nil {
		return nil, dbErr("list api keys", err)
	}
	defer rows.Close()
	out := []store.APIKey{}
	for rows.Next() {
		k, err := scanAPIKey(rows)
		if err != nil {
			return nil, dbErr("list api keys", err)
		}
		out = append(out, k)
	}
	return out, dbErr("list api keys", rows.Err())
}

// RevokeAPIKey marks the key revoked (idempotent).
func (s *Store) RevokeAPIKey(ctx context.Context, botID, id string, at time.Time) error {
	if err := store.FirstErr(store.CheckBotID("bot_id", botID), store.CheckID("id", id), store.CheckTime("at", at)); err != nil {
		return err
	}
	at = orNow(at)
	err := s.w.doAll(ctx, 1, func(t *wtx) error {
		n, err := t.execAffected(`UPDATE api_keys SET revoked = 1 WHERE id = ? AND bot_id = ?`, id, botID)
		if err != nil {
			return err
		}
		if n == 0 {
			return notFound("api key", botID, id)
		}
		_, err = t.exec(`INSERT INTO api_key_meta (id, revoked_at) VALUES (?, ?)
			ON CONFLICT (id) DO UPDATE SET revoked_at = COALESCE(revoked_at, excluded.revoked_at)`, id, nanos(at))
		return err
	})
	return dbErr("revoke api key", err)
}

// TouchAPIKey records the key's last use; it never moves back.
func (s *Store) TouchAPIKey(ctx context.Context, id string, at time.Time) error {
	if err := store.FirstErr(store.CheckID("id", id), store.CheckTime("at", at)); err != nil {
		return err
	}
	at = orNow(at)
	err := s.w.do(ctx, false, func(t *wtx) error {
		_, err := t.exec(`INSERT INTO api_key_meta (id, last_used_at) SELECT id, ? FROM api_keys WHERE id = ?
			ON CONFLICT (id) DO UPDATE SET last_used_at = MAX(COALESCE(last_used_at, 0), excluded.last_used_at)`, nanos(at), id)
		return err
	})
	return dbErr("touch api key", err)
}

// ListFlows returns the latest version of each flow, by id.
func (s *Store) ListFlows(ctx context.Context, botID string) ([]store.Flow, error) {
	if err := store.CheckBotID("bot_id", botID); err != nil {
		return nil, err
	}
	rows, err := s.qrows(ctx, `SELECT f.bot_id, f.id, f.version, f.definition, f.created_at FROM flows f
		WHERE f.bot_id = ? AND f.version = (SELECT MAX(version) FROM flows WHERE bot_id = f.bot_id AND id = f.id)
		ORDER BY f.id`, botID)
	if err != nil {
		return nil, dbErr("list flows", err)
	}
	defer rows.Close()
	out := []store.Flow{}
	for rows.Next() {
		f, err := scanFlow(rows)
		if err != nil {
			return nil, dbErr("list flows", err)
		}
		out = append(out, f)
	}
	return out, dbErr("list flows", rows.Err())
}

// DeleteFlow deletes every version of a flow.
func (s *Store) DeleteFlow(ctx context.Context, botID, flowID string) error {
	if err := store.FirstErr(store.CheckBotID("bot_id", botID), store.CheckID("id", flowID)); err != nil {
		return err
	}
	err := s.w.do(ctx, false, func(t *wtx) error {
		n, err := t.execAffected(`DELETE FROM flows WHERE bot_id = ? AND id = ?`, botID, flowID)
		if err == nil && n == 0 {
			return notFound("flow", botID, flowID)
		}
		return err
	})
	return dbErr("delete flow", err)
}

// ListEvents returns a bot's events by name.
func (s *Store) ListEvents(ctx context.Context, botID string) ([]store.Event, error) {
	if err := store.CheckBotID("bot_id", botID); err != nil {
		return nil, err
	}
	rows, err := s.qrows(ctx, `SELECT `+eventCols+` FROM events WHERE bot_id = ? ORDER BY name`, botID)
	if err != nil {
		return nil, dbErr("list events", err)
	}
	defer rows.Close()
	out := []store.Event{}
	for rows.Next() {
		e, err := scanEvent(rows)
		if err != nil {
			return nil, dbErr("list events", err)
		}
		out = append(out, e)
	}
	return out, dbErr("list events", rows.Err())
}

// DeleteEvent returns ErrNotFound if the bot has no such event.
func (s *Store) DeleteEvent(ctx context.Context, botID, name string) error {
	if err := store.FirstErr(store.CheckBotID("bot_id", botID), store.CheckID("name", name)); err != nil {
		return err
	}
	err := s.w.do(ctx, false, func(t *wtx) error {
		n, err := t.execAffected(`DELETE FROM events WHERE bot_id = ? AND name = ?`, botID, name)
		if err == nil && n == 0 {
			return notFound("event", botID, name)
		}
		return err
	})
	return dbErr("delete event", err)
}

// ListTriggers returns a page of a bot's triggers, newest first.
func (s *Store) ListTriggers(ctx context.Context, f store.TriggerFilter) ([]store.Trigger, string, error) {
	if err := store.CheckBotID("bot_id", f.BotID); err != nil {
		return nil, "", err
	}
	limit, err := store.CheckLimit(f.Limit, 100, 1000)
	if err != nil {
		return nil, "", err
	}
	if f.Status != "" {
		if err := store.CheckTriggerStatus(f.Status); err != nil {
			return nil, "", err
		}
	}
	if err := store.CheckTime("since", f.Since); err != nil {
		return nil, "", err
	}
	q := `SELECT ` + triggerCols + ` FROM triggers INDEXED BY triggers_bot_created WHERE bot_id = ?`
	args := []any{f.BotID}
	if f.Status != "" {
		q += ` AND status = ?`
		args = append(args, f.Status)
	}
	if f.Event != "" {
		q += ` AND event = ?`
		args = append(args, f.Event)
	}
	if !f.Since.IsZero() {
		q += ` AND created_at >= ?`
		args = append(args, nanos(f.Since))
	}
	if f.Cursor != "" {
		at, id, err := store.DecodeKeysetCursor(f.Cursor)
		ts := nanos(at)
		if err != nil {
			return nil, "", err
		}
		q += ` AND (created_at < ? OR (created_at = ? AND id < ?))`
		args = append(args, ts, ts, id)
	}
	q += ` ORDER BY created_at DESC, id DESC LIMIT ?`
	args = append(args, limit+1)
	rows, err := s.rdb.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, "", dbErr("list triggers", err)
	}
	defer rows.Close()
	out := []store.Trigger{}
	for rows.Next() {
		t, err := scanTrigger(rows)
		if err != nil {
			return nil, "", dbErr("list triggers", err)
		}
		out = append(out, t)
	}
	if err := rows.Err(); err != nil {
		return nil, "", dbErr("list triggers", err)
	}
	next := ""
	if len(out) > limit {
		out = out[:limit]
		last := out[limit-1]
		next = store.EncodeKeysetCursor(last.CreatedAt, last.ID)
	}
	return out, next, nil
}

// SearchContacts returns a page of matching contacts in id order.
func (s *Store) SearchContacts(ctx context.Context, q store.ContactSearch) ([]store.Contact, string, error) {
	after, limit, err := store.CheckContactSearch(q)
	if err != nil {
		return nil, "", err
	}
	sqlq := `SELECT ` + contactCols + ` FROM contacts WHERE bot_id = ?`
	args := []any{q.BotID}
	if q.Channel != "" {
		sqlq += ` AND channel = ?`
		args = append(args, q.Channel)
	}
	if q.ExternalIDPrefix != "" {
		// substr rather than LIKE: the prefix may hold % and _.
		sqlq += ` AND substr(external_id, 1, ?) = ?`
		args = append(args, len(q.ExternalIDPrefix), q.ExternalIDPrefix)
	}
	if q.Name != "" {
		sqlq += ` AND instr(lower(name), lower(?)) > 0`
		args = append(args, q.Name)
	}
	if q.Attribute != "" {
		sqlq += ` AND EXISTS (SELECT 1 FROM json_each(contacts.attributes) a WHERE a.key = ? AND (
			(a.type = 'text' AND a.value = ?) OR
			(a.type IN ('integer', 'real') AND CAST(a.value AS TEXT) = ?) OR
			(a.type IN ('true', 'false', 'null') AND a.type = ?)))`
		args = append(args, q.Attribute, q.Value, q.Value, q.Value)
	}
	if after != "" {
		sqlq += ` AND id > ?`
		args = append(args, after)
	}
	sqlq += ` ORDER BY id LIMIT ?`
	args = append(args, limit+1)
	rows, err := s.rdb.QueryContext(ctx, sqlq, args...)
	if err != nil {
		return nil, "", dbErr("search contacts", err)
	}
	defer rows.Close()
	out := []store.Contact{}
	for rows.Next() {
		c, err := scanContact(rows)
		if err != nil {
			return nil, "", dbErr("search contacts", err)
		}
		out = append(out, c)
	}
	if err := rows.Err(); err != nil {
		return nil, "", dbErr("search contacts", err)
	}
	next := ""
	if len(out) > limit {
		out = out[:limit]
		next = store.ContactCursor(out[limit-1].ID)
	}
	return out, next, nil
}

// ListContactMessages returns a contact's latest messages, newest first
// (found through the contact's runs: messages have no contact index).
func (s *Store) ListContactMessages(ctx context.Context, botID, contactID string, limit int) ([]store.Message, error) {
	if err := store.FirstErr(store.CheckBotID("bot_id", botID), store.CheckID("contact_id", contactID)); err != nil {
		return nil, err
	}
	limit, err := store.CheckLimit(limit, 100, 1000)
	if err != nil {
		return nil, err
	}
	rows, err := s.qrows(ctx, `SELECT `+messageCols+` FROM messages WHERE bot_id = ? AND run_id IN
		(SELECT id FROM runs INDEXED BY runs_contact_key WHERE contact_id = ? AND bot_id = ?)
		ORDER BY created_at DESC, seq DESC LIMIT ?`, botID, contactID, botID, limit)
	if err != nil {
		return nil, dbErr("list contact messages", err)
	}
	defer rows.Close()
	out := []store.Message{}
	for rows.Next() {
		m, err := scanMessage(rows)
		if err != nil {
			return nil, dbErr("list contact messages", err)
		}
		out = append(out, m)
	}
	return out, dbErr("list contact messages", rows.Err())
}

// ClaimIdempotencyKey stores hash for the key unless it has one, and
// returns the stored hash.
func (s *Store) ClaimIdempotencyKey(ctx context.Context, botID, key, hash string, at time.Time) (string, error) {
	if err := store.FirstErr(store.CheckBotID("bot_id", botID), store.CheckID("key", key), store.CheckID("hash", hash),
		store.CheckTime("at", at)); err != nil {
		return "", err
	}
	var stored string
	err := s.w.do(ctx, false, func(t *wtx) error {
		if _, err := t.exec(`INSERT INTO idempotency_keys (bot_id, key, hash, created_at) VALUES (?,?,?,?)
			ON CONFLICT (bot_id, key) DO NOTHING`, botID, key, hash, nanos(orNow(at))); err != nil {
			return err
		}
		return t.queryRow(`SELECT hash FROM idempotency_keys WHERE bot_id = ? AND key = ?`, botID, key).Scan(&stored)
	})
	if errors.Is(err, sql.ErrNoRows) {
		err = fmt.Errorf("idempotency key vanished: %w", err)
	}
	return stored, dbErr("claim idempotency key", err)
}
