package ingress

import (
	"encoding/json"
	"sort"
	"strconv"
	"time"

	"github.com/flowgate/flowgate/shared/events"
)

// The hot path of every trigger API builds the CloudEvent and its JSON
// payload here, once, without the reflective encoder: encodeTrigger
// produces exactly the bytes json.Marshal produces for the same trigger
// (the tests compare them), and falls back to json.Marshal for whatever its
// fast path does not cover.

const jsonContentType = "application/json"

// encodeTrigger returns json.Marshal(t), faster for the common shapes.
func encodeTrigger(t *events.Trigger) ([]byte, error) {
	if t.Attributes != nil || t.InitialMessage != nil || t.AcceptedAt.Year() < 0 || t.AcceptedAt.Year() > 9999 {
		return json.Marshal(t)
	}
	b := make([]byte, 0, 320+16*len(t.Data))
	b = append(b, `{"id":`...)
	b = appendJSONString(b, t.ID)
	b = append(b, `,"bot_id":`...)
	b = appendJSONString(b, t.BotID)
	b = append(b, `,"source":`...)
	b = appendJSONString(b, t.Source)
	if t.Event != "" {
		b = append(b, `,"event":`...)
		b = appendJSONString(b, t.Event)
	}
	b = append(b, `,"flow_id":`...)
	b = appendJSONString(b, t.FlowID)
	b = append(b, `,"channel":`...)
	b = appendJSONString(b, t.Channel)
	b = append(b, `,"audience":{`...)
	a := t.Audience
	first := true
	field := func(name string) {
		if !first {
			b = append(b, ',')
		}
		first = false
		b = append(b, '"')
		b = append(b, name...)
		b = append(b, `":`...)
	}
	if len(a.Users) > 0 {
		field("users")
		b = appendJSONStrings(b, a.Users)
	}
	if len(a.UsersBM) > 0 {
		field("users_bm")
		b = appendJSONStrings(b, a.UsersBM)
	}
	if a.Everyone {
		field("everyone")
		b = append(b, "true"...)
	}
	if a.Platform != "" {
		field("platform")
		b = appendJSONString(b, a.Platform)
	}
	if a.Filter != "" {
		field("filter")
		b = appendJSONString(b, a.Filter)
	}
	b = append(b, '}')
	if t.Name != "" {
		b = append(b, `,"name":`...)
		b = appendJSONString(b, t.Name)
	}
	if len(t.Data) > 0 {
		b = append(b, `,"data":`...)
		var err error
		if b, err = appendJSONObject(b, t.Data); err != nil {
			return nil, err
		}
	}
	if t.NoData {
		b = append(b, `,"no_data":true`...)
	}
	if t.IdempotencyKey != "" {
		b = append(b, `,"idempotency_key":`...)
		b = appendJSONString(b, t.IdempotencyKey)
	}
	if t.RunID != "" {
		b = append(b, `,"run_id":`...)
		b = appendJSONString(b, t.RunID)
	}
	if t.Priority != "" {
		b = append(b, `,"priority":`...)
		b = appendJSONString(b, t.Priority)
	}
	b = append(b, `,"accepted_at":"`...)
	b = t.AcceptedAt.AppendFormat(b, time.RFC3339Nano)
	b = append(b, `"}`...)
	return b, nil
}

// appendJSONObject appends m as json.Marshal encodes it (keys sorted).
func appendJSONObject(b []byte, m map[string]any) ([]byte, error) {
	var arr [16]string
	keys := arr[:0]
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	b = append(b, '{')
	for i, k := range keys {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendJSONString(b, k)
		b = append(b, ':')
		var err error
		if b, err = appendJSONValue(b, m[k]); err != nil {
			return nil, err
		}
	}
	return append(b, '}'), nil
}

func appendJSONValue(b []byte, v any) ([]byte, error) {
	switch x := v.(type) {
	case nil:
		return append(b, "null"...), nil
	case string:
		return appendJSONString(b, x), nil
	case bool:
		return strconv.AppendBool(b, x), nil
	case int64:
		return strconv.AppendInt(b, x, 10), nil
	case int:
		return strconv.AppendInt(b, int64(x), 10), nil
	case map[string]any:
		return appendJSONObject(b, x)
	}
	raw, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	return append(b, raw...), nil
}

func appendJSONStrings(b []byte, ss []string) []byte {
	b = append(b, '[')
	for i, s := range ss {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendJSONString(b, s)
	}
	return append(b, ']')
}

// appendJSONString appends s quoted as encoding/json quotes it: printable
// ASCII other than the characters it escapes (", \ and, HTML-safe, <, >
// and &) is copied; anything else goes through json.Marshal.
func appendJSONString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c > 0x7e || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			raw, _ := json.Marshal(s) // a string always encodes
			return append(b, raw...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}

// acceptedBody is the 202 body of a single trigger, as json.Marshal encodes
// {"trigger_id": id, "status": "accepted", "duplicate": dup}.
func acceptedBody(id string, dup bool) []byte {
	b := make([]byte, 0, 96)
	b = append(b, `{"trigger_id":`...)
	b = appendJSONString(b, id)
	b = append(b, `,"status":"accepted","duplicate":`...)
	b = strconv.AppendBool(b, dup)
	return append(b, '}')
}
