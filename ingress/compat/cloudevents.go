package compat

import (
	"bytes"
	"net/http"
	"strings"
)

// ParseCloudEventData reads the trigger carried by one CloudEvent whose
// type names the event; the ingress has already decoded the event (binary,
// structured or batch mode) with the CloudEvents SDK and hands over its data
// bytes and subject.
//
// The user is subject when it is set, otherwise data.from (a string or an
// integer); with both, subject wins. data, when present, must be a JSON
// object: data.name (a string) is the contact's name, and every key but
// from, name included, goes into Data as with BuilderBot dispatch. Empty
// data is allowed when subject names the user. As with dispatch, the
// channel is the route's: call ResolveChannel.
func ParseCloudEventData(data []byte, subject string) (Request, *Error) {
	var req Request
	if len(bytes.TrimSpace(data)) > 0 {
		raw, err := decodeRawObject(data)
		if err != nil {
			err.Field = "data"
			if err.Status == http.StatusBadRequest {
				err.Message = "data: " + err.Message
			}
			return Request{}, err
		}
		if req.Name, err = optionalName(raw["name"], "data.name"); err != nil {
			return Request{}, err
		}
		fromRaw := raw["from"]
		delete(raw, "from")
		if req.Data, err = rawObjectToPlain(raw, "data."); err != nil {
			return Request{}, err
		}
		if err := checkDataSize(req.Data, "data"); err != nil {
			return Request{}, err
		}
		if strings.TrimSpace(subject) == "" {
			if isNull(fromRaw) {
				return Request{}, newError(http.StatusUnprocessableEntity, CodeMissingField, "subject",
					"the user is required as the event's subject or as data.from")
			}
			from, err := requiredUser(fromRaw, "data.from")
			if err != nil {
				return Request{}, err
			}
			req.Audience = singleUser(from)
			req.usersField = "data.from"
			return req, nil
		}
	}
	if strings.TrimSpace(subject) == "" {
		return Request{}, newError(http.StatusUnprocessableEntity, CodeMissingField, "subject",
			"the user is required as the event's subject or as data.from")
	}
	user, err := normalizeUser("", subject, "subject")
	if err != nil {
		return Request{}, err
	}
	req.Audience = singleUser(user)
	req.usersField = "subject"
	return req, nil
}
