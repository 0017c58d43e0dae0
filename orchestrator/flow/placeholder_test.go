package flow

import (
	"testing"
	"time"

	"github.com/flowgate/flowgate/shared/testclock"
)

func TestRender(t *testing.T) {
	st := &State{
		Contact:    Contact{ID: "c1", Name: "John", ExternalID: "+1555", Channel: "telegram"},
		Data:       map[string]any{"plan": "Premium", "name": "Data Name", "n": 3.0, "f": 2.5, "items": []any{map[string]any{"t": "lamp"}}, "obj": map[string]any{"a": 1.0}, "nil": nil},
		Attributes: map[string]any{"city": "Oslo", "plan": "Attr Plan"},
		Vars:       map[string]any{"plan": "Var Plan", "ok": true},
	}
	now := testclock.Date(2026, 1, 1, 12, 0, 0)
	sc := &scope{st: st, now: now}
	cases := []struct {
		in, out string
		empty   bool
	}{
		{"no placeholders", "no placeholders", false},
		{"{{name}}", "Data Name", false}, // trigger data before the contact's own name
		{"{{ contact.name }}", "John", false},
		{"{{ plan }}", "Var Plan", false}, // vars > attributes > data
		{"{{ data.plan }}/{{ attributes.plan }}/{{ vars.plan }}", "Premium/Attr Plan/Var Plan", false},
		{"{{ city }} {{ attributes.city }}", "Oslo Oslo", false},
		{"{{ n }} {{ f }} {{ ok }}", "3 2.5 true", false},
		{"{{ data.items.0.t }}", "lamp", false},
		{"{{ data.items.1.t }}", "", true},
		{"{{ data.obj }}", `{"a":1}`, false},
		{"{{ nil }}", "", true},
		{"Referral code: {{ referralCode }}", "Referral code: ", true},
		{"{{ external_id }} {{ channel }} {{ contact.id }}", "+1555 telegram c1", false},
		{"{{ now }}", now.Format(time.RFC3339), false},
		{"{{ plan.x }}", "", true},
		{"a {{ b", "a {{ b", false},
		{"}} {{ data.plan }} {", "}} Premium {", false},
	}
	for _, c := range cases {
		out, empty := render(c.in, sc)
		if out != c.out || empty != c.empty {
			t.Errorf("render(%q) = %q, %v; want %q, %v", c.in, out, empty, c.out, c.empty)
		}
	}
}

func TestCheckPlaceholders(t *testing.T) {
	for s, ok := range map[string]bool{
		"plain": true, "{{ a }}": true, "{{a.b.0.c-d}}": true, "x {{ data.plan }} y {{ name }}": true,
		"{{ }}": false, "{{ a b }}": false, "{{ 1a }}": false, "{{ a..b }}": false, "{{ a": false,
		"{{ a[0] }}": false, "{{ a + b }}": false,
	} {
		if err := checkPlaceholders(s); (err == nil) != ok {
			t.Errorf("checkPlaceholders(%q) = %v", s, err)
		}
	}
}
