package compat

import (
	"net/http"
	"net/url"
	"sort"
	"strings"

	"github.com/flowgate/flowgate/shared/events"
)

// NameAttribute is the contact attribute Engati keeps the user's name in
// ("user_user_name"; when no name is given it holds the phone number).
const NameAttribute = "user_user_name"

// Engati reserved keys; every other key is an attribute.
const (
	engatiChannelKey = "user_channel"
	engatiPhoneKey   = "user_phone_no"
)

// engatiNameKeys are the keys read as the user's name, first match wins.
var engatiNameKeys = []string{NameAttribute, "user_name", "name"}

// ParseEngatiV2 parses an Engati API Trigger v2.0 JSON body:
//
//	{"user_channel": "whatsapp", "user_phone_no": "<phone>", "attribute_1": "value1", ...}
//
// user_channel is whatsapp or rcs, and defaults to whatsapp when absent
// (Engati's own wording makes rcs the case that "must be specified").
// user_phone_no is required with country code, as a string or, as in
// Engati's curl example, a bare JSON number; "+" is optional. It is
// normalised to E.164. Every other key is set on the contact as an
// attribute and goes into Data. The name is taken from user_user_name,
// user_name or name; without one the phone number is the name, and
// Attributes and Data carry it as user_user_name, as Engati does.
func ParseEngatiV2(contentType string, body []byte) (Request, *Error) {
	if err := checkJSONContentType(contentType); err != nil {
		return Request{}, err
	}
	raw, err := decodeRawObject(body)
	if err != nil {
		return Request{}, err
	}
	channel := ""
	if c := raw[engatiChannelKey]; !isNull(c) {
		if channel, err = rawString(c, engatiChannelKey); err != nil {
			return Request{}, err
		}
	}
	phoneNo := ""
	if p := raw[engatiPhoneKey]; !isNull(p) {
		if phoneNo, err = rawID(p, engatiPhoneKey); err != nil {
			return Request{}, err
		}
	}
	delete(raw, engatiChannelKey)
	delete(raw, engatiPhoneKey)
	for _, k := range sortedKeys(raw) {
		if err := checkAttributeKey(k); err != nil {
			return Request{}, err
		}
	}
	attrs, err := rawObjectToPlain(raw, "")
	if err != nil {
		return Request{}, err
	}
	return engatiRequest(channel, phoneNo, attrs)
}

// ParseEngatiV1 parses an Engati API Trigger v1.0 query string:
//
//	?user_phone_no=<phone>&resultcode=123&operationid=test123
//
// with the same rules as ParseEngatiV2; values are strings, and a key given
// more than once becomes a list of strings. A "+" in an unencoded query
// arrives as a space, which phone normalisation ignores.
func ParseEngatiV1(query url.Values) (Request, *Error) {
	one := func(key string) (string, *Error) {
		vs := query[key]
		switch len(vs) {
		case 0:
			return "", nil
		case 1:
			return vs[0], nil
		}
		return "", invalid(key, "%s is given %d times", key, len(vs))
	}
	channel, err := one(engatiChannelKey)
	if err != nil {
		return Request{}, err
	}
	phoneNo, err := one(engatiPhoneKey)
	if err != nil {
		return Request{}, err
	}
	keys := make([]string, 0, len(query))
	for k := range query {
		if k != engatiChannelKey && k != engatiPhoneKey {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys) // deterministic errors
	attrs := make(map[string]any, len(keys))
	for _, k := range keys {
		if err := checkAttributeKey(k); err != nil {
			return Request{}, err
		}
		switch vs := query[k]; len(vs) {
		case 0:
		case 1:
			attrs[k] = vs[0]
		default:
			list := make([]any, len(vs))
			for i, v := range vs {
				list[i] = v
			}
			attrs[k] = list
		}
	}
	return engatiRequest(channel, phoneNo, attrs)
}

func engatiRequest(channel, phoneNo string, attrs map[string]any) (Request, *Error) {
	switch c := strings.ToLower(strings.TrimSpace(channel)); c {
	case "":
		channel = events.ChannelWhatsApp
	case events.ChannelWhatsApp, events.ChannelRCS:
		channel = c
	default:
		return Request{}, newError(http.StatusUnprocessableEntity, CodeUnknownChannel, engatiChannelKey,
			"%s %q is not whatsapp or rcs", engatiChannelKey, truncate(channel, 40))
	}
	if strings.TrimSpace(phoneNo) == "" {
		return Request{}, missing(engatiPhoneKey)
	}
	e164, err := normalizePhone(phoneNo, engatiPhoneKey)
	if err != nil {
		return Request{}, err
	}

	name := ""
	for _, k := range engatiNameKeys {
		if v, ok := attrs[k]; ok {
			s, isString := v.(string)
			if !isString {
				return Request{}, invalid(k, "%s must be a string, not %s", k, jsonKind(v))
			}
			if s = strings.TrimSpace(s); s != "" {
				name = s
				break
			}
		}
	}
	if name == "" {
		name = e164
	}
	if err := checkName(name, NameAttribute); err != nil {
		return Request{}, err
	}
	attrs[NameAttribute] = name
	if err := checkDataSize(attrs, "attributes"); err != nil {
		return Request{}, err
	}
	data := make(map[string]any, len(attrs))
	for k, v := range attrs {
		data[k] = v
	}
	return Request{
		Channel:    channel,
		Audience:   events.Audience{Users: []string{e164}, Platform: channel},
		Name:       name,
		Data:       data,
		Attributes: attrs,
		usersField: engatiPhoneKey,
	}, nil
}
