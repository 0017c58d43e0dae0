package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/flowgate/flowgate/shared/store"
)

// Bots, API keys, flows and events: small, rarely written records.

func encodeChannels(c store.ChannelAccounts) (string, error) {
	b, err := json.Marshal(c)
	if err != nil {
		return "", &store.InvalidError{Field: "channels", Reason: err.Error()}
	}
	if err := store.CheckSize("channels", len(b)); err != nil {
		return "", err
	}
	return string(b), nil
}

// CreateBot fails with ErrConflict if the id is taken.
func (s *Store) CreateBot(ctx context.Context, b store.Bot) error {
	if err := check.Bot(b); err != nil {
		return err
	}
	ch, err := encodeChannels(b.Channels)
	if err != nil {
		return err
	}
	created := orNow(b.CreatedAt)
	updated := b.UpdatedAt
	if updated.IsZero() {
		updated = created
	}
	err = s.w.do(ctx, false, func(t *wtx) error {
		_, err := t.exec(`INSERT INTO bots (id, name, channels, created_at, updated_at) VALUES (?,?,?,?,?)`,
			b.ID, b.Name, ch, nanos(created), nanos(updated))
		if isUnique(err) {
			return fmt.Errorf("%w: bot %s", store.ErrConflict, b.ID)
		}
		return err
	})
	return dbErr("create bot", err)
}

const botCols = `id, name, channels, created_at, updated_at`

func scanBot(r scanner) (store.Bot, error) {
	var b store.Bot
	var ch sql.NullString
	var c, u int64
	if err := r.Scan(&b.ID, &b.Name, &ch, &c, &u); err != nil {
		return b, err
	}
	if ch.Valid {
		if err := json.Unmarshal([]byte(ch.String), &b.Channels); err != nil {
			return b, fmt.Errorf("stored channels: %w", err)
		}
	}
	b.CreatedAt, b.UpdatedAt = fromNanos(c), fromNanos(u)
	return b, nil
}

// GetBot returns ErrNotFound for an unknown id.
func (s *Store) GetBot(ctx context.Context, id string) (store.Bot, error) {
	if err := store.CheckBotID("id", id); err != nil {
		return store.Bot{}, err
	}
	b, err := scanBot(s.qrow(ctx, `SELECT `+botCols+` FROM bots WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return b, notFound("bot", id)
	}
	return b, dbErr("get bot", err)
}

// UpdateBot replaces name and channels.
func (s *Store) UpdateBot(ctx context.Context, b store.Bot) error {
	if err := check.Bot(b); err != nil {
		return err
	}
	ch, err := encodeChannels(b.Channels)
	if err != nil {
		return err
	}
	updated := orNow(b.UpdatedAt)
	err = s.w.do(ctx, false, func(t *wtx) error {
		n, err := t.execAffected(`UPDATE bots SET name = ?, channels = ?, updated_at = ? WHERE id = ?`,
			b.Name, ch, nanos(updated), b.ID)
		if err == nil && n == 0 {
			return notFound("bot", b.ID)
		}
		return err
	})
	return dbErr("update bot", err)
}

// ListBots returns every bot ordered by id.
func (s *Store) ListBots(ctx context.Context) ([]store.Bot, error) {
	rows, err := s.qrows(ctx, `SELECT `+botCols+` FROM bots ORDER BY id`)
	if err != nil {
		return nil, dbErr("list bots", err)
	}
	defer rows.Close()
	var out []store.Bot
	for rows.Next() {
		b, err := scanBot(rows)
		if err != nil {
			return nil, dbErr("list bots", err)
		}
		out = append(out, b)
	}
	return out, dbErr("list bots", rows.Err())
}

// CreateAPIKey fails with ErrConflict if the id or hash exists.
func (s *Store) CreateAPIKey(ctx context.Context, k store.APIKey) error {
	if err := check.APIKey(k); err != nil {
		return err
	}
	created := orNow(k.CreatedAt)
	err := s.w.doAll(ctx, 1, func(t *wtx) error {
		_, err := t.exec(`INSERT INTO api_keys (id, bot_id, hash, prefix, created_at, revoked) VALUES (?,?,?,?,?,?)`,
			k.ID, k.BotID, k.Hash, k.Prefix, nanos(created), boolInt(k.Revoked))
		if isUnique(err) {
			return fmt.Errorf("%w: api key %s", store.ErrConflict, k.ID)
		}
		if err != nil {
			return err
		}
		return insertKeyMeta(t, k)
	})
	return dbErr("create api key", err)
}

// GetAPIKeyByHash returns the key, revoked or not.
func (s *Store) GetAPIKeyByHash(ctx context.Context, hash string) (store.APIKey, error) {
	var k store.APIKey
	if err := store.CheckID("hash", hash); err != nil {
		return k, err
	}
	k, err := scanAPIKey(s.qrow(ctx, `SELECT `+apiKeyCols+` FROM api_keys LEFT JOIN api_key_meta m ON m.id = api_keys.id
		WHERE hash = ?`, hash))
	if errors.Is(err, sql.ErrNoRows) {
		return k, notFound("api key", "(hash)")
	}
	return k, dbErr("get api key", err)
}

// PutFlow stores version latest+1. The single writer makes this atomic.
func (s *Store) PutFlow(ctx context.Context, f store.Flow) (store.Flow, error) {
	if err := check.Flow(f); err != nil {
		return f, err
	}
	def, err := encodeRaw("definition", f.Definition, true)
	if err != nil {
		return f, err
	}
	f.CreatedAt = orNow(f.CreatedAt)
	err = s.w.do(ctx, false, func(t *wtx) error {
		var v int
		if err := t.queryRow(`SELECT COALESCE(MAX(version), 0) FROM flows WHERE bot_id = ? AND id = ?`, f.BotID, f.ID).Scan(&v); err != nil {
			return err
		}
		f.Version = v + 1
		_, err := t.exec(`INSERT INTO flows (bot_id, id, version, definition, created_at) VALUES (?,?,?,?,?)`,
			f.BotID, f.ID, f.Version, def, nanos(f.CreatedAt))
		return err
	})
	return f, dbErr("put flow", err)
}

func scanFlow(r scanner) (store.Flow, error) {
	var f store.Flow
	var def sql.NullString
	var c int64
	err := r.Scan(&f.BotID, &f.ID, &f.Version, &def, &c)
	f.Definition, f.CreatedAt = decodeRaw(def), fromNanos(c)
	return f, err
}

// GetFlow returns the given version, or the latest when version is 0.
func (s *Store) GetFlow(ctx context.Context, botID, flowID string, version int) (store.Flow, error) {
	if err := store.FirstErr(store.CheckBotID("bot_id", botID), store.CheckID("id", flowID)); err != nil {
		return store.Flow{}, err
	}
	if version < 0 {
		return store.Flow{}, &store.InvalidError{Field: "version", Reason: "negative"}
	}
	q := `SELECT bot_id, id, version, definition, created_at FROM flows WHERE bot_id = ? AND id = ?`
	args := []any{botID, flowID}
	if version > 0 {
		q += ` AND version = ?`
		args = append(args, version)
	} else {
		q += ` ORDER BY version DESC LIMIT 1`
	}
	f, err := scanFlow(s.qrow(ctx, q, args...))
	if errors.Is(err, sql.ErrNoRows) {
		return f, notFound("flow", botID, flowID)
	}
	return f, dbErr("get flow", err)
}

// ListFlowVersions returns every version, oldest first (none: empty, no error).
func (s *Store) ListFlowVersions(ctx context.Context, botID, flowID string) ([]store.Flow, error) {
	if err := store.FirstErr(store.CheckBotID("bot_id", botID), store.CheckID("id", flowID)); err != nil {
		return nil, err
	}
	rows, err := s.qrows(ctx, `SELECT bot_id, id, version, definition, created_at FROM flows
		WHERE bot_id = ? AND id = ? ORDER BY version`, botID, flowID)
	if err != nil {
		return nil, dbErr("list flows", err)
	}
	defer rows.Close()
	var out []store.Flow
	for rows.Next() {
		f, err := scanFlow(rows)
		if err != nil {
			return nil, dbErr("list flows", err)
		}
		out = append(out, f)
	}
	return out, dbErr("list flows", rows.Err())
}

// PutEvent creates or replaces an event; CreatedAt of an existing event stays.
func (s *Store) PutEvent(ctx context.Context, e store.Event) error {
	if err := check.Event(e); err != nil {
		return err
	}
	input, err := encodeRaw("input", e.Input, false)
	if err != nil {
		return err
	}
	created := orNow(e.CreatedAt)
	updated := e.UpdatedAt
	if updated.IsZero() {
		updated = now()
	}
	err = s.w.do(ctx, false, func(t *wtx) error {
		_, err := t.exec(`INSERT INTO events (bot_id, name, flow_id, token_hash, input, created_at, updated_at) VALUES (?,?,?,?,?,?,?)
			ON CONFLICT (bot_id, name) DO UPDATE SET flow_id = excluded.flow_id, token_hash = excluded.token_hash,
			input = excluded.input, updated_at = excluded.updated_at`,
			e.BotID, e.Name, e.FlowID, e.TokenHash, input, nanos(created), nanos(updated.Round(0).UTC()))
		return err
	})
	return dbErr("put event", err)
}

const eventCols = `bot_id, name, flow_id, token_hash, input, created_at, updated_at`

func scanEvent(r scanner) (store.Event, error) {
	var e store.Event
	var c, u int64
	var input sql.NullString
	err := r.Scan(&e.BotID, &e.Name, &e.FlowID, &e.TokenHash, &input, &c, &u)
	e.CreatedAt, e.UpdatedAt, e.Input = fromNanos(c), fromNanos(u), decodeRaw(input)
	return e, err
}

// GetEvent returns ErrNotFound for an unknown event.
func (s *Store) GetEvent(ctx context.Context, botID, name string) (store.Event, error) {
	if err := store.FirstErr(store.CheckBotID("bot_id", botID), store.CheckID("name", name)); err != nil {
		return store.Event{}, err
	}
	e, err := scanEvent(s.qrow(ctx, `SELECT `+eventCols+` FROM events WHERE bot_id = ? AND name = ?`, botID, name))
	if errors.Is(err, sql.ErrNoRows) {
		return e, notFound("event", botID, name)
	}
	return e, dbErr("get event", err)
}

// GetEventByToken finds the event whose trigger token hashes to tokenHash.
func (s *Store) GetEventByToken(ctx context.Context, botID, tokenHash string) (store.Event, error) {
	if err := store.FirstErr(store.CheckBotID("bot_id", botID), store.CheckID("token_hash", tokenHash)); err != nil {
		return store.Event{}, err
	}
	e, err := scanEvent(s.qrow(ctx, `SELECT `+eventCols+` FROM events WHERE bot_id = ? AND token_hash = ? LIMIT 1`, botID, tokenHash))
	if errors.Is(err, sql.ErrNoRows) {
		return e, notFound("event", botID, "(token)")
	}
	return e, dbErr("get event", err)
}
