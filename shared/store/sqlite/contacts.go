package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"strings"
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
	c, err := scanContact(t.queryRow(`SELECT `+contactCols+` FROM contacts WHERE bot_id = ? AND channel = ? AND external_id = ?`,
		u.BotID, u.Channel, u.ExternalID))
	created := errors.Is(err, sql.ErrNoRows)
	if err != nil && !created {
		return c, false, err
	}
	if c, err = merged(c, created, u); err != nil {
		return c, false, err
	}
	row, err := contactRow(c)
	if err != nil {
		return c, false, err
	}
	if created {
		_, err = t.exec(`INSERT INTO contacts (`+contactCols+`) VALUES `+valueRows(1, contactColumns), row...)
		if isUnique(err) {
			return c, false, idTaken(c.ID)
		}
		return c, true, err
	}
	_, err = t.exec(`UPDATE contacts SET name = ?2, attributes = ?3, last_request = ?4, last_inbound_at = ?5, opted_out = ?6,
		updated_at = ?7 WHERE id = ?1`, updateArgs(row)...)
	return c, false, err
}

// contactColumns is the number of contactCols.
const contactColumns = 13

// merged is contact c after upsert u: c as read, or a new contact when
// created (the key was not found).
func merged(c store.Contact, created bool, u store.ContactUpsert) (store.Contact, error) {
	at := orNow(u.Now)
	if created {
		if err := store.CheckID("id", u.NewID); err != nil {
			return c, err
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
	return c, nil
}

// contactRow is c's values in the order of contactCols.
func contactRow(c store.Contact) ([]any, error) {
	attrs, err := encodeMap("attributes", c.Attributes)
	if err != nil {
		return nil, err
	}
	lastReq, err := encodeMap("last_request", c.LastRequest)
	if err != nil {
		return nil, err
	}
	return []any{c.ID, c.BotID, c.Channel, c.ExternalID, c.Name, attrs, lastReq, nullNanos(c.LastInboundAt),
		boolInt(c.OptedOut), boolInt(c.Unreachable), c.UnreachableReason, nanos(c.CreatedAt), nanos(c.UpdatedAt)}, nil
}

// updateArgs is an existing contact's id and what an upsert changes of
// it, from its contactRow: name, attributes, last_request,
// last_inbound_at, opted_out, updated_at.
func updateArgs(row []any) []any {
	return []any{row[0], row[4], row[5], row[6], row[7], row[8], row[12]}
}

// upsertChunk is the most contacts one statement of upsertContacts reads,
// inserts or updates.
const upsertChunk = 128

// upsertContacts is upsertContact for each of us, in order, with one
// statement per upsertChunk contacts for each of: reading them by key,
// inserting the new ones, updating the others (before, two statements per
// contact: a broadcast to a list of 10,000 users took 20,000). A batch
// that names one contact twice is upserted contact by contact, as the
// later upsert must see the earlier one. created[i] says whether us[i]
// created its contact.
func upsertContacts(t *wtx, us []store.ContactUpsert) (out []store.Contact, created []bool, err error) {
	out, created = make([]store.Contact, len(us)), make([]bool, len(us))
	keys := make(map[contactKey]bool, len(us))
	for _, u := range us {
		k := contactKey{u.BotID, u.Channel, u.ExternalID}
		if keys[k] {
			for i, u := range us {
				if out[i], created[i], err = upsertContact(t, u); err != nil {
					return nil, nil, fmt.Errorf("contact %d: %w", i, err)
				}
			}
			return out, created, nil
		}
		keys[k] = true
	}
	for lo := 0; lo < len(us); lo += upsertChunk {
		hi := min(lo+upsertChunk, len(us))
		if err := upsertChunkOf(t, us[lo:hi], out[lo:hi], created[lo:hi]); err != nil {
			var ie *indexedError
			if errors.As(err, &ie) {
				return nil, nil, fmt.Errorf("contact %d: %w", lo+ie.i, ie.err)
			}
			return nil, nil, err
		}
	}
	return out, created, nil
}

type contactKey struct{ bot, channel, external string }

// indexedError is the failure of the i-th contact of a chunk.
type indexedError struct {
	i   int
	err error
}

func (e *indexedError) Error() string { return fmt.Sprintf("contact %d: %v", e.i, e.err) }
func (e *indexedError) Unwrap() error { return e.err }

// upsertChunkOf upserts us (distinct keys, at most upsertChunk) into out
// and created. The VALUES lists are padded to a power of two with rows
// that match nothing (no contact has an empty bot id or an empty id), so that
// the writer keeps a few statement texts.
func upsertChunkOf(t *wtx, us []store.ContactUpsert, out []store.Contact, created []bool) error {
	n := paddedRows(len(us))
	args := make([]any, 0, 3*n)
	for _, u := range us {
		args = append(args, u.BotID, u.Channel, u.ExternalID)
	}
	for range n - len(us) {
		args = append(args, "", "", "")
	}
	rows, err := t.query(`SELECT `+contactColsOfC+` FROM (VALUES `+valueRows(n, 3)+`) AS v
		CROSS JOIN contacts AS c ON c.bot_id = v.column1 AND c.channel = v.column2 AND c.external_id = v.column3`, args...)
	if err != nil {
		return err
	}
	found := make(map[contactKey]store.Contact, len(us))
	for rows.Next() {
		c, err := scanContact(rows)
		if err != nil {
			rows.Close()
			return err
		}
		found[contactKey{c.BotID, c.Channel, c.ExternalID}] = c
	}
	if err := rows.Close(); err != nil {
		return err
	}
	var inserts, updates []any
	var inserted []int
	for i, u := range us {
		c, ok := found[contactKey{u.BotID, u.Channel, u.ExternalID}]
		if out[i], err = merged(c, !ok, u); err != nil {
			return &indexedError{i, err}
		}
		row, err := contactRow(out[i])
		if err != nil {
			return &indexedError{i, err}
		}
		created[i] = !ok
		if ok {
			updates = append(updates, updateArgs(row)...)
			continue
		}
		inserts = append(inserts, row...)
		inserted = append(inserted, i)
	}
	if err := insertContacts(t, out, inserted, inserts); err != nil {
		return err
	}
	return updateContacts(t, updates)
}

// insertContacts inserts the new contacts (rows: contactCols each) in
// power-of-two pieces. An id taken by another contact fails the piece,
// which is then inserted contact by contact to name the one.
func insertContacts(t *wtx, out []store.Contact, inserted []int, rows []any) error {
	const w = contactColumns
	return inPieces(len(inserted), func(lo, hi int) error {
		_, err := t.exec(`INSERT INTO contacts (`+contactCols+`) VALUES `+valueRows(hi-lo, w), rows[w*lo:w*hi]...)
		if !isUnique(err) {
			return err
		}
		// The failed statement changed nothing (SQLite undoes a statement
		// that fails on a constraint): insert the piece row by row to find
		// the taken id (a piece of one row names it already).
		for k := lo; k < hi; k++ {
			if hi-lo > 1 {
				_, err = t.exec(`INSERT INTO contacts (`+contactCols+`) VALUES `+valueRows(1, w), rows[w*k:w*k+w]...)
			}
			i := inserted[k]
			if isUnique(err) {
				return &indexedError{i, idTaken(out[i].ID)}
			}
			if err != nil {
				return &indexedError{i, err}
			}
		}
		return nil
	})
}

// idTaken is the conflict of a new contact whose id another contact has.
func idTaken(id string) error {
	return fmt.Errorf("%w: contact id %s is taken", store.ErrConflict, id)
}

// updateContacts writes the changes of existing contacts (updateArgs
// each), one statement per power-of-two piece.
func updateContacts(t *wtx, args []any) error {
	const w = 7 // len(updateArgs(row))
	return inPieces(len(args)/w, func(lo, hi int) error {
		_, err := t.exec(`UPDATE contacts SET name = v.column2, attributes = v.column3, last_request = v.column4,
			last_inbound_at = v.column5, opted_out = v.column6, updated_at = v.column7
			FROM (VALUES `+valueRows(hi-lo, w)+`) AS v WHERE contacts.id = v.column1`, args[w*lo:w*hi]...)
		return err
	})
}

// contactColsOfC is contactCols of the table named c.
var contactColsOfC = prefixed("c.", contactCols)

// prefixed is a comma-separated column list with each column prefixed.
func prefixed(prefix, cols string) string {
	parts := strings.Split(cols, ",")
	for i, p := range parts {
		parts[i] = prefix + strings.TrimSpace(p)
	}
	return strings.Join(parts, ", ")
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
		_, isNew, err := upsertContacts(t, us)
		for _, n := range isNew {
			if n {
				created++
			} else {
				updated++
			}
		}
		return err
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
		cs, _, err := upsertContacts(t, us)
		copy(out, cs)
		return err
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
