package flow

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// Placeholders are {{ path }} where path is a dotted name: "name",
// "data.plan", "attributes.address.city", "data.items.0.title". They are
// deliberately not expressions: text stays cheap to render and cannot fail.
//
// The first segment is a root — data (trigger data), attributes (the
// contact's attributes, including those captured by this run), vars (run
// variables), contact (id, name, external_id, channel) — or a bare name,
// looked up in vars, then attributes, then data, then the contact's own
// fields (name, external_id, channel). A bare name is what BuilderBot's
// ctx fields look like ({{ plan }} for dispatch payload field plan).
//
// A missing value, or null, renders as the empty string.

// checkPlaceholders reports the first syntax error among s's placeholders.
func checkPlaceholders(s string) error {
	for {
		i := strings.Index(s, "{{")
		if i < 0 {
			return nil
		}
		s = s[i+2:]
		j := strings.Index(s, "}}")
		if j < 0 {
			return errors.New("unterminated placeholder: missing }}")
		}
		if _, err := splitPath(strings.TrimSpace(s[:j]), true); err != nil {
			return fmt.Errorf("placeholder {{%s}}: %v", s[:j], err)
		}
		s = s[j+2:]
	}
}

// splitPath splits a dotted path. named requires the first segment to be a
// name (placeholders); response paths may start with an array index.
func splitPath(p string, named bool) ([]string, error) {
	if p == "" {
		return nil, errors.New("empty path")
	}
	segs := strings.Split(p, ".")
	for i, seg := range segs {
		if seg == "" {
			return nil, errors.New("empty path segment")
		}
		for _, r := range seg {
			if !(r == '_' || r == '-' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z') {
				return nil, fmt.Errorf("invalid character %q in path %q", r, p)
			}
		}
		if i == 0 && named && (seg[0] >= '0' && seg[0] <= '9' || seg[0] == '-') {
			return nil, fmt.Errorf("path %q must start with a name", p)
		}
	}
	return segs, nil
}

// render replaces the placeholders of s. empty reports whether any of them
// rendered as the empty string (skip_if_empty). Syntax was checked by Parse;
// anything malformed is copied through literally.
func render(s string, sc *scope) (out string, empty bool) {
	i := strings.Index(s, "{{")
	if i < 0 {
		return s, false
	}
	var b strings.Builder
	b.Grow(len(s) + 16)
	for i >= 0 {
		b.WriteString(s[:i])
		rest := s[i+2:]
		j := strings.Index(rest, "}}")
		if j < 0 {
			b.WriteString(s[i:])
			return b.String(), empty
		}
		v, _ := sc.lookup(strings.TrimSpace(rest[:j]))
		text := formatValue(v)
		if text == "" {
			empty = true
		}
		b.WriteString(text)
		s = rest[j+2:]
		i = strings.Index(s, "{{")
	}
	b.WriteString(s)
	return b.String(), empty
}

// renderAny renders placeholders in every string inside a JSON-shaped
// value, returning a new value (the definition is never modified).
func renderAny(v any, sc *scope, empty *bool) any {
	switch x := v.(type) {
	case string:
		s, e := render(x, sc)
		if e {
			*empty = true
		}
		return s
	case map[string]any:
		m := make(map[string]any, len(x))
		for k, e := range x {
			m[k] = renderAny(e, sc, empty)
		}
		return m
	case []any:
		l := make([]any, len(x))
		for i, e := range x {
			l[i] = renderAny(e, sc, empty)
		}
		return l
	}
	return v
}

// checkPlaceholdersAny checks every string inside a JSON-shaped value.
func checkPlaceholdersAny(v any) error {
	switch x := v.(type) {
	case string:
		return checkPlaceholders(x)
	case map[string]any:
		for _, k := range sortedKeys(x) {
			if err := checkPlaceholdersAny(x[k]); err != nil {
				return err
			}
		}
	case []any:
		for _, e := range x {
			if err := checkPlaceholdersAny(e); err != nil {
				return err
			}
		}
	}
	return nil
}

// formatValue is how a value looks inside text: numbers without trailing
// zeros (an age of 30 stays "30"), objects and lists as JSON.
func formatValue(v any) string {
	switch x := v.(type) {
	case nil:
		return ""
	case string:
		return x
	case bool:
		return strconv.FormatBool(x)
	case float64:
		if x == math.Trunc(x) && math.Abs(x) < 1e15 {
			return strconv.FormatInt(int64(x), 10)
		}
		return strconv.FormatFloat(x, 'f', -1, 64)
	case float32:
		return formatValue(float64(x))
	case int:
		return strconv.Itoa(x)
	case int64:
		return strconv.FormatInt(x, 10)
	case json.Number:
		return string(x)
	case time.Time:
		return x.UTC().Format(time.RFC3339)
	case fmt.Stringer:
		return x.String()
	}
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	return string(b)
}

// descend follows a dotted path (rest, possibly empty) into maps and lists.
func descend(v any, rest string) (any, bool) {
	for rest != "" {
		var seg string
		seg, rest, _ = strings.Cut(rest, ".")
		switch x := v.(type) {
		case map[string]any:
			e, ok := x[seg]
			if !ok {
				return nil, false
			}
			v = e
		case map[string]string:
			e, ok := x[seg]
			if !ok {
				return nil, false
			}
			v = e
		case []any:
			n, err := strconv.Atoi(seg)
			if err != nil || n < 0 || n >= len(x) {
				return nil, false
			}
			v = x[n]
		case []string:
			n, err := strconv.Atoi(seg)
			if err != nil || n < 0 || n >= len(x) {
				return nil, false
			}
			v = x[n]
		default:
			return nil, false
		}
	}
	return v, true
}
