package ingress

import (
	"bytes"
	"encoding/json"
	"math"
	"math/rand/v2"
	"reflect"
	"testing"
	"time"

	cloudevents "github.com/cloudevents/sdk-go/v2/event"

	"github.com/flowgate/flowgate/shared/bus"
	"github.com/flowgate/flowgate/shared/events"
)

// encodeTrigger must produce json.Marshal's bytes exactly.
func TestEncodeTriggerMatchesJSONMarshal(t *testing.T) {
	now := time.Date(2026, 11, 21, 7, 0, 0, 123456000, time.UTC) // testclock: data, not a clock
	odd := []string{"", "plain", `quo"te`, `back\slash`, "<b>&amp;</b>", "tab\tnew\nline", "ünïcødé", "emoji 🎉",
		"bad utf8 \xff\xfe", "\u2028\u2029", "\x00\x1f\x7f", "0", "-"}
	cases := []events.Trigger{
		{},
		{ID: "0193", BotID: "acme", Source: "dispatch", Event: "WELCOME", FlowID: "welcome", Channel: "sandbox",
			Audience: events.Audience{Users: []string{"+34600000000"}}, Name: "John",
			Data: map[string]any{"name": "John", "plan": "Premium", "referralCode": "REF123"}, AcceptedAt: now},
		{ID: "x", Audience: events.Audience{UsersBM: []string{"a", "b"}, Everyone: true, Platform: "any", Filter: `plan == "x" && n > 1`},
			Data: map[string]any{}, IdempotencyKey: "k<1>", RunID: "r", AcceptedAt: now.In(time.FixedZone("x", 3600))},
		{ID: "n", Data: map[string]any{"i": int64(math.MaxInt64), "j": int64(-1), "k": 7, "f": 1.5, "g": 1e21, "h": 1e-7,
			"b": true, "c": false, "z": nil, "arr": []any{"a", int64(1), 2.5, nil, map[string]any{"x": "<"}},
			"m": map[string]any{"b": int64(2), "a": "é", "nested": map[string]any{}}, "s": []string{"x"}}, AcceptedAt: now},
		{ID: "attr", Attributes: map[string]any{"a": 1}, InitialMessage: &events.Content{}, AcceptedAt: now},
		{ID: "zero time"},
		{ID: "no data", NoData: true, IdempotencyKey: "k", AcceptedAt: now},
		{ID: "no data, name", Name: "N", NoData: true, RunID: "r", AcceptedAt: now},
		{ID: "priority", Audience: events.Audience{Users: []string{"a"}}, Priority: events.LaneBulk, AcceptedAt: now},
		{ID: "priority, run", RunID: "r", Priority: events.LaneHigh, AcceptedAt: now},
	}
	for _, s := range odd {
		cases = append(cases, events.Trigger{ID: s, BotID: s, Source: s, Event: s, FlowID: s, Channel: s, Name: s,
			IdempotencyKey: s, RunID: s, Priority: s, Audience: events.Audience{Users: []string{s, s}, Platform: s, Filter: s},
			Data: map[string]any{s: s, s + "k": []any{s}}, AcceptedAt: now})
	}
	r := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 500; i++ {
		d := map[string]any{}
		for j := 0; j < r.IntN(8); j++ {
			d[randString(r)] = randValue(r, 0)
		}
		cases = append(cases, events.Trigger{ID: randString(r), Name: randString(r), Data: d,
			AcceptedAt: now.Add(time.Duration(r.Int64N(1e15)))})
	}
	for i, c := range cases {
		want, err := json.Marshal(&c)
		if err != nil {
			t.Fatal(err)
		}
		got, err := encodeTrigger(&c)
		if err != nil {
			t.Fatalf("case %d: %v", i, err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("case %d:\n got %s\nwant %s", i, got, want)
		}
	}
}

func randString(r *rand.Rand) string {
	const alphabet = "ab<>&\"\\\x01 é🎉\xff\u2028"
	rs := []rune(alphabet)
	b := []byte{}
	for i := 0; i < r.IntN(6); i++ {
		if r.IntN(4) == 0 {
			b = append(b, alphabet[r.IntN(len(alphabet))]) // maybe a broken byte
		} else {
			b = append(b, string(rs[r.IntN(len(rs))])...)
		}
	}
	return string(b)
}

func randValue(r *rand.Rand, depth int) any {
	switch r.IntN(8) {
	case 0:
		return nil
	case 1:
		return r.IntN(2) == 0
	case 2:
		return r.Int64() - r.Int64()
	case 3:
		return r.NormFloat64() * math.Pow(10, float64(r.IntN(40)-20))
	case 4, 5:
		return randString(r)
	case 6:
		if depth < 3 {
			m := map[string]any{}
			for j := 0; j < r.IntN(4); j++ {
				m[randString(r)] = randValue(r, depth+1)
			}
			return m
		}
	case 7:
		if depth < 3 {
			return []any{randValue(r, depth+1), randValue(r, depth+1)}
		}
	}
	return "leaf"
}

func TestAcceptedBodyMatchesJSONMarshal(t *testing.T) {
	for _, id := range []string{"0193a0b2-1c3d-7e4f-8a9b-0c1d2e3f4a5b", "", `<"\>`} {
		for _, dup := range []bool{false, true} {
			want, _ := json.Marshal(struct {
				TriggerID string `json:"trigger_id"`
				Status    string `json:"status"`
				Duplicate bool   `json:"duplicate"`
			}{id, "accepted", dup})
			if got := acceptedBody(id, dup); !bytes.Equal(got, want) {
				t.Errorf("got %s want %s", got, want)
			}
		}
	}
}

// The trigger.accepted event publishTrigger builds (encodeTrigger's payload
// in rawEvent) must be what bus.NewEvent would build (same headers, same
// payload).
func TestTriggerEventMatchesNewEvent(t *testing.T) {
	tr := events.Trigger{ID: "0193a0b2-1c3d-7e4f-8a9b-0c1d2e3f4a5b", BotID: "acme", Source: "dispatch", FlowID: "welcome",
		Channel: "sandbox", Audience: events.Audience{Users: []string{"1234567890"}}, Name: "John",
		Data: map[string]any{"plan": "Premium"}, AcceptedAt: time.Date(2026, 11, 21, 7, 0, 0, 123456000, time.UTC)} // testclock: data, not a clock
	raw, err := encodeTrigger(&tr)
	if err != nil {
		t.Fatal(err)
	}
	got := rawEvent(tr.ID, events.TypeTriggerAccepted, tr.BotID, tr.AcceptedAt, raw)
	want, err := bus.NewEvent(tr.ID, events.TypeTriggerAccepted, tr.BotID, &tr)
	if err != nil {
		t.Fatal(err)
	}
	want.SetTime(tr.AcceptedAt)
	for _, e := range []*cloudevents.Event{&got, &want} {
		e.SetSource("/test")
		if err := e.Validate(); err != nil {
			t.Fatal(err)
		}
	}
	gm, wm := bus.ToMsg("s", got), bus.ToMsg("s", want)
	if !reflect.DeepEqual(gm.Header, wm.Header) || !bytes.Equal(gm.Data, wm.Data) {
		t.Fatalf("got %v %s\nwant %v %s", gm.Header, gm.Data, wm.Header, wm.Data)
	}
}
