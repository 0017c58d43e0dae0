package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/flowgate/flowgate/shared/store"
)

// Uploaded media: a few files per bot, written by the admin API and read
// by the channel workers (and the ingress, which serves them to RCS), plus
// the ids the providers gave their copies.

func init() {
	schema = append(schema,
		`CREATE TABLE IF NOT EXISTS media (
			id TEXT PRIMARY KEY,
			bot_id TEXT NOT NULL,
			content_type TEXT NOT NULL,
			filename TEXT NOT NULL,
			size INTEGER NOT NULL,
			sha256 TEXT NOT NULL,
			data BLOB NOT NULL,
			created_at INTEGER NOT NULL)`,
		`CREATE INDEX IF NOT EXISTS media_bot ON media (bot_id, created_at, id)`,
		`CREATE TABLE IF NOT EXISTS media_uploads (
			bot_id TEXT NOT NULL,
			media_id TEXT NOT NULL,
			channel TEXT NOT NULL,
			account TEXT NOT NULL,
			provider_id TEXT NOT NULL,
			uploaded_at INTEGER NOT NULL,
			PRIMARY KEY (media_id, channel, account)) WITHOUT ROWID`,
	)
	// Events carry an input mapping since the media release.
	addColumns = append(addColumns, column{table: "events", name: "input", decl: "TEXT"})
}

// CreateMedia fails with ErrConflict if the id is taken.
func (s *Store) CreateMedia(ctx context.Context, m store.Media) error {
	if err := check.Media(m); err != nil {
		return err
	}
	created := orNow(m.CreatedAt)
	err := s.w.do(ctx, false, func(t *wtx) error {
		_, err := t.exec(`INSERT INTO media (id, bot_id, content_type, filename, size, sha256, data, created_at) VALUES (?,?,?,?,?,?,?,?)`,
			m.ID, m.BotID, m.ContentType, m.Filename, m.Size, m.SHA256, m.Data, nanos(created))
		if isUnique(err) {
			return fmt.Errorf("%w: media %s", store.ErrConflict, m.ID)
		}
		return err
	})
	return dbErr("create media", err)
}

// GetMedia returns the file with its data.
func (s *Store) GetMedia(ctx context.Context, botID, id string) (store.Media, error) {
	if err := store.FirstErr(store.CheckBotID("bot_id", botID), store.CheckID("id", id)); err != nil {
		return store.Media{}, err
	}
	var m store.Media
	var created int64
	err := s.qrow(ctx, `SELECT id, bot_id, content_type, filename, size, sha256, data, created_at FROM media WHERE id = ? AND bot_id = ?`, id, botID).
		Scan(&m.ID, &m.BotID, &m.ContentType, &m.Filename, &m.Size, &m.SHA256, &m.Data, &created)
	if errors.Is(err, sql.ErrNoRows) {
		return store.Media{}, notFound("media", botID, id)
	}
	if err != nil {
		return store.Media{}, dbErr("get media", err)
	}
	m.CreatedAt = fromNanos(created)
	return m, nil
}

// ListMedia returns a bot's files without their data, oldest first.
func (s *Store) ListMedia(ctx context.Context, botID string) ([]store.Media, error) {
	if err := store.CheckBotID("bot_id", botID); err != nil {
		return nil, err
	}
	rows, err := s.qrows(ctx, `SELECT id, bot_id, content_type, filename, size, sha256, created_at
		FROM media WHERE bot_id = ? ORDER BY created_at, id`, botID)
	if err != nil {
		return nil, dbErr("list media", err)
	}
	defer rows.Close()
	out := []store.Media{}
	for rows.Next() {
		var m store.Media
		var created int64
		if err := rows.Scan(&m.ID, &m.BotID, &m.ContentType, &m.Filename, &m.Size, &m.SHA256, &created); err != nil {
			return nil, dbErr("list media", err)
		}
		m.CreatedAt = fromNanos(created)
		out = append(out, m)
	}
	return out, dbErr("list media", rows.Err())
}

// DeleteMedia deletes a file and its provider uploads in one transaction.
func (s *Store) DeleteMedia(ctx context.Context, botID, id string) error {
	if err := store.FirstErr(store.CheckBotID("bot_id", botID), store.CheckID("id", id)); err != nil {
		return err
	}
	err := s.w.do(ctx, false, func(t *wtx) error {
		return t.atomic(func() error {
			n, err := t.execAffected(`DELETE FROM media WHERE bot_id = ? AND id = ?`, botID, id)
			if err == nil && n == 0 {
				return notFound("media", botID, id)
			}
			if err != nil {
				return err
			}
			_, err = t.exec(`DELETE FROM media_uploads WHERE media_id = ? AND bot_id = ?`, id, botID)
			return err
		})
	})
	return dbErr("delete media", err)
}

// PutMediaUpload creates or replaces a provider copy of an existing file.
func (s *Store) PutMediaUpload(ctx context.Context, u store.MediaUpload) error {
	if err := check.MediaUpload(u); err != nil {
		return err
	}
	at := orNow(u.UploadedAt)
	err := s.w.do(ctx, false, func(t *wtx) error {
		ok, err := t.exists(`SELECT 1 FROM media WHERE id = ? AND bot_id = ?`, u.MediaID, u.BotID)
		if err != nil {
			return err
		}
		if !ok {
			return notFound("media", u.BotID, u.MediaID)
		}
		_, err = t.exec(`INSERT INTO media_uploads (bot_id, media_id, channel, account, provider_id, uploaded_at) VALUES (?,?,?,?,?,?)
			ON CONFLICT (media_id, channel, account) DO UPDATE SET provider_id = excluded.provider_id, uploaded_at = excluded.uploaded_at`,
			u.BotID, u.MediaID, u.Channel, u.Account, u.ProviderID, nanos(at))
		return err
	})
	return dbErr("put media upload", err)
}

// GetMediaUpload returns a provider copy, or ErrNotFound.
func (s *Store) GetMediaUpload(ctx context.Context, botID, mediaID, channel, account string) (store.MediaUpload, error) {
	if err := store.CheckMediaUploadKey(botID, mediaID, channel, account); err != nil {
		return store.MediaUpload{}, err
	}
	u := store.MediaUpload{BotID: botID, MediaID: mediaID, Channel: channel, Account: account}
	var at int64
	err := s.qrow(ctx, `SELECT provider_id, uploaded_at FROM media_uploads WHERE media_id = ? AND channel = ? AND account = ? AND bot_id = ?`,
		mediaID, channel, account, botID).Scan(&u.ProviderID, &at)
	if errors.Is(err, sql.ErrNoRows) {
		return store.MediaUpload{}, notFound("media upload", botID, mediaID, channel)
	}
	if err != nil {
		return store.MediaUpload{}, dbErr("get media upload", err)
	}
	u.UploadedAt = fromNanos(at)
	return u, nil
}
