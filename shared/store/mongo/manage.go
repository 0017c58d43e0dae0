package mongo

import (
	"context"
	"encoding/json"
	"errors"
	"regexp"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/flowgate/flowgate/shared/store"
)

// The management part of the port: API key administration, flow, event and
// trigger listings, contact search and idempotency keys.

const colIdempotency = "idempotency_keys"

func (d *apiKeyDoc) apiKey() store.APIKey {
	return store.APIKey{ID: d.ID, BotID: d.BotID, Hash: d.Hash, Prefix: d.Prefix, CreatedAt: d.CreatedAt.UTC(),
		Revoked: d.Revoked, Name: d.Name, Scope: d.Scope, Events: d.Events,
		LastUsedAt: utc(d.LastUsedAt), RevokedAt: utc(d.RevokedAt)}
}

func utc(t *time.Time) *time.Time {
	if t == nil {
		return nil
	}
	u := t.UTC()
	return &u
}

// ListAPIKeys returns a bot's keys, oldest first.
func (s *Store) ListAPIKeys(ctx context.Context, botID string) ([]store.APIKey, error) {
	if err := store.CheckBotID("bot_id", botID); err != nil {
		return nil, err
	}
	ctx, cancel := s.opCtx(ctx)
	defer cancel()
	cur, err := s.apiKeys.Find(ctx, bson.D{{Key: "bot_id", Value: botID}},
		options.Find().SetSort(bson.D{{Key: "created_at", Value: 1}, {Key: "_id", Value: 1}}))
	if err != nil {
		return nil, dbErr("list api keys", err)
	}
	var docs []apiKeyDoc
	if err := cur.All(ctx, &docs); err != nil {
		return nil, dbErr("list api keys", err)
	}
	out := make([]store.APIKey, 0, len(docs))
	for i := range docs {
		out = append(out, docs[i].apiKey())
	}
	return out, nil
}

// RevokeAPIKey marks the key revoked (idempotent: RevokedAt stays).
func (s *Store) RevokeAPIKey(ctx context.Context, botID, id string, at time.Time) error {
	if err := store.FirstErr(store.CheckBotID("bot_id", botID), store.CheckID("id", id), store.CheckTime("at", at)); err != nil {
		return err
	}
	ctx, cancel := s.opCtx(ctx)
	defer cancel()
	key := bson.D{{Key: "_id", Value: id}, {Key: "bot_id", Value: botID}}
	unlock := s.lockUpdates()
	res, err := s.apiKeys.UpdateOne(ctx, key, bson.D{{Key: "$set", Value: bson.D{{Key: "revoked", Value: true}}}})
	if err == nil && res.MatchedCount > 0 {
		// Only the first revocation stamps the time.
		_, err = s.apiKeys.UpdateOne(ctx, append(key, bson.E{Key: "revoked_at", Value: nil}),
			bson.D{{Key: "$set", Value: bson.D{{Key: "revoked_at", Value: orNow(at)}}}})
	}
	unlock()
	if err != nil {
		return dbErr("revoke api key", err)
	}
	if res.MatchedCount == 0 {
		return notFound("api key", botID, id)
	}
	return nil
}

// TouchAPIKey records the key's last use; it never moves back.
func (s *Store) TouchAPIKey(ctx context.Context, id string, at time.Time) error {
	if err := store.FirstErr(store.CheckID("id", id), store.CheckTime("at", at)); err != nil {
		return err
	}
	at = orNow(at)
	ctx, cancel := s.opCtx(ctx)
	defer cancel()
	unlock := s.lockUpdates()
	_, err := s.apiKeys.UpdateOne(ctx, bson.D{{Key: "_id", Value: id}, {Key: "$or", Value: bson.A{
		bson.D{{Key: "last_used_at", Value: nil}}, bson.D{{Key: "last_used_at", Value: bson.D{{Key: "$lt", Value: at}}}},
	}}}, bson.D{{Key: "$set", Value: bson.D{{Key: "last_used_at", Value: at}}}})
	unlock()
	return dbErr("touch api key", err)
}

// ListFlows returns the latest version of each flow, by id. A bot has few
// flows and versions, so they are read whole and reduced here (FerretDB v1
// has no $group with $first over a sort).
func (s *Store) ListFlows(ctx context.Context, botID string) ([]store.Flow, error) {
	if err := store.CheckBotID("bot_id", botID); err != nil {
		return nil, err
	}
	ctx, cancel := s.opCtx(ctx)
	defer cancel()
	cur, err := s.flows.Find(ctx, bson.D{{Key: "bot_id", Value: botID}},
		options.Find().SetSort(bson.D{{Key: "flow_id", Value: 1}, {Key: "version", Value: -1}}))
	if err != nil {
		return nil, dbErr("list flows", err)
	}
	defer cur.Close(ctx)
	out := []store.Flow{}
	for cur.Next(ctx) {
		var d flowDoc
		if err := cur.Decode(&d); err != nil {
			return nil, dbErr("list flows", err)
		}
		if n := len(out); n > 0 && out[n-1].ID == d.FlowID {
			continue
		}
		out = append(out, d.flow())
	}
	return out, dbErr("list flows", cur.Err())
}

// DeleteFlow deletes every version of a flow.
func (s *Store) DeleteFlow(ctx context.Context, botID, flowID string) error {
	if err := store.FirstErr(store.CheckBotID("bot_id", botID), store.CheckID("id", flowID)); err != nil {
		return err
	}
	ctx, cancel := s.opCtx(ctx)
	defer cancel()
	res, err := s.flows.DeleteMany(ctx, bson.D{{Key: "bot_id", Value: botID}, {Key: "flow_id", Value: flowID}})
	if err != nil {
		return dbErr("delete flow", err)
	}
	if res.DeletedCount == 0 {
		return notFound("flow", botID, flowID)
	}
	return nil
}

// ListEvents returns a bot's events by name.
func (s *Store) ListEvents(ctx context.Context, botID string) ([]store.Event, error) {
	if err := store.CheckBotID("bot_id", botID); err != nil {
		return nil, err
	}
	ctx, cancel := s.opCtx(ctx)
	defer cancel()
	cur, err := s.events.Find(ctx, bson.D{{Key: "bot_id", Value: botID}}, options.Find().SetSort(bson.D{{Key: "name", Value: 1}}))
	if err != nil {
		return nil, dbErr("list events", err)
	}
	var docs []eventDoc
	if err := cur.All(ctx, &docs); err != nil {
		return nil, dbErr("list events", err)
	}
	out := make([]store.Event, 0, len(docs))
	for i := range docs {
		out = append(out, docs[i].event())
	}
	return out, nil
}

// DeleteEvent returns ErrNotFound if the bot has no such event.
func (s *Store) DeleteEvent(ctx context.Context, botID, name string) error {
	if err := store.FirstErr(store.CheckBotID("bot_id", botID), store.CheckID("name", name)); err != nil {
		return err
	}
	ctx, cancel := s.opCtx(ctx)
	defer cancel()
	res, err := s.events.DeleteOne(ctx, bson.D{{Key: "bot_id", Value: botID}, {Key: "name", Value: name}})
	if err != nil {
		return dbErr("delete event", err)
	}
	if res.DeletedCount == 0 {
		return notFound("event", botID, name)
	}
	return nil
}

// ListTriggers returns a page of a bot's triggers, newest first.
func (s *Store) ListTriggers(ctx context.Context, f store.TriggerFilter) ([]store.Trigger, string, error) {
	if err := store.CheckBotID("bot_id", f.BotID); err != nil {
		return nil, "", err
	}
	limit, err := store.CheckLimit(f.Limit, 100, 1000)
	if err != nil {
		return nil, "", err
	}
	if f.Status != "" {
		if err := store.CheckTriggerStatus(f.Status); err != nil {
			return nil, "", err
		}
	}
	if err := store.CheckTime("since", f.Since); err != nil {
		return nil, "", err
	}
	filter := bson.D{{Key: "bot_id", Value: f.BotID}}
	if f.Status != "" {
		filter = append(filter, bson.E{Key: "status", Value: f.Status})
	}
	if f.Event != "" {
		filter = append(filter, bson.E{Key: "event", Value: f.Event})
	}
	if !f.Since.IsZero() {
		filter = append(filter, bson.E{Key: "created_at", Value: bson.D{{Key: "$gte", Value: ms(f.Since)}}})
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
	cur, err := s.triggers.Find(ctx, filter, options.Find().
		SetSort(bson.D{{Key: "created_at", Value: -1}, {Key: "_id", Value: -1}}).SetLimit(int64(limit+1)))
	if err != nil {
		return nil, "", dbErr("list triggers", err)
	}
	var docs []triggerDoc
	if err := cur.All(ctx, &docs); err != nil {
		return nil, "", dbErr("list triggers", err)
	}
	out := make([]store.Trigger, 0, len(docs))
	for i := range docs {
		out = append(out, docs[i].trigger())
	}
	next := ""
	if len(out) > limit {
		out = out[:limit]
		next = store.EncodeKeysetCursor(out[limit-1].CreatedAt, out[limit-1].ID)
	}
	return out, next, nil
}

// attributeCandidates are the stored forms (attributes are JSON text per
// key) that a searched value matches: the string, or the literal itself
// when it is a JSON number, true, false or null.
func attributeCandidates(v string) bson.A {
	q, _ := json.Marshal(v)
	out := bson.A{string(q)}
	var x any
	if err := json.Unmarshal([]byte(v), &x); err == nil {
		switch x.(type) {
		case float64, bool, nil:
			out = append(out, v)
		}
	}
	return out
}

// SearchContacts returns a page of matching contacts in id order.
func (s *Store) SearchContacts(ctx context.Context, q store.ContactSearch) ([]store.Contact, string, error) {
	after, limit, err := store.CheckContactSearch(q)
	if err != nil {
		return nil, "", err
	}
	filter := bson.D{{Key: "bot_id", Value: q.BotID}}
	if q.Channel != "" {
		filter = append(filter, bson.E{Key: "channel", Value: q.Channel})
	}
	if q.ExternalIDPrefix != "" {
		filter = append(filter, bson.E{Key: "external_id", Value: bson.D{{Key: "$regex", Value: "^" + regexp.QuoteMeta(q.ExternalIDPrefix)}}})
	}
	if q.Name != "" {
		filter = append(filter, bson.E{Key: "name", Value: bson.D{{Key: "$regex", Value: regexp.QuoteMeta(q.Name)}, {Key: "$options", Value: "i"}}})
	}
	if q.Attribute != "" {
		filter = append(filter, bson.E{Key: "attributes." + escapeKey(q.Attribute), Value: bson.D{{Key: "$in", Value: attributeCandidates(q.Value)}}})
	}
	if after != "" {
		filter = append(filter, bson.E{Key: "_id", Value: bson.D{{Key: "$gt", Value: after}}})
	}
	ctx, cancel := s.opCtx(ctx)
	defer cancel()
	cur, err := s.contacts.Find(ctx, filter, options.Find().SetSort(bson.D{{Key: "_id", Value: 1}}).SetLimit(int64(limit+1)))
	if err != nil {
		return nil, "", dbErr("search contacts", err)
	}
	defer cur.Close(ctx)
	out := []store.Contact{}
	for cur.Next(ctx) {
		var d contactDoc
		if err := cur.Decode(&d); err != nil {
			return nil, "", dbErr("search contacts", err)
		}
		c, err := d.contact()
		if err != nil {
			return nil, "", dbErr("search contacts", err)
		}
		out = append(out, c)
	}
	if err := cur.Err(); err != nil {
		return nil, "", dbErr("search contacts", err)
	}
	next := ""
	if len(out) > limit {
		out = out[:limit]
		next = store.ContactCursor(out[limit-1].ID)
	}
	return out, next, nil
}

// ListContactMessages returns a contact's latest messages, newest first,
// found through the contact's runs (messages have no contact index).
func (s *Store) ListContactMessages(ctx context.Context, botID, contactID string, limit int) ([]store.Message, error) {
	if err := store.FirstErr(store.CheckBotID("bot_id", botID), store.CheckID("contact_id", contactID)); err != nil {
		return nil, err
	}
	limit, err := store.CheckLimit(limit, 100, 1000)
	if err != nil {
		return nil, err
	}
	ctx, cancel := s.opCtx(ctx)
	defer cancel()
	cur, err := s.runs.Find(ctx, bson.D{{Key: "contact_id", Value: contactID}, {Key: "bot_id", Value: botID}},
		options.Find().SetProjection(bson.D{{Key: "_id", Value: 1}}))
	if err != nil {
		return nil, dbErr("list contact messages", err)
	}
	var runs []struct {
		ID string `bson:"_id"`
	}
	if err := cur.All(ctx, &runs); err != nil {
		return nil, dbErr("list contact messages", err)
	}
	out := []store.Message{}
	if len(runs) == 0 {
		return out, nil
	}
	ids := make(bson.A, len(runs))
	for i, r := range runs {
		ids[i] = r.ID
	}
	mcur, err := s.messages.Find(ctx, bson.D{{Key: "run_id", Value: bson.D{{Key: "$in", Value: ids}}}, {Key: "bot_id", Value: botID}},
		options.Find().SetSort(bson.D{{Key: "created_at", Value: -1}, {Key: "seq", Value: -1}}).SetLimit(int64(limit)))
	if err != nil {
		return nil, dbErr("list contact messages", err)
	}
	var docs []messageDoc
	if err := mcur.All(ctx, &docs); err != nil {
		return nil, dbErr("list contact messages", err)
	}
	for i := range docs {
		out = append(out, docs[i].message())
	}
	return out, nil
}

type idempotencyDoc struct {
	ID        string    `bson:"_id"`
	BotID     string    `bson:"bot_id"`
	Hash      string    `bson:"hash"`
	CreatedAt time.Time `bson:"created_at"`
}

// ClaimIdempotencyKey stores hash for the key unless it has one (one
// upsert keyed by bot and key), and returns the stored hash.
func (s *Store) ClaimIdempotencyKey(ctx context.Context, botID, key, hash string, at time.Time) (string, error) {
	if err := store.FirstErr(store.CheckBotID("bot_id", botID), store.CheckID("key", key), store.CheckID("hash", hash),
		store.CheckTime("at", at)); err != nil {
		return "", err
	}
	ctx, cancel := s.opCtx(ctx)
	defer cancel()
	coll := s.db.Collection(colIdempotency)
	id := botID + "\x00" + key
	var d idempotencyDoc
	var err error
	for range 2 { // two first claims race: the loser reads the winner's
		err = coll.FindOneAndUpdate(ctx, bson.D{{Key: "_id", Value: id}},
			bson.D{{Key: "$setOnInsert", Value: bson.D{{Key: "bot_id", Value: botID}, {Key: "hash", Value: hash}, {Key: "created_at", Value: orNow(at)}}}},
			options.FindOneAndUpdate().SetUpsert(true).SetReturnDocument(options.After)).Decode(&d)
		if !isDup(err) {
			break
		}
	}
	if errors.Is(err, mongo.ErrNoDocuments) {
		return "", dbErr("claim idempotency key", err)
	}
	return d.Hash, dbErr("claim idempotency key", err)
}
