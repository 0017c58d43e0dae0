// Package media owns what the services share about uploaded files: how a
// flow refers to one ("media:<id>"), which content types are accepted, and
// the signed public URLs under which the ingress serves a file to
// providers that fetch media by URL (RCS).
package media

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// RefPrefix starts a reference to an uploaded file in a flow: "media:<id>".
const RefPrefix = "media:"

// Ref is the flow reference of the file id.
func Ref(id string) string { return RefPrefix + id }

// ParseRef returns the id of a "media:<id>" reference.
func ParseRef(v string) (id string, ok bool) {
	id, ok = strings.CutPrefix(v, RefPrefix)
	return id, ok && id != ""
}

// IsURL reports whether v is an absolute http(s) URL with a host.
func IsURL(v string) bool {
	u, err := url.Parse(v)
	return err == nil && (u.Scheme == "https" || u.Scheme == "http") && u.Host != ""
}

// Kind is what a provider calls a file: image, video or document.
type Kind string

// Kinds of files.
const (
	KindImage    Kind = "image"
	KindVideo    Kind = "video"
	KindDocument Kind = "document"
)

// Types are the content types an upload may have, each with its kind:
// those that WhatsApp (JPEG and PNG images, MP4 video, PDF documents),
// Telegram (sendPhoto, sendVideo, sendDocument) and RCS rich cards all
// accept (providers.md; WhatsApp's table is the narrowest).
var Types = map[string]Kind{
	"image/jpeg":      KindImage,
	"image/png":       KindImage,
	"video/mp4":       KindVideo,
	"application/pdf": KindDocument,
}

// TypeNames lists Types for messages, in a fixed order.
const TypeNames = "image/jpeg, image/png, video/mp4, application/pdf"

// Signed URLs: GET {base}/media/{bot}/{id}?exp={unix seconds}&sig={mac},
// mac = base64url(HMAC-SHA256(key, bot "/" id "/" exp)). The ingress
// serves the file to whoever holds a valid, unexpired URL; the link is
// what authorises the fetch, as a provider cannot send an API key.

// DefaultURLLifetime is how long a signed URL stays valid.
const DefaultURLLifetime = 24 * time.Hour

// Signer signs and verifies media URLs.
type Signer struct {
	key  []byte
	base string
	ttl  time.Duration
	now  func() time.Time
}

// NewSigner returns a signer. base is the public base URL of the ingress
// (may be "" when only verifying); key must have at least 16 bytes; now
// is the clock (nil: time.Now); ttl 0 means DefaultURLLifetime.
func NewSigner(base string, key []byte, ttl time.Duration, now func() time.Time) (*Signer, error) {
	if len(key) < 16 {
		return nil, errors.New("media: the URL signing key must have at least 16 bytes")
	}
	base = strings.TrimRight(base, "/")
	if base != "" && !IsURL(base) {
		return nil, fmt.Errorf("media: public base URL %q is not an absolute http(s) URL", base)
	}
	if ttl < 0 {
		return nil, errors.New("media: negative URL lifetime")
	}
	if ttl == 0 {
		ttl = DefaultURLLifetime
	}
	if now == nil {
		now = time.Now
	}
	return &Signer{key: append([]byte(nil), key...), base: base, ttl: ttl, now: now}, nil
}

// ErrNoPublicURL: the signer has no public base URL, so it cannot make links.
var ErrNoPublicURL = errors.New("media: no public base URL configured (FLOWGATE_PUBLIC_URL)")

// Path is the ingress path of a file.
func Path(botID, id string) string {
	return "/media/" + url.PathEscape(botID) + "/" + url.PathEscape(id)
}

// URL returns the signed public URL of a file.
func (s *Signer) URL(botID, id string) (string, error) {
	if s.base == "" {
		return "", ErrNoPublicURL
	}
	exp := strconv.FormatInt(s.now().Add(s.ttl).Unix(), 10)
	return s.base + Path(botID, id) + "?exp=" + exp + "&sig=" + s.mac(botID, id, exp), nil
}

// Verification errors.
var (
	ErrBadSignature = errors.New("media: bad signature")
	ErrExpired      = errors.New("media: link expired")
)

// Verify checks a URL's exp and sig for the file.
func (s *Signer) Verify(botID, id, exp, sig string) error {
	want := s.mac(botID, id, exp)
	if !hmac.Equal([]byte(want), []byte(sig)) {
		return ErrBadSignature
	}
	n, err := strconv.ParseInt(exp, 10, 64)
	if err != nil {
		return ErrBadSignature
	}
	if !s.now().Before(time.Unix(n, 0)) {
		return ErrExpired
	}
	return nil
}

func (s *Signer) mac(botID, id, exp string) string {
	m := hmac.New(sha256.New, s.key)
	m.Write([]byte(botID + "/" + id + "/" + exp))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}
