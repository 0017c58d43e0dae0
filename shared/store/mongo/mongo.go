// Package mongo is the production store adapter: the store port on MongoDB
// (go.mongodb.org/mongo-driver/v2). Every state change is one single-document
// atomic write, guarded by unique indexes (idempotent creates) and a version
// field (optimistic concurrency); no multi-document transactions are used, so
// a standalone server works as well as a replica set. Hot-path writes (run
// updates, message status updates, trigger counters) are group-committed as
// unordered bulk writes. Tests run it against FerretDB v1 (see package ferret).
package mongo

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
	"go.mongodb.org/mongo-driver/v2/mongo/readpref"
	"go.mongodb.org/mongo-driver/v2/x/mongo/driver/connstring"

	"github.com/flowgate/flowgate/shared/store"
)

// DefaultDatabase is used when neither Open nor the URI names a database.
const DefaultDatabase = "flowgate"

// Collection names.
const (
	colBots     = "bots"
	colAPIKeys  = "api_keys"
	colFlows    = "flows"
	colEvents   = "events"
	colContacts = "contacts"
	colTriggers = "triggers"
	colRuns     = "runs"
	colMessages = "messages"
	colSandbox  = "sandbox"
	colCounters = "counters"
)

// Store is the MongoDB implementation of store.Store.
type Store struct {
	client *mongo.Client
	db     *mongo.Database
	cfg    config

	bots, apiKeys, flows, events, contacts, triggers, runs, messages, sandbox, counters *mongo.Collection

	// ttl reports whether the server accepted the TTL indexes (MongoDB does,
	// FerretDB v1 does not).
	ttl bool
	// ferretdb is the FerretDB version when the server is FerretDB. FerretDB
	// v1 applies an update as read, modify in Go, write back by _id, with
	// no compare-and-set: two concurrent conditional updates of one document
	// can both succeed and concurrent merges lose writes. On FerretDB the
	// adapter therefore runs its updates one at a time (updateMu), which is
	// correct for one Flowgate process per FerretDB.
	ferretdb string
	updateMu sync.Mutex

	runWriter     *committer[*runOp]
	messageWriter *committer[*messageOp]
	counterWriter *committer[*counterOp]

	sandboxLocks [64]sync.Mutex

	stopSweep context.CancelFunc
	sweepDone chan struct{}
	closeOnce sync.Once
	closeErr  error
}

var _ store.Store = (*Store)(nil)

// Open connects to the MongoDB server at uri, uses database (or the one the
// URI names, or DefaultDatabase), and creates the collections' indexes if
// they are missing. It fails with store.ErrUnavailable if the server cannot
// be reached within the connect timeout.
func Open(ctx context.Context, uri, database string, opts ...Option) (*Store, error) {
	var cfg config
	cfg.setDefaults()
	for _, opt := range opts {
		if err := opt(&cfg); err != nil {
			return nil, err
		}
	}
	cs, err := connstring.ParseAndValidate(uri)
	if err != nil {
		return nil, fmt.Errorf("mongo: invalid URI: %w", err)
	}
	if database == "" {
		database = cs.Database
	}
	if database == "" {
		database = DefaultDatabase
	}
	copts := options.Client().
		SetServerSelectionTimeout(cfg.connectTimeout).
		SetConnectTimeout(cfg.connectTimeout).
		ApplyURI(uri)
	if cfg.monitor != nil {
		copts.SetMonitor(cfg.monitor)
	}
	client, err := mongo.Connect(copts)
	if err != nil {
		return nil, fmt.Errorf("mongo: connect: %w", err)
	}
	pctx, cancel := context.WithTimeout(ctx, cfg.connectTimeout)
	defer cancel()
	if err := client.Ping(pctx, readpref.Primary()); err != nil {
		_ = client.Disconnect(context.Background())
		return nil, fmt.Errorf("%w: mongo: ping %s: %w", store.ErrUnavailable, cs.Hosts, err)
	}
	db := client.Database(database)
	s := &Store{
		client:   client,
		db:       db,
		cfg:      cfg,
		bots:     db.Collection(colBots),
		apiKeys:  db.Collection(colAPIKeys),
		flows:    db.Collection(colFlows),
		events:   db.Collection(colEvents),
		contacts: db.Collection(colContacts),
		triggers: db.Collection(colTriggers),
		runs:     db.Collection(colRuns),
		messages: db.Collection(colMessages),
		sandbox:  db.Collection(colSandbox),
		counters: db.Collection(colCounters),
	}
	ictx, icancel := context.WithTimeout(ctx, cfg.opTimeout)
	defer icancel()
	var info bson.M
	if err := db.RunCommand(ictx, bson.D{{Key: "buildInfo", Value: 1}}).Decode(&info); err != nil {
		_ = client.Disconnect(context.Background())
		return nil, dbErr("buildInfo", err)
	}
	if v, ok := info["ferretdbVersion"].(string); ok {
		s.ferretdb = v
		if s.ferretdb == "" {
			s.ferretdb = "unknown"
		}
		cfg.logger.Info("mongo store: server is FerretDB; updates are serialised in this process, so use one Flowgate process per FerretDB",
			"ferretdb", s.ferretdb)
	}
	if err := s.createIndexes(ictx); err != nil {
		_ = client.Disconnect(context.Background())
		return nil, err
	}
	s.runWriter = newCommitter(cfg, s.flushRuns)
	s.messageWriter = newCommitter(cfg, s.flushMessages)
	s.counterWriter = newCommitter(cfg, s.flushCounters)
	if cfg.retention > 0 {
		sctx, cancel := context.WithCancel(context.Background())
		s.stopSweep = cancel
		s.sweepDone = make(chan struct{})
		go s.sweep(sctx)
	}
	return s, nil
}

type index struct {
	coll   *mongo.Collection
	name   string
	keys   bson.D
	unique bool
}

func (s *Store) indexes() []index {
	asc := func(fields ...string) bson.D {
		d := make(bson.D, len(fields))
		for i, f := range fields {
			d[i] = bson.E{Key: f, Value: 1}
		}
		return d
	}
	newest := func(fields ...string) bson.D {
		return append(asc(fields...), bson.E{Key: "created_at", Value: -1}, bson.E{Key: "_id", Value: -1})
	}
	return []index{
		{s.apiKeys, "hash_unique", asc("hash"), true},
		{s.flows, "bot_flow_version_unique", asc("bot_id", "flow_id", "version"), true},
		{s.events, "bot_name_unique", asc("bot_id", "name"), true},
		{s.events, "bot_token", asc("bot_id", "token_hash"), false},
		{s.contacts, "bot_channel_external_unique", asc("bot_id", "channel", "external_id"), true},
		{s.contacts, "bot_id", asc("bot_id", "_id"), false},
		{s.contacts, "bot_channel_id", asc("bot_id", "channel", "_id"), false},
		// Every index costs insert throughput: runs have one unique key that
		// also finds a contact's runs, two listing orders, the timer query
		// and the retention query.
		{s.runs, "contact_key_unique", asc("contact_id", "run_key"), true},
		{s.runs, "bot_newest", newest("bot_id"), false},
		{s.runs, "bot_trigger_newest", newest("bot_id", "trigger_id"), false},
		{s.runs, "due", asc("status", "wait_until"), false},
		{s.runs, "final_updated", asc("status", "updated_at"), false},
		{s.messages, "run_seq", asc("run_id", "seq"), false},
		{s.messages, "bot_provider_id", asc("bot_id", "provider_message_id"), false},
		{s.sandbox, "bot_seq", asc("bot_id", "seq"), false},
		{s.sandbox, "bot_to_seq", asc("bot_id", "to", "seq"), false},
		{s.subscriptions(), "bot_created", asc("bot_id", "created_at", "_id"), false},
		{s.mediaFiles(), "bot_created", asc("bot_id", "created_at", "_id"), false},
		{s.mediaUploads(), "media", asc("media_id"), false},
		{s.apiKeys, "bot_created", asc("bot_id", "created_at", "_id"), false},
		{s.triggers, "bot_newest", newest("bot_id"), false},
	}
}

// createIndexes is idempotent: an index that exists with the same name and
// keys is left alone.
func (s *Store) createIndexes(ctx context.Context) error {
	for _, ix := range s.indexes() {
		o := options.Index().SetName(ix.name)
		if ix.unique {
			o.SetUnique(true)
		}
		if _, err := ix.coll.Indexes().CreateOne(ctx, mongo.IndexModel{Keys: ix.keys, Options: o}); err != nil {
			return dbErr(fmt.Sprintf("create index %s.%s", ix.coll.Name(), ix.name), err)
		}
	}
	// TTL indexes delete documents whose expire_at has passed. FerretDB v1
	// does not implement them; the retention sweeper covers that case.
	s.ttl = true
	for _, c := range []*mongo.Collection{s.runs, s.messages} {
		o := options.Index().SetName("expire_at_ttl").SetExpireAfterSeconds(0)
		_, err := c.Indexes().CreateOne(ctx, mongo.IndexModel{Keys: bson.D{{Key: "expire_at", Value: 1}}, Options: o})
		if hasCode(err, codeNotImplemented) {
			s.ttl = false
			s.cfg.logger.Info("mongo store: server has no TTL indexes; retention relies on the sweeper", "collection", c.Name())
			continue
		}
		if err != nil {
			return dbErr(fmt.Sprintf("create index %s.expire_at_ttl", c.Name()), err)
		}
	}
	return nil
}

// lockUpdates serialises updates on FerretDB (see Store.ferretdb); on
// MongoDB it does nothing. The returned function unlocks.
func (s *Store) lockUpdates() func() {
	if s.ferretdb == "" {
		return func() {}
	}
	s.updateMu.Lock()
	return s.updateMu.Unlock
}

// ferretBulkLimit caps the statements of one update command on FerretDB.
// FerretDB v1 keeps each statement's query open until the command ends,
// and its SQLite pool has 100 connections: a bulk of 100 updates or more
// deadlocks the server.
const ferretBulkLimit = 50

// bulkUpdate runs update models as unordered bulk writes (serialised and cut
// into commands of ferretBulkLimit on FerretDB) and merges the results as if
// one bulk had run: counts add up, write error and upsert indexes refer to
// models.
func (s *Store) bulkUpdate(ctx context.Context, coll *mongo.Collection, models []mongo.WriteModel) (*mongo.BulkWriteResult, error) {
	unlock := s.lockUpdates()
	defer unlock()
	unordered := options.BulkWrite().SetOrdered(false)
	if s.ferretdb == "" || len(models) <= ferretBulkLimit {
		return coll.BulkWrite(ctx, models, unordered)
	}
	total := &mongo.BulkWriteResult{UpsertedIDs: map[int64]any{}, Acknowledged: true}
	var bwe mongo.BulkWriteException
	failed := false
	for off := 0; off < len(models); off += ferretBulkLimit {
		res, err := coll.BulkWrite(ctx, models[off:min(off+ferretBulkLimit, len(models))], unordered)
		if res != nil {
			total.MatchedCount += res.MatchedCount
			total.ModifiedCount += res.ModifiedCount
			total.UpsertedCount += res.UpsertedCount
			for i, id := range res.UpsertedIDs {
				total.UpsertedIDs[i+int64(off)] = id
			}
		}
		if err == nil {
			continue
		}
		var e mongo.BulkWriteException
		if !errors.As(err, &e) {
			return total, err
		}
		failed = true
		for _, we := range e.WriteErrors {
			we.Index += off
			bwe.WriteErrors = append(bwe.WriteErrors, we)
		}
		if e.WriteConcernError != nil {
			bwe.WriteConcernError = e.WriteConcernError
		}
	}
	if failed {
		return total, bwe
	}
	return total, nil
}

// FerretDB returns the FerretDB version if the server is FerretDB, else "".
func (s *Store) FerretDB() string { return s.ferretdb }

// TTL reports whether the server accepted the TTL indexes on expire_at.
func (s *Store) TTL() bool { return s.ttl }

// Database is the database the store uses.
func (s *Store) Database() string { return s.db.Name() }

// opCtx gives ctx the default timeout if it has no deadline.
func (s *Store) opCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, s.cfg.opTimeout)
}

// Ping reports whether the primary answers.
func (s *Store) Ping(ctx context.Context) error {
	ctx, cancel := s.opCtx(ctx)
	defer cancel()
	if err := s.client.Ping(ctx, readpref.Primary()); err != nil {
		return fmt.Errorf("%w: mongo: %w", store.ErrUnavailable, err)
	}
	return nil
}

// Close stops the sweeper, writes the batches already queued and
// disconnects. Writes after Close fail with store.ErrUnavailable.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		if s.stopSweep != nil {
			s.stopSweep()
			<-s.sweepDone
		}
		s.runWriter.close()
		s.messageWriter.close()
		s.counterWriter.close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		s.closeErr = s.client.Disconnect(ctx)
	})
	return s.closeErr
}

func (s *Store) sweep(ctx context.Context) {
	defer close(s.sweepDone)
	t := time.NewTicker(s.cfg.sweepEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case at := <-t.C:
			n, err := s.ExpireBefore(ctx, at.Add(-s.cfg.retention))
			switch {
			case err != nil && ctx.Err() == nil && !errors.Is(err, context.Canceled):
				s.cfg.logger.Warn("mongo store: retention failed", "err", err)
			case n > 0:
				s.cfg.logger.Info("mongo store: retention expired runs", "runs", n)
			}
		}
	}
}
