package webhooks

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Standard Webhooks (https://www.standardwebhooks.com) headers, sent beside
// the X-Flowgate-* ones so that receivers can use that project's libraries.
const (
	// HeaderWebhookID is the delivery's id: the same on every attempt.
	HeaderWebhookID = "webhook-id"
	// HeaderWebhookTimestamp is the Unix time (seconds) of the attempt.
	HeaderWebhookTimestamp = "webhook-timestamp"
	// HeaderWebhookSignature is a space-separated list of "v1,<base64
	// HMAC-SHA256(key, id + "." + timestamp + "." + body)>", one per valid
	// secret (two during a secret rotation).
	HeaderWebhookSignature = "webhook-signature"
)

// standardKey is the HMAC key of a secret the Standard Webhooks way: a
// "whsec_<base64>" secret is used decoded (what the libraries do); any
// other secret as its bytes, which a library receives as
// "whsec_" + base64(secret) (StandardSecret).
func standardKey(secret string) []byte {
	if rest, ok := strings.CutPrefix(secret, "whsec_"); ok {
		if k, err := base64.StdEncoding.DecodeString(rest); err == nil && len(k) > 0 {
			return k
		}
	}
	return []byte(secret)
}

// StandardSecret is the secret to give a Standard Webhooks library for a
// subscription secret.
func StandardSecret(secret string) string {
	if rest, ok := strings.CutPrefix(secret, "whsec_"); ok {
		if k, err := base64.StdEncoding.DecodeString(rest); err == nil && len(k) > 0 {
			return secret
		}
	}
	return "whsec_" + base64.StdEncoding.EncodeToString([]byte(secret))
}

// SignStandard returns the webhook-signature value of body with id sent at
// ts, signed with every secret ("v1,<sig>" each, space separated).
func SignStandard(secrets []string, id string, ts int64, body []byte) string {
	sigs := make([]string, 0, len(secrets))
	for _, s := range secrets {
		if s == "" {
			continue
		}
		mac := hmac.New(sha256.New, standardKey(s))
		mac.Write([]byte(id))
		mac.Write([]byte{'.'})
		mac.Write([]byte(strconv.FormatInt(ts, 10)))
		mac.Write([]byte{'.'})
		mac.Write(body)
		sigs = append(sigs, "v1,"+base64.StdEncoding.EncodeToString(mac.Sum(nil)))
	}
	return strings.Join(sigs, " ")
}

// VerifyStandard checks a delivery as a Standard Webhooks receiver would:
// one of the v1 signatures matches secret, and the timestamp is within
// tolerance of now.
func VerifyStandard(secret string, h http.Header, body []byte, tolerance time.Duration, now time.Time) error {
	ts, err := strconv.ParseInt(h.Get(HeaderWebhookTimestamp), 10, 64)
	if err != nil {
		return ErrStale
	}
	if d := now.Sub(time.Unix(ts, 0)); d > tolerance || d < -tolerance {
		return ErrStale
	}
	want := SignStandard([]string{secret}, h.Get(HeaderWebhookID), ts, body)
	for _, sig := range strings.Fields(h.Get(HeaderWebhookSignature)) {
		if hmac.Equal([]byte(sig), []byte(want)) {
			return nil
		}
	}
	return ErrBadSignature
}
