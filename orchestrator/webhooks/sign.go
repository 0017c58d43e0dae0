package webhooks

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Delivery headers.
const (
	// HeaderSignature is "sha256=" + hex(HMAC-SHA256(secret, timestamp + "." + body)).
	HeaderSignature = "X-Flowgate-Signature"
	// HeaderTimestamp is the Unix time (seconds) of the attempt; it is
	// signed, so a captured delivery cannot be replayed later.
	HeaderTimestamp = "X-Flowgate-Timestamp"
	// HeaderAttempt numbers the attempts of one delivery in this process, from 1.
	HeaderAttempt = "X-Flowgate-Attempt"
	// ContentType is the CloudEvents structured JSON mode.
	ContentType = "application/cloudevents+json"
)

// Sign returns the X-Flowgate-Signature value of body sent at ts.
func Sign(secret string, ts int64, body []byte) string {
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte(strconv.FormatInt(ts, 10)))
	mac.Write([]byte{'.'})
	mac.Write(body)
	return "sha256=" + hex.EncodeToString(mac.Sum(nil))
}

// Verification errors.
var (
	ErrBadSignature = errors.New("webhooks: signature mismatch")
	ErrStale        = errors.New("webhooks: timestamp outside the tolerance")
)

// Verify checks a delivery as a receiver would: the signature over the
// timestamp and the raw body, and a timestamp within tolerance of now.
func Verify(secret string, h http.Header, body []byte, tolerance time.Duration, now time.Time) error {
	ts, err := strconv.ParseInt(h.Get(HeaderTimestamp), 10, 64)
	if err != nil {
		return ErrStale
	}
	if d := now.Sub(time.Unix(ts, 0)); d > tolerance || d < -tolerance {
		return ErrStale
	}
	got := h.Get(HeaderSignature)
	if !strings.HasPrefix(got, "sha256=") || !hmac.Equal([]byte(got), []byte(Sign(secret, ts, body))) {
		return ErrBadSignature
	}
	return nil
}
