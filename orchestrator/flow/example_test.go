package flow_test

import (
	"errors"
	"fmt"
	"time"

	"github.com/flowgate/flowgate/shared/testclock"

	"github.com/flowgate/flowgate/orchestrator/flow"
)

// The runner's loop in miniature: parse once, then apply events and
// perform the effects.
func Example() {
	def, err := flow.Parse([]byte(`
steps:
  - {id: ask_age, type: ask, text: "How old are you, {{ name }}?", attribute: age, validate: number}
  - {id: thanks, type: send, text: "Thanks! Age {{ age }} saved."}
`))
	if err != nil {
		fmt.Println(err)
		return
	}
	now := testclock.Date(2026, 1, 1, 9, 0, 0)
	st, effects, _ := flow.Apply(def, flow.State{}, flow.Start{Now: now, RunID: "run-1", Contact: flow.Contact{Name: "Ann"}})
	show(st, effects)
	st, effects, _ = flow.Apply(def, st, flow.Reply{Now: now.Add(time.Minute), Text: "forty"})
	show(st, effects)
	st, effects, _ = flow.Apply(def, st, flow.Reply{Now: now.Add(2 * time.Minute), Text: "40"})
	show(st, effects)
	// Output:
	// send #1: How old are you, Ann?
	// -> waiting reply
	// send #2: How old are you, Ann?
	// -> waiting reply
	// set attributes map[age:40]
	// send #3: Thanks! Age 40 saved.
	// -> completed
}

func show(st flow.State, effects []flow.Effect) {
	for _, e := range effects {
		switch e := e.(type) {
		case flow.Send:
			fmt.Printf("send #%d: %s\n", e.Seq, e.Content.Text)
		case flow.SetAttributes:
			fmt.Println("set attributes", e.Values)
		}
	}
	fmt.Println("->", st.Status, st.WaitingFor)
}

func ExampleParse_validationErrors() {
	_, err := flow.Parse([]byte(`
steps:
  - {id: a, type: ask, text: "Code?", validate: {regex: "(["}, next: b}
`))
	var verrs *flow.ValidationErrors
	if !errors.As(err, &verrs) {
		fmt.Println("unexpected:", err)
		return
	}
	for _, e := range *verrs {
		fmt.Printf("%s: %s\n", e.Path, e.Message)
	}
	// Output:
	// steps[0].next: no step with id "b"
	// steps[0].validate.regex: invalid regular expression: error parsing regexp: missing closing ]: `[`
}
