package rcs_test

import (
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/flowgate/flowgate/shared/testclock"

	"github.com/stretchr/testify/require"

	rcs "github.com/flowgate/flowgate/channel-rcs"
	"github.com/flowgate/flowgate/shared/events"
	"github.com/flowgate/flowgate/shared/media"
)

// An uploaded file reaches RBM as a signed link to the ingress, which the
// same key verifies.
func TestUploadedMediaIsSentAsSignedLink(t *testing.T) {
	f := newFixture(t)
	now := testclock.Date(2026, 5, 1, 9, 0, 0)
	signer, err := media.NewSigner("https://flowgate.example.com", []byte("media-url-key-0123456789"), time.Hour, func() time.Time { return now })
	require.NoError(t, err)
	f.sender, err = rcs.NewSender(rcs.WithMediaLinks(signer))
	require.NoError(t, err)
	_, err = f.send(t, "+31612345678", events.Content{Type: events.ContentImage, MediaURL: "media:med_1", Caption: "Send image from Local"})
	require.NoError(t, err)
	acc := f.double.Accepted()
	require.Len(t, acc, 1)
	u, err := url.Parse(acc[0].FileURL)
	require.NoError(t, err)
	require.Equal(t, "flowgate.example.com", u.Host)
	require.Equal(t, "/media/acme/med_1", u.Path)
	require.NoError(t, signer.Verify("acme", "med_1", u.Query().Get("exp"), u.Query().Get("sig")))

	// Without a signer, or a signer without a public URL: refused, not sent.
	f.sender, err = rcs.NewSender()
	require.NoError(t, err)
	_, err = f.send(t, "+31612345678", events.Content{Type: events.ContentImage, MediaURL: "media:med_1"})
	requirePermanent(t, err, rcs.CodeMediaNotFound, false)
	verifyOnly, err := media.NewSigner("", []byte("media-url-key-0123456789"), 0, nil)
	require.NoError(t, err)
	f.sender, err = rcs.NewSender(rcs.WithMediaLinks(verifyOnly))
	require.NoError(t, err)
	_, err = f.send(t, "+31612345678", events.Content{Type: events.ContentImage, MediaURL: "media:med_1"})
	requirePermanent(t, err, rcs.CodeMediaNotFound, false)
	_, err = f.send(t, "+31612345678", events.Content{Type: events.ContentImage, MediaURL: "assets/sample.png"})
	requirePermanent(t, err, "invalid_message", false)
	require.Len(t, f.double.Accepted(), 1)
	require.False(t, strings.Contains(acc[0].FileURL, "media:"))
}
