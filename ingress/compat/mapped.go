package compat

import "encoding/json"

// ParseMapped builds a dispatch request from the values an event's input
// mapping took from a third party's own body (ingress/inputmap): user is a
// JSON string or integer, name a JSON string or nil, data a JSON object or
// nil. The checks are BuilderBot dispatch's; errors name the mapping's
// field ("input.user", "input.name", "input.data").
func ParseMapped(user, name, data json.RawMessage) (Request, *Error) {
	from, err := requiredUser(user, "input.user")
	if err != nil {
		return Request{}, err
	}
	n, err := optionalName(name, "input.name")
	if err != nil {
		return Request{}, err
	}
	var plain map[string]any
	if len(data) > 0 {
		raw, err := decodeRawObject(data)
		if err != nil {
			return Request{}, invalid("input.data", "the mapped data is not a JSON object")
		}
		if plain, err = rawObjectToPlain(raw, ""); err != nil {
			return Request{}, err
		}
		if err := checkDataSize(plain, "input.data"); err != nil {
			return Request{}, err
		}
	}
	return Request{Audience: singleUser(from), Name: n, Data: plain, usersField: "input.user"}, nil
}
