package instrumented

import (
	"context"

	"github.com/flowgate/flowgate/shared/store"
)

// CreateMedia delegates and measures.
func (s *Store) CreateMedia(ctx context.Context, m store.Media) error {
	return measure0(s, "CreateMedia", func() error { return s.Store.CreateMedia(ctx, m) })
}

// GetMedia delegates and measures (a worker's first send of a file reads it).
func (s *Store) GetMedia(ctx context.Context, botID, id string) (store.Media, error) {
	return measure(s, "GetMedia", func() (store.Media, error) { return s.Store.GetMedia(ctx, botID, id) })
}

// ListMedia delegates and measures.
func (s *Store) ListMedia(ctx context.Context, botID string) ([]store.Media, error) {
	return measure(s, "ListMedia", func() ([]store.Media, error) { return s.Store.ListMedia(ctx, botID) })
}

// DeleteMedia delegates and measures.
func (s *Store) DeleteMedia(ctx context.Context, botID, id string) error {
	return measure0(s, "DeleteMedia", func() error { return s.Store.DeleteMedia(ctx, botID, id) })
}

// PutMediaUpload delegates and measures.
func (s *Store) PutMediaUpload(ctx context.Context, u store.MediaUpload) error {
	return measure0(s, "PutMediaUpload", func() error { return s.Store.PutMediaUpload(ctx, u) })
}

// GetMediaUpload delegates and measures (every send of an uploaded file reads it).
func (s *Store) GetMediaUpload(ctx context.Context, botID, mediaID, channel, account string) (store.MediaUpload, error) {
	return measure(s, "GetMediaUpload", func() (store.MediaUpload, error) {
		return s.Store.GetMediaUpload(ctx, botID, mediaID, channel, account)
	})
}
