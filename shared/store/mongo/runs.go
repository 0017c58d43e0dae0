package mongo

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/flowgate/flowgate/shared/store"
)

// runDoc is a run as stored in the runs collection.
type runDoc struct {
	ID          string     `bson:"_id"`
	BotID       string     `bson:"bot_id"`
	TriggerID   string     `bson:"trigger_id"`
	FlowID      string     `bson:"flow_id"`
	FlowVersion int        `bson:"flow_version"`
	ContactID   string     `bson:"contact_id"`
	Channel     string     `bson:"channel"`
	Status      string     `bson:"status"`
	State       string     `bson:"state,omitempty"`
	Data        string     `bson:"data,omitempty"`
	WaitUntil   *time.Time `bson:"wait_until,omitempty"`
	Error       string     `bson:"error"`
	Version     int64      `bson:"version"`
	CreatedAt   time.Time  `bson:"created_at"`
	UpdatedAt   time.Time  `bson:"updated_at"`
	// RunKey with ContactID is unique: "t:<trigger id>" makes one run per
	// trigger + contact, and a run without a trigger is keyed "r:<run id>"
	// (a partial unique index would say this directly, but FerretDB v1 has
	// none). The same index finds a contact's runs.
	RunKey string `bson:"run_key"`
	// ExpireAt is set when the run becomes final and a retention is set;
	// the TTL index deletes the run then.
	ExpireAt *time.Time `bson:"expire_at,omitempty"`
	// Writes is a ring of the last write marks ("version/token"), keyed by
	// version modulo writeRing, that tells a group-commit caller whether its
	// own versioned update was the one applied.
	Writes map[string]string `bson:"writes,omitempty"`
	// Claim is a step's claim on the run (ClaimRuns), until its next write.
	Claim *claimDoc `bson:"claim,omitempty"`
}

type claimDoc struct {
	By    string    `bson:"by"`
	Until time.Time `bson:"until"`
	// Version is the run's version claimed: a write that did not end the
	// claim outdates it.
	Version int64 `bson:"version"`
}

const writeRing = 8

func runKey(r store.Run) string {
	if r.TriggerID == "" {
		return "r:" + r.ID
	}
	return "t:" + r.TriggerID
}

func (d *runDoc) run() (store.Run, error) {
	data, err := decodeMap(d.Data)
	return store.Run{
		ID: d.ID, BotID: d.BotID, TriggerID: d.TriggerID, FlowID: d.FlowID, FlowVersion: d.FlowVersion,
		ContactID: d.ContactID, Channel: d.Channel, Status: d.Status, State: decodeRaw(d.State), Data: data,
		WaitUntil: d.WaitUntil, Error: d.Error, Version: d.Version, CreatedAt: d.CreatedAt, UpdatedAt: d.UpdatedAt,
	}, err
}

// encodedRun holds a run's JSON fields, encoded outside the write path.
type encodedRun struct{ state, data string }

// prepareRun validates r, fills defaults and encodes its JSON fields; create
// says whether r is about to be created.
func prepareRun(r *store.Run, create bool) (encodedRun, error) {
	var e encodedRun
	err := check.PrepareRun(r, create, now, ms)
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

func (s *Store) expireAt(status string, updated time.Time) *time.Time {
	if s.cfg.retention <= 0 || !store.RunFinal(status) {
		return nil
	}
	t := ms(updated.Add(s.cfg.retention))
	return &t
}

func (s *Store) newRunDoc(r store.Run, e encodedRun) runDoc {
	return runDoc{
		ID: r.ID, BotID: r.BotID, TriggerID: r.TriggerID, FlowID: r.FlowID, FlowVersion: r.FlowVersion,
		ContactID: r.ContactID, Channel: r.Channel, Status: r.Status, State: e.state, Data: e.data,
		WaitUntil: r.WaitUntil, Error: r.Error, Version: r.Version, CreatedAt: r.CreatedAt, UpdatedAt: r.UpdatedAt,
		RunKey: runKey(r), ExpireAt: s.expireAt(r.Status, r.UpdatedAt),
	}
}

// existingRuns finds the runs that hold the ids or trigger + contact keys of
// rs, for creates that hit a unique index.
func (s *Store) existingRuns(ctx context.Context, rs []store.Run) (byID, byKey map[string]runDoc, err error) {
	ids := make([]string, 0, len(rs))
	contacts := make([]string, 0, len(rs))
	keys := make([]string, 0, len(rs))
	for _, r := range rs {
		ids = append(ids, r.ID)
		contacts = append(contacts, r.ContactID)
		keys = append(keys, runKey(r))
	}
	// The second branch selects a superset of the (contact, key) pairs;
	// resolveExisting matches exact pairs.
	filter := bson.D{{Key: "$or", Value: bson.A{
		bson.D{{Key: "_id", Value: bson.D{{Key: "$in", Value: ids}}}},
		bson.D{{Key: "contact_id", Value: bson.D{{Key: "$in", Value: contacts}}}, {Key: "run_key", Value: bson.D{{Key: "$in", Value: keys}}}},
	}}}
	cur, err := s.runs.Find(ctx, filter)
	if err != nil {
		return nil, nil, err
	}
	var docs []runDoc
	if err := cur.All(ctx, &docs); err != nil {
		return nil, nil, err
	}
	byID = make(map[string]runDoc, len(docs))
	byKey = make(map[string]runDoc, len(docs))
	for _, d := range docs {
		byID[d.ID] = d
		byKey[d.ContactID+"\x00"+d.RunKey] = d
	}
	return byID, byKey, nil
}

// resolveExisting returns the run that made r's create a duplicate.
func resolveExisting(r store.Run, byID, byKey map[string]runDoc) (store.Run, error) {
	if d, ok := byID[r.ID]; ok {
		if d.BotID != r.BotID {
			return r, fmt.Errorf("%w: run id %s belongs to another bot", store.ErrConflict, r.ID)
		}
		return d.run()
	}
	if d, ok := byKey[r.ContactID+"\x00"+runKey(r)]; ok && r.TriggerID != "" {
		if d.BotID != r.BotID {
			return r, fmt.Errorf("%w: trigger %s belongs to another bot", store.ErrConflict, r.TriggerID)
		}
		return d.run()
	}
	return r, fmt.Errorf("%w: run %s", store.ErrConflict, r.ID)
}

// CreateRun returns the existing run (created=false) if one has the same id
// or the same trigger + contact.
func (s *Store) CreateRun(ctx context.Context, r store.Run) (store.Run, bool, error) {
	e, err := prepareRun(&r, true)
	if err != nil {
		return r, false, err
	}
	doc, err := marshal(s.newRunDoc(r, e), s.cfg.maxDocBytes)
	if err != nil {
		return r, false, err
	}
	ctx, cancel := s.opCtx(ctx)
	defer cancel()
	_, err = s.runs.InsertOne(ctx, doc)
	if err == nil {
		outs, cs := []store.Run{r}, []bool{true}
		if err := s.dropRunsOfDeleted(ctx, []store.Run{r}, outs, cs); err != nil {
			return r, false, dbErr("create run", err)
		}
		return outs[0], cs[0], nil
	}
	if !isDup(err) {
		return r, false, dbErr("create run", err)
	}
	byID, byKey, err := s.existingRuns(ctx, []store.Run{r})
	if err != nil {
		return r, false, dbErr("create run", err)
	}
	out, err := resolveExisting(r, byID, byKey)
	if err != nil {
		return r, false, dbErr("create run", err)
	}
	return out, false, nil
}

// CreateRuns inserts many runs with one unordered InsertMany, each
// idempotent as in CreateRun. An invalid run fails the whole call before
// anything is written. Without transactions the call is not all-or-none: if
// it fails part-way, the runs already inserted stay and a retry returns them
// with created=false.
func (s *Store) CreateRuns(ctx context.Context, rs []store.Run) ([]store.Run, []bool, error) {
	in := make([]store.Run, len(rs))
	copy(in, rs)
	docs := make([]any, len(in))
	for i := range in {
		e, err := prepareRun(&in[i], true)
		if err != nil {
			return nil, nil, fmt.Errorf("run %d: %w", i, err)
		}
		if docs[i], err = marshal(s.newRunDoc(in[i], e), s.cfg.maxDocBytes); err != nil {
			return nil, nil, fmt.Errorf("run %d: %w", i, err)
		}
	}
	if len(in) == 0 {
		return nil, nil, nil
	}
	ctx, cancel := s.opCtx(ctx)
	defer cancel()
	created := make([]bool, len(in))
	for i := range created {
		created[i] = true
	}
	_, err := s.runs.InsertMany(ctx, docs, options.InsertMany().SetOrdered(false))
	if err == nil {
		return s.createdRuns(ctx, in, created)
	}
	var bwe mongo.BulkWriteException
	if !errors.As(err, &bwe) || bwe.WriteConcernError != nil {
		return nil, nil, dbErr("create runs", err)
	}
	var dups []int
	for _, we := range bwe.WriteErrors {
		if we.Code != codeDuplicateKey && we.Code != codeDuplicateKeyOld {
			return nil, nil, fmt.Errorf("run %d: %w", we.Index, dbErr("create runs", mongo.WriteException{WriteErrors: []mongo.WriteError{we.WriteError}}))
		}
		dups = append(dups, we.Index)
	}
	dupRuns := make([]store.Run, len(dups))
	for j, i := range dups {
		dupRuns[j] = in[i]
	}
	byID, byKey, err := s.existingRuns(ctx, dupRuns)
	if err != nil {
		return nil, nil, dbErr("create runs", err)
	}
	for _, i := range dups {
		ex, err := resolveExisting(in[i], byID, byKey)
		if err != nil {
			return nil, nil, fmt.Errorf("run %d: %w", i, dbErr("create runs", err))
		}
		in[i], created[i] = ex, false
	}
	return s.createdRuns(ctx, in, created)
}

// createdRuns drops the runs of contacts deleted meanwhile (tombstones.go)
// and returns the result.
func (s *Store) createdRuns(ctx context.Context, in []store.Run, created []bool) ([]store.Run, []bool, error) {
	rs := make([]store.Run, len(in))
	copy(rs, in)
	if err := s.dropRunsOfDeleted(ctx, rs, in, created); err != nil {
		return nil, nil, dbErr("create runs", err)
	}
	return in, created, nil
}

// GetRun returns ErrNotFound for an unknown run.
func (s *Store) GetRun(ctx context.Context, botID, id string) (store.Run, error) {
	if err := store.FirstErr(store.CheckBotID("bot_id", botID), store.CheckID("id", id)); err != nil {
		return store.Run{}, err
	}
	ctx, cancel := s.opCtx(ctx)
	defer cancel()
	var d runDoc
	err := s.runs.FindOne(ctx, bson.D{{Key: "_id", Value: id}, {Key: "bot_id", Value: botID}}).Decode(&d)
	if errors.Is(err, mongo.ErrNoDocuments) {
		return store.Run{}, notFound("run", botID, id)
	}
	if err != nil {
		return store.Run{}, dbErr("get run", err)
	}
	r, err := d.run()
	return r, dbErr("get run", err)
}

// runOp is one UpdateRun waiting for the group commit.
type runOp struct {
	result
	run    store.Run // as it will be stored (Version is the expected one)
	update bson.Raw
	mark   string
	err    error
}

var writeTokens atomic.Uint64

// writeToken is unique per process start and write.
var tokenPrefix = strconv.FormatInt(time.Now().UnixNano(), 36)

func nextToken() string { return tokenPrefix + "." + strconv.FormatUint(writeTokens.Add(1), 36) }

func writeSlot(version int64) string { return strconv.FormatInt(version%writeRing, 10) }

// UpdateRun writes the mutable fields of r (status, state, data, wait_until,
// error, and flow and channel when set) if r.Version matches, through the
// group commit. The keys (bot, trigger, contact) and CreatedAt never change.
func (s *Store) UpdateRun(ctx context.Context, r store.Run) (store.Run, error) {
	e, err := prepareRun(&r, false)
	if err != nil {
		return r, err
	}
	next := r.Version + 1
	op := &runOp{result: newResult(), run: r, mark: strconv.FormatInt(next, 10) + "/" + nextToken()}
	set := bson.D{
		{Key: "status", Value: r.Status},
		{Key: "error", Value: r.Error},
		{Key: "version", Value: next},
		{Key: "updated_at", Value: r.UpdatedAt},
		{Key: "writes." + writeSlot(next), Value: op.mark},
	}
	unset := bson.D{{Key: "claim", Value: ""}} // a write ends the step's claim
	optional := func(key string, v any, present bool) {
		if present {
			set = append(set, bson.E{Key: key, Value: v})
		} else {
			unset = append(unset, bson.E{Key: key, Value: ""})
		}
	}
	optional("state", e.state, e.state != "")
	optional("data", e.data, e.data != "")
	optional("wait_until", r.WaitUntil, r.WaitUntil != nil)
	exp := s.expireAt(r.Status, r.UpdatedAt)
	optional("expire_at", exp, exp != nil)
	if r.FlowID != "" {
		set = append(set, bson.E{Key: "flow_id", Value: r.FlowID}, bson.E{Key: "flow_version", Value: r.FlowVersion})
	}
	if r.Channel != "" {
		set = append(set, bson.E{Key: "channel", Value: r.Channel})
	}
	update := bson.D{{Key: "$set", Value: set}, {Key: "$unset", Value: unset}}
	if op.update, err = marshal(update, s.cfg.maxDocBytes); err != nil {
		return r, err
	}
	ctx, cancel := s.opCtx(ctx)
	defer cancel()
	if err := s.runWriter.submit(ctx, op); err != nil {
		return r, err
	}
	if err := op.wait(ctx); err != nil {
		return r, err
	}
	r.Version = next
	return r, nil
}

// UpdateRuns writes the runs through the same batched writer as UpdateRun:
// every update is queued at once, so they share BulkWrite rounds.
func (s *Store) UpdateRuns(ctx context.Context, rs []store.Run) ([]int, error) {
	for i := range rs {
		r := rs[i]
		if _, err := prepareRun(&r, false); err != nil {
			return nil, fmt.Errorf("run %d: %w", i, err)
		}
	}
	errs := make([]error, len(rs))
	var wg sync.WaitGroup
	sem := make(chan struct{}, 256)
	for i := range rs {
		sem <- struct{}{}
		wg.Add(1)
		go func(i int) {
			defer func() { <-sem; wg.Done() }()
			_, errs[i] = s.UpdateRun(ctx, rs[i])
		}(i)
	}
	wg.Wait()
	var conflicts []int
	for i, err := range errs {
		switch {
		case err == nil:
		case errors.Is(err, store.ErrVersionConflict), errors.Is(err, store.ErrNotFound):
			conflicts = append(conflicts, i)
		default:
			return nil, err
		}
	}
	return conflicts, nil
}

func (op *runOp) filter() bson.D {
	return bson.D{{Key: "_id", Value: op.run.ID}, {Key: "bot_id", Value: op.run.BotID}, {Key: "version", Value: op.run.Version}}
}

// flushRuns writes a batch of run updates, one unordered BulkWrite per round.
func (s *Store) flushRuns(ctx context.Context, batch []*runOp) {
	for _, round := range rounds(batch, func(op *runOp) string { return op.run.ID }) {
		s.writeRunRound(ctx, round)
	}
	var final []string
	for _, op := range batch {
		if op.err == nil && s.expireAt(op.run.Status, op.run.UpdatedAt) != nil {
			final = append(final, op.run.ID)
		}
	}
	if len(final) > 0 && s.ttl {
		s.expireMessagesOf(ctx, final)
	}
	for _, op := range batch {
		op.complete(op.err)
	}
}

func (s *Store) writeRunRound(ctx context.Context, ops []*runOp) {
	models := make([]mongo.WriteModel, len(ops))
	for i, op := range ops {
		models[i] = mongo.NewUpdateOneModel().SetFilter(op.filter()).SetUpdate(op.update)
	}
	res, err := s.bulkUpdate(ctx, s.runs, models)
	if err == nil && res.MatchedCount == int64(len(ops)) {
		return
	}
	var bwe mongo.BulkWriteException
	if err != nil && (!errors.As(err, &bwe) || bwe.WriteConcernError != nil) {
		for _, op := range ops {
			op.err = dbErr("update run", err)
		}
		return
	}
	// Some filters matched nothing (or some writes failed): read the runs
	// back; a run carrying an op's write mark took that op's write.
	marks, err := s.runMarks(ctx, ops)
	if err != nil {
		for _, op := range ops {
			op.err = dbErr("update run", err)
		}
		return
	}
	for _, op := range ops {
		m, ok := marks[op.run.ID]
		switch {
		case !ok || m.BotID != op.run.BotID:
			op.err = notFound("run", op.run.BotID, op.run.ID)
		case m.Writes[writeSlot(op.run.Version+1)] == op.mark:
			op.err = nil
		case len(bwe.WriteErrors) > 0:
			// A server may stop at a failed write (FerretDB v1 does) and
			// report it at the wrong index: retry the unconfirmed op alone.
			op.err = s.updateRunOne(ctx, op)
		default:
			op.err = fmt.Errorf("%w: run %s is not at version %d", store.ErrVersionConflict, op.run.ID, op.run.Version)
		}
	}
}

// ClaimRuns takes the claims in one unordered BulkWrite of conditional
// updates; when some matched nothing, the claimed runs are read back: a run
// at the claim's version that carries this claimant's claim was taken.
func (s *Store) ClaimRuns(ctx context.Context, claims []store.RunClaim, by string, now, until time.Time) ([]store.ClaimRefusal, error) {
	if err := store.CheckClaims(claims, by, now, until); err != nil {
		return nil, err
	}
	if len(claims) == 0 {
		return nil, nil
	}
	ctx, cancel := s.opCtx(ctx)
	defer cancel()
	now, until = now.UTC(), until.UTC()
	models := make([]mongo.WriteModel, len(claims))
	for i, c := range claims {
		set := bson.D{{Key: "$set", Value: bson.D{{Key: "claim", Value: claimDoc{By: by, Until: until, Version: c.Version}}}}}
		models[i] = mongo.NewUpdateOneModel().SetUpdate(set).SetFilter(bson.D{
			{Key: "_id", Value: c.RunID}, {Key: "bot_id", Value: c.BotID}, {Key: "version", Value: c.Version},
			{Key: "$or", Value: bson.A{
				bson.D{{Key: "claim", Value: bson.D{{Key: "$exists", Value: false}}}},
				bson.D{{Key: "claim.until", Value: bson.D{{Key: "$lte", Value: now}}}},
				bson.D{{Key: "claim.by", Value: by}},
				bson.D{{Key: "claim.version", Value: bson.D{{Key: "$ne", Value: c.Version}}}},
			}},
		})
	}
	res, err := s.bulkUpdate(ctx, s.runs, models)
	if err == nil && res.MatchedCount == int64(len(claims)) {
		return nil, nil
	}
	var bwe mongo.BulkWriteException
	if err != nil && (!errors.As(err, &bwe) || bwe.WriteConcernError != nil) {
		return nil, dbErr("claim runs", err)
	}
	ids := make([]string, len(claims))
	for i, c := range claims {
		ids[i] = c.RunID
	}
	cur, err := s.runs.Find(ctx, bson.D{{Key: "_id", Value: bson.D{{Key: "$in", Value: ids}}}},
		options.Find().SetProjection(bson.D{{Key: "bot_id", Value: 1}, {Key: "version", Value: 1}, {Key: "claim", Value: 1}}))
	if err != nil {
		return nil, dbErr("claim runs", err)
	}
	var docs []runDoc
	if err := cur.All(ctx, &docs); err != nil {
		return nil, dbErr("claim runs", err)
	}
	byID := make(map[string]runDoc, len(docs))
	for _, d := range docs {
		byID[d.ID] = d
	}
	var refused []store.ClaimRefusal
	for i, c := range claims {
		d, ok := byID[c.RunID]
		switch {
		case !ok || d.BotID != c.BotID:
			refused = append(refused, store.ClaimRefusal{Index: i, Gone: true})
		case d.Version != c.Version:
			refused = append(refused, store.ClaimRefusal{Index: i})
		case d.Claim != nil && d.Claim.By == by && d.Claim.Version == c.Version:
			// taken (or renewed) by this call
		case d.Claim != nil && d.Claim.Version == c.Version && d.Claim.Until.After(now):
			refused = append(refused, store.ClaimRefusal{Index: i, HeldUntil: d.Claim.Until.UTC()})
		default:
			// A write that failed on its own (FerretDB may stop at one):
			// the run was free, so the claimant may try again.
			return nil, dbErr("claim runs", errors.Join(errClaimUnconfirmed, err))
		}
	}
	return refused, nil
}

// errClaimUnconfirmed: a claim on a free run was not taken, for a reason
// the bulk write did not say.
var errClaimUnconfirmed = errors.New("a claim on a free run was not taken")

func (s *Store) runMarks(ctx context.Context, ops []*runOp) (map[string]runDoc, error) {
	ids := make([]string, len(ops))
	for i, op := range ops {
		ids[i] = op.run.ID
	}
	cur, err := s.runs.Find(ctx, bson.D{{Key: "_id", Value: bson.D{{Key: "$in", Value: ids}}}},
		options.Find().SetProjection(bson.D{{Key: "bot_id", Value: 1}, {Key: "version", Value: 1}, {Key: "writes", Value: 1}}))
	if err != nil {
		return nil, err
	}
	var docs []runDoc
	if err := cur.All(ctx, &docs); err != nil {
		return nil, err
	}
	out := make(map[string]runDoc, len(docs))
	for _, d := range docs {
		out[d.ID] = d
	}
	return out, nil
}

func (s *Store) updateRunOne(ctx context.Context, op *runOp) error {
	unlock := s.lockUpdates()
	res, err := s.runs.UpdateOne(ctx, op.filter(), op.update)
	unlock()
	if err != nil {
		return dbErr("update run", err)
	}
	if res.MatchedCount == 1 {
		return nil
	}
	n, err := s.runs.CountDocuments(ctx, bson.D{{Key: "_id", Value: op.run.ID}, {Key: "bot_id", Value: op.run.BotID}})
	if err != nil {
		return dbErr("update run", err)
	}
	if n == 0 {
		return notFound("run", op.run.BotID, op.run.ID)
	}
	return fmt.Errorf("%w: run %s is not at version %d", store.ErrVersionConflict, op.run.ID, op.run.Version)
}

// expireMessagesOf gives the messages of runs that just became final the
// runs' expiry, so that the TTL index deletes them with their runs. A
// failure is logged: the retention sweeper deletes them later anyway.
func (s *Store) expireMessagesOf(ctx context.Context, runIDs []string) {
	at := ms(time.Now().Add(s.cfg.retention))
	unlock := s.lockUpdates()
	_, err := s.messages.UpdateMany(ctx, bson.D{{Key: "run_id", Value: bson.D{{Key: "$in", Value: runIDs}}}},
		bson.D{{Key: "$set", Value: bson.D{{Key: "expire_at", Value: at}}}})
	unlock()
	if err != nil {
		s.cfg.logger.Warn("mongo store: setting message expiry failed", "err", err)
	}
}

// ListRuns returns a page of runs, newest first (CreatedAt, then ID).
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
	filter := bson.D{{Key: "bot_id", Value: f.BotID}}
	for _, c := range []struct{ field, v string }{
		{"status", f.Status}, {"contact_id", f.ContactID}, {"trigger_id", f.TriggerID}, {"flow_id", f.FlowID},
	} {
		if c.v != "" {
			if err := checkText(c.field, c.v); err != nil {
				return nil, "", err
			}
			filter = append(filter, bson.E{Key: c.field, Value: c.v})
		}
	}
	created := bson.D{}
	if !f.Since.IsZero() {
		if err := store.CheckTime("since", f.Since); err != nil {
			return nil, "", err
		}
		created = append(created, bson.E{Key: "$gte", Value: ms(f.Since)})
	}
	if !f.Until.IsZero() {
		if err := store.CheckTime("until", f.Until); err != nil {
			return nil, "", err
		}
		created = append(created, bson.E{Key: "$lt", Value: ms(f.Until)})
	}
	if len(created) > 0 {
		filter = append(filter, bson.E{Key: "created_at", Value: created})
	}
	if f.Cursor != "" {
		ts, id, err := store.DecodeKeysetCursor(f.Cursor)
		if err != nil {
			return nil, "", err
		}
		filter = append(filter, bson.E{Key: "$or", Value: bson.A{
			bson.D{{Key: "created_at", Value: bson.D{{Key: "$lt", Value: ts}}}},
			bson.D{{Key: "created_at", Value: ts}, {Key: "_id", Value: bson.D{{Key: "$lt", Value: id}}}},
		}})
	}
	ctx, cancel := s.opCtx(ctx)
	defer cancel()
	cur, err := s.runs.Find(ctx, filter, options.Find().
		SetSort(bson.D{{Key: "created_at", Value: -1}, {Key: "_id", Value: -1}}).
		SetLimit(int64(limit+1)).
		SetProjection(bson.D{{Key: "writes", Value: 0}}))
	if err != nil {
		return nil, "", dbErr("list runs", err)
	}
	out, err := decodeRuns(ctx, cur)
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

func decodeRuns(ctx context.Context, cur *mongo.Cursor) ([]store.Run, error) {
	defer cur.Close(ctx)
	var out []store.Run
	for cur.Next(ctx) {
		var d runDoc
		if err := cur.Decode(&d); err != nil {
			return nil, err
		}
		r, err := d.run()
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, cur.Err()
}

// WaitingRuns returns the waiting runs of contactIDs, found through the
// contact_key_unique index with one query.
func (s *Store) WaitingRuns(ctx context.Context, botID string, contactIDs []string) ([]store.Run, error) {
	if err := store.ContactIDsArgs(botID, contactIDs); err != nil {
		return nil, err
	}
	if len(contactIDs) == 0 {
		return nil, nil
	}
	ctx, cancel := s.opCtx(ctx)
	defer cancel()
	cur, err := s.runs.Find(ctx,
		bson.D{{Key: "contact_id", Value: bson.D{{Key: "$in", Value: contactIDs}}},
			{Key: "bot_id", Value: botID}, {Key: "status", Value: store.RunWaiting}},
		options.Find().SetProjection(bson.D{{Key: "writes", Value: 0}}))
	if err != nil {
		return nil, dbErr("waiting runs", err)
	}
	out, err := decodeRuns(ctx, cur)
	return out, dbErr("waiting runs", err)
}

// DueRuns returns waiting runs whose timer is due, earliest first. Times
// compare at millisecond precision.
func (s *Store) DueRuns(ctx context.Context, at time.Time, limit int) ([]store.Run, error) {
	if err := store.CheckTime("now", at); err != nil {
		return nil, err
	}
	limit, err := store.CheckLimit(limit, 100, 10000)
	if err != nil {
		return nil, err
	}
	ctx, cancel := s.opCtx(ctx)
	defer cancel()
	cur, err := s.runs.Find(ctx,
		bson.D{{Key: "status", Value: store.RunWaiting}, {Key: "wait_until", Value: bson.D{{Key: "$lte", Value: ms(at)}}}},
		options.Find().
			SetSort(bson.D{{Key: "wait_until", Value: 1}, {Key: "_id", Value: 1}}).
			SetLimit(int64(limit)).
			SetProjection(bson.D{{Key: "writes", Value: 0}}))
	if err != nil {
		return nil, dbErr("due runs", err)
	}
	out, err := decodeRuns(ctx, cur)
	return out, dbErr("due runs", err)
}
