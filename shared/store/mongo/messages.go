package mongo

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/flowgate/flowgate/shared/store"
)

// messageDoc is a message as stored in the messages collection.
type messageDoc struct {
	ID                string     `bson:"_id"`
	BotID             string     `bson:"bot_id"`
	RunID             string     `bson:"run_id"`
	TriggerID         string     `bson:"trigger_id"`
	ContactID         string     `bson:"contact_id"`
	Channel           string     `bson:"channel"`
	To                string     `bson:"to"`
	Seq               int        `bson:"seq"`
	Content           string     `bson:"content,omitempty"`
	Status            string     `bson:"status"`
	ProviderMessageID string     `bson:"provider_message_id"`
	Error             string     `bson:"error"`
	Lane              string     `bson:"lane,omitempty"`
	CreatedAt         time.Time  `bson:"created_at"`
	UpdatedAt         time.Time  `bson:"updated_at"`
	ExpireAt          *time.Time `bson:"expire_at,omitempty"`
}

func (d *messageDoc) message() store.Message {
	return store.Message{
		ID: d.ID, BotID: d.BotID, RunID: d.RunID, TriggerID: d.TriggerID, ContactID: d.ContactID,
		Channel: d.Channel, To: d.To, Seq: d.Seq, Content: decodeRaw(d.Content), Status: d.Status,
		ProviderMessageID: d.ProviderMessageID, Error: d.Error, Lane: d.Lane, CreatedAt: d.CreatedAt, UpdatedAt: d.UpdatedAt,
	}
}

var messageStatuses = []string{store.MessageQueued, store.MessageSent, store.MessageDelivered, store.MessageRead, store.MessageFailed}

// advancesFrom lists the statuses a message may move to status from.
func advancesFrom(status string) bson.A {
	out := bson.A{} // never nil: {$in: null} is an error
	for _, from := range messageStatuses {
		if store.MessageStatusAdvances(from, status) {
			out = append(out, from)
		}
	}
	return out
}

// InsertMessages stores messages with one unordered InsertMany; ids that
// exist already are left as they are.
func (s *Store) InsertMessages(ctx context.Context, msgs []store.Message) error {
	docs := make([]any, len(msgs))
	for i, m := range msgs {
		if err := check.Message(&m); err != nil {
			return fmt.Errorf("message %d: %w", i, err)
		}
		content, err := encodeRaw("content", m.Content, false)
		if err != nil {
			return fmt.Errorf("message %d: %w", i, err)
		}
		created := orNow(m.CreatedAt)
		updated := created
		if !m.UpdatedAt.IsZero() {
			updated = ms(m.UpdatedAt)
		}
		d := messageDoc{
			ID: m.ID, BotID: m.BotID, RunID: m.RunID, TriggerID: m.TriggerID, ContactID: m.ContactID,
			Channel: m.Channel, To: m.To, Seq: m.Seq, Content: content, Status: m.Status,
			ProviderMessageID: m.ProviderMessageID, Error: m.Error, Lane: m.Lane, CreatedAt: created, UpdatedAt: updated,
		}
		if docs[i], err = marshal(d, s.cfg.maxDocBytes); err != nil {
			return fmt.Errorf("message %d: %w", i, err)
		}
	}
	if len(docs) == 0 {
		return nil
	}
	ctx, cancel := s.opCtx(ctx)
	defer cancel()
	_, err := s.messages.InsertMany(ctx, docs, options.InsertMany().SetOrdered(false))
	if err == nil {
		return dbErr("insert messages", s.dropMessagesOfDeleted(ctx, msgs))
	}
	var bwe mongo.BulkWriteException
	if !errors.As(err, &bwe) || bwe.WriteConcernError != nil {
		return dbErr("insert messages", err)
	}
	for _, we := range bwe.WriteErrors {
		if we.Code != codeDuplicateKey && we.Code != codeDuplicateKeyOld {
			return fmt.Errorf("message %d: %w", we.Index, dbErr("insert messages", mongo.WriteException{WriteErrors: []mongo.WriteError{we.WriteError}}))
		}
	}
	return dbErr("insert messages", s.dropMessagesOfDeleted(ctx, msgs))
}

func (s *Store) findMessage(ctx context.Context, filter bson.D, key ...string) (store.Message, error) {
	ctx, cancel := s.opCtx(ctx)
	defer cancel()
	var d messageDoc
	err := s.messages.FindOne(ctx, filter).Decode(&d)
	if errors.Is(err, mongo.ErrNoDocuments) {
		return store.Message{}, notFound("message", key...)
	}
	if err != nil {
		return store.Message{}, dbErr("get message", err)
	}
	return d.message(), nil
}

// GetMessage returns ErrNotFound for an unknown message.
func (s *Store) GetMessage(ctx context.Context, botID, id string) (store.Message, error) {
	if err := store.FirstErr(store.CheckBotID("bot_id", botID), store.CheckID("id", id)); err != nil {
		return store.Message{}, err
	}
	return s.findMessage(ctx, bson.D{{Key: "_id", Value: id}, {Key: "bot_id", Value: botID}}, botID, id)
}

// FindMessageByProviderID finds a message by the provider's message id.
func (s *Store) FindMessageByProviderID(ctx context.Context, botID, providerID string) (store.Message, error) {
	if err := store.FirstErr(store.CheckBotID("bot_id", botID), store.CheckID("provider_id", providerID)); err != nil {
		return store.Message{}, err
	}
	return s.findMessage(ctx, bson.D{{Key: "bot_id", Value: botID}, {Key: "provider_message_id", Value: providerID}},
		botID, "provider:"+providerID)
}

// ListRunMessages returns a run's messages ordered by Seq.
func (s *Store) ListRunMessages(ctx context.Context, botID, runID string) ([]store.Message, error) {
	if err := store.FirstErr(store.CheckBotID("bot_id", botID), store.CheckID("run_id", runID)); err != nil {
		return nil, err
	}
	ctx, cancel := s.opCtx(ctx)
	defer cancel()
	cur, err := s.messages.Find(ctx, bson.D{{Key: "run_id", Value: runID}, {Key: "bot_id", Value: botID}},
		options.Find().SetSort(bson.D{{Key: "seq", Value: 1}, {Key: "_id", Value: 1}}))
	if err != nil {
		return nil, dbErr("list messages", err)
	}
	var docs []messageDoc
	if err := cur.All(ctx, &docs); err != nil {
		return nil, dbErr("list messages", err)
	}
	var out []store.Message
	for i := range docs {
		out = append(out, docs[i].message())
	}
	return out, nil
}

// messageOp is one UpdateMessageStatus waiting for the group commit.
type messageOp struct {
	result
	botID, id, status, providerID, reason string
	at                                    time.Time
	err                                   error
}

// UpdateMessageStatus moves a message forward through the group commit. A
// move that is not forward (a late or repeated callback) is ignored, except
// that a provider id the message lacks is still recorded.
func (s *Store) UpdateMessageStatus(ctx context.Context, u store.StatusUpdate) error {
	if err := check.MessageStatusUpdate(u); err != nil {
		return err
	}
	botID, id, status, providerID, reason, at := u.BotID, u.MessageID, u.Status, u.ProviderMessageID, u.Reason, u.At
	op := &messageOp{result: newResult(), botID: botID, id: id, status: status, providerID: providerID, reason: reason, at: orNow(at)}
	ctx, cancel := s.opCtx(ctx)
	defer cancel()
	if err := s.messageWriter.submit(ctx, op); err != nil {
		return err
	}
	return op.wait(ctx)
}

// models returns the op's writes: the forward move, and recording a missing
// provider id when the status does not move. Their filters exclude each
// other at any instant and the two commute, so one unordered bulk may hold
// both, and each op's message matches at most one of them.
func (op *messageOp) models() []mongo.WriteModel {
	errText := ""
	if op.status == store.MessageFailed {
		errText = op.reason
	}
	set := bson.D{{Key: "status", Value: op.status}, {Key: "error", Value: errText}, {Key: "updated_at", Value: op.at}}
	if op.providerID != "" {
		set = append(set, bson.E{Key: "provider_message_id", Value: op.providerID})
	}
	out := []mongo.WriteModel{mongo.NewUpdateOneModel().
		SetFilter(bson.D{{Key: "_id", Value: op.id}, {Key: "bot_id", Value: op.botID},
			{Key: "status", Value: bson.D{{Key: "$in", Value: advancesFrom(op.status)}}}}).
		SetUpdate(bson.D{{Key: "$set", Value: set}})}
	if op.providerID != "" {
		out = append(out, mongo.NewUpdateOneModel().
			SetFilter(bson.D{{Key: "_id", Value: op.id}, {Key: "bot_id", Value: op.botID}, {Key: "provider_message_id", Value: ""},
				{Key: "status", Value: bson.D{{Key: "$nin", Value: advancesFrom(op.status)}}}}).
			SetUpdate(bson.D{{Key: "$set", Value: bson.D{{Key: "provider_message_id", Value: op.providerID}}}}))
	}
	return out
}

func (s *Store) flushMessages(ctx context.Context, batch []*messageOp) {
	for _, round := range rounds(batch, func(op *messageOp) string { return op.id }) {
		s.writeMessageRound(ctx, round)
	}
	for _, op := range batch {
		op.complete(op.err)
	}
}

func (s *Store) writeMessageRound(ctx context.Context, ops []*messageOp) {
	var models []mongo.WriteModel
	for _, op := range ops {
		models = append(models, op.models()...)
	}
	res, err := s.bulkUpdate(ctx, s.messages, models)
	var bwe mongo.BulkWriteException
	switch {
	case err == nil && res.MatchedCount == int64(len(ops)):
		// Each op matches at most once: every op matched, so every
		// message exists.
		return
	case err != nil && (!errors.As(err, &bwe) || bwe.WriteConcernError != nil):
		for _, op := range ops {
			op.err = dbErr("update message status", err)
		}
		return
	case len(bwe.WriteErrors) > 0:
		// The writes are idempotent: retry each op alone for its own result.
		for _, op := range ops {
			op.err = s.updateMessageOne(ctx, op)
		}
		return
	}
	// Fewer matches than ops: either late callbacks (no move) or unknown
	// messages; only the latter are errors.
	exists, err := existingIDs(ctx, s.messages, ops, func(op *messageOp) (string, string) { return op.id, op.botID })
	for _, op := range ops {
		switch {
		case err != nil:
			op.err = dbErr("update message status", err)
		case !exists[op.id]:
			op.err = notFound("message", op.botID, op.id)
		}
	}
}

func (s *Store) updateMessageOne(ctx context.Context, op *messageOp) error {
	var matched int64
	for _, m := range op.models() {
		u := m.(*mongo.UpdateOneModel)
		unlock := s.lockUpdates()
		res, err := s.messages.UpdateOne(ctx, u.Filter, u.Update)
		unlock()
		if err != nil {
			return dbErr("update message status", err)
		}
		matched += res.MatchedCount
	}
	if matched > 0 {
		return nil
	}
	n, err := s.messages.CountDocuments(ctx, bson.D{{Key: "_id", Value: op.id}, {Key: "bot_id", Value: op.botID}})
	if err != nil {
		return dbErr("update message status", err)
	}
	if n == 0 {
		return notFound("message", op.botID, op.id)
	}
	return nil
}

// existingIDs returns which ops' (id, bot) records exist in coll.
func existingIDs[T any](ctx context.Context, coll *mongo.Collection, ops []T, key func(T) (id, bot string)) (map[string]bool, error) {
	ids := make([]string, len(ops))
	for i, op := range ops {
		ids[i], _ = key(op)
	}
	cur, err := coll.Find(ctx, bson.D{{Key: "_id", Value: bson.D{{Key: "$in", Value: ids}}}},
		options.Find().SetProjection(bson.D{{Key: "bot_id", Value: 1}}))
	if err != nil {
		return nil, err
	}
	var docs []struct {
		ID    string `bson:"_id"`
		BotID string `bson:"bot_id"`
	}
	if err := cur.All(ctx, &docs); err != nil {
		return nil, err
	}
	bots := make(map[string]string, len(docs))
	for _, d := range docs {
		bots[d.ID] = d.BotID
	}
	out := make(map[string]bool, len(ops))
	for _, op := range ops {
		id, bot := key(op)
		if b, ok := bots[id]; ok && b == bot {
			out[id] = true
		}
	}
	return out, nil
}

// sandboxDoc is one message the sandbox channel "delivered".
type sandboxDoc struct {
	MessageID string    `bson:"_id"`
	BotID     string    `bson:"bot_id"`
	RunID     string    `bson:"run_id"`
	To        string    `bson:"to"`
	Content   string    `bson:"content,omitempty"`
	Seq       int64     `bson:"seq"`
	CreatedAt time.Time `bson:"created_at"`
}

// AppendSandbox stores m once. Seq comes from a per-bot counter document
// ($inc, one atomic write), so it only grows. Appends of one bot are
// serialised inside this process so that readers polling with afterSeq never
// see a later seq before an earlier one; Flowgate runs the sandbox channel in
// one process.
func (s *Store) AppendSandbox(ctx context.Context, ms ...store.SandboxMessage) error {
	if len(ms) > store.MaxSentMessages {
		return &store.InvalidError{Field: "messages", Reason: fmt.Sprintf("more than %d", store.MaxSentMessages)}
	}
	for _, m := range ms {
		if err := check.SandboxMessage(m); err != nil {
			return err
		}
	}
	// One after another: each takes the next seq of its bot.
	for _, m := range ms {
		if err := s.appendSandbox(ctx, m); err != nil {
			return err
		}
	}
	return nil
}

func (s *Store) appendSandbox(ctx context.Context, m store.SandboxMessage) error {
	content, err := encodeRaw("content", m.Content, false)
	if err != nil {
		return err
	}
	d := sandboxDoc{MessageID: m.MessageID, BotID: m.BotID, RunID: m.RunID, To: m.To, Content: content, CreatedAt: orNow(m.CreatedAt)}
	if _, err := marshal(d, s.cfg.maxDocBytes); err != nil {
		return err
	}
	ctx, cancel := s.opCtx(ctx)
	defer cancel()
	h := fnv.New32a()
	h.Write([]byte(m.BotID))
	mu := &s.sandboxLocks[h.Sum32()%uint32(len(s.sandboxLocks))]
	mu.Lock()
	defer mu.Unlock()
	n, err := s.sandbox.CountDocuments(ctx, bson.D{{Key: "_id", Value: m.MessageID}})
	if err != nil {
		return dbErr("append sandbox", err)
	}
	if n > 0 {
		return nil
	}
	var c struct {
		Seq int64 `bson:"seq"`
	}
	unlock := s.lockUpdates()
	err = s.counters.FindOneAndUpdate(ctx, bson.D{{Key: "_id", Value: "sandbox:" + m.BotID}},
		bson.D{{Key: "$inc", Value: bson.D{{Key: "seq", Value: int64(1)}}}},
		options.FindOneAndUpdate().SetUpsert(true).SetReturnDocument(options.After)).Decode(&c)
	unlock()
	if err != nil {
		return dbErr("append sandbox", err)
	}
	d.Seq = c.Seq
	_, err = s.sandbox.InsertOne(ctx, d)
	if isDup(err) {
		return nil
	}
	return dbErr("append sandbox", err)
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
	filter := bson.D{{Key: "bot_id", Value: botID}}
	if to != "" {
		if err := checkText("to", to); err != nil {
			return nil, err
		}
		filter = append(filter, bson.E{Key: "to", Value: to})
	}
	filter = append(filter, bson.E{Key: "seq", Value: bson.D{{Key: "$gt", Value: afterSeq}}})
	ctx, cancel := s.opCtx(ctx)
	defer cancel()
	cur, err := s.sandbox.Find(ctx, filter, options.Find().SetSort(bson.D{{Key: "seq", Value: 1}}).SetLimit(int64(limit)))
	if err != nil {
		return nil, dbErr("list sandbox", err)
	}
	var docs []sandboxDoc
	if err := cur.All(ctx, &docs); err != nil {
		return nil, dbErr("list sandbox", err)
	}
	var out []store.SandboxMessage
	for _, d := range docs {
		out = append(out, store.SandboxMessage{MessageID: d.MessageID, BotID: d.BotID, RunID: d.RunID, To: d.To,
			Content: decodeRaw(d.Content), Seq: d.Seq, CreatedAt: d.CreatedAt})
	}
	return out, nil
}

// DeliverSandbox appends the messages, then records them as sent: two
// writes in that order (without multi-document transactions; a crash in
// between leaves transcript entries that the redelivered bundle records).
func (s *Store) DeliverSandbox(ctx context.Context, triggerID string, ms []store.SandboxMessage) error {
	for _, m := range ms {
		if err := check.SandboxMessage(m); err != nil {
			return err
		}
	}
	botID, sent, err := store.DeliverSandboxArgs(triggerID, ms)
	if err != nil {
		return err
	}
	if err := s.AppendSandbox(ctx, ms...); err != nil || len(ms) == 0 {
		return err
	}
	return s.MarkSent(ctx, botID, triggerID, sent)
}

// DeliverSandboxMany is DeliverSandbox for each delivery in turn (checked
// all first: bad input writes nothing); not atomic across them, as
// DeliverSandbox itself is not.
func (s *Store) DeliverSandboxMany(ctx context.Context, ds []store.SandboxDelivery) error {
	if _, err := check.SandboxDeliveries(ds); err != nil {
		return err
	}
	for _, d := range ds {
		if err := s.DeliverSandbox(ctx, d.TriggerID, d.Messages); err != nil {
			return err
		}
	}
	return nil
}

// MarkSent records the messages with conditional updates (queued → sent)
// in one unordered bulk write, then, for those it did not record (a
// delivery receipt came first), the provider id where the message has
// none, in a second (only when some were left); it adds the number
// recorded first to the trigger with one $inc. One message given twice
// goes in a later round of each, as a second write after the first. It was
// one or two round trips per message. Without multi-document transactions
// the writes are not atomic: a crash between them loses those messages'
// count (never doubles it).
func (s *Store) MarkSent(ctx context.Context, botID, triggerID string, ms []store.SentMessage) error {
	if err := store.MarkSentArgs(botID, triggerID, ms); err != nil {
		return err
	}
	if len(ms) == 0 {
		return nil
	}
	ctx, cancel := s.opCtx(ctx)
	defer cancel()
	sent := func(m store.SentMessage) mongo.WriteModel {
		set := bson.D{{Key: "status", Value: store.MessageSent}, {Key: "updated_at", Value: orNow(m.At)}}
		if m.ProviderMessageID != "" {
			set = append(set, bson.E{Key: "provider_message_id", Value: m.ProviderMessageID})
		}
		return mongo.NewUpdateOneModel().
			SetFilter(bson.D{{Key: "_id", Value: m.ID}, {Key: "bot_id", Value: botID}, {Key: "status", Value: store.MessageQueued}}).
			SetUpdate(bson.D{{Key: "$set", Value: set}})
	}
	// A message recorded by the first pass has its provider id by then:
	// the second pass's filter no longer matches it.
	providerID := func(m store.SentMessage) mongo.WriteModel {
		return mongo.NewUpdateOneModel().
			SetFilter(bson.D{{Key: "_id", Value: m.ID}, {Key: "bot_id", Value: botID}, {Key: "provider_message_id", Value: ""}}).
			SetUpdate(bson.D{{Key: "$set", Value: bson.D{{Key: "provider_message_id", Value: m.ProviderMessageID}}}})
	}
	first, err := s.markPass(ctx, ms, sent)
	if err != nil {
		return dbErr("mark sent", err)
	}
	var withID []store.SentMessage
	for _, m := range ms {
		if m.ProviderMessageID != "" {
			withID = append(withID, m)
		}
	}
	if first < int64(len(ms)) && len(withID) > 0 {
		n, err := s.markPass(ctx, withID, providerID)
		if err != nil {
			return dbErr("mark sent", err)
		}
		first += n
	}
	if first == 0 || triggerID == "" {
		return nil
	}
	err = s.IncrTriggerCounters(ctx, botID, triggerID, store.TriggerCounters{Sent: first})
	if errors.Is(err, store.ErrNotFound) {
		return nil
	}
	return err
}

// markPass runs model(m) for each message as unordered bulk writes, in
// rounds that keep two writes of one message in order, and returns how
// many documents they modified.
func (s *Store) markPass(ctx context.Context, ms []store.SentMessage, model func(store.SentMessage) mongo.WriteModel) (int64, error) {
	var n int64
	for _, round := range rounds(ms, func(m store.SentMessage) string { return m.ID }) {
		models := make([]mongo.WriteModel, len(round))
		for i, m := range round {
			models[i] = model(m)
		}
		res, err := s.bulkUpdate(ctx, s.messages, models)
		if err != nil {
			return n, err
		}
		n += res.ModifiedCount
	}
	return n, nil
}
