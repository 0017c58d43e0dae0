package compat

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/flowgate/flowgate/shared/events"
	"github.com/flowgate/flowgate/shared/phone"
	"github.com/flowgate/flowgate/shared/provider"
)

// PlatformAny selects contacts on every channel.
const PlatformAny = "any"

// platformOf maps the platform names callers use to Flowgate channel names:
// Botmother's codes (tg, wa, rcs, any) and the channel names themselves. The
// match ignores case and surrounding spaces.
func platformOf(s string) (string, bool) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "tg", events.ChannelTelegram:
		return events.ChannelTelegram, true
	case "wa", events.ChannelWhatsApp:
		return events.ChannelWhatsApp, true
	case events.ChannelRCS:
		return events.ChannelRCS, true
	case events.ChannelSandbox:
		return events.ChannelSandbox, true
	case PlatformAny:
		return PlatformAny, true
	}
	if c := strings.ToLower(strings.TrimSpace(s)); provider.Known(c) {
		return c, true // a channel registered by its provider
	}
	return "", false
}

func unknownPlatform(field, got string) *Error {
	return newError(http.StatusUnprocessableEntity, CodeUnknownPlatform, field,
		"%s %q is not one of tg, wa, rcs, any (or whatsapp, telegram, rcs, sandbox)", field, truncate(got, 40))
}

func tooMany(field string, n int) *Error {
	return newError(http.StatusRequestEntityTooLarge, CodeAudienceTooLarge, field,
		"%s has %d ids; one request takes at most %d. For larger audiences import the contacts "+
			"(POST /v1/bots/{bot}/contacts/import) and trigger with \"everyone\" and a filter",
		field, n, MaxAudienceIDs)
}

// decodeIDList decodes a JSON array of ids (strings, or integers kept
// exactly), refusing more than MaxAudienceIDs before looking at any.
func decodeIDList(raw json.RawMessage, field string) ([]string, *Error) {
	var items []json.RawMessage
	if err := json.Unmarshal(raw, &items); err != nil {
		return nil, invalid(field, "%s must be an array of ids, not %s", field, rawKind(raw))
	}
	if len(items) > MaxAudienceIDs {
		return nil, tooMany(field, len(items))
	}
	if len(items) == 0 {
		return nil, newError(http.StatusUnprocessableEntity, CodeEmptyAudience, field, "%s is empty", field)
	}
	ids := make([]string, len(items))
	for i, it := range items {
		id, ok := parseRawID(it)
		if !ok {
			return nil, badID(indexed(field, i), it)
		}
		ids[i] = id
	}
	return ids, nil
}

func indexed(field string, i int) string { return fmt.Sprintf("%s[%d]", field, i) }

// normalizeUsers brings external ids into the form contacts are stored
// under on channel, and drops duplicates (two spellings of one phone
// number are one user). With indexed, errors name field[i]; otherwise field.
//
//   - whatsapp, rcs: E.164 (phone.Normalize, country code required, "+" optional)
//   - telegram: a 64-bit integer chat id, written canonically
//   - sandbox, "any", unknown (""): trimmed, non-empty, at most MaxNameLen characters
func normalizeUsers(channel string, ids []string, field string, index bool) ([]string, *Error) {
	if len(ids) == 0 {
		return ids, nil
	}
	out := make([]string, 0, len(ids))
	seen := make(map[string]struct{}, len(ids))
	for i, raw := range ids {
		id, p := normalizeID(channel, raw)
		if p != nil {
			f := field
			if index {
				f = indexed(field, i)
			}
			return nil, p.at(f)
		}
		if _, dup := seen[id]; dup {
			continue
		}
		seen[id] = struct{}{}
		out = append(out, id)
	}
	return out, nil
}

// idProblem is why an id is refused, before the field is named (building
// field names for every element of a 10,000-id list would cost more than
// the parse).
type idProblem struct {
	code, raw, reason string
}

func (p *idProblem) at(field string) *Error {
	return newError(http.StatusUnprocessableEntity, p.code, field, "%s %q %s", field, truncate(p.raw, 40), p.reason)
}

func normalizeUser(channel, raw, field string) (string, *Error) {
	id, p := normalizeID(channel, raw)
	if p != nil {
		return "", p.at(field)
	}
	return id, nil
}

func normalizeID(channel, raw string) (string, *idProblem) {
	switch channel {
	case events.ChannelWhatsApp, events.ChannelRCS:
		e164, err := phone.Normalize(raw, "")
		if err != nil {
			reason := err.Error()
			if pe, ok := err.(*phone.Error); ok {
				reason = pe.Reason.Error()
			}
			return "", &idProblem{CodeInvalidPhone, raw, "is refused: " + reason}
		}
		return e164, nil
	case events.ChannelTelegram:
		s := strings.TrimSpace(raw)
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n == 0 {
			return "", &idProblem{CodeInvalidUserID, raw, "is not a Telegram chat id (a non-zero 64-bit integer)"}
		}
		if len(s) > 0 && s[0] != '0' && s[0] != '+' && (s[0] != '-' || len(s) > 1 && s[1] != '0') {
			return s, nil // already canonical: no allocation
		}
		return strconv.FormatInt(n, 10), nil
	default:
		s := strings.TrimSpace(raw)
		switch {
		case s == "":
			return "", &idProblem{CodeInvalidUserID, raw, "is empty"}
		case utf8.RuneCountInString(s) > MaxNameLen:
			return "", &idProblem{CodeInvalidUserID, raw, fmt.Sprintf("is longer than %d characters", MaxNameLen)}
		case hasControl(s):
			return "", &idProblem{CodeInvalidUserID, raw, "contains a control or invalid character"}
		}
		return s, nil
	}
}

func normalizePhone(raw, field string) (string, *Error) {
	return normalizeUser(events.ChannelWhatsApp, raw, field)
}

// checkBMIDs validates Botmother bm_ids: 24 letters or digits (the shape of
// a MongoDB ObjectID in hex; the seed's own example "5c517b7773515eaha3078e2f"
// is not hex, so letters beyond f are accepted).
func checkBMIDs(ids []string, field string) ([]string, *Error) {
	out := make([]string, 0, len(ids))
	seen := make(map[string]struct{}, len(ids))
	for i, id := range ids {
		id = strings.TrimSpace(id)
		if !isBMID(id) {
			return nil, newError(http.StatusUnprocessableEntity, CodeInvalidUserID, indexed(field, i),
				"%s %q is not a bm_id (24 letters or digits)", indexed(field, i), truncate(id, 40))
		}
		if _, dup := seen[id]; dup {
			continue
		}
		seen[id] = struct{}{}
		out = append(out, id)
	}
	return out, nil
}

func isBMID(s string) bool {
	if len(s) != 24 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z') {
			return false
		}
	}
	return true
}

// checkContactIDs validates internal contact ids of the native API: opaque
// tokens of letters, digits, "-" and "_", at most 64 characters.
func checkContactIDs(ids []string, field string) ([]string, *Error) {
	out := make([]string, 0, len(ids))
	seen := make(map[string]struct{}, len(ids))
	for i, id := range ids {
		id = strings.TrimSpace(id)
		if !isContactID(id) {
			return nil, newError(http.StatusUnprocessableEntity, CodeInvalidUserID, indexed(field, i),
				"%s %q is not a contact id (1 to 64 letters, digits, - or _)", indexed(field, i), truncate(id, 40))
		}
		if _, dup := seen[id]; dup {
			continue
		}
		seen[id] = struct{}{}
		out = append(out, id)
	}
	return out, nil
}

func isContactID(s string) bool {
	if len(s) == 0 || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}
