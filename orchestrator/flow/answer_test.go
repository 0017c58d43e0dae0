package flow

import (
	"testing"

	"github.com/flowgate/flowgate/shared/events"
)

func TestCheckAnswer(t *testing.T) {
	def, err := Parse([]byte(`
steps:
  - {id: text, type: ask, text: q, validate: {type: text, min: 2, max: 5}}
  - {id: plain, type: ask, text: q}
  - {id: number, type: ask, text: q, validate: {type: number, min: 0, max: 120}}
  - {id: email, type: ask, text: q, validate: email}
  - {id: phone, type: ask, text: q, validate: phone}
  - {id: regex, type: ask, text: q, validate: {regex: '^[A-Z]{2}-\d{3}$'}}
  - id: button
    type: ask
    text: q
    validate: button
    list:
      button: Pick
      sections: [{rows: [{id: r1, title: Red}, {id: r2, title: " Green "}]}]
`))
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		step, text, button string
		want               any // nil: invalid
	}{
		{"plain", "  hello  ", "", "hello"},
		{"plain", "   ", "", nil},
		{"text", "a", "", nil},
		{"text", "abcde", "", "abcde"},
		{"text", "ñañañ", "", "ñañañ"}, // runes, not bytes
		{"text", "abcdef", "", nil},
		{"number", "30", "", 30.0},
		{"number", "1,5", "", 1.5},
		{"number", "-1", "", nil},
		{"number", "121", "", nil},
		{"number", "NaN", "", nil},
		{"number", "Inf", "", nil},
		{"number", "0x10", "", nil},
		{"number", "thirty", "", nil},
		{"email", "ann@example.com", "", "ann@example.com"},
		{"email", "Ann <ann@example.com>", "", nil},
		{"email", "ann@localhost", "", nil},
		{"email", "ann.example.com", "", nil},
		{"phone", "+1 (555) 010-0000", "", "+15550100000"},
		{"phone", "030 1234567", "", "0301234567"},
		{"phone", "12345", "", nil},
		{"phone", "+1 555 CALL NOW", "", nil},
		{"phone", "+1234567890123456", "", nil},
		{"regex", "AB-123", "", "AB-123"},
		{"regex", "ab-123", "", nil},
		{"button", "", "r2", "r2"},
		{"button", "green", "", "r2"},
		{"button", "R1", "", "r1"},
		{"button", "", "r9", nil},
		{"button", "blue", "", nil},
	}
	for _, c := range cases {
		s, _ := def.StepByID(c.step)
		got, _, problem := checkAnswer(def, s, Reply{Text: c.text, ButtonID: c.button}, nil)
		if c.want == nil {
			if problem == "" {
				t.Errorf("%s %q/%q accepted as %#v", c.step, c.text, c.button, got)
			}
			continue
		}
		if problem != "" || got != c.want {
			t.Errorf("%s %q/%q = %#v (%s), want %#v", c.step, c.text, c.button, got, problem, c.want)
		}
	}
}

func TestButtonReplyWithoutTextUsesTitle(t *testing.T) {
	s := &Step{Type: StepAsk, Buttons: []events.Button{{ID: "y", Title: "Yes please"}}}
	_, input, problem := checkAnswer(&Definition{}, s, Reply{ButtonID: "y"}, nil)
	if problem != "" || input != "Yes please" {
		t.Fatalf("input %q problem %q", input, problem)
	}
}

func TestButtonTitlesAreMatchedAsShown(t *testing.T) {
	def, err := Parse([]byte(`
steps:
  - id: pick
    type: ask
    text: "Which plan?"
    validate: button
    attribute: plan
    buttons: [{id: current, title: "Keep {{ data.plan }}"}, {id: other, title: "Change"}]
`))
	if err != nil {
		t.Fatal(err)
	}
	c := startRun(t, def, Start{Data: map[string]any{"plan": "Gold"}})
	c.apply(Reply{Now: at(1), Text: "keep gold"})
	if c.st.Status != StatusCompleted || c.st.Attributes["plan"] != "current" {
		t.Fatalf("%+v", c.st)
	}
}
