package sqlite

import (
	"strings"
	"time"

	"github.com/flowgate/flowgate/shared/store"
)

// Deleted contacts leave a tombstone (their internal id, nothing else) so
// that a write already under way for them cannot bring their data back: a
// broadcast's fan-out reads a batch of contacts, and by the time it records
// their messages and stores their runs some may have been deleted. Every
// such write checks the tombstones of its contacts in the same transaction
// (SQLite runs one writer, so the delete is wholly before or after it) and
// drops what belongs to a deleted contact. Tombstones expire after
// tombstoneTTL, far longer than any batch takes between reading a contact
// and writing for it.
const tombstoneTTL = 7 * 24 * time.Hour

const tombstoneSchema = `CREATE TABLE IF NOT EXISTS deleted_contacts (
		contact_id TEXT PRIMARY KEY,
		bot_id TEXT NOT NULL,
		deleted_at INTEGER NOT NULL)`

// addTombstone records that contact id was deleted, and drops the expired
// tombstones.
func addTombstone(t *wtx, botID, id string, now time.Time) error {
	if _, err := t.exec(`INSERT INTO deleted_contacts (contact_id, bot_id, deleted_at) VALUES (?, ?, ?)
		ON CONFLICT (contact_id) DO UPDATE SET deleted_at = excluded.deleted_at`, id, botID, nanos(now)); err != nil {
		return err
	}
	_, err := t.exec(`DELETE FROM deleted_contacts WHERE deleted_at < ?`, nanos(now.Add(-tombstoneTTL)))
	return err
}

// deletedAmong returns which of the contact ids have a tombstone.
func deletedAmong(t *wtx, contactIDs []string) (map[string]bool, error) {
	seen := make(map[string]bool, len(contactIDs))
	args := make([]any, 0, len(contactIDs))
	for _, id := range contactIDs {
		if !seen[id] {
			seen[id] = true
			args = append(args, id)
		}
	}
	if len(args) == 0 {
		return nil, nil
	}
	rows, err := t.query(`SELECT contact_id FROM deleted_contacts WHERE contact_id IN (`+
		strings.TrimSuffix(strings.Repeat("?,", len(args)), ",")+`)`, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var gone map[string]bool
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, err
		}
		if gone == nil {
			gone = map[string]bool{}
		}
		gone[id] = true
	}
	return gone, rows.Err()
}

// dropRunsOfDeleted deletes, of the runs just written, those of deleted
// contacts, with their messages (recorded before the runs on a fan-out's
// fresh path). Their results say "not created" and carry status cancelled,
// so that a caller starts nothing for them.
func dropRunsOfDeleted(t *wtx, rs []store.Run, out []store.Run, created []bool) error {
	ids := make([]string, len(rs))
	for i := range rs {
		ids[i] = rs[i].ContactID
	}
	gone, err := deletedAmong(t, ids)
	if err != nil || len(gone) == 0 {
		return err
	}
	for i := range rs {
		if !gone[rs[i].ContactID] {
			continue
		}
		if _, err := t.exec(`DELETE FROM messages WHERE run_id = ?`, rs[i].ID); err != nil {
			return err
		}
		if _, err := t.exec(`DELETE FROM runs WHERE id = ? AND contact_id = ?`, rs[i].ID, rs[i].ContactID); err != nil {
			return err
		}
		out[i] = rs[i]
		out[i].Status = store.RunCancelled
		out[i].Error = "contact deleted"
		created[i] = false
	}
	return nil
}

// dropMessagesOfDeleted deletes, of the messages just written, those of
// deleted contacts.
func dropMessagesOfDeleted(t *wtx, ms []store.Message) error {
	ids := make([]string, len(ms))
	for i := range ms {
		ids[i] = ms[i].ContactID
	}
	gone, err := deletedAmong(t, ids)
	if err != nil || len(gone) == 0 {
		return err
	}
	for _, m := range ms {
		if gone[m.ContactID] {
			if _, err := t.exec(`DELETE FROM messages WHERE id = ?`, m.ID); err != nil {
				return err
			}
		}
	}
	return nil
}
