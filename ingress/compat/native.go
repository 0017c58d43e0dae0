package compat

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"strings"

	"github.com/expr-lang/expr"

	"github.com/flowgate/flowgate/shared/events"
	"github.com/flowgate/flowgate/shared/provider"
)

var (
	nativeKeys   = keySet("event", "flow", "channel", "audience", "data", "idempotency_key", "initial_message", "name", "priority")
	audienceKeys = keySet("users", "users_bm", "everyone", "platform", "filter")
)

// ParseNative parses a native trigger request:
//
//	{"event"|"flow": "...", "channel": "...",
//	 "audience": {"users": [...] | "everyone", "users_bm": [...], "everyone": true,
//	              "platform": "whatsapp|telegram|rcs|sandbox|any", "filter": "plan == \"Premium\""},
//	 "data": {...}, "idempotency_key": "...", "initial_message": {template content}, "name": "..."}
//
// Rules (the API is Flowgate's own, so it is strict):
//   - unknown keys, at the top and in audience, are refused (a typo must not
//     silently widen a broadcast);
//   - exactly one of event and flow;
//   - exactly one selector: users, users_bm or everyone. A filter alone
//     means everyone narrowed by the filter; a filter with users or users_bm
//     is refused. "users": "everyone" is accepted as in Botmother;
//   - platform takes Botmother's codes too (tg, wa); without a channel, a
//     platform other than "any" is the channel; with a channel, platform must
//     be the same, or "any" (then narrowed to the channel);
//   - users are normalised for the channel (E.164 for whatsapp and rcs) and
//     de-duplicated; without channel and platform they are kept as given;
//   - the filter must compile as an expr-lang boolean expression over
//     contact attributes (undefined names allowed);
//   - initial_message must be a template content with a template name;
//   - name (an extension) sets the contact's name and needs a single user.
func ParseNative(contentType string, body []byte) (Request, *Error) {
	if err := checkJSONContentType(contentType); err != nil {
		return Request{}, err
	}
	raw, err := decodeRawObject(body)
	if err != nil {
		return Request{}, err
	}
	if err := rejectUnknown(raw, nativeKeys, ""); err != nil {
		return Request{}, err
	}
	var req Request

	event, err := optionalString(raw["event"], "event")
	if err != nil {
		return Request{}, err
	}
	flow, err := optionalString(raw["flow"], "flow")
	if err != nil {
		return Request{}, err
	}
	switch {
	case event != "" && flow != "":
		return Request{}, newError(http.StatusUnprocessableEntity, CodeConflictingFields, "flow",
			"give either event or flow, not both")
	case event != "":
		if err := checkToken(event, "event", MaxNameLen); err != nil {
			return Request{}, err
		}
		req.Event = event
	case flow != "":
		if err := checkToken(flow, "flow", MaxNameLen); err != nil {
			return Request{}, err
		}
		req.FlowID = flow
	default:
		return Request{}, newError(http.StatusUnprocessableEntity, CodeMissingField, "event",
			"event or flow is required")
	}

	channel, err := optionalString(raw["channel"], "channel")
	if err != nil {
		return Request{}, err
	}
	channel = strings.ToLower(strings.TrimSpace(channel))
	if channel != "" && !provider.Known(channel) {
		return Request{}, newError(http.StatusUnprocessableEntity, CodeUnknownChannel, "channel",
			"channel %q is not one of sandbox, whatsapp, telegram, rcs", truncate(channel, 40))
	}

	if isNull(raw["audience"]) {
		return Request{}, missing("audience")
	}
	aud, channel, err := parseNativeAudience(raw["audience"], channel)
	if err != nil {
		return Request{}, err
	}
	req.Channel = channel
	req.Audience = aud
	req.usersField = "audience.users"

	if req.Data, err = decodeObjectField(raw["data"], "data"); err != nil {
		return Request{}, err
	}
	if err := checkDataSize(req.Data, "data"); err != nil {
		return Request{}, err
	}

	key, err := optionalString(raw["idempotency_key"], "idempotency_key")
	if err != nil {
		return Request{}, err
	}
	if key != "" {
		if err := checkToken(key, "idempotency_key", MaxIdempotencyKeyLen); err != nil {
			return Request{}, err
		}
		req.IdempotencyKey = key
	}

	if !isNull(raw["initial_message"]) {
		if req.InitialMessage, err = parseTemplateContent(raw["initial_message"], "initial_message"); err != nil {
			return Request{}, err
		}
	}

	if req.Name, err = optionalName(raw["name"], "name"); err != nil {
		return Request{}, err
	}
	priority, err := optionalString(raw["priority"], "priority")
	if err != nil {
		return Request{}, err
	}
	if priority != "" && !events.KnownLane(priority) {
		return Request{}, newError(http.StatusUnprocessableEntity, CodeInvalidField, "priority",
			"priority %q is not one of high, bulk", truncate(priority, 40))
	}
	req.Priority = priority
	if req.Name != "" && len(req.Audience.Users) != 1 {
		return Request{}, newError(http.StatusUnprocessableEntity, CodeConflictingFields, "name",
			"name sets one contact's name; the audience must be exactly one user")
	}
	return req, nil
}

// parseNativeAudience returns the audience and the channel, reconciled with
// the audience's platform.
func parseNativeAudience(body json.RawMessage, channel string) (events.Audience, string, *Error) {
	var a events.Audience
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(body, &raw); err != nil || raw == nil {
		return a, "", invalid("audience", "audience must be an object, not %s", rawKind(body))
	}
	if err := rejectUnknown(raw, audienceKeys, "audience."); err != nil {
		return a, "", err
	}

	platform, err := optionalString(raw["platform"], "audience.platform")
	if err != nil {
		return a, "", err
	}
	if platform != "" {
		p, ok := platformOf(platform)
		if !ok {
			return a, "", unknownPlatform("audience.platform", platform)
		}
		platform = p
	}
	switch {
	case platform == "":
		platform = channel
	case channel == "" && platform != PlatformAny:
		channel = platform
	case channel != "" && platform == PlatformAny:
		platform = channel
	case channel != "" && platform != channel:
		return a, "", newError(http.StatusUnprocessableEntity, CodeConflictingFields, "audience.platform",
			"audience.platform %s differs from channel %s", platform, channel)
	}
	a.Platform = platform

	var selectors []string
	if u := raw["users"]; !isNull(u) {
		if bytes.HasPrefix(bytes.TrimSpace(u), []byte(`"`)) {
			s, err := rawString(u, "audience.users")
			if err != nil {
				return a, "", err
			}
			if s != "everyone" {
				return a, "", invalid("audience.users", `audience.users must be an array of ids or "everyone", not %q`, truncate(s, 40))
			}
			a.Everyone = true
		} else {
			ids, err := decodeIDList(u, "audience.users")
			if err != nil {
				return a, "", err
			}
			if a.Users, err = normalizeUsers(channel, ids, "audience.users", true); err != nil {
				return a, "", err
			}
		}
		selectors = append(selectors, "users")
	}
	if u := raw["users_bm"]; !isNull(u) {
		ids, err := decodeIDList(u, "audience.users_bm")
		if err != nil {
			return a, "", err
		}
		if a.UsersBM, err = checkContactIDs(ids, "audience.users_bm"); err != nil {
			return a, "", err
		}
		selectors = append(selectors, "users_bm")
	}
	if e := raw["everyone"]; !isNull(e) {
		var everyone bool
		if err := json.Unmarshal(e, &everyone); err != nil {
			return a, "", invalid("audience.everyone", "audience.everyone must be a boolean, not %s", rawKind(e))
		}
		if everyone {
			if a.Everyone {
				return a, "", newError(http.StatusUnprocessableEntity, CodeConflictingFields, "audience.everyone",
					`give "users": "everyone" or "everyone": true, not both`)
			}
			a.Everyone = true
			selectors = append(selectors, "everyone")
		}
	}

	filter, err := optionalString(raw["filter"], "audience.filter")
	if err != nil {
		return a, "", err
	}
	if filter = strings.TrimSpace(filter); filter != "" {
		if len(a.Users) > 0 || len(a.UsersBM) > 0 {
			return a, "", newError(http.StatusUnprocessableEntity, CodeConflictingFields, "audience.filter",
				"a filter narrows everyone; it cannot be combined with users or users_bm")
		}
		if err := compileFilter(filter, "audience.filter"); err != nil {
			return a, "", err
		}
		a.Filter = filter
		if !a.Everyone {
			a.Everyone = true
			selectors = append(selectors, "filter")
		}
	}

	switch len(selectors) {
	case 0:
		return a, "", newError(http.StatusUnprocessableEntity, CodeMissingField, "audience.users",
			"audience needs one of users, users_bm, everyone or filter")
	case 1:
	default:
		return a, "", newError(http.StatusUnprocessableEntity, CodeConflictingFields, "audience."+selectors[1],
			"audience selects by %s; give only one of users, users_bm and everyone", strings.Join(selectors, " and "))
	}
	return a, channel, nil
}

// compileFilter checks that s is a boolean expr-lang expression. Names are
// contact attributes, unknown at this point, so undefined names are allowed.
func compileFilter(s, field string) (perr *Error) {
	if len(s) > MaxFilterLen {
		return newError(http.StatusUnprocessableEntity, CodeInvalidFilter, field,
			"%s is %d bytes; the limit is %d", field, len(s), MaxFilterLen)
	}
	defer func() {
		// expr is not ours: a panic on some input must still be a refusal.
		if r := recover(); r != nil {
			perr = newError(http.StatusUnprocessableEntity, CodeInvalidFilter, field, "%s does not compile", field)
		}
	}()
	if _, err := expr.Compile(s, expr.AllowUndefinedVariables(), expr.AsBool(), expr.MaxNodes(2000)); err != nil {
		msg := err.Error()
		if i := strings.IndexByte(msg, '\n'); i >= 0 {
			msg = msg[:i]
		}
		return newError(http.StatusUnprocessableEntity, CodeInvalidFilter, field,
			"%s does not compile: %s", field, truncate(msg, 200))
	}
	return nil
}

// parseTemplateContent decodes a message content that must be a template
// with a name (the only kind WhatsApp delivers outside the 24-hour window).
func parseTemplateContent(raw json.RawMessage, field string) (*events.Content, *Error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	var c events.Content
	if err := dec.Decode(&c); err != nil {
		return nil, invalid(field, "%s is not a message content: %s", field, truncate(err.Error(), 200))
	}
	if c.Type != events.ContentTemplate {
		return nil, invalid(field+".type", `%s.type must be "template", not %q`, field, truncate(c.Type, 40))
	}
	if c.Template == nil {
		return nil, missing(field + ".template")
	}
	if err := checkToken(c.Template.Name, field+".template.name", MaxNameLen); err != nil {
		if c.Template.Name == "" {
			return nil, missing(field + ".template.name")
		}
		return nil, err
	}
	if b, err := json.Marshal(c); err != nil || len(b) > MaxDataBytes {
		return nil, newError(http.StatusRequestEntityTooLarge, CodeDataTooLarge, field,
			"%s is larger than %d bytes", field, MaxDataBytes)
	}
	return &c, nil
}

func optionalString(raw json.RawMessage, field string) (string, *Error) {
	if isNull(raw) {
		return "", nil
	}
	return rawString(raw, field)
}

func keySet(keys ...string) map[string]bool {
	m := make(map[string]bool, len(keys))
	for _, k := range keys {
		m[k] = true
	}
	return m
}

// rejectUnknown refuses keys outside allowed, naming the first in sort order
// so that the answer does not depend on map iteration.
func rejectUnknown(raw map[string]json.RawMessage, allowed map[string]bool, prefix string) *Error {
	var unknown []string
	for k := range raw {
		if !allowed[k] {
			unknown = append(unknown, k)
		}
	}
	if len(unknown) == 0 {
		return nil
	}
	sort.Strings(unknown)
	known := make([]string, 0, len(allowed))
	for k := range allowed {
		known = append(known, k)
	}
	sort.Strings(known)
	return newError(http.StatusUnprocessableEntity, CodeUnknownField, prefix+truncate(unknown[0], 64),
		"unknown field %q; known fields are %s", truncate(unknown[0], 64), fmt.Sprint(known))
}
