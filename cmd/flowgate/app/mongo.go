package app

import (
	"context"

	"github.com/flowgate/flowgate/shared/store"
	"github.com/flowgate/flowgate/shared/store/mongo"
)

func openMongo(ctx context.Context, cfg Config) (store.Store, error) {
	var opts []mongo.Option
	if cfg.Retention > 0 {
		opts = append(opts, mongo.WithRetention(cfg.Retention))
	}
	opts = append(opts, mongo.WithLogger(cfg.Logger.With("store", "mongo")))
	return mongo.Open(ctx, cfg.MongoURI, cfg.MongoDB, opts...)
}
