package mongo

import (
	"context"
	"fmt"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/flowgate/flowgate/shared/store"
)

// colWriteProbe holds one document, rewritten by every write probe.
const colWriteProbe = "write_probe"

// PingWrite proves the primary accepts a write now (with the store's write
// concern): readiness checks use it, as a database can answer pings while
// refusing writes.
func (s *Store) PingWrite(ctx context.Context) error {
	ctx, cancel := s.opCtx(ctx)
	defer cancel()
	_, err := s.db.Collection(colWriteProbe).UpdateOne(ctx, bson.D{{Key: "_id", Value: "probe"}},
		bson.D{{Key: "$set", Value: bson.D{{Key: "at", Value: time.Now().UTC()}}}}, options.UpdateOne().SetUpsert(true))
	if err != nil {
		return fmt.Errorf("%w: mongo: write probe: %w", store.ErrUnavailable, err)
	}
	return nil
}
