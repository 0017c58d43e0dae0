package inputmap

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"net/http"
	"strings"
)

// Signature is how an event checks that a request comes from the third
// party that shares its secret: HMAC-SHA256 of the raw body under Secret,
// encoded as Encoding, optionally after Prefix, in the header Header (e.g.
// X-Signature: sha256=<hex>). A request with a valid signature needs no API
// key. Secret is write-only: the API never shows it.
type Signature struct {
	Secret string `json:"secret,omitempty"`
	// Header is the request header carrying the signature.
	Header string `json:"header"`
	// Encoding is "hex" (default) or "base64" (standard, padded or not).
	Encoding string `json:"encoding,omitempty"`
	// Prefix precedes the encoded MAC in the header, e.g. "sha256=".
	Prefix string `json:"prefix,omitempty"`
}

// Limits of a signature configuration.
const (
	MinSecretBytes = 16
	MaxSecretBytes = 512
)

// Normalize fills defaults and checks s. Its errors are *Error with
// fields under "signature".
func (s *Signature) Normalize() error {
	if s.Encoding == "" {
		s.Encoding = "hex"
	}
	s.Header = http.CanonicalHeaderKey(strings.TrimSpace(s.Header))
	switch {
	case len(s.Secret) < MinSecretBytes || len(s.Secret) > MaxSecretBytes:
		return &Error{Field: "signature.secret", Message: "must have 16 to 512 bytes"}
	case !validHeaderName(s.Header):
		return &Error{Field: "signature.header", Message: "must be a header name, e.g. X-Signature"}
	case s.Encoding != "hex" && s.Encoding != "base64":
		return &Error{Field: "signature.encoding", Message: `must be "hex" or "base64"`}
	case len(s.Prefix) > 64 || strings.ContainsAny(s.Prefix, "\r\n"):
		return &Error{Field: "signature.prefix", Message: "at most 64 characters on one line"}
	}
	switch strings.ToLower(s.Header) {
	case "authorization", "content-type", "content-length", "host":
		return &Error{Field: "signature.header", Message: s.Header + " cannot carry a signature"}
	}
	return nil
}

func validHeaderName(h string) bool {
	if h == "" || len(h) > 128 {
		return false
	}
	for _, c := range h {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// Signature verification errors.
var (
	ErrNoSignature  = errors.New("inputmap: the request carries no signature header")
	ErrBadSignature = errors.New("inputmap: the signature does not match the body")
)

// Sign returns the header value a sender computes for body.
func (s Signature) Sign(body []byte) string {
	m := hmac.New(sha256.New, []byte(s.Secret))
	m.Write(body)
	sum := m.Sum(nil)
	if s.Encoding == "base64" {
		return s.Prefix + base64.StdEncoding.EncodeToString(sum)
	}
	return s.Prefix + hex.EncodeToString(sum)
}

// Verify checks the header value of a request against its raw body, in
// constant time.
func (s Signature) Verify(body []byte, header string) error {
	header = strings.TrimSpace(header)
	if header == "" {
		return ErrNoSignature
	}
	got, ok := strings.CutPrefix(header, s.Prefix)
	if !ok {
		return ErrBadSignature
	}
	var mac []byte
	var err error
	if s.Encoding == "base64" {
		mac, err = base64.StdEncoding.DecodeString(got)
		if err != nil {
			mac, err = base64.RawStdEncoding.DecodeString(got)
		}
	} else {
		mac, err = hex.DecodeString(strings.ToLower(got))
	}
	if err != nil {
		return ErrBadSignature
	}
	m := hmac.New(sha256.New, []byte(s.Secret))
	m.Write(body)
	if !hmac.Equal(mac, m.Sum(nil)) {
		return ErrBadSignature
	}
	return nil
}

// Input is what an event stores as its input: the mapping and the
// signature check, each optional.
type Input struct {
	Mapping   *Spec      `json:"mapping,omitempty"`
	Signature *Signature `json:"signature,omitempty"`
}
