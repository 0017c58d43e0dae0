package mongo

import (
	"context"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/flowgate/flowgate/shared/store"
)

// Deleted contacts leave a tombstone (their internal id only) so that a
// write already under way for them cannot bring their data back (see the
// SQLite adapter's tombstones.go). Without transactions the order does it:
// DeleteContact writes the tombstone before it deletes the contact's runs
// and messages, and CreateRun(s)/InsertMessages look for tombstones after
// they wrote. A write that lands before the delete's sweep is swept; one
// that lands after it finds the tombstone and removes what it wrote.
const colDeletedContacts = "deleted_contacts"

// tombstoneTTL is how long a tombstone is kept: far longer than a batch
// takes between reading a contact and writing for it.
const tombstoneTTL = 7 * 24 * time.Hour

type tombstoneDoc struct {
	ID        string    `bson:"_id"`
	BotID     string    `bson:"bot_id"`
	DeletedAt time.Time `bson:"deleted_at"`
}

func (s *Store) tombstones() *mongo.Collection { return s.db.Collection(colDeletedContacts) }

// addTombstone records that contact id was deleted, and drops the expired
// tombstones.
func (s *Store) addTombstone(ctx context.Context, botID, id string, now time.Time) error {
	if _, err := s.tombstones().UpdateOne(ctx, bson.D{{Key: "_id", Value: id}},
		bson.D{{Key: "$set", Value: tombstoneDoc{ID: id, BotID: botID, DeletedAt: now.UTC()}}},
		options.UpdateOne().SetUpsert(true)); err != nil {
		return err
	}
	_, err := s.tombstones().DeleteMany(ctx, bson.D{{Key: "deleted_at", Value: bson.D{{Key: "$lt", Value: now.Add(-tombstoneTTL).UTC()}}}})
	return err
}

// deletedAmong returns which of the contact ids have a tombstone.
func (s *Store) deletedAmong(ctx context.Context, contactIDs []string) (map[string]bool, error) {
	seen := map[string]bool{}
	ids := make([]string, 0, len(contactIDs))
	for _, id := range contactIDs {
		if !seen[id] {
			seen[id] = true
			ids = append(ids, id)
		}
	}
	if len(ids) == 0 {
		return nil, nil
	}
	cur, err := s.tombstones().Find(ctx, bson.D{{Key: "_id", Value: bson.D{{Key: "$in", Value: ids}}}},
		options.Find().SetProjection(bson.D{{Key: "_id", Value: 1}}))
	if err != nil {
		return nil, err
	}
	var docs []struct {
		ID string `bson:"_id"`
	}
	if err := cur.All(ctx, &docs); err != nil {
		return nil, err
	}
	if len(docs) == 0 {
		return nil, nil
	}
	gone := make(map[string]bool, len(docs))
	for _, d := range docs {
		gone[d.ID] = true
	}
	return gone, nil
}

// dropRunsOfDeleted deletes, of the runs just written, those of deleted
// contacts, with their messages; their results say "not created" and carry
// status cancelled, so that a caller starts nothing for them.
func (s *Store) dropRunsOfDeleted(ctx context.Context, rs []store.Run, out []store.Run, created []bool) error {
	ids := make([]string, len(rs))
	for i := range rs {
		ids[i] = rs[i].ContactID
	}
	gone, err := s.deletedAmong(ctx, ids)
	if err != nil || len(gone) == 0 {
		return err
	}
	var runIDs []string
	for i := range rs {
		if !gone[rs[i].ContactID] {
			continue
		}
		runIDs = append(runIDs, rs[i].ID)
		out[i] = rs[i]
		out[i].Status = store.RunCancelled
		out[i].Error = "contact deleted"
		created[i] = false
	}
	in := bson.D{{Key: "$in", Value: runIDs}}
	if _, err := s.messages.DeleteMany(ctx, bson.D{{Key: "run_id", Value: in}}); err != nil {
		return err
	}
	_, err = s.runs.DeleteMany(ctx, bson.D{{Key: "_id", Value: in}})
	return err
}

// dropMessagesOfDeleted deletes, of the messages just written, those of
// deleted contacts.
func (s *Store) dropMessagesOfDeleted(ctx context.Context, ms []store.Message) error {
	ids := make([]string, len(ms))
	for i := range ms {
		ids[i] = ms[i].ContactID
	}
	gone, err := s.deletedAmong(ctx, ids)
	if err != nil || len(gone) == 0 {
		return err
	}
	var msgIDs []string
	for _, m := range ms {
		if gone[m.ContactID] {
			msgIDs = append(msgIDs, m.ID)
		}
	}
	_, err = s.messages.DeleteMany(ctx, bson.D{{Key: "_id", Value: bson.D{{Key: "$in", Value: msgIDs}}}})
	return err
}
