package compat

import (
	"bytes"
	"net/http"
)

// ParseBotmother parses a Botmother External Event request exactly as
// Botmother documents it:
//
//	{"platform": "tg", "users": ["123456"], "data": {}}
//	{"platform": "any", "users": "everyone", "data": {}}
//	{"users_bm": ["5c517b7773515eaha3078e2f"], "data": {}}
//
// platform is tg, wa, rcs or any (the channel names whatsapp, telegram,
// rcs and sandbox are accepted too). Absent, users and "everyone" are on
// the bot's default channel (the ingress resolves it) and users_bm each on
// its contact's own: only an explicit "any" reaches every channel, so a
// request never messages people on a channel its caller did not choose.
// users is an array
// of platform ids (strings, or integers kept exactly: Telegram ids need 64
// bits) or the string "everyone"; users_bm is an array of bm_ids (24 letters
// or digits). Exactly one of users and users_bm. data, an object, becomes
// the contacts' last_request. Other keys are ignored, as a drop-in
// replacement must accept whatever Botmother accepted. Content-Type must be
// application/json.
func ParseBotmother(contentType string, body []byte) (Request, *Error) {
	if err := checkJSONContentType(contentType); err != nil {
		return Request{}, err
	}
	raw, err := decodeRawObject(body)
	if err != nil {
		return Request{}, err
	}
	var req Request

	platform := ""
	if p := raw["platform"]; !isNull(p) {
		s, err := rawString(p, "platform")
		if err != nil {
			return Request{}, err
		}
		var ok bool
		if platform, ok = platformOf(s); !ok {
			return Request{}, unknownPlatform("platform", s)
		}
	}
	if platform != PlatformAny && platform != "" {
		req.Channel = platform
	}
	req.Audience.Platform = platform

	users, usersBM := raw["users"], raw["users_bm"]
	switch {
	case !isNull(users) && !isNull(usersBM):
		return Request{}, newError(http.StatusUnprocessableEntity, CodeConflictingFields, "users_bm",
			"give either users or users_bm, not both")
	case !isNull(users):
		if bytes.HasPrefix(bytes.TrimSpace(users), []byte(`"`)) {
			s, err := rawString(users, "users")
			if err != nil {
				return Request{}, err
			}
			if s != "everyone" {
				return Request{}, invalid("users", `users must be an array of ids or "everyone", not %q`, truncate(s, 40))
			}
			req.Audience.Everyone = true
			break
		}
		ids, err := decodeIDList(users, "users")
		if err != nil {
			return Request{}, err
		}
		if req.Audience.Users, err = normalizeUsers(req.Channel, ids, "users", true); err != nil {
			return Request{}, err
		}
	case !isNull(usersBM):
		ids, err := decodeIDList(usersBM, "users_bm")
		if err != nil {
			return Request{}, err
		}
		if req.Audience.UsersBM, err = checkBMIDs(ids, "users_bm"); err != nil {
			return Request{}, err
		}
		if platform == "" {
			req.Audience.Platform = PlatformAny // each contact on its own channel
		}
	default:
		return Request{}, newError(http.StatusUnprocessableEntity, CodeMissingField, "users",
			`users (an array of ids or "everyone") or users_bm is required`)
	}
	req.usersField = "users"

	if req.Data, err = decodeObjectField(raw["data"], "data"); err != nil {
		return Request{}, err
	}
	if err := checkDataSize(req.Data, "data"); err != nil {
		return Request{}, err
	}
	return req, nil
}
