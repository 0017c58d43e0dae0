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

// Uploaded media: one document per file (the bytes inline, at most
// store.MaxMediaBytes, under MongoDB's 16 MiB document limit) and one per
// provider copy of a file.

const (
	colMedia        = "media"
	colMediaUploads = "media_uploads"
)

type mediaDoc struct {
	ID          string    `bson:"_id"`
	BotID       string    `bson:"bot_id"`
	ContentType string    `bson:"content_type"`
	Filename    string    `bson:"filename"`
	Size        int64     `bson:"size"`
	SHA256      string    `bson:"sha256"`
	Data        []byte    `bson:"data,omitempty"`
	CreatedAt   time.Time `bson:"created_at"`
}

func (d *mediaDoc) media() store.Media {
	return store.Media{ID: d.ID, BotID: d.BotID, ContentType: d.ContentType, Filename: d.Filename, Size: d.Size,
		SHA256: d.SHA256, Data: d.Data, CreatedAt: d.CreatedAt.UTC()}
}

// mediaUploadDoc is keyed by media id + channel + account.
type mediaUploadDoc struct {
	ID         string    `bson:"_id"`
	BotID      string    `bson:"bot_id"`
	MediaID    string    `bson:"media_id"`
	Channel    string    `bson:"channel"`
	Account    string    `bson:"account"`
	ProviderID string    `bson:"provider_id"`
	UploadedAt time.Time `bson:"uploaded_at"`
}

func mediaUploadKey(mediaID, channel, account string) string {
	return mediaID + "\x00" + channel + "\x00" + account
}

func (s *Store) mediaFiles() *mongo.Collection   { return s.db.Collection(colMedia) }
func (s *Store) mediaUploads() *mongo.Collection { return s.db.Collection(colMediaUploads) }

// mediaLimit is the document limit for a media file: the file plus room
// for its metadata.
const mediaLimit = store.MaxMediaBytes + 64<<10

// CreateMedia fails with ErrConflict if the id is taken.
func (s *Store) CreateMedia(ctx context.Context, m store.Media) error {
	if err := check.Media(m); err != nil {
		return err
	}
	doc, err := marshal(mediaDoc{ID: m.ID, BotID: m.BotID, ContentType: m.ContentType, Filename: m.Filename,
		Size: m.Size, SHA256: m.SHA256, Data: m.Data, CreatedAt: orNow(m.CreatedAt)}, max(s.cfg.maxDocBytes, mediaLimit))
	if err != nil {
		return err
	}
	ctx, cancel := s.opCtx(ctx)
	defer cancel()
	_, err = s.mediaFiles().InsertOne(ctx, doc)
	if isDup(err) {
		return fmt.Errorf("%w: media %s", store.ErrConflict, m.ID)
	}
	return dbErr("create media", err)
}

// GetMedia returns the file with its data.
func (s *Store) GetMedia(ctx context.Context, botID, id string) (store.Media, error) {
	if err := store.FirstErr(store.CheckBotID("bot_id", botID), store.CheckID("id", id)); err != nil {
		return store.Media{}, err
	}
	ctx, cancel := s.opCtx(ctx)
	defer cancel()
	var d mediaDoc
	err := s.mediaFiles().FindOne(ctx, bson.D{{Key: "_id", Value: id}, {Key: "bot_id", Value: botID}}).Decode(&d)
	if errors.Is(err, mongo.ErrNoDocuments) {
		return store.Media{}, notFound("media", botID, id)
	}
	if err != nil {
		return store.Media{}, dbErr("get media", err)
	}
	return d.media(), nil
}

// ListMedia returns a bot's files without their data, oldest first.
func (s *Store) ListMedia(ctx context.Context, botID string) ([]store.Media, error) {
	if err := store.CheckBotID("bot_id", botID); err != nil {
		return nil, err
	}
	ctx, cancel := s.opCtx(ctx)
	defer cancel()
	cur, err := s.mediaFiles().Find(ctx, bson.D{{Key: "bot_id", Value: botID}}, options.Find().
		SetSort(bson.D{{Key: "created_at", Value: 1}, {Key: "_id", Value: 1}}).
		SetProjection(bson.D{{Key: "data", Value: 0}}))
	if err != nil {
		return nil, dbErr("list media", err)
	}
	var docs []mediaDoc
	if err := cur.All(ctx, &docs); err != nil {
		return nil, dbErr("list media", err)
	}
	out := make([]store.Media, 0, len(docs))
	for i := range docs {
		m := docs[i].media()
		m.Data = nil
		out = append(out, m)
	}
	return out, nil
}

// DeleteMedia deletes a file, then its provider copies. A crash between
// the two leaves copies of a deleted file: harmless, since a send reads the
// file first, and media ids are random, never reused.
func (s *Store) DeleteMedia(ctx context.Context, botID, id string) error {
	if err := store.FirstErr(store.CheckBotID("bot_id", botID), store.CheckID("id", id)); err != nil {
		return err
	}
	ctx, cancel := s.opCtx(ctx)
	defer cancel()
	unlock := s.lockUpdates()
	defer unlock()
	res, err := s.mediaFiles().DeleteOne(ctx, bson.D{{Key: "_id", Value: id}, {Key: "bot_id", Value: botID}})
	if err != nil {
		return dbErr("delete media", err)
	}
	if res.DeletedCount == 0 {
		return notFound("media", botID, id)
	}
	_, err = s.mediaUploads().DeleteMany(ctx, bson.D{{Key: "media_id", Value: id}, {Key: "bot_id", Value: botID}})
	return dbErr("delete media uploads", err)
}

// PutMediaUpload creates or replaces a provider copy of an existing file.
func (s *Store) PutMediaUpload(ctx context.Context, u store.MediaUpload) error {
	if err := check.MediaUpload(u); err != nil {
		return err
	}
	ctx, cancel := s.opCtx(ctx)
	defer cancel()
	n, err := s.mediaFiles().CountDocuments(ctx, bson.D{{Key: "_id", Value: u.MediaID}, {Key: "bot_id", Value: u.BotID}})
	if err != nil {
		return dbErr("put media upload", err)
	}
	if n == 0 {
		return notFound("media", u.BotID, u.MediaID)
	}
	doc := mediaUploadDoc{ID: mediaUploadKey(u.MediaID, u.Channel, u.Account), BotID: u.BotID, MediaID: u.MediaID,
		Channel: u.Channel, Account: u.Account, ProviderID: u.ProviderID, UploadedAt: orNow(u.UploadedAt)}
	unlock := s.lockUpdates()
	defer unlock()
	_, err = s.mediaUploads().ReplaceOne(ctx, bson.D{{Key: "_id", Value: doc.ID}}, doc, options.Replace().SetUpsert(true))
	return dbErr("put media upload", err)
}

// GetMediaUpload returns a provider copy, or ErrNotFound.
func (s *Store) GetMediaUpload(ctx context.Context, botID, mediaID, channel, account string) (store.MediaUpload, error) {
	if err := store.CheckMediaUploadKey(botID, mediaID, channel, account); err != nil {
		return store.MediaUpload{}, err
	}
	ctx, cancel := s.opCtx(ctx)
	defer cancel()
	var d mediaUploadDoc
	err := s.mediaUploads().FindOne(ctx, bson.D{{Key: "_id", Value: mediaUploadKey(mediaID, channel, account)},
		{Key: "bot_id", Value: botID}}).Decode(&d)
	if errors.Is(err, mongo.ErrNoDocuments) {
		return store.MediaUpload{}, notFound("media upload", botID, mediaID, channel)
	}
	if err != nil {
		return store.MediaUpload{}, dbErr("get media upload", err)
	}
	return store.MediaUpload{BotID: d.BotID, MediaID: d.MediaID, Channel: d.Channel, Account: d.Account,
		ProviderID: d.ProviderID, UploadedAt: d.UploadedAt.UTC()}, nil
}
