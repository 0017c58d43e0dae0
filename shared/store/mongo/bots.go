package mongo

import (
	"context"
	"fmt"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/flowgate/flowgate/shared/store"
)

// Bot deletion: a marker, then deletes of the bot's data.

const colBotDeletions = "bot_deletions"

type botDeletionDoc struct {
	BotID       string    `bson:"_id"`
	RequestedAt time.Time `bson:"requested_at"`
}

// MarkBotDeleting records the request; the first time stays. ErrNotFound
// when the bot does not exist.
func (s *Store) MarkBotDeleting(ctx context.Context, botID string, at time.Time) error {
	if err := store.FirstErr(store.CheckBotID("bot_id", botID), store.CheckTime("at", at)); err != nil {
		return err
	}
	ctx, cancel := s.opCtx(ctx)
	defer cancel()
	exists := func() (bool, error) {
		n, err := s.bots.CountDocuments(ctx, bson.D{{Key: "_id", Value: botID}})
		return n > 0, err
	}
	if ok, err := exists(); err != nil || !ok {
		if err == nil {
			err = fmt.Errorf("%w: bot %s", store.ErrNotFound, botID)
		}
		return dbErr("mark bot deleting", err)
	}
	_, err := s.db.Collection(colBotDeletions).UpdateOne(ctx, bson.D{{Key: "_id", Value: botID}},
		bson.D{{Key: "$setOnInsert", Value: bson.D{{Key: "requested_at", Value: orNow(at)}}}}, options.UpdateOne().SetUpsert(true))
	if isDup(err) {
		err = nil // two first requests raced: the other one stored it
	}
	if err != nil {
		return dbErr("mark bot deleting", err)
	}
	// A deletion that finished between the check and the upsert deleted
	// the bot before this marker: take the marker back, or it would be
	// listed for ever. (DeleteBotData deletes the bot, then the marker.)
	ok, err := exists()
	if err != nil {
		return dbErr("mark bot deleting", err)
	}
	if !ok {
		if _, err := s.db.Collection(colBotDeletions).DeleteOne(ctx, bson.D{{Key: "_id", Value: botID}}); err != nil {
			return dbErr("mark bot deleting", err)
		}
		return fmt.Errorf("%w: bot %s", store.ErrNotFound, botID)
	}
	return nil
}

// BotDeletions lists unfinished deletions, oldest first.
func (s *Store) BotDeletions(ctx context.Context) ([]store.BotDeletion, error) {
	ctx, cancel := s.opCtx(ctx)
	defer cancel()
	cur, err := s.db.Collection(colBotDeletions).Find(ctx, bson.D{},
		options.Find().SetSort(bson.D{{Key: "requested_at", Value: 1}, {Key: "_id", Value: 1}}))
	if err != nil {
		return nil, dbErr("bot deletions", err)
	}
	var docs []botDeletionDoc
	if err := cur.All(ctx, &docs); err != nil {
		return nil, dbErr("bot deletions", err)
	}
	out := make([]store.BotDeletion, 0, len(docs))
	for _, d := range docs {
		out = append(out, store.BotDeletion{BotID: d.BotID, RequestedAt: d.RequestedAt.UTC()})
	}
	return out, nil
}

// DeleteBotData deletes the bot's data collection by collection (runs
// with their messages through deleteRuns, in chunks; the rest with one
// DeleteMany each), the bot last, then the marker. limit is not needed:
// every delete here is bounded by the server, not by one transaction.
func (s *Store) DeleteBotData(ctx context.Context, botID string, limit int) (bool, error) {
	if err := store.CheckBotID("bot_id", botID); err != nil {
		return false, err
	}
	if _, err := store.CheckLimit(limit, 1000, 10000); err != nil {
		return false, err
	}
	ctx, cancel := s.opCtx(ctx)
	defer cancel()
	bot := bson.D{{Key: "bot_id", Value: botID}}
	if _, err := s.deleteRuns(ctx, bot); err != nil {
		return false, dbErr("delete bot data", err)
	}
	for _, coll := range []string{colMessages, colContacts, colTriggers, colSandbox, colFlows, colEvents, colAPIKeys, colSubscriptions, colIdempotency} {
		if _, err := s.db.Collection(coll).DeleteMany(ctx, bot); err != nil {
			return false, dbErr("delete bot data", err)
		}
	}
	if _, err := s.bots.DeleteOne(ctx, bson.D{{Key: "_id", Value: botID}}); err != nil {
		return false, dbErr("delete bot data", err)
	}
	if _, err := s.db.Collection(colBotDeletions).DeleteOne(ctx, bson.D{{Key: "_id", Value: botID}}); err != nil {
		return false, dbErr("delete bot data", err)
	}
	return true, nil
}
