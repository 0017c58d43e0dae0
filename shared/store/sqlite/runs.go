package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/flowgate/flowgate/shared/store"
)

const runCols = `id, bot_id, trigger_id, flow_id, flow_version, contact_id, channel, status, state, data,
	wait_until, error, version, created_at, updated_at`

func scanRun(r scanner) (store.Run, error) {
	var x store.Run
	var state, data sql.NullString
	var wait sql.NullInt64
	var created, updated int64
	if err := r.Scan(&x.ID, &x.BotID, &x.TriggerID, &x.FlowID, &x.FlowVersion, &x.ContactID, &x.Channel, &x.Status,
		&state, &data, &wait, &x.Error, &x.Version, &created, &updated); err != nil {
		return x, err
	}
	var err error
	x.State = decodeRaw(state)
	x.Data, err = decodeMap(data)
	x.WaitUntil = fromNullNanos(wait)
	x.CreatedAt, x.UpdatedAt = fromNanos(created), fromNanos(updated)
	return x, err
}

// encodedRun is a run checked and encoded outside the writer goroutine.
type encodedRun struct {
	state, data any
}

// prepareRun validates r, fills defaults and encodes its JSON fields. create
// says whether r is about to be created (ids and CreatedAt matter then).
func prepareRun(r *store.Run, create bool) (encodedRun, error) {
	var e encodedRun
	err := check.PrepareRun(r, create, now, func(t time.Time) time.Time { return t.Round(0).UTC() })
	if err != nil {
		return e, err
	}
	if e.state, err = encodeRaw("state", r.State, false); err != nil {
		return e, err
	}
	if e.data, err = encodeMap("data", r.Data); err != nil {
		return e, err
	}
	return e, nil
}

// updateRun is UpdateRun's version-checked write.
const updateRun = `UPDATE runs SET flow_id = CASE WHEN ? = '' THEN flow_id ELSE ? END,
	flow_version = CASE WHEN ? = '' THEN flow_version ELSE ? END, channel = CASE WHEN ? = '' THEN channel ELSE ? END,
	status = ?, state = ?, data = ?, wait_until = ?, error = ?, version = version + 1, updated_at = ?,
	claim_by = '', claim_until = NULL, claim_version = NULL
	WHERE id = ? AND bot_id = ? AND version = ?`

// claimRun is ClaimRuns' write of one claim: taken if the run is at the
// version read and no other step's claim is live.
const claimRun = `UPDATE runs SET claim_by = ?, claim_until = ?, claim_version = version
	WHERE id = ? AND bot_id = ? AND version = ?
	AND (claim_until IS NULL OR claim_until <= ? OR claim_by = ? OR claim_version IS NOT version)`

const insertRun = `INSERT INTO runs (` + runCols + `) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?) ON CONFLICT DO NOTHING`

func runArgs(r *store.Run, e *encodedRun) []any {
	return []any{r.ID, r.BotID, r.TriggerID, r.FlowID, r.FlowVersion, r.ContactID, r.Channel,
		r.Status, e.state, e.data, nullNanos(r.WaitUntil), r.Error, r.Version, nanos(r.CreatedAt), nanos(r.UpdatedAt)}
}

// createRun inserts r or returns the run that holds its id or its
// trigger + contact key.
func createRun(t *wtx, r store.Run, e encodedRun) (store.Run, bool, error) {
	n, err := t.execAffected(insertRun, runArgs(&r, &e)...)
	if err != nil {
		return r, false, err
	}
	if n == 1 {
		return r, true, nil
	}
	ex, err := existingRun(t, r)
	return ex, false, err
}

// existingRun finds the run that made the insert of r a no-op.
func existingRun(t *wtx, r store.Run) (store.Run, error) {
	ex, err := scanRun(t.queryRow(`SELECT `+runCols+` FROM runs WHERE id = ?`, r.ID))
	if err == nil {
		if ex.BotID != r.BotID {
			return r, fmt.Errorf("%w: run id %s belongs to another bot", store.ErrConflict, r.ID)
		}
		return ex, nil
	}
	if !errors.Is(err, sql.ErrNoRows) {
		return r, err
	}
	if r.TriggerID != "" {
		ex, err = scanRun(t.queryRow(`SELECT `+runCols+` FROM runs WHERE contact_id = ? AND `+runKey+` = ?`, r.ContactID, "t:"+r.TriggerID))
		if err == nil {
			if ex.BotID != r.BotID {
				return r, fmt.Errorf("%w: trigger %s belongs to another bot", store.ErrConflict, r.TriggerID)
			}
			return ex, nil
		}
		if !errors.Is(err, sql.ErrNoRows) {
			return r, err
		}
	}
	return r, fmt.Errorf("%w: run %s", store.ErrConflict, r.ID)
}

// insertRunsChunk is how many runs one multi-row INSERT carries: one
// statement per chunk costs about half the CPU of one per run.
const insertRunsChunk = 128

// multiInsert returns the INSERT statement for n runs; RETURNING names the
// runs actually inserted.
func multiInsert(n int) string {
	return `INSERT INTO runs (` + runCols + `) VALUES ` + valueRows(n, 15) + ` ON CONFLICT DO NOTHING RETURNING id`
}

// createRunsChunk inserts rs in one statement, then resolves the ones that
// already existed.
func createRunsChunk(t *wtx, offset int, rs []store.Run, enc []encodedRun, out []store.Run, created []bool) error {
	args := make([]any, 0, len(rs)*15)
	for i := range rs {
		args = append(args, runArgs(&rs[i], &enc[i])...)
	}
	inserted := map[string]bool{}
	err := inPieces(len(rs), func(lo, hi int) error {
		ids, err := returnedIDs(t, multiInsert(hi-lo), args[15*lo:15*hi])
		for id := range ids {
			inserted[id] = true
		}
		return err
	})
	if err != nil {
		return err
	}
	for i := range rs {
		if inserted[rs[i].ID] {
			delete(inserted, rs[i].ID) // a repeated id in the batch: the first one was inserted
			out[i], created[i] = rs[i], true
			continue
		}
		ex, err := existingRun(t, rs[i])
		if err != nil {
			return fmt.Errorf("run %d: %w", offset+i, err)
		}
		out[i] = ex
	}
	return dropRunsOfDeleted(t, rs, out, created)
}

// CreateRun returns the existing run (created=false) if one has the same id
// or the same trigger + contact.
func (s *Store) CreateRun(ctx context.Context, r store.Run) (store.Run, bool, error) {
	e, err := prepareRun(&r, true)
	if err != nil {
		return r, false, err
	}
	var out store.Run
	var created bool
	err = s.w.doAll(ctx, 1, func(t *wtx) (err error) {
		if out, created, err = createRun(t, r, e); err != nil {
			return err
		}
		outs, cs := []store.Run{out}, []bool{created}
		err = dropRunsOfDeleted(t, []store.Run{r}, outs, cs)
		out, created = outs[0], cs[0]
		return err
	})
	if err != nil {
		return r, false, dbErr("create run", err)
	}
	return out, created, nil
}

// CreateRuns creates many runs in one transaction, each idempotent as in
// CreateRun. An invalid run fails the whole call before anything is written.
func (s *Store) CreateRuns(ctx context.Context, rs []store.Run) ([]store.Run, []bool, error) {
	if len(rs) == 0 {
		return nil, nil, nil
	}
	in := make([]store.Run, len(rs))
	copy(in, rs)
	enc := make([]encodedRun, len(in))
	prepare := func(i, j int) error {
		for k := i; k < j; k++ {
			var err error
			if enc[k], err = prepareRun(&in[k], true); err != nil {
				return fmt.Errorf("run %d: %w", k, err)
			}
		}
		return nil
	}
	// The first chunk is checked before anything is queued; the others are
	// encoded by a goroutine while the writer inserts the chunks before
	// them (an invalid run there fails the transaction, so nothing is
	// written either way).
	first := min(insertRunsChunk, len(in))
	if err := prepare(0, first); err != nil {
		return nil, nil, err
	}
	type chunk struct {
		end int
		err error
	}
	ready := make(chan chunk, len(in)/insertRunsChunk+1)
	stop := make(chan struct{})
	defer close(stop)
	ready <- chunk{end: first}
	if first < len(in) {
		go func() {
			for i := first; i < len(in); i += insertRunsChunk {
				select {
				case <-stop:
					return
				default:
				}
				j := min(i+insertRunsChunk, len(in))
				if err := prepare(i, j); err != nil {
					ready <- chunk{err: err}
					return
				}
				ready <- chunk{end: j}
			}
		}()
	}
	out := make([]store.Run, len(in))
	created := make([]bool, len(in))
	err := s.w.doAll(ctx, len(in), func(t *wtx) error {
		for i := 0; i < len(in); {
			c := <-ready
			if c.err != nil {
				return c.err
			}
			if err := createRunsChunk(t, i, in[i:c.end], enc[i:c.end], out[i:c.end], created[i:c.end]); err != nil {
				return err
			}
			i = c.end
		}
		return nil
	})
	if err != nil {
		return nil, nil, dbErr("create runs", err)
	}
	return out, created, nil
}

// GetRun returns ErrNotFound for an unknown run.
func (s *Store) GetRun(ctx context.Context, botID, id string) (store.Run, error) {
	if err := store.FirstErr(store.CheckBotID("bot_id", botID), store.CheckID("id", id)); err != nil {
		return store.Run{}, err
	}
	r, err := scanRun(s.qrow(ctx, `SELECT `+runCols+` FROM runs WHERE id = ? AND bot_id = ?`, id, botID))
	if errors.Is(err, sql.ErrNoRows) {
		return r, notFound("run", botID, id)
	}
	return r, dbErr("get run", err)
}

// UpdateRun writes the mutable fields of r (status, state, data, wait_until,
// error, flow, channel) if r.Version matches, through the group commit. The
// keys (bot, trigger, contact) and CreatedAt never change.
func (s *Store) UpdateRun(ctx context.Context, r store.Run) (store.Run, error) {
	e, err := prepareRun(&r, false)
	if err != nil {
		return r, err
	}
	err = s.w.do(ctx, false, func(t *wtx) error {
		n, err := t.execAffected(updateRun,
			r.FlowID, r.FlowID, r.FlowID, r.FlowVersion, r.Channel, r.Channel, r.Status, e.state, e.data,
			nullNanos(r.WaitUntil), r.Error, nanos(r.UpdatedAt), r.ID, r.BotID, r.Version)
		if err != nil || n == 1 {
			return err
		}
		found, err := t.exists(`SELECT 1 FROM runs WHERE id = ? AND bot_id = ?`, r.ID, r.BotID)
		if err != nil {
			return err
		}
		if !found {
			return notFound("run", r.BotID, r.ID)
		}
		return fmt.Errorf("%w: run %s is not at version %d", store.ErrVersionConflict, r.ID, r.Version)
	})
	if err != nil {
		return r, dbErr("update run", err)
	}
	r.Version++
	return r, nil
}

// UpdateRuns writes the runs in one transaction of its own, one prepared
// update per run.
func (s *Store) UpdateRuns(ctx context.Context, rs []store.Run) ([]int, error) {
	if len(rs) == 0 {
		return nil, nil
	}
	in := make([]store.Run, len(rs))
	copy(in, rs)
	enc := make([]encodedRun, len(in))
	for i := range in {
		var err error
		if enc[i], err = prepareRun(&in[i], false); err != nil {
			return nil, fmt.Errorf("run %d: %w", i, err)
		}
	}
	var conflicts []int
	err := s.w.doAll(ctx, len(in), func(t *wtx) error {
		conflicts = conflicts[:0]
		for i, r := range in {
			e := enc[i]
			n, err := t.execAffected(updateRun,
				r.FlowID, r.FlowID, r.FlowID, r.FlowVersion, r.Channel, r.Channel, r.Status, e.state, e.data,
				nullNanos(r.WaitUntil), r.Error, nanos(r.UpdatedAt), r.ID, r.BotID, r.Version)
			if err != nil {
				return err
			}
			if n != 1 {
				conflicts = append(conflicts, i)
			}
		}
		return nil
	})
	if err != nil {
		return nil, dbErr("update runs", err)
	}
	return conflicts, nil
}

// ClaimRuns takes the claims in one transaction, one prepared update per
// run; a refused claim is explained by reading the run's version and claim.
func (s *Store) ClaimRuns(ctx context.Context, claims []store.RunClaim, by string, now, until time.Time) ([]store.ClaimRefusal, error) {
	if err := store.CheckClaims(claims, by, now, until); err != nil {
		return nil, err
	}
	if len(claims) == 0 {
		return nil, nil
	}
	var refused []store.ClaimRefusal
	err := s.w.doAll(ctx, len(claims), func(t *wtx) error {
		refused = refused[:0]
		for i, c := range claims {
			n, err := t.execAffected(claimRun, by, nanos(until), c.RunID, c.BotID, c.Version, nanos(now), by)
			if err != nil {
				return err
			}
			if n == 1 {
				continue
			}
			r, err := t.refusal(c, now)
			if err != nil {
				return err
			}
			r.Index = i
			refused = append(refused, r)
		}
		return nil
	})
	if err != nil {
		return nil, dbErr("claim runs", err)
	}
	return refused, nil
}

// refusal says why a claim on c was not taken.
func (t *wtx) refusal(c store.RunClaim, now time.Time) (store.ClaimRefusal, error) {
	var (
		version             int64
		until, claimVersion sql.NullInt64
	)
	err := t.queryRow(`SELECT version, claim_until, claim_version FROM runs WHERE id = ? AND bot_id = ?`, c.RunID, c.BotID).
		Scan(&version, &until, &claimVersion)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return store.ClaimRefusal{Gone: true}, nil
	case err != nil:
		return store.ClaimRefusal{}, err
	case version == c.Version && claimVersion.Valid && claimVersion.Int64 == version && until.Valid && until.Int64 > nanos(now):
		return store.ClaimRefusal{HeldUntil: time.Unix(0, until.Int64).UTC()}, nil
	}
	return store.ClaimRefusal{}, nil
}

// ListRuns returns a page of runs, newest first.
func (s *Store) ListRuns(ctx context.Context, f store.RunFilter) ([]store.Run, string, error) {
	if err := store.CheckBotID("bot_id", f.BotID); err != nil {
		return nil, "", err
	}
	limit, err := store.CheckLimit(f.Limit, 100, 1000)
	if err != nil {
		return nil, "", err
	}
	if f.Status != "" {
		if err := store.CheckRunStatus(f.Status); err != nil {
			return nil, "", err
		}
	}
	q := `SELECT ` + runCols + ` FROM runs WHERE bot_id = ?`
	if f.ContactID != "" {
		// A contact has few runs: without this the planner walks the bot's
		// runs in created_at order to spare a sort (a broadcast's per-run
		// "other waiting runs of this contact?" became O(runs of the bot)).
		q = `SELECT ` + runCols + ` FROM runs INDEXED BY runs_contact_key WHERE bot_id = ?`
	}
	args := []any{f.BotID}
	for _, c := range []struct{ col, v string }{
		{"status", f.Status}, {"contact_id", f.ContactID}, {"trigger_id", f.TriggerID}, {"flow_id", f.FlowID},
	} {
		if c.v != "" {
			q += ` AND ` + c.col + ` = ?`
			args = append(args, c.v)
		}
	}
	if !f.Since.IsZero() {
		if err := store.CheckTime("since", f.Since); err != nil {
			return nil, "", err
		}
		q += ` AND created_at >= ?`
		args = append(args, nanos(f.Since))
	}
	if !f.Until.IsZero() {
		if err := store.CheckTime("until", f.Until); err != nil {
			return nil, "", err
		}
		q += ` AND created_at < ?`
		args = append(args, nanos(f.Until))
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
		return nil, "", dbErr("list runs", err)
	}
	out, err := collectRuns(rows)
	if err != nil {
		return nil, "", dbErr("list runs", err)
	}
	next := ""
	if len(out) > limit {
		out = out[:limit]
		next = store.EncodeKeysetCursor(out[limit-1].CreatedAt, out[limit-1].ID)
	}
	return out, next, nil
}

// DueRuns returns waiting runs whose timer is due, earliest first.
func (s *Store) DueRuns(ctx context.Context, at time.Time, limit int) ([]store.Run, error) {
	if err := store.CheckTime("now", at); err != nil {
		return nil, err
	}
	limit, err := store.CheckLimit(limit, 100, 10000)
	if err != nil {
		return nil, err
	}
	rows, err := s.qrows(ctx, `SELECT `+runCols+` FROM runs INDEXED BY runs_waiting
		WHERE status = 'waiting' AND wait_until <= ? ORDER BY wait_until, id LIMIT ?`, nanos(at), limit)
	if err != nil {
		return nil, dbErr("due runs", err)
	}
	out, err := collectRuns(rows)
	return out, dbErr("due runs", err)
}

// collectRuns reads every run of rows and closes them.
func collectRuns(rows *sql.Rows) ([]store.Run, error) {
	defer rows.Close()
	var out []store.Run
	for rows.Next() {
		r, err := scanRun(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

// WaitingRuns returns the waiting runs of contactIDs, found through the
// contact index with one query (the ids travel as one JSON array).
func (s *Store) WaitingRuns(ctx context.Context, botID string, contactIDs []string) ([]store.Run, error) {
	if err := store.ContactIDsArgs(botID, contactIDs); err != nil {
		return nil, err
	}
	if len(contactIDs) == 0 {
		return nil, nil
	}
	ids, err := json.Marshal(contactIDs)
	if err != nil {
		return nil, err
	}
	rows, err := s.qrows(ctx, `SELECT `+runCols+` FROM runs INDEXED BY runs_contact_key
		WHERE contact_id IN (SELECT value FROM json_each(?)) AND bot_id = ? AND status = 'waiting'`, string(ids), botID)
	if err != nil {
		return nil, dbErr("waiting runs", err)
	}
	out, err := collectRuns(rows)
	return out, dbErr("waiting runs", err)
}

// ExpireBefore deletes runs in a final status last updated before t, and
// their messages. Candidates are found on a reader connection (a scan, as
// no index covers updated_at: every UpdateRun would pay for one), so the
// writer only spends time on the deletes, chunk by chunk, and hot-path
// writes go on in between. The deletes re-check the condition, so a run
// updated meanwhile is kept.
func (s *Store) ExpireBefore(ctx context.Context, t time.Time) (int64, error) {
	if err := store.CheckTime("before", t); err != nil {
		return 0, err
	}
	const final = `status IN ('completed','failed','cancelled','expired') AND updated_at < ?`
	const perStatement = 500
	var total int64
	for {
		rows, err := s.qrows(ctx, `SELECT id FROM runs WHERE `+final+` LIMIT ?`, nanos(t), s.opts.expireChunk)
		if err != nil {
			return total, dbErr("expire runs", err)
		}
		var ids []any
		for rows.Next() {
			var id string
			if err := rows.Scan(&id); err != nil {
				rows.Close()
				return total, dbErr("expire runs", err)
			}
			ids = append(ids, id)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return total, dbErr("expire runs", err)
		}
		if len(ids) == 0 {
			return total, nil
		}
		var n int64
		err = s.w.do(ctx, true, func(tx *wtx) error {
			n = 0
			for i := 0; i < len(ids); i += perStatement {
				chunk := ids[i:min(i+perStatement, len(ids))]
				in := strings.TrimSuffix(strings.Repeat("?,", len(chunk)), ",")
				args := append(append([]any{}, chunk...), nanos(t))
				if _, err := tx.execOnce(`DELETE FROM messages WHERE run_id IN (SELECT id FROM runs WHERE id IN (`+in+`) AND `+final+`)`, args...); err != nil {
					return err
				}
				res, err := tx.execOnce(`DELETE FROM runs WHERE id IN (`+in+`) AND `+final, args...)
				if err != nil {
					return err
				}
				k, err := res.RowsAffected()
				if err != nil {
					return err
				}
				n += k
			}
			return nil
		})
		if err != nil {
			return total, dbErr("expire runs", err)
		}
		total += n
		if len(ids) < s.opts.expireChunk {
			return total, nil
		}
	}
}
