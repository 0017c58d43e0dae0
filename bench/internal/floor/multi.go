package floor

import (
	"database/sql"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"
)

// The multi-row floor (-floor-rows multi) does the floor's work with the
// fewest statements SQLite allows: one multi-row statement per table and
// batch instead of one statement per row, the provider id and the message
// content built in SQL. It is the cheapest store work we know for these
// rows; its figure bounds what any store layout with the same rows and
// guarantees could save.

// floorChunk is the most rows one multi-row statement carries (SQLite's
// limit on bound variables is 32,766; the widest row here has 10).
const floorChunk = 500

// values is "(?,…,?),(?,…,?)…": rows groups of width placeholders.
func values(rows, width int) string {
	one := "(" + strings.TrimSuffix(strings.Repeat("?,", width), ",") + ")"
	return strings.TrimSuffix(strings.Repeat(one+",", rows), ",")
}

// chunked calls fn on consecutive slices of at most floorChunk of n items.
func chunked(n int, fn func(lo, hi int) error) error {
	for lo := 0; lo < n; lo += floorChunk {
		if err := fn(lo, min(lo+floorChunk, n)); err != nil {
			return err
		}
	}
	return nil
}

// returnedIDs runs q and collects the rows it returns, first column to second.
func returnedIDs(tx *sql.Tx, q string, args []any, into map[string]string) error {
	rows, err := tx.Query(q, args...)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var k, v string
		if err := rows.Scan(&k, &v); err != nil {
			return err
		}
		into[k] = v
	}
	return rows.Err()
}

// txRaw runs fn in one transaction on the one writer connection.
func (f *Floor) txRaw(fn func(tx *sql.Tx) error) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	tx, err := f.db.Begin()
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if err := fn(tx); err != nil {
		return err
	}
	return tx.Commit()
}

func (f *Floor) handleTriggersMulti(msgs []jetstream.Msg) error {
	ts, err := decodeAll[floorTrigger](msgs)
	if err != nil {
		return err
	}
	now := time.Now().UnixNano()
	bundles := make([]floorBundle, len(ts))
	err = f.txRaw(func(tx *sql.Tx) error {
		// Triggers: the ones inserted now are fresh; the others were
		// stored by an earlier delivery, runs and messages included.
		fresh := map[string]string{}
		if err := chunked(len(ts), func(lo, hi int) error {
			args := make([]any, 0, 6*(hi-lo))
			for _, t := range ts[lo:hi] {
				spec, err := json.Marshal(t)
				if err != nil {
					return err
				}
				args = append(args, t.ID, t.BotID, t.Event, string(spec), now, now)
			}
			return returnedIDs(tx, `INSERT INTO triggers (id, bot_id, source, event, flow_id, channel, spec, idempotency_key, status, cursor,
				targeted, runs_created, version, created_at, updated_at)
				SELECT column1, column2, 'dispatch', column3, 'welcome', 'sandbox', column4, '', 'done', '1', 1, 1, 1, column5, column6
				FROM (VALUES `+values(hi-lo, 6)+`) WHERE true ON CONFLICT (id) DO NOTHING RETURNING id, id`, args, fresh)
		}); err != nil {
			return err
		}
		// Contacts: upserted for fresh triggers, looked up for the others.
		contact := map[string]string{} // bot \x00 user → contact id
		if err := chunked(len(ts), func(lo, hi int) error {
			var up, look []any
			for _, t := range ts[lo:hi] {
				if _, ok := fresh[t.ID]; ok {
					name, _ := t.Data["name"].(string)
					lr, err := json.Marshal(t.Data)
					if err != nil {
						return err
					}
					up = append(up, uuid.NewString(), t.BotID, t.From, name, string(lr), now, now)
				} else {
					look = append(look, t.BotID, t.From)
				}
			}
			if len(up) > 0 {
				if err := returnedIDs(tx, `INSERT INTO contacts (id, bot_id, channel, external_id, name, attributes, last_request, created_at, updated_at)
					SELECT column1, column2, 'sandbox', column3, column4, '{}', column5, column6, column7 FROM (VALUES `+values(len(up)/7, 7)+`) WHERE true
					ON CONFLICT (bot_id, channel, external_id) DO UPDATE SET last_request = excluded.last_request, updated_at = excluded.updated_at
					RETURNING bot_id || char(0) || external_id, id`, up, contact); err != nil {
					return err
				}
			}
			if len(look) > 0 {
				if err := returnedIDs(tx, `SELECT c.bot_id || char(0) || c.external_id, c.id FROM contacts c JOIN (VALUES `+values(len(look)/2, 2)+`) v
					ON c.bot_id = v.column1 AND c.channel = 'sandbox' AND c.external_id = v.column2`, look, contact); err != nil {
					return err
				}
			}
			return nil
		}); err != nil {
			return err
		}
		var runArgs, msgArgs []any
		for i, t := range ts {
			cid, ok := contact[t.BotID+"\x00"+t.From]
			if !ok {
				return fmt.Errorf("trigger %s: no contact", t.ID)
			}
			b := floorBundle{BotID: t.BotID, TriggerID: t.ID, RunID: t.ID + "." + cid, To: t.From, Texts: f.cfg.Texts(t.Data)}
			for j := range b.Texts {
				b.IDs = append(b.IDs, fmt.Sprintf("%s:%d", b.RunID, j+1))
			}
			bundles[i] = b
			if _, ok := fresh[t.ID]; !ok {
				continue
			}
			lr, err := json.Marshal(t.Data)
			if err != nil {
				return err
			}
			runArgs = append(runArgs, b.RunID, t.BotID, t.ID, cid, string(lr), now, now)
			for j, text := range b.Texts {
				msgArgs = append(msgArgs, b.IDs[j], t.BotID, b.RunID, t.ID, cid, t.From, j+1, text, now, now)
			}
		}
		if err := chunked(len(runArgs)/7, func(lo, hi int) error {
			_, err := tx.Exec(`INSERT INTO runs (id, bot_id, trigger_id, flow_id, flow_version, contact_id, channel, status, state, data, wait_until, error, version, created_at, updated_at)
				SELECT column1, column2, column3, 'welcome', 1, column4, 'sandbox', 'completed', '{"pc":3}', column5, NULL, '', 1, column6, column7
				FROM (VALUES `+values(hi-lo, 7)+`)`, runArgs[7*lo:7*hi]...)
			return err
		}); err != nil {
			return err
		}
		return chunked(len(msgArgs)/10, func(lo, hi int) error {
			_, err := tx.Exec(`INSERT INTO messages (id, bot_id, run_id, trigger_id, contact_id, channel, to_addr, seq, content, status, provider_message_id, error, created_at, updated_at)
				SELECT column1, column2, column3, column4, column5, 'sandbox', column6, column7, json_object('type', 'text', 'text', column8), 'queued', '', '', column9, column10
				FROM (VALUES `+values(hi-lo, 10)+`)`, msgArgs[10*lo:10*hi]...)
			return err
		})
	})
	if err != nil {
		return err
	}
	return f.publishBundles(bundles)
}

func (f *Floor) handleBundlesMulti(msgs []jetstream.Msg) error {
	bs, err := decodeAll[floorBundle](msgs)
	if err != nil {
		return err
	}
	var transcript, mark []any
	for _, b := range bs {
		for i, id := range b.IDs {
			transcript = append(transcript, id, b.BotID, b.RunID, b.To, b.Texts[i])
			mark = append(mark, id, b.BotID)
		}
	}
	now := time.Now().UnixNano()
	var sent int64
	err = f.txRaw(func(tx *sql.Tx) error {
		if err := chunked(len(transcript)/5, func(lo, hi int) error {
			_, err := tx.Exec(`INSERT INTO sandbox (message_id, bot_id, run_id, to_addr, content, created_at)
				SELECT column1, column2, column3, column4, json_object('type', 'text', 'text', column5), ?
				FROM (VALUES `+values(hi-lo, 5)+`) WHERE true ON CONFLICT (message_id) DO NOTHING`, append([]any{now}, transcript[5*lo:5*hi]...)...)
			return err
		}); err != nil {
			return err
		}
		// Mark the messages sent; count on each trigger the ones that
		// were queued until now (a redelivered bundle counts nothing).
		sentOn := map[string]string{} // message id → trigger id \x00 bot id
		if err := chunked(len(mark)/2, func(lo, hi int) error {
			return returnedIDs(tx, `UPDATE messages SET status = 'sent', provider_message_id = 'sandbox-' || id, updated_at = ?
				WHERE (id, bot_id) IN (VALUES `+values(hi-lo, 2)+`) AND status = 'queued' RETURNING id, trigger_id || char(0) || bot_id`,
				append([]any{now}, mark[2*lo:2*hi]...), sentOn)
		}); err != nil {
			return err
		}
		sent = int64(len(sentOn))
		perTrigger := map[string]int64{}
		for _, tb := range sentOn {
			perTrigger[tb]++
		}
		counts := make([]any, 0, 3*len(perTrigger))
		for tb, k := range perTrigger {
			tid, bot, _ := strings.Cut(tb, "\x00")
			counts = append(counts, tid, bot, k)
		}
		return chunked(len(counts)/3, func(lo, hi int) error {
			_, err := tx.Exec(`UPDATE triggers SET sent = sent + v.column3, updated_at = ?
				FROM (VALUES `+values(hi-lo, 3)+`) AS v WHERE triggers.id = v.column1 AND triggers.bot_id = v.column2`,
				append([]any{now}, counts[3*lo:3*hi]...)...)
			return err
		})
	})
	if err == nil {
		f.counted(sent, time.Now().UnixNano())
	}
	return err
}
