package sqlite

import (
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	sqlite3 "modernc.org/sqlite"

	"github.com/flowgate/flowgate/shared/store"
)

// Times are stored as INTEGER nanoseconds since the Unix epoch, UTC.

// check is the zero store.Checker: a TEXT column holds any bytes, so free
// text is checked by size only.
var check store.Checker

// now is the adapter's clock, rounded to microseconds so that values
// written by the store round-trip through any adapter alike.
func now() time.Time { return time.Now().UTC().Truncate(time.Microsecond) }

func orNow(t time.Time) time.Time {
	if t.IsZero() {
		return now()
	}
	return t.Round(0).UTC()
}

func nanos(t time.Time) int64 { return t.UnixNano() }

func nullNanos(t *time.Time) any {
	if t == nil || t.IsZero() {
		return nil
	}
	return t.UnixNano()
}

func fromNanos(n int64) time.Time { return time.Unix(0, n).UTC() }

func fromNullNanos(n sql.NullInt64) *time.Time {
	if !n.Valid {
		return nil
	}
	t := fromNanos(n.Int64)
	return &t
}

func utcPtr(t *time.Time) *time.Time {
	if t == nil || t.IsZero() {
		return nil
	}
	u := t.Round(0).UTC()
	return &u
}

// encodeMap stores a map as JSON text, nil as NULL.
func encodeMap(field string, m map[string]any) (any, error) {
	if m == nil {
		return nil, nil
	}
	b, err := json.Marshal(m)
	if err != nil {
		return nil, &store.InvalidError{Field: field, Reason: "not encodable as JSON: " + err.Error()}
	}
	if err := store.CheckSize(field, len(b)); err != nil {
		return nil, err
	}
	return string(b), nil
}

func decodeMap(s sql.NullString) (map[string]any, error) {
	if !s.Valid {
		return nil, nil
	}
	var m map[string]any
	if err := json.Unmarshal([]byte(s.String), &m); err != nil {
		return nil, fmt.Errorf("sqlite: stored JSON: %w", err)
	}
	return m, nil
}

// encodeRaw stores raw JSON as text, empty as NULL; it must be valid JSON.
func encodeRaw(field string, raw json.RawMessage, required bool) (any, error) {
	if err := store.CheckJSON(field, raw, required); err != nil || len(raw) == 0 {
		return nil, err
	}
	return string(raw), nil
}

func decodeRaw(s sql.NullString) json.RawMessage {
	if !s.Valid {
		return nil
	}
	return json.RawMessage(s.String)
}

// notFound wraps store.ErrNotFound with what was looked up.
func notFound(what string, key ...string) error {
	return fmt.Errorf("%w: %s %s", store.ErrNotFound, what, strings.Join(key, "/"))
}

// SQLite primary result codes (the low byte of an extended code).
const (
	codeBusy       = 5
	codeLocked     = 6
	codeNoMem      = 7
	codeReadOnly   = 8
	codeIOErr      = 10
	codeCorrupt    = 11
	codeFull       = 13
	codeCantOpen   = 14
	codeConstraint = 19
	// Extended codes of a violated key.
	codeConstraintPrimaryKey = 1555
	codeConstraintUnique     = 2067
)

func sqliteCode(err error) int {
	var se *sqlite3.Error
	if errors.As(err, &se) {
		return se.Code()
	}
	return 0
}

func isUnique(err error) bool {
	if err == nil {
		return false
	}
	switch sqliteCode(err) {
	case codeConstraintUnique, codeConstraintPrimaryKey:
		return true
	}
	return strings.Contains(err.Error(), "UNIQUE constraint failed")
}

// unavailable reports whether err means the database cannot serve now
// (locked by another process, disk full or failing): callers may retry.
func unavailable(err error) bool {
	switch sqliteCode(err) & 0xff {
	case codeBusy, codeLocked, codeNoMem, codeReadOnly, codeIOErr, codeCorrupt, codeFull, codeCantOpen:
		return true
	}
	return false
}

// dbErr classifies an unexpected database error.
func dbErr(what string, err error) error {
	if err == nil {
		return nil
	}
	var ie *store.InvalidError
	if errors.As(err, &ie) || errors.Is(err, store.ErrNotFound) || errors.Is(err, store.ErrConflict) ||
		errors.Is(err, store.ErrVersionConflict) || errors.Is(err, store.ErrUnavailable) ||
		errors.Is(err, store.ErrInvalid) {
		return err
	}
	if isUnique(err) {
		return fmt.Errorf("%w: %s: %v", store.ErrConflict, what, err)
	}
	if unavailable(err) || strings.Contains(err.Error(), "sql: database is closed") {
		return fmt.Errorf("%w: sqlite: %s: %v", store.ErrUnavailable, what, err)
	}
	return fmt.Errorf("sqlite: %s: %w", what, err)
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

type scanner interface{ Scan(dest ...any) error }
