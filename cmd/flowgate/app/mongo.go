package app

import (
	"context"
	"errors"

	"github.com/flowgate/flowgate/shared/store"
)

func openMongo(ctx context.Context, cfg Config) (store.Store, error) {
	return nil, errors.New("the MongoDB store is not wired yet")
}
