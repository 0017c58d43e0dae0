package whatsapp_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	whatsapp "github.com/flowgate/flowgate/channel-whatsapp"
	"github.com/flowgate/flowgate/shared/channel"
	"github.com/flowgate/flowgate/shared/events"
	whatsappdouble "github.com/flowgate/flowgate/shared/providerdouble/whatsapp"
	"github.com/flowgate/flowgate/shared/store"
	"github.com/flowgate/flowgate/shared/store/sqlite/sqlitetest"
)

type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *testClock) now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *testClock) add(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

// An uploaded file is uploaded to Meta on its first send from a number,
// its media id reused until it is 29 days old, then uploaded again before
// Meta's 30 days end; the double refuses any id it did not issue or that
// expired, so every accepted send proves the id was live.
func TestUploadedMediaIsUploadedOnceAndRenewed(t *testing.T) {
	ctx := context.Background()
	clk := &testClock{t: now}
	d := whatsappdouble.New(whatsappdouble.WithClock(clk.now))
	defer d.Close()
	st := sqlitetest.Open(t)
	s, err := whatsapp.NewSender(whatsapp.WithAPIBase(d.APIBase()), whatsapp.WithClock(clk.now), whatsapp.WithMedia(st))
	require.NoError(t, err)
	require.NoError(t, st.CreateBot(ctx, testBot(whatsappdouble.DefaultToken)))
	png := []byte("\x89PNG\r\n\x1a\nimage bytes")
	require.NoError(t, st.CreateMedia(ctx, store.Media{ID: "med_1", BotID: "acme", ContentType: "image/png",
		Filename: "sample.png", Size: int64(len(png)), SHA256: "x", Data: png}))

	send := func(c events.Content) (channel.Result, error) {
		last := clk.now().Add(-time.Hour)
		out := bundle(&last, c)
		return s.Send(ctx, testBot(whatsappdouble.DefaultToken), out, out.Messages[0])
	}
	img := events.Content{Type: events.ContentImage, MediaURL: "media:med_1", Caption: "Send image from Local"}
	// A file of another kind fails permanently, without any request.
	_, err = send(events.Content{Type: events.ContentVideo, MediaURL: "media:med_1"})
	var perm *channel.PermanentError
	require.ErrorAs(t, err, &perm)
	require.Equal(t, whatsapp.CodeMediaNotFound, perm.Code)
	require.Zero(t, d.Stats().Requests)
	for range 3 {
		_, err := send(img)
		require.NoError(t, err)
	}
	ups := d.Uploads()
	require.Len(t, ups, 1, "one upload, then the id is reused")
	require.Equal(t, phoneID, ups[0].PhoneNumberID)
	require.Equal(t, "image/png", ups[0].Type)
	require.Equal(t, len(png), ups[0].Size)
	acc := d.Accepted()
	require.Len(t, acc, 3)
	for _, m := range acc {
		im := m.Map()["image"].(map[string]any)
		require.Equal(t, ups[0].ID, im["id"])
		require.Equal(t, "Send image from Local", im["caption"])
	}
	u, err := st.GetMediaUpload(ctx, "acme", "med_1", events.ChannelWhatsApp, phoneID)
	require.NoError(t, err)
	require.Equal(t, ups[0].ID, u.ProviderID)

	// Day 29 minus a second: still reused. Day 29: uploaded again, and the
	// new id is used; on day 31 the first id would be refused by the double.
	clk.add(whatsapp.DefaultMediaRenewAfter - time.Second)
	_, err = send(img)
	require.NoError(t, err)
	require.Len(t, d.Uploads(), 1)
	clk.add(time.Second)
	_, err = send(img)
	require.NoError(t, err)
	ups = d.Uploads()
	require.Len(t, ups, 2, "renewed before Meta's 30 days end")
	clk.add(2 * 24 * time.Hour)
	_, err = send(img)
	require.NoError(t, err)
	acc = d.Accepted()
	require.Equal(t, ups[1].ID, acc[len(acc)-1].Map()["image"].(map[string]any)["id"])

	// A deleted file fails permanently, without a send.
	before := d.Stats().Requests
	require.NoError(t, st.DeleteMedia(ctx, "acme", "med_1"))
	_, err = send(img)
	require.ErrorAs(t, err, &perm)
	require.Equal(t, whatsapp.CodeMediaNotFound, perm.Code)
	require.Equal(t, before, d.Stats().Requests, "nothing reached Meta")

	// Without a media store a reference is refused, never sent as an id.
	plain, err := whatsapp.NewSender(whatsapp.WithAPIBase(d.APIBase()), whatsapp.WithClock(clk.now))
	require.NoError(t, err)
	last := clk.now().Add(-time.Hour)
	out := bundle(&last, img)
	_, err = plain.Send(ctx, testBot(whatsappdouble.DefaultToken), out, out.Messages[0])
	require.ErrorAs(t, err, &perm)
	require.Equal(t, whatsapp.CodeMediaNotFound, perm.Code)
}

// A refused upload is classified like a refused send: Meta's 131053 for an
// unsupported file fails the message permanently.
func TestUploadRefusedIsPermanent(t *testing.T) {
	ctx := context.Background()
	d := whatsappdouble.New()
	defer d.Close()
	st := sqlitetest.Open(t)
	s, err := whatsapp.NewSender(whatsapp.WithAPIBase(d.APIBase()), whatsapp.WithClock(func() time.Time { return now }), whatsapp.WithMedia(st))
	require.NoError(t, err)
	// 6 MiB: within Flowgate's store limit, over WhatsApp's 5 MB for images.
	big := make([]byte, 6<<20)
	require.NoError(t, st.CreateMedia(ctx, store.Media{ID: "med_big", BotID: "acme", ContentType: "image/png",
		Size: int64(len(big)), SHA256: "x", Data: big}))
	out := inWindow(events.Content{Type: events.ContentImage, MediaURL: "media:med_big"})
	_, err = s.Send(ctx, testBot(whatsappdouble.DefaultToken), out, out.Messages[0])
	var perm *channel.PermanentError
	require.ErrorAs(t, err, &perm)
	require.Equal(t, "131053", perm.Code)
	require.Empty(t, d.Accepted())
	_, err = st.GetMediaUpload(ctx, "acme", "med_big", events.ChannelWhatsApp, phoneID)
	require.ErrorIs(t, err, store.ErrNotFound)

	_, err = whatsapp.NewSender(whatsapp.WithMediaRenewAfter(31 * 24 * time.Hour))
	require.Error(t, err)
	_, err = whatsapp.NewSender(whatsapp.WithMedia(nil))
	require.Error(t, err)
}
