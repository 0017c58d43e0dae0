package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"time"

	"github.com/flowgate/flowgate/shared/store"
)

const contactCols = `id, bot_id, channel, external_id, name, attributes, last_request, last_inbound_at,
	opted_out, unreachable, unreachable_reason, created_at, updated_at`

func scanContact(r scanner) (store.Contact, error) {
	var c store.Contact
	var attrs, lastReq sql.NullString
	var inbound sql.NullInt64
	var optedOut, unreachable int
	var created, updated int64
	if err := r.Scan(&c.ID, &c.BotID, &c.Channel, &c.ExternalID, &c.Name, &attrs, &lastReq, &inbound,
		&optedOut, &unreachable, &c.UnreachableReason, &created, &updated); err != nil {
		return c, err
	}
	var err1, err2 error
	c.Attributes, err1 = decodeMap(attrs)
	c.LastRequest, err2 = decodeMap(lastReq)
	c.LastInboundAt = fromNullNanos(inbound)
	c.OptedOut, c.Unreachable = optedOut != 0, unreachable != 0
	c.CreatedAt, c.UpdatedAt = fromNanos(created), fromNanos(updated)
	return c, store.FirstErr(err1, err2)
}

func checkUpsert(u store.ContactUpsert) error {
	err := check.ContactUpsert(u)
	if err == nil {
		_, err = encodeMap("attributes", u.Attributes)
	}
	if err == nil {
		_, err = encodeMap("last_request", u.LastRequest)
	}
	return err
}

// upsertContact runs inside the writer. It reads the contact by its key,
// then inserts or merges.
func upsertContact(t *wtx, u store.ContactUpsert) (store.Contact, bool, error) {
	at := orNow(u.Now)
	c, err := scanContact(t.queryRow(`SELECT `+contactCols+` FROM contacts WHERE bot_id = ? AND channel = ? AND external_id = ?`,
		u.BotID, u.Channel, u.ExternalID))
	created := errors.Is(err, sql.ErrNoRows)
	if err != nil && !created {
		return c, false, err
	}
	if created {
		if err := store.CheckID("id", u.NewID); err != nil {
			return c, false, err
		}
		c = store.Contact{
			ID: u.NewID, BotID: u.BotID, Channel: u.Channel, ExternalID: u.ExternalID, Name: u.Name,
			CreatedAt: at,
		}
	} else if u.Name != "" {
		c.Name = u.Name
	}
	if len(u.Attributes) > 0 {
		if c.Attributes == nil {
			c.Attributes = make(map[string]any, len(u.Attributes))
		}
		maps.Copy(c.Attributes, u.Attributes)
	}
	if u.LastRequest != nil {
		c.LastRequest = u.LastRequest
	}
	if u.LastInboundAt != nil {
		c.LastInboundAt = utcPtr(u.LastInboundAt)
	}
	if u.OptedOut != nil {
		c.OptedOut = *u.OptedOut
	}
	c.UpdatedAt = at
	attrs, err := encodeMap("attributes", c.Attributes)
	if err != nil {
		return c, false, err
	}
	lastReq, err := encodeMap("last_request", c.LastRequest)
	if err != nil {
		return c, false, err
	}
	if created {
		_, err = t.exec(`INSERT INTO contacts (`+contactCols+`) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)`,
			c.ID, c.BotID, c.Channel, c.ExternalID, c.Name, attrs, lastReq, nullNanos(c.LastInboundAt),
			boolInt(c.OptedOut), boolInt(c.Unreachable), c.UnreachableReason, nanos(c.CreatedAt), nanos(c.UpdatedAt))
		if isUnique(err) {
			return c, false, fmt.Errorf("%w: contact id %s is taken", store.ErrConflict, c.ID)
		}
		return c, true, err
	}
	_, err = t.exec(`UPDATE contacts SET name = ?, attributes = ?, last_request = ?, last_inbound_at = ?, opted_out = ?,
		updated_at = ? WHERE id = ?`,
		c.Name, attrs, lastReq, nullNanos(c.LastInboundAt), boolInt(c.OptedOut), nanos(c.UpdatedAt), c.ID)
	return c, false, err
}

// UpsertContact returns the contact after the change and whether it was created.
func (s *Store) UpsertContact(ctx context.Context, u store.ContactUpsert) (store.Contact, bool, error) {
	if err := checkUpsert(u); err != nil {
		return store.Contact{}, false, err
	}
	var c store.Contact
	var created bool
	err := s.w.do(ctx, false, func(t *wtx) (err error) {
		c, created, err = upsertContact(t, u)
		return err
	})
	return c, created, dbErr("upsert contact", err)
}

// ImportContacts upserts many contacts in one transaction: all or none.
func (s *Store) ImportContacts(ctx context.Context, us []store.ContactUpsert) (created, updated int, err error) {
	for i, u := range us {
		if err := checkUpsert(u); err != nil {
			return 0, 0, fmt.Errorf("contact %d: %w", i, err)
		}
	}
	if len(us) == 0 {
		return 0, 0, nil
	}
	err = s.w.do(ctx, true, func(t *wtx) error {
		created, updated = 0, 0
		for i, u := range us {
			_, isNew, err := upsertContact(t, u)
			if err != nil {
				return fmt.Errorf("contact %d: %w", i, err)
			}
			if isNew {
				created++
			} else {
				updated++
			}
		}
		return nil
	})
	if err != nil {
		return 0, 0, dbErr("import contacts", err)
	}
	return created, updated, nil
}

// UpsertContacts is ImportContacts that returns the contacts.
func (s *Store) UpsertContacts(ctx context.Context, us []store.ContactUpsert) ([]store.Contact, error) {
	for i, u := range us {
		if err := checkUpsert(u); err != nil {
			return nil, fmt.Errorf("contact %d: %w", i, err)
		}
	}
	if len(us) == 0 {
		return nil, nil
	}
	out := make([]store.Contact, len(us))
	err := s.w.doAll(ctx, len(us), func(t *wtx) error {
		for i, u := range us {
			c, _, err := upsertContact(t, u)
			if err != nil {
				return fmt.Errorf("contact %d: %w", i, err)
			}
			out[i] = c
		}
		return nil
	})
	if err != nil {
		return nil, dbErr("upsert contacts", err)
	}
	return out, nil
}

// GetContact returns ErrNotFound for an unknown contact.
func (s *Store) GetContact(ctx context.Context, botID, id string) (store.Contact, error) {
	if err := store.FirstErr(store.CheckBotID("bot_id", botID), store.CheckID("id", id)); err != nil {
		return store.Contact{}, err
	}
	c, err := scanContact(s.qrow(ctx, `SELECT `+contactCols+` FROM contacts WHERE id = ? AND bot_id = ?`, id, botID))
	if errors.Is(err, sql.ErrNoRows) {
		return c, notFound("contact", botID, id)
	}
	return c, dbErr("get contact", err)
}

// GetContactByExternalID finds a contact by its channel address.
func (s *Store) GetContactByExternalID(ctx context.Context, botID, channel, externalID string) (store.Contact, error) {
	if err := store.FirstErr(store.CheckBotID("bot_id", botID), store.CheckID("channel", channel),
		store.CheckID("external_id", externalID)); err != nil {
		return store.Contact{}, err
	}
	c, err := scanContact(s.qrow(ctx, `SELECT `+contactCols+` FROM contacts
		WHERE bot_id = ? AND channel = ? AND external_id = ?`, botID, channel, externalID))
	if errors.Is(err, sql.ErrNoRows) {
		return c, notFound("contact", botID, channel, externalID)
	}
	return c, dbErr("get contact", err)
}

// StreamContacts returns the next batch of a bot's contacts in id order.
func (s *Store) StreamContacts(ctx context.Context, botID string, f store.ContactFilter) ([]store.Contact, error) {
	if err := store.CheckBotID("bot_id", botID); err != nil {
		return nil, err
	}
	if len(f.After) > store.MaxIDBytes {
		return nil, &store.InvalidError{Field: "after", Reason: "longer than an id"}
	}
	limit, err := store.CheckLimit(f.Limit, 100, 10000)
	if err != nil {
		return nil, err
	}
	q := `SELECT ` + contactCols + ` FROM contacts WHERE bot_id = ?`
	args := []any{botID}
	if f.Channel != "" && f.Channel != "any" {
		q += ` AND channel = ?`
		args = append(args, f.Channel)
	}
	q += ` AND id > ?`
	args = append(args, f.After)
	if f.SkipOptedOut {
		q += ` AND opted_out = 0`
	}
	if f.SkipUnreachable {
		q += ` AND unreachable = 0`
	}
	q += ` ORDER BY id LIMIT ?`
	args = append(args, limit)
	rows, err := s.rdb.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, dbErr("stream contacts", err)
	}
	defer rows.Close()
	out := make([]store.Contact, 0, min(limit, 1024))
	for rows.Next() {
		c, err := scanContact(rows)
		if err != nil {
			return nil, dbErr("stream contacts", err)
		}
		out = append(out, c)
	}
	return out, dbErr("stream contacts", rows.Err())
}

// SetContactReachability records whether a provider can reach the contact.
func (s *Store) SetContactReachability(ctx context.Context, botID, id string, unreachable bool, reason string) error {
	if err := check.ContactReachability(botID, id, reason); err != nil {
		return err
	}
	if !unreachable {
		reason = ""
	}
	at := now()
	err := s.w.do(ctx, false, func(t *wtx) error {
		n, err := t.execAffected(`UPDATE contacts SET unreachable = ?, unreachable_reason = ?, updated_at = ? WHERE id = ? AND bot_id = ?`,
			boolInt(unreachable), reason, nanos(at), id, botID)
		if err == nil && n == 0 {
			return notFound("contact", botID, id)
		}
		return err
	})
	return dbErr("set contact reachability", err)
}

// DeleteContact deletes a contact, its runs, their messages and its sandbox transcript.
func (s *Store) DeleteContact(ctx context.Context, botID, id string) error {
	if err := store.FirstErr(store.CheckBotID("bot_id", botID), store.CheckID("id", id)); err != nil {
		return err
	}
	err := s.w.do(ctx, true, func(t *wtx) error {
		var channel, externalID string
		err := t.queryRow(`SELECT channel, external_id FROM contacts WHERE id = ? AND bot_id = ?`, id, botID).Scan(&channel, &externalID)
		if errors.Is(err, sql.ErrNoRows) {
			return notFound("contact", botID, id)
		}
		if err != nil {
			return err
		}
		if _, err := t.exec(`DELETE FROM contacts WHERE id = ? AND bot_id = ?`, id, botID); err != nil {
			return err
		}
		if err := addTombstone(t, botID, id, time.Now()); err != nil {
			return err
		}
		if _, err := t.exec(`DELETE FROM messages WHERE run_id IN (SELECT id FROM runs WHERE contact_id = ? AND bot_id = ?)`, id, botID); err != nil {
			return err
		}
		if channel == store.ChannelSandbox {
			// The sandbox transcript: what the bot "sent" this user.
			if _, err := t.exec(`DELETE FROM sandbox WHERE bot_id = ? AND to_addr = ?`, botID, externalID); err != nil {
				return err
			}
		}
		_, err = t.exec(`DELETE FROM runs WHERE contact_id = ? AND bot_id = ?`, id, botID)
		return err
	})
	return dbErr("delete contact", err)
}

// SetLastRequest updates the contacts in one statement (the ids travel as
// one JSON array).
func (s *Store) SetLastRequest(ctx context.Context, botID string, contactIDs []string, data map[string]any, at time.Time) error {
	if err := store.SetLastRequestArgs(botID, contactIDs, at); err != nil {
		return err
	}
	if data == nil {
		data = map[string]any{}
	}
	lastReq, err := encodeMap("last_request", data)
	if err != nil || len(contactIDs) == 0 {
		return err
	}
	ids, err := json.Marshal(contactIDs)
	if err != nil {
		return err
	}
	at = orNow(at)
	err = s.w.do(ctx, false, func(t *wtx) error {
		_, err := t.exec(`UPDATE contacts SET last_request = ?, updated_at = ?
			WHERE bot_id = ? AND id IN (SELECT value FROM json_each(?))`, lastReq, nanos(at), botID, string(ids))
		return err
	})
	return dbErr("set last request", err)
}
