package mongo

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/x/mongo/driver/topology"

	"github.com/flowgate/flowgate/shared/store"
)

// Times are BSON dates, which hold milliseconds: every time the adapter
// writes is first truncated to the millisecond (UTC), and the record it
// returns carries the truncated value, so a record read back equals the one
// the write returned. Times out of the SQLite adapter's range are refused
// (store.CheckTime), so that both adapters refuse the same input.

// ms is t as stored: UTC, millisecond precision, no monotonic reading.
func ms(t time.Time) time.Time { return t.Round(0).UTC().Truncate(time.Millisecond) }

func now() time.Time { return ms(time.Now()) }

func orNow(t time.Time) time.Time {
	if t.IsZero() {
		return now()
	}
	return ms(t)
}

func msPtr(t *time.Time) *time.Time {
	if t == nil || t.IsZero() {
		return nil
	}
	u := ms(*t)
	return &u
}

// check applies the record checks every adapter shares, with checkText for
// free text.
var check = store.Checker{Text: checkText}

// encodeRaw returns raw JSON as text ("" when empty); it must be valid JSON.
func encodeRaw(field string, raw json.RawMessage, required bool) (string, error) {
	if err := store.CheckJSON(field, raw, required); err != nil || len(raw) == 0 {
		return "", err
	}
	if !utf8.Valid(raw) {
		return "", &store.InvalidError{Field: field, Reason: "not valid UTF-8"}
	}
	return string(raw), nil
}

func decodeRaw(s string) json.RawMessage {
	if s == "" {
		return nil
	}
	return json.RawMessage(s)
}

// encodeMap stores a map as JSON text; nil is "" (field left out).
func encodeMap(field string, m map[string]any) (string, error) {
	if m == nil {
		return "", nil
	}
	b, err := json.Marshal(m)
	if err != nil {
		return "", &store.InvalidError{Field: field, Reason: "not encodable as JSON: " + err.Error()}
	}
	if err := store.CheckSize(field, len(b)); err != nil {
		return "", err
	}
	return string(b), nil
}

func decodeMap(s string) (map[string]any, error) {
	if s == "" {
		return nil, nil
	}
	var m map[string]any
	if err := json.Unmarshal([]byte(s), &m); err != nil {
		return nil, fmt.Errorf("mongo: stored JSON: %w", err)
	}
	return m, nil
}

// checkText is the adapter's rule for free text: BSON strings are UTF-8.
func checkText(field, s string) error {
	if err := store.CheckText(field, s); err != nil {
		return err
	}
	if !utf8.ValidString(s) {
		return &store.InvalidError{Field: field, Reason: "not valid UTF-8 text"}
	}
	return nil
}

// escapeKey makes a map key usable as one BSON field name inside an update
// path ("attributes.<key>"): '%', '.', '$' and NUL are percent-encoded and
// the empty key becomes "%". unescapeKey reverses it.
func escapeKey(k string) string {
	if k == "" {
		return "%"
	}
	if !strings.ContainsAny(k, "%.$\x00") {
		return k
	}
	var b strings.Builder
	for i := 0; i < len(k); i++ {
		switch c := k[i]; c {
		case '%', '.', '$', 0:
			fmt.Fprintf(&b, "%%%02X", c)
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

func unescapeKey(k string) string {
	if k == "%" {
		return ""
	}
	if !strings.Contains(k, "%") {
		return k
	}
	var b strings.Builder
	for i := 0; i < len(k); i++ {
		if k[i] == '%' && i+2 < len(k) {
			if c, err := strconv.ParseUint(k[i+1:i+3], 16, 8); err == nil {
				b.WriteByte(byte(c))
				i += 2
				continue
			}
		}
		b.WriteByte(k[i])
	}
	return b.String()
}

// encodeAttributes returns one JSON text per key, keyed by escaped key, so
// that a merge is one $set per key and values round-trip exactly as JSON.
func encodeAttributes(field string, m map[string]any) (bson.D, error) {
	if len(m) == 0 {
		return nil, nil
	}
	total := 0
	d := make(bson.D, 0, len(m))
	for k, v := range m {
		if !utf8.ValidString(k) {
			return nil, &store.InvalidError{Field: field, Reason: "key is not valid UTF-8"}
		}
		b, err := json.Marshal(v)
		if err != nil {
			return nil, &store.InvalidError{Field: field, Reason: "not encodable as JSON: " + err.Error()}
		}
		total += len(b) + len(k) + 4
		d = append(d, bson.E{Key: escapeKey(k), Value: string(b)})
	}
	if err := store.CheckSize(field, total); err != nil {
		return nil, err
	}
	return d, nil
}

func decodeAttributes(d bson.Raw) (map[string]any, error) {
	if len(d) == 0 {
		return nil, nil
	}
	elems, err := d.Elements()
	if err != nil {
		return nil, fmt.Errorf("mongo: stored attributes: %w", err)
	}
	m := make(map[string]any, len(elems))
	for _, e := range elems {
		s, ok := e.Value().StringValueOK()
		if !ok {
			return nil, fmt.Errorf("mongo: stored attribute %q is not JSON text", e.Key())
		}
		var v any
		if err := json.Unmarshal([]byte(s), &v); err != nil {
			return nil, fmt.Errorf("mongo: stored attribute %q: %w", e.Key(), err)
		}
		m[unescapeKey(e.Key())] = v
	}
	return m, nil
}

func notFound(what string, key ...string) error {
	return fmt.Errorf("%w: %s %s", store.ErrNotFound, what, strings.Join(key, "/"))
}

// Server error codes the adapter maps.
const (
	codeDuplicateKey     = 11000
	codeDuplicateKeyOld  = 11001
	codeNotImplemented   = 238
	codeBSONObjectTooBig = 10334
	codeUpdateTooLarge   = 17419 // "Resulting document after update is larger than 16777216"
)

func hasCode(err error, codes ...int) bool {
	var se mongo.ServerError
	if !errors.As(err, &se) {
		return false
	}
	for _, c := range codes {
		if se.HasErrorCode(c) {
			return true
		}
	}
	return false
}

func isDup(err error) bool { return err != nil && mongo.IsDuplicateKeyError(err) }

// unavailable reports errors that mean the server cannot be reached.
func unavailable(err error) bool {
	if errors.Is(err, context.Canceled) {
		return false
	}
	if errors.Is(err, mongo.ErrClientDisconnected) || mongo.IsNetworkError(err) || mongo.IsTimeout(err) {
		return true
	}
	var sse topology.ServerSelectionError
	return errors.As(err, &sse)
}

// dbErr classifies a database error for the port.
func dbErr(what string, err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, store.ErrNotFound), errors.Is(err, store.ErrConflict),
		errors.Is(err, store.ErrVersionConflict), errors.Is(err, store.ErrInvalid),
		errors.Is(err, store.ErrUnavailable):
		return err
	case errors.Is(err, mongo.ErrNoDocuments):
		return fmt.Errorf("%w: %s", store.ErrNotFound, what)
	case isDup(err):
		return fmt.Errorf("%w: %s: %v", store.ErrConflict, what, err)
	case hasCode(err, codeBSONObjectTooBig, codeUpdateTooLarge):
		return &store.InvalidError{Field: "document", Reason: err.Error()}
	case unavailable(err):
		return fmt.Errorf("%w: %s: %w", store.ErrUnavailable, what, err)
	}
	return fmt.Errorf("mongo: %s: %w", what, err)
}

// marshal encodes a document and refuses it if it is larger than limit,
// naming its largest top-level field.
func marshal(doc any, limit int) (bson.Raw, error) {
	b, err := bson.Marshal(doc)
	if err != nil {
		return nil, &store.InvalidError{Field: "document", Reason: "not encodable: " + err.Error()}
	}
	if len(b) <= limit {
		return b, nil
	}
	field, size := "document", 0
	if elems, err := bson.Raw(b).Elements(); err == nil {
		for _, e := range elems {
			if n := len(e); n > size {
				field, size = e.Key(), n
			}
		}
	}
	if field == "_id" {
		field = "id"
	}
	return nil, &store.InvalidError{Field: field, Reason: fmt.Sprintf("document is %d bytes, more than the limit of %d", len(b), limit)}
}
