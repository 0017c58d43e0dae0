package compat

import (
	"strings"

	"github.com/flowgate/flowgate/shared/events"
)

// ParseDispatch parses a BuilderBot dispatch payload
// ({"from": "...", "name": "...", ...custom}); the event is the route's.
//
// from is required: a string, or an integer JSON number (kept digit for
// digit). Which channel it is an id on is the route's or the bot's choice,
// so the Request has no Channel: call ResolveChannel, which normalises from
// (E.164 on whatsapp and rcs). name is optional and must be a string. Every
// key except from, including name, goes into Data, so a flow reads
// {{ name }}, {{ plan }} the way a BuilderBot flow reads ctx.name, ctx.plan.
func ParseDispatch(contentType string, body []byte) (Request, *Error) {
	if err := checkJSONContentType(contentType); err != nil {
		return Request{}, err
	}
	raw, err := decodeRawObject(body)
	if err != nil {
		return Request{}, err
	}
	from, err := requiredUser(raw["from"], "from")
	if err != nil {
		return Request{}, err
	}
	name, err := optionalName(raw["name"], "name")
	if err != nil {
		return Request{}, err
	}
	delete(raw, "from")
	data, err := rawObjectToPlain(raw, "")
	if err != nil {
		return Request{}, err
	}
	if err := checkDataSize(data, "body"); err != nil {
		return Request{}, err
	}
	return Request{
		Audience:   singleUser(from),
		Name:       name,
		Data:       data,
		usersField: "from",
	}, nil
}

// requiredUser reads a single user id (string or integer) that must be present.
func requiredUser(raw []byte, field string) (string, *Error) {
	if isNull(raw) {
		return "", missing(field)
	}
	id, err := rawID(raw, field)
	if err != nil {
		return "", err
	}
	if strings.TrimSpace(id) == "" {
		return "", missing(field)
	}
	return normalizeUser("", id, field)
}

// optionalName reads an optional display name: a string, or absent/null.
func optionalName(raw []byte, field string) (string, *Error) {
	if isNull(raw) {
		return "", nil
	}
	name, err := rawString(raw, field)
	if err != nil {
		return "", err
	}
	name = strings.TrimSpace(name)
	if err := checkName(name, field); err != nil {
		return "", err
	}
	return name, nil
}

func singleUser(id string) events.Audience {
	return events.Audience{Users: []string{id}}
}
