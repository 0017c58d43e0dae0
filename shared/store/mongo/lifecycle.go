package mongo

import (
	"context"
	"errors"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/flowgate/flowgate/shared/store"
)

// lifecycleChunk is how many runs one delete round covers.
const lifecycleChunk = 1000

var finalStatuses = bson.A{store.RunCompleted, store.RunFailed, store.RunCancelled, store.RunExpired}

// DeleteContact deletes a contact, its runs and their messages. Without
// transactions this is three deletes: messages and runs first, the contact
// last, so that a failure part-way leaves the contact in place and a retry
// finishes the job.
func (s *Store) DeleteContact(ctx context.Context, botID, id string) error {
	if err := store.FirstErr(store.CheckBotID("bot_id", botID), store.CheckID("id", id)); err != nil {
		return err
	}
	ctx, cancel := s.opCtx(ctx)
	defer cancel()
	contact := bson.D{{Key: "_id", Value: id}, {Key: "bot_id", Value: botID}}
	var d struct {
		Channel    string `bson:"channel"`
		ExternalID string `bson:"external_id"`
	}
	err := s.contacts.FindOne(ctx, contact, options.FindOne().SetProjection(bson.D{{Key: "channel", Value: 1}, {Key: "external_id", Value: 1}})).Decode(&d)
	if errors.Is(err, mongo.ErrNoDocuments) {
		return notFound("contact", botID, id)
	}
	if err != nil {
		return dbErr("delete contact", err)
	}
	// The tombstone first: a run or message written for the contact from
	// now on removes itself (tombstones.go).
	if err := s.addTombstone(ctx, botID, id, time.Now()); err != nil {
		return dbErr("delete contact", err)
	}
	if _, err := s.deleteRuns(ctx, bson.D{{Key: "bot_id", Value: botID}, {Key: "contact_id", Value: id}}); err != nil {
		return dbErr("delete contact", err)
	}
	if d.Channel == store.ChannelSandbox {
		// The sandbox transcript: what the bot "sent" this user.
		if _, err := s.sandbox.DeleteMany(ctx, bson.D{{Key: "bot_id", Value: botID}, {Key: "to", Value: d.ExternalID}}); err != nil {
			return dbErr("delete contact", err)
		}
	}
	res, err := s.contacts.DeleteOne(ctx, contact)
	if err != nil {
		return dbErr("delete contact", err)
	}
	if res.DeletedCount == 0 {
		return notFound("contact", botID, id)
	}
	return nil
}

// deleteRuns deletes the runs that filter selects, with their messages, a
// chunk at a time (messages before their runs), and returns how many runs it
// deleted.
func (s *Store) deleteRuns(ctx context.Context, filter bson.D) (int64, error) {
	var total int64
	for {
		cur, err := s.runs.Find(ctx, filter, options.Find().SetProjection(bson.D{{Key: "_id", Value: 1}}).SetLimit(lifecycleChunk))
		if err != nil {
			return total, err
		}
		var docs []struct {
			ID string `bson:"_id"`
		}
		if err := cur.All(ctx, &docs); err != nil {
			return total, err
		}
		if len(docs) == 0 {
			return total, nil
		}
		ids := make(bson.A, len(docs))
		for i, d := range docs {
			ids[i] = d.ID
		}
		in := bson.D{{Key: "$in", Value: ids}}
		if _, err := s.messages.DeleteMany(ctx, bson.D{{Key: "run_id", Value: in}}); err != nil {
			return total, err
		}
		res, err := s.runs.DeleteMany(ctx, append(bson.D{{Key: "_id", Value: in}}, filter...))
		if err != nil {
			return total, err
		}
		total += res.DeletedCount
		if len(docs) < lifecycleChunk {
			return total, nil
		}
	}
}

// ExpireBefore deletes runs in a final status last updated before t (at
// millisecond precision), and their messages, in chunks.
func (s *Store) ExpireBefore(ctx context.Context, t time.Time) (int64, error) {
	if err := store.CheckTime("before", t); err != nil {
		return 0, err
	}
	ctx, cancel := s.opCtx(ctx)
	defer cancel()
	n, err := s.deleteRuns(ctx, bson.D{
		{Key: "status", Value: bson.D{{Key: "$in", Value: finalStatuses}}},
		{Key: "updated_at", Value: bson.D{{Key: "$lt", Value: ms(t)}}},
	})
	if err != nil && !errors.Is(err, mongo.ErrNoDocuments) {
		return n, dbErr("expire runs", err)
	}
	return n, nil
}
