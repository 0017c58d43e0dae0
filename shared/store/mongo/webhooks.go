package mongo

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/flowgate/flowgate/shared/store"
)

// Webhook subscriptions: a handful of documents per bot, written by the
// admin API and read by the webhook delivery service.

const colSubscriptions = "subscriptions"

type subscriptionDoc struct {
	ID     string `bson:"_id"`
	BotID  string `bson:"bot_id"`
	URL    string `bson:"url"`
	Secret string `bson:"secret"`
	// PreviousSecret is set during a secret rotation.
	PreviousSecret string    `bson:"previous_secret,omitempty"`
	EventTypes     []string  `bson:"event_types"`
	CreatedAt      time.Time `bson:"created_at"`
}

func (s *Store) subscriptions() *mongo.Collection { return s.db.Collection(colSubscriptions) }

// CreateSubscription fails with ErrConflict if the id is taken.
func (s *Store) CreateSubscription(ctx context.Context, sub store.Subscription) error {
	if err := check.Subscription(sub); err != nil {
		return err
	}
	types := sub.EventTypes
	if types == nil {
		types = []string{}
	}
	doc, err := marshal(subscriptionDoc{ID: sub.ID, BotID: sub.BotID, URL: sub.URL, Secret: sub.Secret,
		EventTypes: types, CreatedAt: orNow(sub.CreatedAt)}, s.cfg.maxDocBytes)
	if err != nil {
		return err
	}
	ctx, cancel := s.opCtx(ctx)
	defer cancel()
	_, err = s.subscriptions().InsertOne(ctx, doc)
	if isDup(err) {
		return fmt.Errorf("%w: subscription %s", store.ErrConflict, sub.ID)
	}
	return dbErr("create subscription", err)
}

// ListSubscriptions returns a bot's subscriptions, oldest first.
func (s *Store) ListSubscriptions(ctx context.Context, botID string) ([]store.Subscription, error) {
	if err := store.CheckBotID("bot_id", botID); err != nil {
		return nil, err
	}
	ctx, cancel := s.opCtx(ctx)
	defer cancel()
	cur, err := s.subscriptions().Find(ctx, bson.D{{Key: "bot_id", Value: botID}},
		options.Find().SetSort(bson.D{{Key: "created_at", Value: 1}, {Key: "_id", Value: 1}}))
	if err != nil {
		return nil, dbErr("list subscriptions", err)
	}
	var docs []subscriptionDoc
	if err := cur.All(ctx, &docs); err != nil {
		return nil, dbErr("list subscriptions", err)
	}
	out := make([]store.Subscription, 0, len(docs))
	for _, d := range docs {
		out = append(out, store.Subscription{ID: d.ID, BotID: d.BotID, URL: d.URL, Secret: d.Secret,
			PreviousSecret: d.PreviousSecret, EventTypes: d.EventTypes, CreatedAt: d.CreatedAt.UTC()})
	}
	return out, nil
}

// DeleteSubscription returns ErrNotFound if the bot has no such subscription.
func (s *Store) DeleteSubscription(ctx context.Context, botID, id string) error {
	if err := store.FirstErr(store.CheckBotID("bot_id", botID), store.CheckID("id", id)); err != nil {
		return err
	}
	ctx, cancel := s.opCtx(ctx)
	defer cancel()
	res, err := s.subscriptions().DeleteOne(ctx, bson.D{{Key: "_id", Value: id}, {Key: "bot_id", Value: botID}})
	if err != nil {
		return dbErr("delete subscription", err)
	}
	if res.DeletedCount == 0 {
		return notFound("subscription", id)
	}
	return nil
}

// RotateSubscriptionSecret makes secret current and keeps the old one.
func (s *Store) RotateSubscriptionSecret(ctx context.Context, botID, id, secret string) error {
	if err := store.FirstErr(store.CheckBotID("bot_id", botID), store.CheckID("id", id), store.CheckSubscriptionSecret(secret)); err != nil {
		return err
	}
	ctx, cancel := s.opCtx(ctx)
	defer cancel()
	// Read then compare-and-set on the old secret: FerretDB v1 has no
	// update pipelines.
	for range 5 {
		var d subscriptionDoc
		err := s.subscriptions().FindOne(ctx, bson.D{{Key: "_id", Value: id}, {Key: "bot_id", Value: botID}}).Decode(&d)
		if errors.Is(err, mongo.ErrNoDocuments) {
			return notFound("subscription", id)
		}
		if err != nil {
			return dbErr("rotate subscription secret", err)
		}
		res, err := s.subscriptions().UpdateOne(ctx, bson.D{{Key: "_id", Value: id}, {Key: "bot_id", Value: botID}, {Key: "secret", Value: d.Secret}},
			bson.D{{Key: "$set", Value: bson.D{{Key: "secret", Value: secret}, {Key: "previous_secret", Value: d.Secret}}}})
		if err != nil {
			return dbErr("rotate subscription secret", err)
		}
		if res.MatchedCount == 1 {
			return nil
		}
	}
	return fmt.Errorf("%w: subscription %s rotated concurrently", store.ErrVersionConflict, id)
}

// DropPreviousSecret ends a rotation.
func (s *Store) DropPreviousSecret(ctx context.Context, botID, id string) error {
	if err := store.FirstErr(store.CheckBotID("bot_id", botID), store.CheckID("id", id)); err != nil {
		return err
	}
	ctx, cancel := s.opCtx(ctx)
	defer cancel()
	res, err := s.subscriptions().UpdateOne(ctx, bson.D{{Key: "_id", Value: id}, {Key: "bot_id", Value: botID}},
		bson.D{{Key: "$unset", Value: bson.D{{Key: "previous_secret", Value: ""}}}})
	if err != nil {
		return dbErr("drop previous secret", err)
	}
	if res.MatchedCount == 0 {
		return notFound("subscription", id)
	}
	return nil
}
