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

const triggerCols = `id, bot_id, source, event, flow_id, channel, spec, idempotency_key, status, cursor,
	targeted, runs_created, sent, delivered, failed, skipped, skip_reasons, version, created_at, updated_at`

func scanTrigger(r scanner) (store.Trigger, error) {
	var x store.Trigger
	var spec, reasons sql.NullString
	var created, updated int64
	c := &x.Counters
	if err := r.Scan(&x.ID, &x.BotID, &x.Source, &x.Event, &x.FlowID, &x.Channel, &spec, &x.IdempotencyKey, &x.Status,
		&x.Cursor, &c.Targeted, &c.RunsCreated, &c.Sent, &c.Delivered, &c.Failed, &c.Skipped, &reasons,
		&x.Version, &created, &updated); err != nil {
		return x, err
	}
	x.Spec = decodeRaw(spec)
	x.CreatedAt, x.UpdatedAt = fromNanos(created), fromNanos(updated)
	if reasons.Valid {
		if err := json.Unmarshal([]byte(reasons.String), &c.SkipReasons); err != nil {
			return x, fmt.Errorf("stored skip reasons: %w", err)
		}
	}
	return x, nil
}

func encodeReasons(m map[string]int64) (any, error) {
	if len(m) == 0 {
		return nil, nil
	}
	b, err := json.Marshal(m)
	if err != nil {
		return nil, err
	}
	if err := store.CheckSize("skip_reasons", len(b)); err != nil {
		return nil, err
	}
	return string(b), nil
}

// checkTrigger checks t, fills its default status and encodes its spec.
func checkTrigger(t *store.Trigger) (spec any, err error) {
	if err := check.Trigger(t); err != nil {
		return nil, err
	}
	return encodeRaw("spec", t.Spec, false)
}

// CreateTrigger returns the existing trigger (created=false) if the id exists.
func (s *Store) CreateTrigger(ctx context.Context, tr store.Trigger) (store.Trigger, bool, error) {
	spec, err := checkTrigger(&tr)
	if err != nil {
		return tr, false, err
	}
	reasons, err := encodeReasons(tr.Counters.SkipReasons)
	if err != nil {
		return tr, false, err
	}
	tr.Version = 1
	tr.CreatedAt = orNow(tr.CreatedAt)
	if tr.UpdatedAt.IsZero() {
		tr.UpdatedAt = tr.CreatedAt
	}
	tr.UpdatedAt = tr.UpdatedAt.Round(0).UTC()
	out, created := tr, false
	err = s.w.do(ctx, false, func(t *wtx) error {
		c := tr.Counters
		n, err := t.execAffected(`INSERT INTO triggers (`+triggerCols+`) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)
			ON CONFLICT DO NOTHING`,
			tr.ID, tr.BotID, tr.Source, tr.Event, tr.FlowID, tr.Channel, spec, tr.IdempotencyKey, tr.Status, tr.Cursor,
			c.Targeted, c.RunsCreated, c.Sent, c.Delivered, c.Failed, c.Skipped, reasons, tr.Version,
			nanos(tr.CreatedAt), nanos(tr.UpdatedAt))
		if err != nil {
			return err
		}
		if n == 1 {
			created = true
			return nil
		}
		ex, err := scanTrigger(t.queryRow(`SELECT `+triggerCols+` FROM triggers WHERE id = ?`, tr.ID))
		if err != nil {
			return err
		}
		if ex.BotID != tr.BotID {
			return fmt.Errorf("%w: trigger id %s belongs to another bot", store.ErrConflict, tr.ID)
		}
		out = ex
		return nil
	})
	if err != nil {
		return tr, false, dbErr("create trigger", err)
	}
	return out, created, nil
}

// CreateTriggers creates several triggers with one INSERT in one
// savepoint of the group commit (a transaction of its own past
// sharedMaxRows): the triggers of an ingress batch were created one
// CreateTrigger each, a write of the group commit apiece. The ids it did
// not insert are read back: the trigger stored under each.
func (s *Store) CreateTriggers(ctx context.Context, ts []store.Trigger) ([]store.CreatedTrigger, error) {
	if err := store.CheckTriggerCount(len(ts)); err != nil {
		return nil, err
	}
	if len(ts) == 0 {
		return nil, nil
	}
	out := make([]store.CreatedTrigger, len(ts))
	args := make([]any, 0, 20*len(ts))
	for i, tr := range ts {
		spec, err := checkTrigger(&tr)
		if err != nil {
			return nil, fmt.Errorf("trigger %d: %w", i, err)
		}
		reasons, err := encodeReasons(tr.Counters.SkipReasons)
		if err != nil {
			return nil, fmt.Errorf("trigger %d: %w", i, err)
		}
		tr.Version = 1
		tr.CreatedAt = orNow(tr.CreatedAt)
		if tr.UpdatedAt.IsZero() {
			tr.UpdatedAt = tr.CreatedAt
		}
		tr.UpdatedAt = tr.UpdatedAt.Round(0).UTC()
		out[i].Trigger = tr
		c := tr.Counters
		args = append(args, tr.ID, tr.BotID, tr.Source, tr.Event, tr.FlowID, tr.Channel, spec, tr.IdempotencyKey, tr.Status,
			tr.Cursor, c.Targeted, c.RunsCreated, c.Sent, c.Delivered, c.Failed, c.Skipped, reasons, tr.Version,
			nanos(tr.CreatedAt), nanos(tr.UpdatedAt))
	}
	err := s.w.doAll(ctx, len(ts), func(t *wtx) error {
		inserted := map[string]bool{}
		err := inPieces(len(ts), func(lo, hi int) error {
			ids, err := returnedIDs(t, `INSERT INTO triggers (`+triggerCols+`) VALUES `+
				valueRows(hi-lo, 20)+
				` ON CONFLICT DO NOTHING RETURNING id`, args[20*lo:20*hi])
			for id := range ids {
				inserted[id] = true
			}
			return err
		})
		if err != nil {
			return err
		}
		for i := range out {
			tr := &out[i]
			if inserted[tr.Trigger.ID] {
				// The first of the call with its id; a second one (the same
				// id twice in one call) finds it stored, as it would alone.
				delete(inserted, tr.Trigger.ID)
				tr.Created = true
				continue
			}
			ex, err := scanTrigger(t.queryRow(`SELECT `+triggerCols+` FROM triggers WHERE id = ?`, tr.Trigger.ID))
			if err != nil {
				return err
			}
			if ex.BotID != tr.Trigger.BotID {
				tr.Err = fmt.Errorf("%w: trigger id %s belongs to another bot", store.ErrConflict, tr.Trigger.ID)
				continue
			}
			tr.Trigger = ex
		}
		return nil
	})
	if err != nil {
		return nil, dbErr("create triggers", err)
	}
	return out, nil
}

// insertedIDs runs q, an INSERT … RETURNING id, and returns the ids it
// inserted.
func returnedIDs(t *wtx, q string, args []any) (map[string]bool, error) {
	rows, err := t.query(q, args...)
	if err != nil {
		return nil, err
	}
	inserted := map[string]bool{}
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			rows.Close()
			return nil, err
		}
		inserted[id] = true
	}
	return inserted, errors.Join(rows.Err(), rows.Close())
}

// GetTrigger returns ErrNotFound for an unknown trigger.
func (s *Store) GetTrigger(ctx context.Context, botID, id string) (store.Trigger, error) {
	if err := store.FirstErr(store.CheckBotID("bot_id", botID), store.CheckID("id", id)); err != nil {
		return store.Trigger{}, err
	}
	tr, err := scanTrigger(s.qrow(ctx, `SELECT `+triggerCols+` FROM triggers WHERE id = ? AND bot_id = ?`, id, botID))
	if errors.Is(err, sql.ErrNoRows) {
		return tr, notFound("trigger", botID, id)
	}
	return tr, dbErr("get trigger", err)
}

// UpdateTrigger writes status, cursor, spec and the descriptive fields if
// Version matches; counters are left to IncrTriggerCounters. It returns the
// stored trigger.
func (s *Store) UpdateTrigger(ctx context.Context, tr store.Trigger) (store.Trigger, error) {
	return s.updateTrigger(ctx, tr, nil)
}

// CheckpointTrigger is UpdateTrigger with the counters' delta, in one
// transaction.
func (s *Store) CheckpointTrigger(ctx context.Context, tr store.Trigger, d store.TriggerCounters) (store.Trigger, error) {
	if err := check.SkipReasons(d.SkipReasons); err != nil {
		return tr, err
	}
	return s.updateTrigger(ctx, tr, &d)
}

// CheckpointTriggers writes several triggers' checkpoints in one savepoint
// of the group commit, one UPDATE each (status, cursor, version,
// updated_at, the counters) with the version check and nothing read back:
// the fan-outs of one-user triggers started together (the dispatch path)
// checkpointed one CheckpointTrigger each, a savepoint and a RETURNING of
// the whole row apiece under the write lock (docs/performance.md). A
// trigger that is not at its version, or gone, is looked up to say which.
func (s *Store) CheckpointTriggers(ctx context.Context, cps []store.TriggerCheckpoint) ([]error, error) {
	if err := check.TriggerCheckpoints(cps); err != nil {
		return nil, err
	}
	if len(cps) == 0 {
		return nil, nil
	}
	at := nanos(now())
	errs := make([]error, len(cps))
	err := s.w.doAll(ctx, len(cps), func(t *wtx) error {
		for i, cp := range cps {
			reasons, keep := any(nil), 1
			if len(cp.Delta.SkipReasons) > 0 {
				var err error
				reasons, err = mergedReasons(t, cp.BotID, cp.ID, cp.Delta.SkipReasons)
				if errors.Is(err, store.ErrNotFound) {
					errs[i] = err
					continue
				}
				if err != nil {
					return err
				}
				keep = 0
			}
			d := cp.Delta
			n, err := t.execAffected(`UPDATE triggers SET status = ?, cursor = ?, version = version + 1, updated_at = ?,
			targeted = targeted + ?, runs_created = runs_created + ?, sent = sent + ?, delivered = delivered + ?,
			failed = failed + ?, skipped = skipped + ?, skip_reasons = CASE WHEN ? THEN skip_reasons ELSE ? END
			WHERE id = ? AND bot_id = ? AND version = ?`,
				cp.Status, cp.Cursor, at, d.Targeted, d.RunsCreated, d.Sent, d.Delivered, d.Failed, d.Skipped, keep, reasons,
				cp.ID, cp.BotID, cp.Version)
			if err != nil {
				return err
			}
			if n == 1 {
				continue
			}
			ok, err := t.exists(`SELECT 1 FROM triggers WHERE id = ? AND bot_id = ?`, cp.ID, cp.BotID)
			if err != nil {
				return err
			}
			if !ok {
				errs[i] = notFound("trigger", cp.BotID, cp.ID)
			} else {
				errs[i] = fmt.Errorf("%w: trigger %s is not at version %d", store.ErrVersionConflict, cp.ID, cp.Version)
			}
		}
		return nil
	})
	if err != nil {
		return nil, dbErr("checkpoint triggers", err)
	}
	return errs, nil
}

// updateTrigger is UpdateTrigger, with the counters' delta d when d is not
// nil: one modifying statement that returns the stored row (it was three:
// the version-checked update, the counters' update and a read back), in a
// savepoint, so that a row it cannot read back (stored skip reasons that
// do not decode) leaves the trigger as it was. A shared write of the group
// commit must change all or nothing (writer.go).
func (s *Store) updateTrigger(ctx context.Context, tr store.Trigger, d *store.TriggerCounters) (store.Trigger, error) {
	spec, err := checkTrigger(&tr)
	if err != nil {
		return tr, err
	}
	var delta store.TriggerCounters
	if d != nil {
		delta = *d
	}
	at := now()
	var out store.Trigger
	err = s.w.do(ctx, false, func(t *wtx) error {
		return t.atomic(func() error {
			// The skip reasons are merged here (a read: the writer is alone,
			// nothing changes in between) and written by the one statement.
			var reasons any
			keep := 1
			if len(delta.SkipReasons) > 0 {
				if reasons, err = mergedReasons(t, tr.BotID, tr.ID, delta.SkipReasons); err != nil {
					return err
				}
				keep = 0
			}
			out, err = scanTrigger(t.queryRow(`UPDATE triggers SET source = ?, event = ?, flow_id = ?, channel = ?, spec = ?,
			idempotency_key = ?, status = ?, cursor = ?, version = version + 1, updated_at = ?,
			targeted = targeted + ?, runs_created = runs_created + ?, sent = sent + ?, delivered = delivered + ?,
			failed = failed + ?, skipped = skipped + ?, skip_reasons = CASE WHEN ? THEN skip_reasons ELSE ? END
			WHERE id = ? AND bot_id = ? AND version = ?
			RETURNING `+triggerCols,
				tr.Source, tr.Event, tr.FlowID, tr.Channel, spec, tr.IdempotencyKey, tr.Status, tr.Cursor, nanos(at),
				delta.Targeted, delta.RunsCreated, delta.Sent, delta.Delivered, delta.Failed, delta.Skipped, keep, reasons,
				tr.ID, tr.BotID, tr.Version))
			if !errors.Is(err, sql.ErrNoRows) {
				return err
			}
			// Nothing changed: an unknown trigger, or another version.
			ok, err := t.exists(`SELECT 1 FROM triggers WHERE id = ? AND bot_id = ?`, tr.ID, tr.BotID)
			if err != nil {
				return err
			}
			if !ok {
				return notFound("trigger", tr.BotID, tr.ID)
			}
			return fmt.Errorf("%w: trigger %s is not at version %d", store.ErrVersionConflict, tr.ID, tr.Version)
		})
	})
	if err != nil {
		return tr, dbErr("update trigger", err)
	}
	return out, nil
}

// mergedReasons is a trigger's stored skip reasons plus add, encoded for
// the statement that writes them (ErrNotFound for an unknown trigger).
func mergedReasons(t *wtx, botID, triggerID string, add map[string]int64) (any, error) {
	m, err := storedReasons(t, botID, triggerID)
	if err != nil {
		return nil, err
	}
	for k, v := range add {
		m[k] += v
	}
	return encodeReasons(m)
}

// storedReasons reads a trigger's skip reasons.
func storedReasons(t *wtx, botID, triggerID string) (map[string]int64, error) {
	var raw sql.NullString
	err := t.queryRow(`SELECT skip_reasons FROM triggers WHERE id = ? AND bot_id = ?`, triggerID, botID).Scan(&raw)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, notFound("trigger", botID, triggerID)
	}
	if err != nil {
		return nil, err
	}
	m := map[string]int64{}
	if raw.Valid {
		if err := json.Unmarshal([]byte(raw.String), &m); err != nil {
			return nil, fmt.Errorf("stored skip reasons: %w", err)
		}
	}
	return m, nil
}

// IncrTriggerCounters adds delta to the counters through the group commit.
func (s *Store) IncrTriggerCounters(ctx context.Context, botID, triggerID string, d store.TriggerCounters) error {
	if err := store.FirstErr(store.CheckBotID("bot_id", botID), store.CheckID("id", triggerID), check.SkipReasons(d.SkipReasons)); err != nil {
		return err
	}
	err := s.w.do(ctx, false, func(t *wtx) error { return addCounters(t, botID, triggerID, d, now()) })
	return dbErr("increment trigger counters", err)
}

// addCounters adds d to a trigger's counters, inside the writer.
func addCounters(t *wtx, botID, triggerID string, d store.TriggerCounters, at time.Time) error {
	if len(d.SkipReasons) == 0 {
		// The common case (delivery counts): one statement, no read.
		n, err := t.execAffected(`UPDATE triggers SET targeted = targeted + ?, runs_created = runs_created + ?,
			sent = sent + ?, delivered = delivered + ?, failed = failed + ?, skipped = skipped + ?,
			updated_at = ? WHERE id = ? AND bot_id = ?`,
			d.Targeted, d.RunsCreated, d.Sent, d.Delivered, d.Failed, d.Skipped, nanos(at), triggerID, botID)
		if err == nil && n == 0 {
			err = notFound("trigger", botID, triggerID)
		}
		return err
	}
	// Read the reasons first (the writer is alone, nothing changes in
	// between) so that the change itself is one statement.
	reasons, err := mergedReasons(t, botID, triggerID, d.SkipReasons)
	if err != nil {
		return err
	}
	_, err = t.exec(`UPDATE triggers SET targeted = targeted + ?, runs_created = runs_created + ?,
		sent = sent + ?, delivered = delivered + ?, failed = failed + ?, skipped = skipped + ?, skip_reasons = ?,
		updated_at = ? WHERE id = ?`,
		d.Targeted, d.RunsCreated, d.Sent, d.Delivered, d.Failed, d.Skipped, reasons, nanos(at), triggerID)
	return err
}
