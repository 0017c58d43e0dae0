package storetest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/flowgate/flowgate/shared/store"
)

// RunMedia checks the media part of the port: create, get (with the bytes),
// list (oldest first, without the bytes, per bot), conflicts, invalid
// input, provider copies (put replaces, per channel account, need the
// file) and delete (with the copies). s must hold no media of the bots
// "media-a" and "media-b".
func RunMedia(t *testing.T, s store.Store, precision time.Duration) {
	ctx := context.Background()
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	png := append([]byte("\x89PNG\r\n\x1a\n"), bytes.Repeat([]byte{0, 1, 2, 0xff}, 1000)...)
	big := bytes.Repeat([]byte{7}, 2<<20) // more than one JSON field may hold
	a1 := store.Media{ID: "med_a1", BotID: "media-a", ContentType: "image/png", Filename: "sample.png",
		Size: int64(len(png)), SHA256: "aa", Data: png, CreatedAt: t0}
	a2 := store.Media{ID: "med_a2", BotID: "media-a", ContentType: "application/pdf",
		Size: int64(len(big)), SHA256: "bb", Data: big, CreatedAt: t0.Add(time.Second)}
	b1 := store.Media{ID: "med_b1", BotID: "media-b", ContentType: "image/jpeg",
		Size: 3, SHA256: "cc", Data: []byte{1, 2, 3}, CreatedAt: t0}

	empty, err := s.ListMedia(ctx, "media-a")
	require.NoError(t, err)
	require.Empty(t, empty)

	require.NoError(t, s.CreateMedia(ctx, a2))
	require.NoError(t, s.CreateMedia(ctx, a1))
	require.NoError(t, s.CreateMedia(ctx, b1))
	require.ErrorIs(t, s.CreateMedia(ctx, a1), store.ErrConflict)

	got, err := s.GetMedia(ctx, "media-a", "med_a1")
	require.NoError(t, err)
	require.Equal(t, png, got.Data, "the bytes come back unchanged")
	require.Equal(t, "image/png", got.ContentType)
	require.Equal(t, "sample.png", got.Filename)
	require.Equal(t, int64(len(png)), got.Size)
	require.Equal(t, "aa", got.SHA256)
	require.WithinDuration(t, t0, got.CreatedAt, precision)
	require.Equal(t, time.UTC, got.CreatedAt.Location())
	got, err = s.GetMedia(ctx, "media-a", "med_a2")
	require.NoError(t, err)
	require.Equal(t, big, got.Data, "a file larger than a JSON field is stored whole")

	// Another bot's file is missing.
	_, err = s.GetMedia(ctx, "media-b", "med_a1")
	require.ErrorIs(t, err, store.ErrNotFound)
	_, err = s.GetMedia(ctx, "media-a", "med_nope")
	require.ErrorIs(t, err, store.ErrNotFound)

	list, err := s.ListMedia(ctx, "media-a")
	require.NoError(t, err)
	require.Len(t, list, 2)
	require.Equal(t, "med_a1", list[0].ID, "oldest first")
	require.Equal(t, "med_a2", list[1].ID)
	for _, m := range list {
		require.Nil(t, m.Data, "a list leaves the bytes out")
		require.NotZero(t, m.Size)
	}

	// Provider copies: per channel account, replaced by a later put.
	up := store.MediaUpload{BotID: "media-a", MediaID: "med_a1", Channel: "whatsapp", Account: "1001",
		ProviderID: "wa-media-1", UploadedAt: t0}
	_, err = s.GetMediaUpload(ctx, "media-a", "med_a1", "whatsapp", "1001")
	require.ErrorIs(t, err, store.ErrNotFound)
	require.NoError(t, s.PutMediaUpload(ctx, up))
	u, err := s.GetMediaUpload(ctx, "media-a", "med_a1", "whatsapp", "1001")
	require.NoError(t, err)
	require.Equal(t, "wa-media-1", u.ProviderID)
	require.WithinDuration(t, t0, u.UploadedAt, precision)
	require.Equal(t, time.UTC, u.UploadedAt.Location())
	_, err = s.GetMediaUpload(ctx, "media-a", "med_a1", "whatsapp", "2002")
	require.ErrorIs(t, err, store.ErrNotFound, "another phone number has its own copy")
	_, err = s.GetMediaUpload(ctx, "media-b", "med_a1", "whatsapp", "1001")
	require.ErrorIs(t, err, store.ErrNotFound, "another bot cannot read the copy")
	renewed := up
	renewed.ProviderID, renewed.UploadedAt = "wa-media-2", t0.Add(29*24*time.Hour)
	require.NoError(t, s.PutMediaUpload(ctx, renewed))
	u, err = s.GetMediaUpload(ctx, "media-a", "med_a1", "whatsapp", "1001")
	require.NoError(t, err)
	require.Equal(t, "wa-media-2", u.ProviderID)
	require.WithinDuration(t, renewed.UploadedAt, u.UploadedAt, precision)
	tg := store.MediaUpload{BotID: "media-a", MediaID: "med_a1", Channel: "telegram", Account: "123456",
		ProviderID: "AgACAgIAAxk", UploadedAt: t0}
	require.NoError(t, s.PutMediaUpload(ctx, tg))
	// A copy needs its file (of the same bot).
	err = s.PutMediaUpload(ctx, store.MediaUpload{BotID: "media-b", MediaID: "med_a1", Channel: "whatsapp",
		Account: "1001", ProviderID: "x", UploadedAt: t0})
	require.ErrorIs(t, err, store.ErrNotFound)

	// Delete: another bot cannot; the copies go with the file.
	require.ErrorIs(t, s.DeleteMedia(ctx, "media-b", "med_a1"), store.ErrNotFound)
	require.NoError(t, s.DeleteMedia(ctx, "media-a", "med_a1"))
	require.ErrorIs(t, s.DeleteMedia(ctx, "media-a", "med_a1"), store.ErrNotFound)
	_, err = s.GetMedia(ctx, "media-a", "med_a1")
	require.ErrorIs(t, err, store.ErrNotFound)
	_, err = s.GetMediaUpload(ctx, "media-a", "med_a1", "whatsapp", "1001")
	require.ErrorIs(t, err, store.ErrNotFound)
	_, err = s.GetMediaUpload(ctx, "media-a", "med_a1", "telegram", "123456")
	require.ErrorIs(t, err, store.ErrNotFound)
	list, err = s.ListMedia(ctx, "media-a")
	require.NoError(t, err)
	require.Len(t, list, 1)
	list, err = s.ListMedia(ctx, "media-b")
	require.NoError(t, err)
	require.Len(t, list, 1)

	// Invalid input is refused before any I/O, as an *InvalidError.
	var inv *store.InvalidError
	for name, bad := range map[string]store.Media{
		"bot id":        {ID: "x", BotID: "Bad Bot", ContentType: "image/png", Size: 1, Data: []byte{1}},
		"empty id":      {BotID: "media-a", ContentType: "image/png", Size: 1, Data: []byte{1}},
		"no type":       {ID: "x", BotID: "media-a", Size: 1, Data: []byte{1}},
		"no data":       {ID: "x", BotID: "media-a", ContentType: "image/png"},
		"size mismatch": {ID: "x", BotID: "media-a", ContentType: "image/png", Size: 2, Data: []byte{1}},
		"too large": {ID: "x", BotID: "media-a", ContentType: "image/png", Size: store.MaxMediaBytes + 1,
			Data: make([]byte, store.MaxMediaBytes+1)},
	} {
		err := s.CreateMedia(ctx, bad)
		require.True(t, errors.As(err, &inv), "%s: %v", name, err)
	}
	_, err = s.ListMedia(ctx, "Bad Bot")
	require.ErrorIs(t, err, store.ErrInvalid)
	_, err = s.GetMedia(ctx, "media-a", "")
	require.ErrorIs(t, err, store.ErrInvalid)
	require.ErrorIs(t, s.DeleteMedia(ctx, "media-a", ""), store.ErrInvalid)
	require.ErrorIs(t, s.PutMediaUpload(ctx, store.MediaUpload{BotID: "media-a", MediaID: "med_a2", Channel: "whatsapp"}), store.ErrInvalid)
	_, err = s.GetMediaUpload(ctx, "media-a", "med_a2", "", "1001")
	require.ErrorIs(t, err, store.ErrInvalid)
}

// RunEventInput checks that an event keeps its input mapping (opaque
// JSON), that a put without one clears it, and that invalid JSON is
// refused. s must hold no events of the bot "input-a".
func RunEventInput(t *testing.T, s store.Store) {
	ctx := context.Background()
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	input := json.RawMessage(`{"user":"/userId","data":"","signature":{"secret":"whsec_1","header":"X-Signature"}}`)
	ev := store.Event{BotID: "input-a", Name: "PAYMENT_RECEIVED", FlowID: "payment", TokenHash: "h1",
		Input: input, CreatedAt: t0, UpdatedAt: t0}
	require.NoError(t, s.PutEvent(ctx, ev))
	got, err := s.GetEvent(ctx, "input-a", "PAYMENT_RECEIVED")
	require.NoError(t, err)
	require.JSONEq(t, string(input), string(got.Input))
	got, err = s.GetEventByToken(ctx, "input-a", "h1")
	require.NoError(t, err)
	require.JSONEq(t, string(input), string(got.Input))

	ev.Input = nil
	ev.UpdatedAt = t0.Add(time.Minute)
	require.NoError(t, s.PutEvent(ctx, ev))
	got, err = s.GetEvent(ctx, "input-a", "PAYMENT_RECEIVED")
	require.NoError(t, err)
	require.Empty(t, got.Input, "a put without input clears it")

	ev.Input = json.RawMessage(`{"user":`)
	var inv *store.InvalidError
	require.True(t, errors.As(s.PutEvent(ctx, ev), &inv))
	require.Equal(t, "input", inv.Field)
}
