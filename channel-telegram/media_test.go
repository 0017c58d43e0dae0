package telegram_test

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/require"

	telegram "github.com/flowgate/flowgate/channel-telegram"
	"github.com/flowgate/flowgate/shared/channel"
	"github.com/flowgate/flowgate/shared/events"
	telegramdouble "github.com/flowgate/flowgate/shared/providerdouble/telegram"
	"github.com/flowgate/flowgate/shared/store"
	"github.com/flowgate/flowgate/shared/store/sqlite/sqlitetest"
)

// An uploaded file goes to Telegram as a multipart upload once per bot;
// the file_id of the answer is stored and sent from then on.
func TestUploadedMediaIsUploadedOnceThenFileID(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, telegramdouble.WithUnlimited())
	st := sqlitetest.Open(t)
	var err error
	f.sender, err = telegram.NewSender(telegram.WithMedia(st))
	require.NoError(t, err)
	require.NoError(t, st.CreateBot(ctx, f.bot))
	png := []byte("\x89PNG\r\n\x1a\nimage bytes")
	require.NoError(t, st.CreateMedia(ctx, store.Media{ID: "med_1", BotID: "acme", ContentType: "image/png",
		Filename: "sample.png", Size: int64(len(png)), SHA256: "x", Data: png}))
	img := events.Content{Type: events.ContentImage, MediaURL: "media:med_1", Caption: "Send image from Local",
		Buttons: []events.Button{{ID: "more", Title: "More"}}}

	_, err = f.send(t, "4242", img)
	require.NoError(t, err)
	acc := f.double.AcceptedTo("4242")
	require.Len(t, acc, 1)
	first := acc[0]
	require.Equal(t, "sendPhoto", first.Method)
	require.NotNil(t, first.Upload, "the first send uploads the file")
	require.Equal(t, "sample.png", first.Upload.Filename)
	require.Equal(t, "image/png", first.Upload.ContentType)
	require.Equal(t, len(png), first.Upload.Size)
	require.Equal(t, "Send image from Local", first.Caption)
	var kb keyboard
	require.NoError(t, json.Unmarshal(first.ReplyMarkup, &kb), "reply_markup travels as a form field")
	require.Equal(t, "more", kb.InlineKeyboard[0][0].CallbackData)
	require.NotEmpty(t, first.FileID)
	up, err := st.GetMediaUpload(ctx, "acme", "med_1", events.ChannelTelegram, "123456789")
	require.NoError(t, err)
	require.Equal(t, first.FileID, up.ProviderID)

	for _, chat := range []string{"4242", "5353"} {
		_, err = f.send(t, chat, img)
		require.NoError(t, err)
	}
	for _, a := range append(f.double.AcceptedTo("4242")[1:], f.double.AcceptedTo("5353")...) {
		require.Nil(t, a.Upload, "later sends name the file_id")
		require.Equal(t, first.FileID, a.Media)
	}

	// Another kind, a deleted file, or no media store: permanent, nothing sent.
	var perm *channel.PermanentError
	_, err = f.send(t, "4242", events.Content{Type: events.ContentDocument, MediaURL: "media:med_nope"})
	require.ErrorAs(t, err, &perm)
	require.Equal(t, telegram.CodeMediaNotFound, perm.Code)
	require.NoError(t, st.CreateMedia(ctx, store.Media{ID: "med_2", BotID: "acme", ContentType: "image/png",
		Size: int64(len(png)), SHA256: "x", Data: png}))
	_, err = f.send(t, "4242", events.Content{Type: events.ContentVideo, MediaURL: "media:med_2"})
	require.ErrorAs(t, err, &perm)
	require.Equal(t, telegram.CodeMediaNotFound, perm.Code)
	f.sender, err = telegram.NewSender()
	require.NoError(t, err)
	_, err = f.send(t, "4242", img)
	require.ErrorAs(t, err, &perm)
	require.Equal(t, telegram.CodeMediaNotFound, perm.Code)
	_, err = f.send(t, "4242", events.Content{Type: events.ContentImage, MediaURL: "assets/sample.png"})
	require.ErrorAs(t, err, &perm)
	require.Equal(t, "invalid_message", perm.Code)
	require.Len(t, f.double.AcceptedTo("4242"), 2)
}
