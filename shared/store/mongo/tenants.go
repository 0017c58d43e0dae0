package mongo

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/flowgate/flowgate/shared/store"
)

// Bots, API keys, flows and events: small, rarely written records.

type botDoc struct {
	ID string `bson:"_id"`
	// Channels are the provider credentials as JSON text (the json tags of
	// store.ChannelAccounts are the format).
	Name      string    `bson:"name"`
	Channels  string    `bson:"channels"`
	CreatedAt time.Time `bson:"created_at"`
	UpdatedAt time.Time `bson:"updated_at"`
}

func encodeChannels(c store.ChannelAccounts) (string, error) {
	b, err := json.Marshal(c)
	if err != nil {
		return "", &store.InvalidError{Field: "channels", Reason: err.Error()}
	}
	if err := store.CheckSize("channels", len(b)); err != nil {
		return "", err
	}
	return string(b), nil
}

func (d *botDoc) bot() (store.Bot, error) {
	b := store.Bot{ID: d.ID, Name: d.Name, CreatedAt: d.CreatedAt, UpdatedAt: d.UpdatedAt}
	if d.Channels != "" {
		if err := json.Unmarshal([]byte(d.Channels), &b.Channels); err != nil {
			return b, fmt.Errorf("mongo: stored channels: %w", err)
		}
	}
	return b, nil
}

// CreateBot fails with ErrConflict if the id is taken.
func (s *Store) CreateBot(ctx context.Context, b store.Bot) error {
	if err := check.Bot(b); err != nil {
		return err
	}
	ch, err := encodeChannels(b.Channels)
	if err != nil {
		return err
	}
	created := orNow(b.CreatedAt)
	updated := created
	if !b.UpdatedAt.IsZero() {
		updated = ms(b.UpdatedAt)
	}
	doc, err := marshal(botDoc{ID: b.ID, Name: b.Name, Channels: ch, CreatedAt: created, UpdatedAt: updated}, s.cfg.maxDocBytes)
	if err != nil {
		return err
	}
	ctx, cancel := s.opCtx(ctx)
	defer cancel()
	_, err = s.bots.InsertOne(ctx, doc)
	if isDup(err) {
		return fmt.Errorf("%w: bot %s", store.ErrConflict, b.ID)
	}
	return dbErr("create bot", err)
}

// GetBot returns ErrNotFound for an unknown id.
func (s *Store) GetBot(ctx context.Context, id string) (store.Bot, error) {
	if err := store.CheckBotID("id", id); err != nil {
		return store.Bot{}, err
	}
	ctx, cancel := s.opCtx(ctx)
	defer cancel()
	var d botDoc
	err := s.bots.FindOne(ctx, bson.D{{Key: "_id", Value: id}}).Decode(&d)
	if errors.Is(err, mongo.ErrNoDocuments) {
		return store.Bot{}, notFound("bot", id)
	}
	if err != nil {
		return store.Bot{}, dbErr("get bot", err)
	}
	b, err := d.bot()
	return b, dbErr("get bot", err)
}

// UpdateBot replaces name and channels.
func (s *Store) UpdateBot(ctx context.Context, b store.Bot) error {
	if err := check.Bot(b); err != nil {
		return err
	}
	ch, err := encodeChannels(b.Channels)
	if err != nil {
		return err
	}
	ctx, cancel := s.opCtx(ctx)
	defer cancel()
	unlock := s.lockUpdates()
	res, err := s.bots.UpdateOne(ctx, bson.D{{Key: "_id", Value: b.ID}}, bson.D{{Key: "$set", Value: bson.D{
		{Key: "name", Value: b.Name}, {Key: "channels", Value: ch}, {Key: "updated_at", Value: orNow(b.UpdatedAt)},
	}}})
	unlock()
	if err != nil {
		return dbErr("update bot", err)
	}
	if res.MatchedCount == 0 {
		return notFound("bot", b.ID)
	}
	return nil
}

// ListBots returns every bot ordered by id.
func (s *Store) ListBots(ctx context.Context) ([]store.Bot, error) {
	ctx, cancel := s.opCtx(ctx)
	defer cancel()
	cur, err := s.bots.Find(ctx, bson.D{}, options.Find().SetSort(bson.D{{Key: "_id", Value: 1}}))
	if err != nil {
		return nil, dbErr("list bots", err)
	}
	var docs []botDoc
	if err := cur.All(ctx, &docs); err != nil {
		return nil, dbErr("list bots", err)
	}
	var out []store.Bot
	for i := range docs {
		b, err := docs[i].bot()
		if err != nil {
			return nil, dbErr("list bots", err)
		}
		out = append(out, b)
	}
	return out, nil
}

type apiKeyDoc struct {
	ID        string    `bson:"_id"`
	BotID     string    `bson:"bot_id"`
	Hash      string    `bson:"hash"`
	Prefix    string    `bson:"prefix"`
	CreatedAt time.Time `bson:"created_at"`
	Revoked   bool      `bson:"revoked"`
	// Scopes and administration (manage.go); absent on older keys.
	Name       string     `bson:"name,omitempty"`
	Scope      string     `bson:"scope,omitempty"`
	Events     []string   `bson:"events,omitempty"`
	LastUsedAt *time.Time `bson:"last_used_at,omitempty"`
	RevokedAt  *time.Time `bson:"revoked_at,omitempty"`
}

// CreateAPIKey fails with ErrConflict if the id or hash exists.
func (s *Store) CreateAPIKey(ctx context.Context, k store.APIKey) error {
	if err := check.APIKey(k); err != nil {
		return err
	}
	ctx, cancel := s.opCtx(ctx)
	defer cancel()
	_, err := s.apiKeys.InsertOne(ctx, apiKeyDoc{ID: k.ID, BotID: k.BotID, Hash: k.Hash, Prefix: k.Prefix,
		CreatedAt: orNow(k.CreatedAt), Revoked: k.Revoked, Name: k.Name, Scope: k.Scope, Events: k.Events,
		RevokedAt: msPtr(k.RevokedAt)})
	if isDup(err) {
		return fmt.Errorf("%w: api key %s", store.ErrConflict, k.ID)
	}
	return dbErr("create api key", err)
}

// GetAPIKeyByHash returns the key, revoked or not.
func (s *Store) GetAPIKeyByHash(ctx context.Context, hash string) (store.APIKey, error) {
	if err := store.CheckID("hash", hash); err != nil {
		return store.APIKey{}, err
	}
	ctx, cancel := s.opCtx(ctx)
	defer cancel()
	var d apiKeyDoc
	err := s.apiKeys.FindOne(ctx, bson.D{{Key: "hash", Value: hash}}).Decode(&d)
	if errors.Is(err, mongo.ErrNoDocuments) {
		return store.APIKey{}, notFound("api key", "(hash)")
	}
	if err != nil {
		return store.APIKey{}, dbErr("get api key", err)
	}
	return d.apiKey(), nil
}

type flowDoc struct {
	ID         bson.ObjectID `bson:"_id,omitempty"`
	BotID      string        `bson:"bot_id"`
	FlowID     string        `bson:"flow_id"`
	Version    int           `bson:"version"`
	Definition string        `bson:"definition"`
	CreatedAt  time.Time     `bson:"created_at"`
}

func (d *flowDoc) flow() store.Flow {
	return store.Flow{BotID: d.BotID, ID: d.FlowID, Version: d.Version, Definition: decodeRaw(d.Definition), CreatedAt: d.CreatedAt}
}

// putFlowAttempts bounds the retries of PutFlow when concurrent puts race
// for the same version number.
const putFlowAttempts = 20

// PutFlow stores version latest+1: it reads the latest version and inserts
// the next one; the unique index on bot + flow + version turns a concurrent
// put into a duplicate key, and PutFlow then tries the next number.
func (s *Store) PutFlow(ctx context.Context, f store.Flow) (store.Flow, error) {
	if err := check.Flow(f); err != nil {
		return f, err
	}
	def, err := encodeRaw("definition", f.Definition, true)
	if err != nil {
		return f, err
	}
	f.CreatedAt = orNow(f.CreatedAt)
	ctx, cancel := s.opCtx(ctx)
	defer cancel()
	for range putFlowAttempts {
		latest, err := s.GetFlow(ctx, f.BotID, f.ID, 0)
		switch {
		case err == nil:
			f.Version = latest.Version + 1
		case errors.Is(err, store.ErrNotFound):
			f.Version = 1
		default:
			return f, err
		}
		_, err = s.flows.InsertOne(ctx, flowDoc{BotID: f.BotID, FlowID: f.ID, Version: f.Version, Definition: def, CreatedAt: f.CreatedAt})
		if !isDup(err) {
			return f, dbErr("put flow", err)
		}
	}
	return f, fmt.Errorf("%w: put flow %s/%s: %d concurrent puts in a row", store.ErrConflict, f.BotID, f.ID, putFlowAttempts)
}

// GetFlow returns the given version, or the latest when version is 0.
func (s *Store) GetFlow(ctx context.Context, botID, flowID string, version int) (store.Flow, error) {
	if err := store.FirstErr(store.CheckBotID("bot_id", botID), store.CheckID("id", flowID)); err != nil {
		return store.Flow{}, err
	}
	if version < 0 {
		return store.Flow{}, &store.InvalidError{Field: "version", Reason: "negative"}
	}
	ctx, cancel := s.opCtx(ctx)
	defer cancel()
	filter := bson.D{{Key: "bot_id", Value: botID}, {Key: "flow_id", Value: flowID}}
	o := options.FindOne()
	if version > 0 {
		filter = append(filter, bson.E{Key: "version", Value: version})
	} else {
		o.SetSort(bson.D{{Key: "version", Value: -1}})
	}
	var d flowDoc
	err := s.flows.FindOne(ctx, filter, o).Decode(&d)
	if errors.Is(err, mongo.ErrNoDocuments) {
		return store.Flow{}, notFound("flow", botID, flowID)
	}
	if err != nil {
		return store.Flow{}, dbErr("get flow", err)
	}
	return d.flow(), nil
}

// ListFlowVersions returns every version, oldest first (none: empty, no error).
func (s *Store) ListFlowVersions(ctx context.Context, botID, flowID string) ([]store.Flow, error) {
	if err := store.FirstErr(store.CheckBotID("bot_id", botID), store.CheckID("id", flowID)); err != nil {
		return nil, err
	}
	ctx, cancel := s.opCtx(ctx)
	defer cancel()
	cur, err := s.flows.Find(ctx, bson.D{{Key: "bot_id", Value: botID}, {Key: "flow_id", Value: flowID}},
		options.Find().SetSort(bson.D{{Key: "version", Value: 1}}))
	if err != nil {
		return nil, dbErr("list flows", err)
	}
	var docs []flowDoc
	if err := cur.All(ctx, &docs); err != nil {
		return nil, dbErr("list flows", err)
	}
	var out []store.Flow
	for i := range docs {
		out = append(out, docs[i].flow())
	}
	return out, nil
}

type eventDoc struct {
	ID        bson.ObjectID `bson:"_id,omitempty"`
	BotID     string        `bson:"bot_id"`
	Name      string        `bson:"name"`
	FlowID    string        `bson:"flow_id"`
	TokenHash string        `bson:"token_hash"`
	// Input is the event's input mapping as JSON text ("" for none).
	Input     string    `bson:"input,omitempty"`
	CreatedAt time.Time `bson:"created_at"`
	UpdatedAt time.Time `bson:"updated_at"`
}

func (d *eventDoc) event() store.Event {
	e := store.Event{BotID: d.BotID, Name: d.Name, FlowID: d.FlowID, TokenHash: d.TokenHash, CreatedAt: d.CreatedAt, UpdatedAt: d.UpdatedAt}
	if d.Input != "" {
		e.Input = json.RawMessage(d.Input)
	}
	return e
}

// PutEvent creates or replaces an event (one upsert); CreatedAt of an
// existing event stays.
func (s *Store) PutEvent(ctx context.Context, e store.Event) error {
	if err := check.Event(e); err != nil {
		return err
	}
	created := orNow(e.CreatedAt)
	updated := orNow(e.UpdatedAt)
	ctx, cancel := s.opCtx(ctx)
	defer cancel()
	filter := bson.D{{Key: "bot_id", Value: e.BotID}, {Key: "name", Value: e.Name}}
	update := bson.D{
		{Key: "$set", Value: bson.D{{Key: "flow_id", Value: e.FlowID}, {Key: "token_hash", Value: e.TokenHash},
			{Key: "input", Value: string(e.Input)}, {Key: "updated_at", Value: updated}}},
		{Key: "$setOnInsert", Value: bson.D{{Key: "created_at", Value: created}}},
	}
	var err error
	for range 2 { // two first puts of one event race: the loser updates
		unlock := s.lockUpdates()
		_, err = s.events.UpdateOne(ctx, filter, update, options.UpdateOne().SetUpsert(true))
		unlock()
		if !isDup(err) {
			break
		}
	}
	return dbErr("put event", err)
}

func (s *Store) findEvent(ctx context.Context, filter bson.D, key ...string) (store.Event, error) {
	ctx, cancel := s.opCtx(ctx)
	defer cancel()
	var d eventDoc
	err := s.events.FindOne(ctx, filter).Decode(&d)
	if errors.Is(err, mongo.ErrNoDocuments) {
		return store.Event{}, notFound("event", key...)
	}
	if err != nil {
		return store.Event{}, dbErr("get event", err)
	}
	return d.event(), nil
}

// GetEvent returns ErrNotFound for an unknown event.
func (s *Store) GetEvent(ctx context.Context, botID, name string) (store.Event, error) {
	if err := store.FirstErr(store.CheckBotID("bot_id", botID), store.CheckID("name", name)); err != nil {
		return store.Event{}, err
	}
	return s.findEvent(ctx, bson.D{{Key: "bot_id", Value: botID}, {Key: "name", Value: name}}, botID, name)
}

// GetEventByToken finds the event whose trigger token hashes to tokenHash.
func (s *Store) GetEventByToken(ctx context.Context, botID, tokenHash string) (store.Event, error) {
	if err := store.FirstErr(store.CheckBotID("bot_id", botID), store.CheckID("token_hash", tokenHash)); err != nil {
		return store.Event{}, err
	}
	return s.findEvent(ctx, bson.D{{Key: "bot_id", Value: botID}, {Key: "token_hash", Value: tokenHash}}, botID, "(token)")
}
