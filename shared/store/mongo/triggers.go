package mongo

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/flowgate/flowgate/shared/store"
)

type triggerDoc struct {
	ID             string      `bson:"_id"`
	BotID          string      `bson:"bot_id"`
	Source         string      `bson:"source"`
	Event          string      `bson:"event"`
	FlowID         string      `bson:"flow_id"`
	Channel        string      `bson:"channel"`
	Spec           string      `bson:"spec,omitempty"`
	IdempotencyKey string      `bson:"idempotency_key"`
	Status         string      `bson:"status"`
	Cursor         string      `bson:"cursor"`
	Counters       countersDoc `bson:"counters"`
	Version        int64       `bson:"version"`
	CreatedAt      time.Time   `bson:"created_at"`
	UpdatedAt      time.Time   `bson:"updated_at"`
}

// countersDoc holds a trigger's progress; skip reasons are keyed by escaped
// reason so that IncrTriggerCounters can $inc each one.
type countersDoc struct {
	Targeted    int64            `bson:"targeted"`
	RunsCreated int64            `bson:"runs_created"`
	Sent        int64            `bson:"sent"`
	Delivered   int64            `bson:"delivered"`
	Failed      int64            `bson:"failed"`
	Skipped     int64            `bson:"skipped"`
	SkipReasons map[string]int64 `bson:"skip_reasons,omitempty"`
}

func (d *triggerDoc) trigger() store.Trigger {
	c := d.Counters
	t := store.Trigger{
		ID: d.ID, BotID: d.BotID, Source: d.Source, Event: d.Event, FlowID: d.FlowID, Channel: d.Channel,
		Spec: decodeRaw(d.Spec), IdempotencyKey: d.IdempotencyKey, Status: d.Status, Cursor: d.Cursor,
		Counters: store.TriggerCounters{Targeted: c.Targeted, RunsCreated: c.RunsCreated, Sent: c.Sent,
			Delivered: c.Delivered, Failed: c.Failed, Skipped: c.Skipped},
		Version: d.Version, CreatedAt: d.CreatedAt, UpdatedAt: d.UpdatedAt,
	}
	if len(c.SkipReasons) > 0 {
		t.Counters.SkipReasons = make(map[string]int64, len(c.SkipReasons))
		for k, v := range c.SkipReasons {
			t.Counters.SkipReasons[unescapeKey(k)] = v
		}
	}
	return t
}

// checkTrigger checks t, fills its default status and encodes its spec.
func checkTrigger(t *store.Trigger) (spec string, err error) {
	if err := check.Trigger(t); err != nil {
		return "", err
	}
	return encodeRaw("spec", t.Spec, false)
}

// CreateTrigger returns the existing trigger (created=false) if the id exists.
func (s *Store) CreateTrigger(ctx context.Context, tr store.Trigger) (store.Trigger, bool, error) {
	tr, doc, err := s.triggerDoc(tr)
	if err != nil {
		return tr, false, err
	}
	return s.insertTrigger(ctx, tr, doc)
}

// CreateTriggers is CreateTrigger for each trigger, all checked first, in
// one unordered InsertMany (a round trip for the batch, where it was one
// per trigger). The ids that exist already (or come twice in the call)
// are read back with one find: a trigger of the same bot is answered as
// stored, one of another bot is ErrConflict at its index.
func (s *Store) CreateTriggers(ctx context.Context, ts []store.Trigger) ([]store.CreatedTrigger, error) {
	if err := store.CheckTriggerCount(len(ts)); err != nil {
		return nil, err
	}
	docs := make([]any, len(ts))
	out := make([]store.CreatedTrigger, len(ts))
	for i, tr := range ts {
		var err error
		if out[i].Trigger, docs[i], err = s.triggerDoc(tr); err != nil {
			return nil, fmt.Errorf("trigger %d: %w", i, err)
		}
		out[i].Created = true
	}
	if len(ts) == 0 {
		return out, nil
	}
	ctx, cancel := s.opCtx(ctx)
	defer cancel()
	_, err := s.triggers.InsertMany(ctx, docs, options.InsertMany().SetOrdered(false))
	if err == nil {
		return out, nil
	}
	var bwe mongo.BulkWriteException
	if !errors.As(err, &bwe) || bwe.WriteConcernError != nil {
		return nil, dbErr("create triggers", err)
	}
	var dups []int
	ids := make([]string, 0, len(bwe.WriteErrors))
	for _, we := range bwe.WriteErrors {
		if we.Code != codeDuplicateKey && we.Code != codeDuplicateKeyOld || we.Index < 0 || we.Index >= len(ts) {
			return nil, fmt.Errorf("trigger %d: %w", we.Index, dbErr("create triggers", mongo.WriteException{WriteErrors: []mongo.WriteError{we.WriteError}}))
		}
		dups = append(dups, we.Index)
		ids = append(ids, out[we.Index].Trigger.ID)
	}
	cur, err := s.triggers.Find(ctx, bson.D{{Key: "_id", Value: bson.D{{Key: "$in", Value: ids}}}})
	if err != nil {
		return nil, dbErr("create triggers", err)
	}
	var found []triggerDoc
	if err := cur.All(ctx, &found); err != nil {
		return nil, dbErr("create triggers", err)
	}
	byID := make(map[string]*triggerDoc, len(found))
	for i := range found {
		byID[found[i].ID] = &found[i]
	}
	for _, i := range dups {
		tr := out[i].Trigger
		d, ok := byID[tr.ID]
		switch {
		case !ok:
			// Deleted between the insert and the read: as CreateTrigger
			// would have found it, a failure to retry.
			return nil, fmt.Errorf("trigger %d: %w", i, dbErr("create triggers", fmt.Errorf("trigger %s vanished after a duplicate key", tr.ID)))
		case d.BotID != tr.BotID:
			out[i] = store.CreatedTrigger{Trigger: tr, Err: fmt.Errorf("%w: trigger id %s belongs to another bot", store.ErrConflict, tr.ID)}
		default:
			out[i] = store.CreatedTrigger{Trigger: d.trigger()}
		}
	}
	return out, nil
}

// triggerDoc checks a trigger to create and returns it as stored (its
// version, times and default status) with its document.
func (s *Store) triggerDoc(tr store.Trigger) (store.Trigger, bson.Raw, error) {
	spec, err := checkTrigger(&tr)
	if err != nil {
		return tr, nil, err
	}
	if err := check.SkipReasons(tr.Counters.SkipReasons); err != nil {
		return tr, nil, err
	}
	tr.Version = 1
	tr.CreatedAt = orNow(tr.CreatedAt)
	if tr.UpdatedAt.IsZero() {
		tr.UpdatedAt = tr.CreatedAt
	}
	tr.UpdatedAt = ms(tr.UpdatedAt)
	c := tr.Counters
	cd := countersDoc{Targeted: c.Targeted, RunsCreated: c.RunsCreated, Sent: c.Sent, Delivered: c.Delivered,
		Failed: c.Failed, Skipped: c.Skipped}
	if len(c.SkipReasons) > 0 {
		cd.SkipReasons = make(map[string]int64, len(c.SkipReasons))
		for k, v := range c.SkipReasons {
			cd.SkipReasons[escapeKey(k)] = v
		}
	}
	doc, err := marshal(triggerDoc{
		ID: tr.ID, BotID: tr.BotID, Source: tr.Source, Event: tr.Event, FlowID: tr.FlowID, Channel: tr.Channel,
		Spec: spec, IdempotencyKey: tr.IdempotencyKey, Status: tr.Status, Cursor: tr.Cursor, Counters: cd,
		Version: tr.Version, CreatedAt: tr.CreatedAt, UpdatedAt: tr.UpdatedAt,
	}, s.cfg.maxDocBytes)
	return tr, doc, err
}

// insertTrigger inserts a checked trigger's document, or returns the
// trigger stored under its id (created=false; ErrConflict when another
// bot's).
func (s *Store) insertTrigger(ctx context.Context, tr store.Trigger, doc bson.Raw) (store.Trigger, bool, error) {
	ctx, cancel := s.opCtx(ctx)
	defer cancel()
	_, err := s.triggers.InsertOne(ctx, doc)
	if err == nil {
		return tr, true, nil
	}
	if !isDup(err) {
		return tr, false, dbErr("create trigger", err)
	}
	var d triggerDoc
	if err := s.triggers.FindOne(ctx, bson.D{{Key: "_id", Value: tr.ID}}).Decode(&d); err != nil {
		return tr, false, dbErr("create trigger", err)
	}
	if d.BotID != tr.BotID {
		return tr, false, fmt.Errorf("%w: trigger id %s belongs to another bot", store.ErrConflict, tr.ID)
	}
	return d.trigger(), false, nil
}

// GetTrigger returns ErrNotFound for an unknown trigger.
func (s *Store) GetTrigger(ctx context.Context, botID, id string) (store.Trigger, error) {
	if err := store.FirstErr(store.CheckBotID("bot_id", botID), store.CheckID("id", id)); err != nil {
		return store.Trigger{}, err
	}
	ctx, cancel := s.opCtx(ctx)
	defer cancel()
	var d triggerDoc
	err := s.triggers.FindOne(ctx, bson.D{{Key: "_id", Value: id}, {Key: "bot_id", Value: botID}}).Decode(&d)
	if errors.Is(err, mongo.ErrNoDocuments) {
		return store.Trigger{}, notFound("trigger", botID, id)
	}
	if err != nil {
		return store.Trigger{}, dbErr("get trigger", err)
	}
	return d.trigger(), nil
}

// UpdateTrigger writes status, cursor, spec and the descriptive fields if
// Version matches (one findAndModify); counters are left to
// IncrTriggerCounters. It returns the stored trigger.
func (s *Store) UpdateTrigger(ctx context.Context, tr store.Trigger) (store.Trigger, error) {
	return s.updateTrigger(ctx, tr, nil)
}

// CheckpointTrigger is UpdateTrigger with the counters' delta, in one
// document update.
func (s *Store) CheckpointTrigger(ctx context.Context, tr store.Trigger, d store.TriggerCounters) (store.Trigger, error) {
	if err := check.SkipReasons(d.SkipReasons); err != nil {
		return tr, err
	}
	return s.updateTrigger(ctx, tr, &d)
}

// CheckpointTriggers writes the checkpoints as one unordered BulkWrite of
// version-checked updates per round (an id given twice goes in a later
// round, so that the second write finds the first), instead of one
// round trip per trigger: a dispatch batch checkpoints one trigger per
// run. Each update leaves a write mark on its trigger (writes, a ring
// keyed by version, as runs have): when some filters matched nothing, the
// triggers are read back once, and a trigger carrying a checkpoint's mark
// took that checkpoint; the others are stale or gone.
func (s *Store) CheckpointTriggers(ctx context.Context, cps []store.TriggerCheckpoint) ([]error, error) {
	if err := check.TriggerCheckpoints(cps); err != nil {
		return nil, err
	}
	if len(cps) == 0 {
		return nil, nil
	}
	ctx, cancel := s.opCtx(ctx)
	defer cancel()
	idx := make([]int, len(cps))
	for i := range idx {
		idx[i] = i
	}
	errs := make([]error, len(cps))
	for _, round := range rounds(idx, func(i int) string { return cps[i].ID }) {
		if err := s.checkpointRound(ctx, cps, round, errs); err != nil {
			return nil, err
		}
	}
	return errs, nil
}

func checkpointUpdate(cp store.TriggerCheckpoint, mark string) bson.D {
	update := bson.D{{Key: "$set", Value: bson.D{
		{Key: "status", Value: cp.Status}, {Key: "cursor", Value: cp.Cursor},
		{Key: "version", Value: cp.Version + 1}, {Key: "updated_at", Value: now()},
		{Key: "writes." + writeSlot(cp.Version+1), Value: mark},
	}}}
	if inc := counterIncs(cp.Delta); len(inc) > 0 {
		update = append(update, bson.E{Key: "$inc", Value: inc})
	}
	return update
}

// checkpointRound writes the checkpoints at round (distinct ids) and sets
// the refusals in errs.
func (s *Store) checkpointRound(ctx context.Context, cps []store.TriggerCheckpoint, round []int, errs []error) error {
	marks := make([]string, len(round))
	models := make([]mongo.WriteModel, len(round))
	for k, i := range round {
		cp := cps[i]
		marks[k] = strconv.FormatInt(cp.Version+1, 10) + "/" + nextToken()
		models[k] = mongo.NewUpdateOneModel().
			SetFilter(bson.D{{Key: "_id", Value: cp.ID}, {Key: "bot_id", Value: cp.BotID}, {Key: "version", Value: cp.Version}}).
			SetUpdate(checkpointUpdate(cp, marks[k]))
	}
	res, err := s.bulkUpdate(ctx, s.triggers, models)
	if err == nil && res.MatchedCount == int64(len(round)) {
		return nil
	}
	var bwe mongo.BulkWriteException
	if err != nil && (!errors.As(err, &bwe) || bwe.WriteConcernError != nil) {
		return dbErr("checkpoint triggers", err)
	}
	ids := make([]string, len(round))
	for k, i := range round {
		ids[k] = cps[i].ID
	}
	cur, err := s.triggers.Find(ctx, bson.D{{Key: "_id", Value: bson.D{{Key: "$in", Value: ids}}}},
		options.Find().SetProjection(bson.D{{Key: "bot_id", Value: 1}, {Key: "writes", Value: 1}}))
	if err != nil {
		return dbErr("checkpoint triggers", err)
	}
	var docs []triggerMarks
	if err := cur.All(ctx, &docs); err != nil {
		return dbErr("checkpoint triggers", err)
	}
	byID := make(map[string]triggerMarks, len(docs))
	for _, d := range docs {
		byID[d.ID] = d
	}
	for k, i := range round {
		cp := cps[i]
		d, ok := byID[cp.ID]
		switch {
		case !ok || d.BotID != cp.BotID:
			errs[i] = notFound("trigger", cp.BotID, cp.ID)
		case d.Writes[writeSlot(cp.Version+1)] == marks[k]:
		case len(bwe.WriteErrors) > 0:
			// A server may stop at a failed write (FerretDB v1 does) and
			// report it at the wrong index: retry the unconfirmed one alone.
			if errs[i], err = s.checkpointOne(ctx, cp); err != nil {
				return err
			}
		default:
			errs[i] = fmt.Errorf("%w: trigger %s is not at version %d", store.ErrVersionConflict, cp.ID, cp.Version)
		}
	}
	return nil
}

// triggerMarks is the part of a trigger checkpointRound reads back.
type triggerMarks struct {
	ID     string            `bson:"_id"`
	BotID  string            `bson:"bot_id"`
	Writes map[string]string `bson:"writes"`
}

// checkpointOne writes one checkpoint with its own update; refused is why
// it changed nothing (stale, or an unknown trigger).
func (s *Store) checkpointOne(ctx context.Context, cp store.TriggerCheckpoint) (refused, err error) {
	filter := bson.D{{Key: "_id", Value: cp.ID}, {Key: "bot_id", Value: cp.BotID}}
	unlock := s.lockUpdates()
	res, err := s.triggers.UpdateOne(ctx, append(filter, bson.E{Key: "version", Value: cp.Version}),
		checkpointUpdate(cp, strconv.FormatInt(cp.Version+1, 10)+"/"+nextToken()))
	unlock()
	if err != nil {
		return nil, dbErr("checkpoint triggers", err)
	}
	if res.MatchedCount == 1 {
		return nil, nil
	}
	n, err := s.triggers.CountDocuments(ctx, filter)
	if err != nil {
		return nil, dbErr("checkpoint triggers", err)
	}
	if n == 0 {
		return notFound("trigger", cp.BotID, cp.ID), nil
	}
	return fmt.Errorf("%w: trigger %s is not at version %d", store.ErrVersionConflict, cp.ID, cp.Version), nil
}

func (s *Store) updateTrigger(ctx context.Context, tr store.Trigger, delta *store.TriggerCounters) (store.Trigger, error) {
	spec, err := checkTrigger(&tr)
	if err != nil {
		return tr, err
	}
	set := bson.D{
		{Key: "source", Value: tr.Source}, {Key: "event", Value: tr.Event}, {Key: "flow_id", Value: tr.FlowID},
		{Key: "channel", Value: tr.Channel}, {Key: "idempotency_key", Value: tr.IdempotencyKey},
		{Key: "status", Value: tr.Status}, {Key: "cursor", Value: tr.Cursor},
		{Key: "version", Value: tr.Version + 1}, {Key: "updated_at", Value: now()},
	}
	update := bson.D{}
	if spec != "" {
		set = append(set, bson.E{Key: "spec", Value: spec})
	} else {
		update = append(update, bson.E{Key: "$unset", Value: bson.D{{Key: "spec", Value: ""}}})
	}
	update = append(bson.D{{Key: "$set", Value: set}}, update...)
	if delta != nil {
		if inc := counterIncs(*delta); len(inc) > 0 {
			update = append(update, bson.E{Key: "$inc", Value: inc})
		}
	}
	ctx, cancel := s.opCtx(ctx)
	defer cancel()
	var d triggerDoc
	unlock := s.lockUpdates()
	err = s.triggers.FindOneAndUpdate(ctx,
		bson.D{{Key: "_id", Value: tr.ID}, {Key: "bot_id", Value: tr.BotID}, {Key: "version", Value: tr.Version}},
		update, options.FindOneAndUpdate().SetReturnDocument(options.After)).Decode(&d)
	unlock()
	if err == nil {
		return d.trigger(), nil
	}
	if !errors.Is(err, mongo.ErrNoDocuments) {
		return tr, dbErr("update trigger", err)
	}
	n, err := s.triggers.CountDocuments(ctx, bson.D{{Key: "_id", Value: tr.ID}, {Key: "bot_id", Value: tr.BotID}})
	if err != nil {
		return tr, dbErr("update trigger", err)
	}
	if n == 0 {
		return tr, notFound("trigger", tr.BotID, tr.ID)
	}
	return tr, fmt.Errorf("%w: trigger %s is not at version %d", store.ErrVersionConflict, tr.ID, tr.Version)
}

// counterOp is one IncrTriggerCounters waiting for the group commit.
type counterOp struct {
	result
	botID, triggerID string
	delta            store.TriggerCounters
	at               time.Time
	err              error
}

// IncrTriggerCounters adds delta to the counters through the group commit;
// the increments of one trigger in a batch are summed into one $inc.
func (s *Store) IncrTriggerCounters(ctx context.Context, botID, triggerID string, d store.TriggerCounters) error {
	if err := store.FirstErr(store.CheckBotID("bot_id", botID), store.CheckID("id", triggerID), check.SkipReasons(d.SkipReasons)); err != nil {
		return err
	}
	op := &counterOp{result: newResult(), botID: botID, triggerID: triggerID, delta: d, at: now()}
	ctx, cancel := s.opCtx(ctx)
	defer cancel()
	if err := s.counterWriter.submit(ctx, op); err != nil {
		return err
	}
	return op.wait(ctx)
}

// counterIncs is the $inc of a counters' delta.
func counterIncs(d store.TriggerCounters) bson.D {
	var inc bson.D
	for _, f := range []struct {
		name string
		v    int64
	}{{"targeted", d.Targeted}, {"runs_created", d.RunsCreated}, {"sent", d.Sent},
		{"delivered", d.Delivered}, {"failed", d.Failed}, {"skipped", d.Skipped}} {
		if f.v != 0 {
			inc = append(inc, bson.E{Key: "counters." + f.name, Value: f.v})
		}
	}
	for r, v := range d.SkipReasons {
		if v != 0 {
			inc = append(inc, bson.E{Key: "counters.skip_reasons." + escapeKey(r), Value: v})
		}
	}
	return inc
}

func (s *Store) flushCounters(ctx context.Context, batch []*counterOp) {
	type sum struct {
		botID, id string
		inc       map[string]int64
		at        time.Time
		ops       []*counterOp
	}
	var order []*sum
	byKey := map[string]*sum{}
	for _, op := range batch {
		k := op.botID + "\x00" + op.triggerID
		t := byKey[k]
		if t == nil {
			t = &sum{botID: op.botID, id: op.triggerID, inc: map[string]int64{}}
			byKey[k] = t
			order = append(order, t)
		}
		d := op.delta
		for f, v := range map[string]int64{"targeted": d.Targeted, "runs_created": d.RunsCreated, "sent": d.Sent,
			"delivered": d.Delivered, "failed": d.Failed, "skipped": d.Skipped} {
			if v != 0 {
				t.inc["counters."+f] += v
			}
		}
		for r, v := range d.SkipReasons {
			t.inc["counters.skip_reasons."+escapeKey(r)] += v
		}
		if op.at.After(t.at) {
			t.at = op.at
		}
		t.ops = append(t.ops, op)
	}
	models := make([]mongo.WriteModel, len(order))
	for i, t := range order {
		inc := bson.D{}
		for k, v := range t.inc {
			inc = append(inc, bson.E{Key: k, Value: v})
		}
		update := bson.D{{Key: "$set", Value: bson.D{{Key: "updated_at", Value: t.at}}}}
		if len(inc) > 0 {
			update = append(update, bson.E{Key: "$inc", Value: inc})
		}
		models[i] = mongo.NewUpdateOneModel().
			SetFilter(bson.D{{Key: "_id", Value: t.id}, {Key: "bot_id", Value: t.botID}}).
			SetUpdate(update)
	}
	res, err := s.bulkUpdate(ctx, s.triggers, models)
	fail := func(err error) {
		for _, op := range batch {
			op.complete(err)
		}
	}
	if err != nil {
		// $inc is not idempotent, so nothing is retried: the caller learns
		// that the outcome is unknown.
		fail(dbErr("increment trigger counters", err))
		return
	}
	if res.MatchedCount < int64(len(order)) {
		exists, err := existingIDs(ctx, s.triggers, order, func(t *sum) (string, string) { return t.id, t.botID })
		if err != nil {
			fail(dbErr("increment trigger counters", err))
			return
		}
		for _, t := range order {
			if !exists[t.id] {
				for _, op := range t.ops {
					op.err = notFound("trigger", t.botID, t.id)
				}
			}
		}
	}
	for _, op := range batch {
		op.complete(op.err)
	}
}
