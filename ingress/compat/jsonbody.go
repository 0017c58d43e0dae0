package compat

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"math"
	"mime"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// JSONAPIMediaType is the only media type JSON:API requests and responses use.
const JSONAPIMediaType = "application/vnd.api+json"

// checkJSONContentType accepts application/json and application/*+json, with
// an optional UTF-8 charset. Every JSON API here requires the header, as
// Botmother documents it ("Make sure that you set header Content-Type:
// application/json").
func checkJSONContentType(contentType string) *Error {
	switch contentType {
	case "application/json", "application/json; charset=utf-8", "application/json; charset=UTF-8":
		return nil // the usual values, without parsing
	}
	mt, params, err := mime.ParseMediaType(contentType)
	if err != nil || !(mt == "application/json" || strings.HasPrefix(mt, "application/") && strings.HasSuffix(mt, "+json")) {
		return newError(http.StatusUnsupportedMediaType, CodeUnsupportedMediaType, "Content-Type",
			"Content-Type must be application/json, got %q", contentType)
	}
	if cs, ok := params["charset"]; ok && !strings.EqualFold(cs, "utf-8") && !strings.EqualFold(cs, "utf8") {
		return newError(http.StatusUnsupportedMediaType, CodeUnsupportedMediaType, "Content-Type",
			"charset must be utf-8, got %q", cs)
	}
	return nil
}

// checkJSONAPIContentType follows JSON:API 1.1: the media type is exactly
// application/vnd.api+json and the only parameters allowed are ext and
// profile; since Flowgate implements no extension, ext is refused too.
func checkJSONAPIContentType(contentType string) *Error {
	mt, params, err := mime.ParseMediaType(contentType)
	if err != nil || mt != JSONAPIMediaType {
		return newError(http.StatusUnsupportedMediaType, CodeUnsupportedMediaType, "Content-Type",
			"Content-Type must be %s, got %q", JSONAPIMediaType, contentType)
	}
	for p := range params {
		if p != "profile" {
			return newError(http.StatusUnsupportedMediaType, CodeUnsupportedMediaType, "Content-Type",
				"media type parameter %q is not supported (only profile)", p)
		}
	}
	return nil
}

// decodeRawObject decodes the top level of a JSON object, leaving values raw.
func decodeRawObject(body []byte) (map[string]json.RawMessage, *Error) {
	if m, ok := scanRawObject(body); ok {
		return m, nil
	}
	if len(bytes.TrimSpace(body)) == 0 {
		return nil, newError(http.StatusBadRequest, CodeInvalidJSON, "", "the body is empty; a JSON object is required")
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	var m map[string]json.RawMessage
	if err := dec.Decode(&m); err != nil {
		return nil, jsonSyntaxError(err)
	}
	if m == nil {
		return nil, newError(http.StatusBadRequest, CodeInvalidJSON, "", "the body must be a JSON object, not null")
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, newError(http.StatusBadRequest, CodeInvalidJSON, "", "unexpected data after the JSON object")
	}
	return m, nil
}

// scanRawObject is decodeRawObject's fast path for the common case: a
// valid JSON object whose keys are printable ASCII without escapes. It
// returns what json.Unmarshal into a map[string]json.RawMessage returns
// (values trimmed of whitespace, the last of duplicate keys); ok is false
// for anything else, which the reflective decoder then handles (and
// reports).
func scanRawObject(body []byte) (map[string]json.RawMessage, bool) {
	if !json.Valid(body) {
		return nil, false
	}
	i := skipSpace(body, 0)
	if i >= len(body) || body[i] != '{' {
		return nil, false
	}
	m := make(map[string]json.RawMessage, 8)
	i = skipSpace(body, i+1)
	if body[i] == '}' {
		return m, true
	}
	for {
		// body is valid: a key string, a colon, a value, then , or }.
		if body[i] != '"' {
			return nil, false
		}
		start := i + 1
		j := start
		for ; body[j] != '"'; j++ {
			if c := body[j]; c == '\\' || c < 0x20 || c > 0x7e {
				return nil, false
			}
		}
		key := string(body[start:j])
		i = skipSpace(body, j+1) // at ':'
		i = skipSpace(body, i+1)
		end := valueEnd(body, i)
		m[key] = json.RawMessage(body[i:end:end])
		i = skipSpace(body, end)
		if body[i] == '}' {
			return m, true
		}
		i = skipSpace(body, i+1) // past ','
	}
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// valueEnd returns the end of the valid JSON value starting at b[i].
func valueEnd(b []byte, i int) int {
	depth, inString := 0, false
	for ; i < len(b); i++ {
		c := b[i]
		if inString {
			switch c {
			case '\\':
				i++
			case '"':
				inString = false
				if depth == 0 {
					return i + 1
				}
			}
			continue
		}
		switch c {
		case '"':
			inString = true
		case '{', '[':
			depth++
		case '}', ']':
			if depth == 0 {
				return i // the end of the enclosing object
			}
			depth--
			if depth == 0 {
				return i + 1
			}
		case ',', ' ', '\t', '\n', '\r':
			if depth == 0 {
				return i
			}
		}
	}
	return i
}

func jsonSyntaxError(err error) *Error {
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &se):
		return newError(http.StatusBadRequest, CodeInvalidJSON, "", "malformed JSON at byte %d: %v", se.Offset, se)
	case errors.As(err, &te):
		return newError(http.StatusBadRequest, CodeInvalidJSON, "", "the body must be a JSON object, not %s", te.Value)
	case errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF):
		return newError(http.StatusBadRequest, CodeInvalidJSON, "", "malformed JSON: unexpected end of input")
	default:
		return newError(http.StatusBadRequest, CodeInvalidJSON, "", "malformed JSON: %v", err)
	}
}

// rawObjectToPlain turns the top level of an object into plain values;
// errors name prefix+key.
func rawObjectToPlain(raw map[string]json.RawMessage, prefix string) (map[string]any, *Error) {
	m := make(map[string]any, len(raw))
	for _, k := range sortedKeys(raw) { // the first error reported does not depend on map order
		v := raw[k]
		pv, err := rawToPlain(v, prefix+k)
		if err != nil {
			return nil, err
		}
		m[k] = pv
	}
	return m, nil
}

// rawToPlain decodes one JSON value into plain Go values: objects as
// map[string]any, arrays as []any, integers that fit as int64 (so that
// order numbers and Telegram ids survive exactly), other numbers as
// float64. field names the value in errors; depth is bounded by MaxDepth.
func rawToPlain(raw json.RawMessage, field string) (any, *Error) {
	// Scalars, most of the values, skip the reflective decoder. raw comes
	// from a decoded document, so it is valid JSON.
	if t := bytes.TrimSpace(raw); len(t) > 0 {
		switch t[0] {
		case '"':
			if s, ok := parseRawString(t); ok {
				return s, nil
			}
		case 't':
			return true, nil
		case 'f':
			return false, nil
		case 'n':
			return nil, nil
		case '{', '[':
		default:
			return plainNumber(json.Number(t), field)
		}
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, jsonSyntaxError(err)
	}
	return plainValue(v, field, 0)
}

func plainValue(v any, field string, depth int) (any, *Error) {
	switch x := v.(type) {
	case map[string]any:
		if depth >= MaxDepth {
			return nil, tooDeep(field)
		}
		for k, e := range x {
			pv, err := plainValue(e, field, depth+1)
			if err != nil {
				return nil, err
			}
			x[k] = pv
		}
		return x, nil
	case []any:
		if depth >= MaxDepth {
			return nil, tooDeep(field)
		}
		for i, e := range x {
			pv, err := plainValue(e, field, depth+1)
			if err != nil {
				return nil, err
			}
			x[i] = pv
		}
		return x, nil
	case json.Number:
		return plainNumber(x, field)
	default:
		return v, nil
	}
}

func tooDeep(field string) *Error {
	return newError(http.StatusUnprocessableEntity, CodeTooDeep, field,
		"%s is nested deeper than %d levels", field, MaxDepth)
}

func plainNumber(n json.Number, field string) (any, *Error) {
	s := string(n)
	if !strings.ContainsAny(s, ".eE") {
		if i, err := strconv.ParseInt(s, 10, 64); err == nil {
			return i, nil
		}
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsInf(f, 0) || math.IsNaN(f) {
		return nil, invalid(field, "%s contains a number out of range: %s", field, truncate(s, 40))
	}
	return f, nil
}

// decodeObjectField decodes an optional object member: absent or null gives
// nil; anything but an object is a 422 naming field.
func decodeObjectField(raw json.RawMessage, field string) (map[string]any, *Error) {
	if isNull(raw) {
		return nil, nil
	}
	v, err := rawToPlain(raw, field)
	if err != nil {
		return nil, err
	}
	m, ok := v.(map[string]any)
	if !ok {
		return nil, invalid(field, "%s must be an object, not %s", field, jsonKind(v))
	}
	return m, nil
}

// checkDataSize refuses objects larger than MaxDataBytes once encoded.
func checkDataSize(m map[string]any, field string) *Error {
	if m == nil {
		return nil
	}
	if maxEncodedSize(m, MaxDataBytes) <= MaxDataBytes {
		return nil
	}
	var c countingWriter
	enc := json.NewEncoder(&c)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(m); err != nil {
		return invalid(field, "%s cannot be encoded: %v", field, err)
	}
	if c.n-1 > MaxDataBytes { // Encode appends a newline
		return newError(http.StatusRequestEntityTooLarge, CodeDataTooLarge, field,
			"%s is %d bytes encoded; the limit is %d", field, c.n-1, MaxDataBytes)
	}
	return nil
}

type countingWriter struct{ n int }

func (c *countingWriter) Write(p []byte) (int, error) { c.n += len(p); return len(p), nil }

func isNull(raw json.RawMessage) bool {
	t := bytes.TrimSpace(raw)
	return len(t) == 0 || bytes.Equal(t, []byte("null"))
}

// jsonKind names the JSON type of a plain value, for messages.
func jsonKind(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case string:
		return "a string"
	case bool:
		return "a boolean"
	case int64, float64, json.Number:
		return "a number"
	case []any:
		return "an array"
	case map[string]any:
		return "an object"
	}
	return "an unknown value"
}

// rawKind names the JSON type of a raw value from its first byte.
func rawKind(raw json.RawMessage) string {
	t := bytes.TrimSpace(raw)
	if len(t) == 0 {
		return "nothing"
	}
	switch t[0] {
	case '"':
		return "a string"
	case '{':
		return "an object"
	case '[':
		return "an array"
	case 't', 'f':
		return "a boolean"
	case 'n':
		return "null"
	}
	return "a number"
}

// rawString decodes a JSON string member; wrong types are a 422 naming field.
func rawString(raw json.RawMessage, field string) (string, *Error) {
	s, ok := parseRawString(bytes.TrimSpace(raw))
	if !ok {
		return "", invalid(field, "%s must be a string, not %s", field, rawKind(raw))
	}
	return s, nil
}

// rawID decodes an identifier given as a JSON string or as an integer JSON
// number (callers send phone numbers and Telegram ids either way). The
// number's digits are kept as written: no float64 round trip.
func rawID(raw json.RawMessage, field string) (string, *Error) {
	id, ok := parseRawID(raw)
	if !ok {
		return "", badID(field, raw)
	}
	return id, nil
}

func badID(field string, raw json.RawMessage) *Error {
	return invalid(field, "%s must be a string or an integer, not %s", field, rawKind(raw))
}

func parseRawID(raw json.RawMessage) (string, bool) {
	t := bytes.TrimSpace(raw)
	if len(t) > 0 && (t[0] == '-' || t[0] >= '0' && t[0] <= '9') {
		return string(t), isIntegerLiteral(t)
	}
	return parseRawString(t)
}

// parseRawString decodes a JSON string, without reflection for the common
// case of a string with no escapes.
func parseRawString(t []byte) (string, bool) {
	if len(t) >= 2 && t[0] == '"' && t[len(t)-1] == '"' {
		inner := t[1 : len(t)-1]
		plain := true
		for _, c := range inner {
			if c < 0x20 || c == '\\' || c == '"' || c >= 0x80 {
				plain = false
				break
			}
		}
		if plain {
			return string(inner), true
		}
	}
	var s string
	if err := json.Unmarshal(t, &s); err != nil {
		return "", false
	}
	return s, true
}

func isIntegerLiteral(b []byte) bool {
	if len(b) > 0 && b[0] == '-' {
		b = b[1:]
	}
	if len(b) == 0 {
		return false
	}
	for _, c := range b {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// plainID is rawID for a value already decoded by rawToPlain.
func plainID(v any, field string) (string, *Error) {
	switch x := v.(type) {
	case string:
		return x, nil
	case int64:
		return strconv.FormatInt(x, 10), nil
	}
	return "", invalid(field, "%s must be a string or an integer, not %s", field, jsonKind(v))
}

// checkName validates a display name, event name or id.
func checkName(s, field string) *Error {
	if n := utf8.RuneCountInString(s); n > MaxNameLen {
		return invalid(field, "%s is %d characters; the limit is %d", field, n, MaxNameLen)
	}
	return nil
}

// checkToken validates names that travel in headers and subjects (event
// names, flow ids, idempotency keys): non-empty, bounded, no control characters.
func checkToken(s, field string, max int) *Error {
	if s == "" {
		return invalid(field, "%s must not be empty", field)
	}
	if n := utf8.RuneCountInString(s); n > max {
		return invalid(field, "%s is %d characters; the limit is %d", field, n, max)
	}
	if hasControl(s) {
		return invalid(field, "%s contains a control or invalid character", field)
	}
	return nil
}

// hasControl reports control characters and invalid UTF-8 (which decoded
// JSON strings carry as U+FFFD).
func hasControl(s string) bool {
	for _, r := range s {
		if unicode.IsControl(r) || r == utf8.RuneError {
			return true
		}
	}
	return false
}

// checkAttributeKey refuses keys a contact's attribute map cannot hold: a
// key is a field path in the store's updates, so "." and a leading "$" are out.
func checkAttributeKey(k string) *Error {
	switch {
	case k == "":
		return invalid(k, "attribute names must not be empty")
	case len(k) > MaxAttributeKeyLen:
		return invalid(truncate(k, 40), "attribute name is %d bytes; the limit is %d", len(k), MaxAttributeKeyLen)
	case strings.HasPrefix(k, "$") || strings.ContainsAny(k, ".\x00"):
		return invalid(k, "attribute name %q must not start with $ or contain a dot", k)
	case !utf8.ValidString(k):
		return invalid(truncate(k, 40), "attribute name is not valid UTF-8")
	}
	return nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// maxEncodedSize bounds the JSON encoding of v from above (every string
// byte counted as a 6-byte escape), stopping once the bound passes limit.
func maxEncodedSize(v any, limit int) int {
	switch x := v.(type) {
	case string:
		return 2 + 6*len(x)
	case map[string]any:
		n := 2
		for k, e := range x {
			n += 2 + 6*len(k) + 1 + maxEncodedSize(e, limit-n)
			if n > limit {
				return n
			}
		}
		return n
	case []any:
		n := 2
		for _, e := range x {
			n += 1 + maxEncodedSize(e, limit-n)
			if n > limit {
				return n
			}
		}
		return n
	case nil, bool:
		return 5
	default: // numbers
		return 24
	}
}
