package media_test

import (
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/flowgate/flowgate/shared/testclock"

	"github.com/stretchr/testify/require"

	"github.com/flowgate/flowgate/shared/media"
)

func TestRefs(t *testing.T) {
	id, ok := media.ParseRef("media:med_1")
	require.True(t, ok)
	require.Equal(t, "med_1", id)
	for _, v := range []string{"media:", "assets/sample.png", "https://e.x/a.png", "MEDIA:x"} {
		_, ok := media.ParseRef(v)
		require.False(t, ok, v)
	}
	require.Equal(t, "media:x", media.Ref("x"))
	require.True(t, media.IsURL("https://cdn.example.com/a.png"))
	require.True(t, media.IsURL("http://cdn.example.com"))
	for _, v := range []string{"assets/sample.png", "/abs/path.png", "ftp://e.x/a", "https://", "file:///etc/passwd", "1479537139650973"} {
		require.False(t, media.IsURL(v), v)
	}
}

func TestSignedURLs(t *testing.T) {
	now := testclock.Date(2026, 5, 1, 9, 0, 0)
	clock := func() time.Time { return now }
	key := []byte("0123456789abcdef0123")
	s, err := media.NewSigner("https://flowgate.example.com/", key, time.Hour, clock)
	require.NoError(t, err)
	raw, err := s.URL("acme", "med_1")
	require.NoError(t, err)
	require.True(t, strings.HasPrefix(raw, "https://flowgate.example.com/media/acme/med_1?exp="), raw)
	u, err := url.Parse(raw)
	require.NoError(t, err)
	exp, sig := u.Query().Get("exp"), u.Query().Get("sig")
	require.NoError(t, s.Verify("acme", "med_1", exp, sig))
	require.ErrorIs(t, s.Verify("other", "med_1", exp, sig), media.ErrBadSignature, "another bot")
	require.ErrorIs(t, s.Verify("acme", "med_2", exp, sig), media.ErrBadSignature, "another file")
	require.ErrorIs(t, s.Verify("acme", "med_1", exp+"0", sig), media.ErrBadSignature, "a longer life")
	require.ErrorIs(t, s.Verify("acme", "med_1", exp, ""), media.ErrBadSignature)
	other, err := media.NewSigner("", []byte("another key 0123456"), 0, clock)
	require.NoError(t, err)
	require.ErrorIs(t, other.Verify("acme", "med_1", exp, sig), media.ErrBadSignature, "another key")
	_, err = other.URL("acme", "med_1")
	require.ErrorIs(t, err, media.ErrNoPublicURL)

	now = now.Add(time.Hour - time.Second)
	require.NoError(t, s.Verify("acme", "med_1", exp, sig))
	now = now.Add(time.Second)
	require.ErrorIs(t, s.Verify("acme", "med_1", exp, sig), media.ErrExpired)

	_, err = media.NewSigner("https://e.x", []byte("short"), 0, nil)
	require.Error(t, err)
	_, err = media.NewSigner("flowgate.example.com", key, 0, nil)
	require.Error(t, err)
}
