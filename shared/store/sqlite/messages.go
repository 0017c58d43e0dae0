package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math/bits"
	"strings"

	"github.com/flowgate/flowgate/shared/store"
)

const messageCols = `id, bot_id, run_id, trigger_id, contact_id, channel, to_addr, seq, content, status,
	provider_message_id, error, created_at, updated_at, lane`

func scanMessage(r scanner) (store.Message, error) {
	var m store.Message
	var content sql.NullString
	var created, updated int64
	err := r.Scan(&m.ID, &m.BotID, &m.RunID, &m.TriggerID, &m.ContactID, &m.Channel, &m.To, &m.Seq, &content,
		&m.Status, &m.ProviderMessageID, &m.Error, &created, &updated, &m.Lane)
	m.Content = decodeRaw(content)
	m.CreatedAt, m.UpdatedAt = fromNanos(created), fromNanos(updated)
	return m, err
}

// InsertMessages stores messages; ids that exist already are left as they are.
func (s *Store) InsertMessages(ctx context.Context, ms []store.Message) error {
	type row struct {
		m       store.Message
		content any
	}
	rows := make([]row, len(ms))
	for i, m := range ms {
		if err := check.Message(&m); err != nil {
			return fmt.Errorf("message %d: %w", i, err)
		}
		content, err := encodeRaw("content", m.Content, false)
		if err != nil {
			return fmt.Errorf("message %d: %w", i, err)
		}
		m.CreatedAt = orNow(m.CreatedAt)
		if m.UpdatedAt.IsZero() {
			m.UpdatedAt = m.CreatedAt
		}
		rows[i] = row{m, content}
	}
	if len(rows) == 0 {
		return nil
	}
	insert := func(t *wtx, rows []row) error {
		args := make([]any, 0, 15*len(rows))
		for _, r := range rows {
			m := r.m
			args = append(args, m.ID, m.BotID, m.RunID, m.TriggerID, m.ContactID, m.Channel, m.To, m.Seq, r.content, m.Status,
				m.ProviderMessageID, m.Error, nanos(m.CreatedAt), nanos(m.UpdatedAt), m.Lane)
		}
		err := inPieces(len(rows), func(lo, hi int) error {
			_, err := t.exec(`INSERT INTO messages (`+messageCols+`) VALUES `+
				valueRows(hi-lo, 15)+
				` ON CONFLICT (id) DO NOTHING`, args[15*lo:15*hi]...)
			return err
		})
		if err != nil {
			return err
		}
		ms := make([]store.Message, len(rows))
		for i := range rows {
			ms[i] = rows[i].m
		}
		return dropMessagesOfDeleted(t, ms)
	}
	// Up to insertMessagesChunk messages are one statement; with the
	// deletion of those of deleted contacts that may follow it, they share
	// a group commit in a savepoint (doAll), all or nothing; more get a
	// transaction.
	const insertMessagesChunk = 64
	err := s.w.doAll(ctx, len(rows), func(t *wtx) error {
		for i := 0; i < len(rows); i += insertMessagesChunk {
			if err := insert(t, rows[i:min(i+insertMessagesChunk, len(rows))]); err != nil {
				return err
			}
		}
		return nil
	})
	return dbErr("insert messages", err)
}

// GetMessage returns ErrNotFound for an unknown message.
func (s *Store) GetMessage(ctx context.Context, botID, id string) (store.Message, error) {
	if err := store.FirstErr(store.CheckBotID("bot_id", botID), store.CheckID("id", id)); err != nil {
		return store.Message{}, err
	}
	m, err := scanMessage(s.qrow(ctx, `SELECT `+messageCols+` FROM messages WHERE id = ? AND bot_id = ?`, id, botID))
	if errors.Is(err, sql.ErrNoRows) {
		return m, notFound("message", botID, id)
	}
	return m, dbErr("get message", err)
}

// FindMessageByProviderID finds a message by the provider's message id.
func (s *Store) FindMessageByProviderID(ctx context.Context, botID, providerID string) (store.Message, error) {
	if err := store.FirstErr(store.CheckBotID("bot_id", botID), store.CheckID("provider_id", providerID)); err != nil {
		return store.Message{}, err
	}
	m, err := scanMessage(s.qrow(ctx, `SELECT `+messageCols+` FROM messages
		WHERE bot_id = ? AND provider_message_id = ? LIMIT 1`, botID, providerID))
	if errors.Is(err, sql.ErrNoRows) {
		return m, notFound("message", botID, "provider:"+providerID)
	}
	return m, dbErr("find message", err)
}

// UpdateMessageStatus moves a message forward through the group commit. A
// move that is not forward (a late or repeated callback) is ignored, except
// that a provider id the message lacks is still recorded.
func (s *Store) UpdateMessageStatus(ctx context.Context, u store.StatusUpdate) error {
	if err := check.MessageStatusUpdate(u); err != nil {
		return err
	}
	botID, id, status, providerID, reason, at := u.BotID, u.MessageID, u.Status, u.ProviderMessageID, u.Reason, u.At
	at = orNow(at)
	err := s.w.do(ctx, false, func(t *wtx) error {
		var cur, curProvider string
		err := t.queryRow(`SELECT status, provider_message_id FROM messages WHERE id = ? AND bot_id = ?`, id, botID).Scan(&cur, &curProvider)
		if errors.Is(err, sql.ErrNoRows) {
			return notFound("message", botID, id)
		}
		if err != nil {
			return err
		}
		if !store.MessageStatusAdvances(cur, status) {
			if providerID != "" && curProvider == "" {
				_, err = t.exec(`UPDATE messages SET provider_message_id = ? WHERE id = ?`, providerID, id)
			}
			return err
		}
		errText := ""
		if status == store.MessageFailed {
			errText = reason
		}
		_, err = t.exec(`UPDATE messages SET status = ?, provider_message_id = CASE WHEN ? = '' THEN provider_message_id ELSE ? END,
			error = ?, updated_at = ? WHERE id = ?`, status, providerID, providerID, errText, nanos(at), id)
		return err
	})
	return dbErr("update message status", err)
}

// ListRunMessages returns a run's messages ordered by Seq.
func (s *Store) ListRunMessages(ctx context.Context, botID, runID string) ([]store.Message, error) {
	if err := store.FirstErr(store.CheckBotID("bot_id", botID), store.CheckID("run_id", runID)); err != nil {
		return nil, err
	}
	rows, err := s.qrows(ctx, `SELECT `+messageCols+` FROM messages WHERE run_id = ? AND bot_id = ? ORDER BY seq, id`, runID, botID)
	if err != nil {
		return nil, dbErr("list messages", err)
	}
	defer rows.Close()
	var out []store.Message
	for rows.Next() {
		m, err := scanMessage(rows)
		if err != nil {
			return nil, dbErr("list messages", err)
		}
		out = append(out, m)
	}
	return out, dbErr("list messages", rows.Err())
}

// AppendSandbox stores m once; Seq comes from the table's AUTOINCREMENT, so it
// only grows, also across deletes.
func (s *Store) AppendSandbox(ctx context.Context, ms ...store.SandboxMessage) error {
	args, err := sandboxArgs(ms)
	if err != nil || len(ms) == 0 {
		return err
	}
	// All or nothing (its pieces in one savepoint), and seqs in the order
	// given.
	err = s.w.doAll(ctx, len(ms), func(t *wtx) error { return appendSandbox(t, len(ms), args) })
	return dbErr("append sandbox", err)
}

// DeliverSandbox appends the messages to the transcript and records them
// as sent, in one atomic write.
func (s *Store) DeliverSandbox(ctx context.Context, triggerID string, ms []store.SandboxMessage) error {
	args, err := sandboxArgs(ms)
	if err != nil {
		return err
	}
	botID, sent, err := store.DeliverSandboxArgs(triggerID, ms)
	if err != nil || len(ms) == 0 {
		return err
	}
	err = s.w.do(ctx, false, func(t *wtx) error {
		return t.atomic(func() error {
			if err := appendSandbox(t, len(ms), args); err != nil {
				return err
			}
			return markSent(t, botID, triggerID, sent)
		})
	})
	return dbErr("deliver sandbox", err)
}

// DeliverSandboxMany delivers several bundles in one savepoint of the
// batch transaction (a transaction of its own past sharedMaxRows
// messages): one transcript insert for all of them, then their messages
// recorded as sent and counted for their triggers (markSentMany: one
// statement for the messages, one for the counters). Delivered one
// DeliverSandbox each, a channel worker's bundles cost five statements
// apiece under the write lock (docs/performance.md).
func (s *Store) DeliverSandboxMany(ctx context.Context, ds []store.SandboxDelivery) error {
	marks, err := check.SandboxDeliveries(ds)
	if err != nil {
		return err
	}
	var all []store.SandboxMessage
	for _, d := range ds {
		all = append(all, d.Messages...)
	}
	if len(all) == 0 {
		return nil
	}
	args, err := sandboxRows(all) // checked above, at most MaxSandboxDeliveries
	if err != nil {
		return err
	}
	err = s.w.doAll(ctx, len(all), func(t *wtx) error {
		if err := appendSandbox(t, len(all), args); err != nil {
			return err
		}
		sent := make([]sentMarks, len(marks))
		for i, m := range marks {
			sent[i] = sentMarks{botID: m.BotID, triggerID: ds[i].TriggerID, sent: m.Sent}
		}
		return markSentMany(t, sent)
	})
	return dbErr("deliver sandbox", err)
}

// sandboxArgs checks sandbox messages and returns their insert's arguments.
func sandboxArgs(ms []store.SandboxMessage) ([]any, error) {
	if len(ms) > store.MaxSentMessages {
		return nil, &store.InvalidError{Field: "messages", Reason: fmt.Sprintf("more than %d", store.MaxSentMessages)}
	}
	for _, m := range ms {
		if err := check.SandboxMessage(m); err != nil {
			return nil, err
		}
	}
	return sandboxRows(ms)
}

// sandboxRows returns the transcript insert's arguments of messages
// checked already.
func sandboxRows(ms []store.SandboxMessage) ([]any, error) {
	args := make([]any, 0, 6*len(ms))
	for _, m := range ms {
		content, err := encodeRaw("content", m.Content, false)
		if err != nil {
			return nil, err
		}
		args = append(args, m.MessageID, m.BotID, m.RunID, m.To, content, nanos(orNow(m.CreatedAt)))
	}
	return args, nil
}

func appendSandbox(t *wtx, n int, args []any) error {
	return inPieces(n, func(lo, hi int) error {
		_, err := t.exec(`INSERT INTO sandbox (message_id, bot_id, run_id, to_addr, content, created_at) VALUES `+
			valueRows(hi-lo, 6)+
			` ON CONFLICT (message_id) DO NOTHING`, args[6*lo:6*hi]...)
		return err
	})
}

// ListSandbox returns a bot's sandbox messages after afterSeq, oldest first;
// to filters by recipient; limit defaults to 100, at most 1000.
func (s *Store) ListSandbox(ctx context.Context, botID, to string, afterSeq int64, limit int) ([]store.SandboxMessage, error) {
	if err := store.CheckBotID("bot_id", botID); err != nil {
		return nil, err
	}
	limit, err := store.CheckLimit(limit, 100, 1000)
	if err != nil {
		return nil, err
	}
	q := `SELECT message_id, bot_id, run_id, to_addr, content, seq, created_at FROM sandbox WHERE bot_id = ?`
	args := []any{botID}
	if to != "" {
		q += ` AND to_addr = ?`
		args = append(args, to)
	}
	q += ` AND seq > ? ORDER BY seq LIMIT ?`
	args = append(args, afterSeq, limit)
	rows, err := s.rdb.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, dbErr("list sandbox", err)
	}
	defer rows.Close()
	var out []store.SandboxMessage
	for rows.Next() {
		var m store.SandboxMessage
		var content sql.NullString
		var created int64
		if err := rows.Scan(&m.MessageID, &m.BotID, &m.RunID, &m.To, &content, &m.Seq, &created); err != nil {
			return nil, dbErr("list sandbox", err)
		}
		m.Content, m.CreatedAt = decodeRaw(content), fromNanos(created)
		out = append(out, m)
	}
	return out, dbErr("list sandbox", rows.Err())
}

// MarkSent records the messages and counts them in one savepoint of the
// batch transaction: all of it or nothing.
func (s *Store) MarkSent(ctx context.Context, botID, triggerID string, ms []store.SentMessage) error {
	if err := store.MarkSentArgs(botID, triggerID, ms); err != nil {
		return err
	}
	if len(ms) == 0 {
		return nil
	}
	err := s.w.do(ctx, false, func(t *wtx) error {
		return t.atomic(func() error { return markSent(t, botID, triggerID, ms) })
	})
	return dbErr("mark sent", err)
}

// markSent is MarkSent's statements, in the caller's transaction.
func markSent(t *wtx, botID, triggerID string, ms []store.SentMessage) error {
	return markSentMany(t, []sentMarks{{botID: botID, triggerID: triggerID, sent: ms}})
}

// sentMarks are one bundle's messages recorded as sent, and the trigger
// that counts them.
type sentMarks struct {
	botID, triggerID string
	sent             []store.SentMessage
}

// markChunk is the most messages one sent-mark statement carries.
const markChunk = 256

// markSentMany records messages as sent: a message still queued becomes
// sent (with its provider id, when one is given); one that moved on before
// the worker recorded it (a delivery receipt came first) gets only its
// provider id, when it had none. Each message recorded either way for the
// first time counts once as sent on its trigger. Per bot, the messages
// take one UPDATE per markChunk and the counters one UPDATE, instead of a
// statement or two per message and one per bundle (the sandbox's
// deliveries write many bundles at once). A bot whose messages name one id
// twice is recorded message by message, as the one-statement form cannot
// order them.
func markSentMany(t *wtx, marks []sentMarks) error {
	var bots []string
	byBot := map[string][]sentMarks{}
	for _, m := range marks {
		if len(m.sent) == 0 {
			continue
		}
		if _, ok := byBot[m.botID]; !ok {
			bots = append(bots, m.botID)
		}
		byBot[m.botID] = append(byBot[m.botID], m)
	}
	for _, bot := range bots {
		counts, err := markBotSent(t, bot, byBot[bot])
		if err != nil {
			return err
		}
		if err := countSent(t, bot, counts); err != nil {
			return err
		}
	}
	return nil
}

// sentCount is how many of a trigger's messages were recorded for the
// first time.
type sentCount struct {
	triggerID string
	n         int64
}

// markBotSent records one bot's messages and returns, per trigger in the
// order first met, how many were recorded for the first time.
func markBotSent(t *wtx, botID string, marks []sentMarks) ([]sentCount, error) {
	type item struct {
		trigger int // index in counts
		m       store.SentMessage
	}
	var counts []sentCount
	triggers := map[string]int{}
	var items []item
	ids := map[string]bool{}
	unique := true
	for _, mk := range marks {
		i, ok := triggers[mk.triggerID]
		if !ok {
			i = len(counts)
			triggers[mk.triggerID] = i
			counts = append(counts, sentCount{triggerID: mk.triggerID})
		}
		for _, m := range mk.sent {
			unique = unique && !ids[m.ID]
			ids[m.ID] = true
			items = append(items, item{trigger: i, m: m})
		}
	}
	if !unique {
		for _, it := range items {
			n, err := markOneSent(t, botID, it.m)
			if err != nil {
				return nil, err
			}
			counts[it.trigger].n += n
		}
		return counts, nil
	}
	for len(items) > 0 {
		chunk := items[:min(len(items), markChunk)]
		items = items[len(chunk):]
		// Padded to a power of two with rows that match no message (no
		// message has the id ''), so that the statement cache holds a
		// few texts rather than one per size.
		rows := paddedRows(len(chunk))
		args := make([]any, 0, 3*rows+1)
		for _, it := range chunk {
			args = append(args, it.m.ID, it.m.ProviderMessageID, nanos(orNow(it.m.At)))
		}
		for range rows - len(chunk) {
			args = append(args, "", "", int64(0))
		}
		args = append(args, botID)
		updated, err := returnedIDs(t, `UPDATE messages SET status = 'sent',
				provider_message_id = CASE WHEN v.column2 = '' THEN messages.provider_message_id ELSE v.column2 END,
				updated_at = v.column3
			FROM (VALUES `+valueRows(rows, 3)+`) AS v
			WHERE messages.id = v.column1 AND messages.bot_id = ? AND messages.status = 'queued'
			RETURNING messages.id`, args)
		if err != nil {
			return nil, err
		}
		for _, it := range chunk {
			if updated[it.m.ID] {
				counts[it.trigger].n++
				continue
			}
			n, err := recordProviderID(t, botID, it.m)
			if err != nil {
				return nil, err
			}
			counts[it.trigger].n += n
		}
	}
	return counts, nil
}

// markOneSent records one message as markSentMany does and returns 1 when
// it was recorded for the first time.
func markOneSent(t *wtx, botID string, m store.SentMessage) (int64, error) {
	n, err := t.execAffected(`UPDATE messages SET status = 'sent',
				provider_message_id = CASE WHEN ? = '' THEN provider_message_id ELSE ? END, updated_at = ?
				WHERE id = ? AND bot_id = ? AND status = 'queued'`,
		m.ProviderMessageID, m.ProviderMessageID, nanos(orNow(m.At)), m.ID, botID)
	if err != nil || n > 0 {
		return n, err
	}
	return recordProviderID(t, botID, m)
}

// recordProviderID records the provider id of a message that moved on
// before the worker recorded it (a receipt came first): only the id is
// new. It returns 1 when the message had none.
func recordProviderID(t *wtx, botID string, m store.SentMessage) (int64, error) {
	if m.ProviderMessageID == "" {
		return 0, nil
	}
	return t.execAffected(`UPDATE messages SET provider_message_id = ?
				WHERE id = ? AND bot_id = ? AND provider_message_id = ''`, m.ProviderMessageID, m.ID, botID)
}

// countSent adds the messages recorded to their triggers' sent counters,
// in one statement per markChunk triggers.
func countSent(t *wtx, botID string, counts []sentCount) error {
	var live []sentCount
	for _, c := range counts {
		if c.n > 0 && c.triggerID != "" {
			live = append(live, c)
		}
	}
	at := nanos(now())
	for len(live) > 0 {
		chunk := live[:min(len(live), markChunk)]
		live = live[len(chunk):]
		rows := paddedRows(len(chunk))
		args := make([]any, 0, 2*rows+2)
		args = append(args, at)
		for _, c := range chunk {
			args = append(args, c.triggerID, c.n)
		}
		for range rows - len(chunk) {
			args = append(args, "", int64(0))
		}
		args = append(args, botID)
		if _, err := t.exec(`UPDATE triggers SET sent = sent + v.column2, updated_at = ?
			FROM (VALUES `+valueRows(rows, 2)+`) AS v
			WHERE triggers.id = v.column1 AND triggers.bot_id = ?`, args...); err != nil {
			return err
		}
	}
	return nil
}

// paddedRows is the power of two at least n (and at least 1).
func paddedRows(n int) int {
	rows := 1
	for rows < n {
		rows *= 2
	}
	return rows
}

// valueRows is the VALUES list of n rows of cols placeholders each (the
// multi-row inserts and the sent marks).
func valueRows(n, cols int) string {
	row := "(" + strings.TrimSuffix(strings.Repeat("?,", cols), ",") + "),"
	return strings.TrimSuffix(strings.Repeat(row, n), ",")
}

// inPieces calls insert with the bounds [lo, hi) of n rows cut into pieces
// whose sizes are powers of two, largest first (37 rows: 32, 4, 1). A
// multi-row statement is compiled once per size and kept by the writer:
// so it keeps a few statements per kind (at most nine for 256 rows) rather
// than one per batch size seen (up to 256, the larger ones programs of
// thousands of instructions), and a batch of a new size compiles nothing.
// Extra pieces cost one statement execution each.
func inPieces(n int, insert func(lo, hi int) error) error {
	for lo := 0; lo < n; {
		size := 1 << (bits.Len(uint(n-lo)) - 1)
		if err := insert(lo, lo+size); err != nil {
			return err
		}
		lo += size
	}
	return nil
}
