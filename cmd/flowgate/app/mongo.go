package app

import (
	"context"
	"fmt"

	"github.com/flowgate/flowgate/shared/store"
	"github.com/flowgate/flowgate/shared/store/mongo"
)

func openMongo(ctx context.Context, cfg Config) (store.Store, error) {
	var opts []mongo.Option
	if cfg.Retention > 0 {
		opts = append(opts, mongo.WithRetention(cfg.Retention))
	}
	opts = append(opts, mongo.WithLogger(cfg.Logger.With("store", "mongo")))
	s, err := mongo.Open(ctx, cfg.MongoURI, cfg.MongoDB, opts...)
	if err != nil {
		// Never a typed nil in the interface: callers test it against nil.
		return nil, fmt.Errorf("MongoDB (FLOWGATE_MONGODB_URI) unreachable or refused: %w", err)
	}
	return s, nil
}
