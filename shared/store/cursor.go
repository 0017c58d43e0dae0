package store

import (
	"encoding/base64"
	"strconv"
	"strings"
	"time"
)

// EncodeKeysetCursor is the position after the last item of a page ordered
// newest first by creation time, then id (runs, triggers): both adapters
// hand out the same opaque string.
func EncodeKeysetCursor(createdAt time.Time, id string) string {
	return base64.RawURLEncoding.EncodeToString([]byte(strconv.FormatInt(createdAt.UnixNano(), 10) + "|" + id))
}

// DecodeKeysetCursor reads a cursor of EncodeKeysetCursor; a malformed one
// is an *InvalidError on field "cursor". Cursors handed out before the codec
// was shared carried milliseconds (the MongoDB adapter's runs): a value too
// small to be nanoseconds since 1973 is read as milliseconds.
func DecodeKeysetCursor(c string) (time.Time, string, error) {
	bad := &InvalidError{Field: "cursor", Reason: "malformed"}
	b, err := base64.RawURLEncoding.DecodeString(c)
	if err != nil {
		return time.Time{}, "", bad
	}
	ts, id, ok := strings.Cut(string(b), "|")
	if !ok || id == "" {
		return time.Time{}, "", bad
	}
	n, err := strconv.ParseInt(ts, 10, 64)
	if err != nil || n < 0 {
		return time.Time{}, "", bad
	}
	if n < 1e14 {
		return time.UnixMilli(n).UTC(), id, nil
	}
	return time.Unix(0, n).UTC(), id, nil
}
