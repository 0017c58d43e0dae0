package flow

import (
	"errors"
	"strings"
	"testing"
)

// TestLoopDetection pins down which cycles count as waiting.
func TestLoopDetection(t *testing.T) {
	cases := []struct {
		name, doc string
		loop      string // "" when the flow is valid; else the error path
	}{
		{"loop through wait", `
steps:
  - {id: a, type: send, text: hi}
  - {id: w, type: wait, duration: 1h}
  - {id: g, type: goto, step: a}`, ""},
		{"loop through http only", `
steps:
  - {id: h, type: http, url: "https://example.com", on_error: h}
  - {id: g, type: goto, step: h}`, "steps[0].on_error"},
		{"loop through template waiting for its Flow", `
steps:
  - {id: t, type: template, template: x, language: en, flow_button: {}, wait_completion: true}
  - {id: g, type: goto, step: t}`, ""},
		{"loop through template that does not wait", `
steps:
  - {id: t, type: template, template: x, language: en}
  - {id: g, type: goto, step: t}`, "steps[1].step"},
		{"loop through whatsapp_flow", `
steps:
  - {id: f, type: whatsapp_flow, flow_id: "1", text: hi, cta: go}
  - {id: g, type: goto, step: f}`, ""},
		{"branch arm that bypasses the wait", `
steps:
  - {id: b, type: branch, conditions: [{when: 'vars.fast == true', next: b2}], default: w}
  - {id: w, type: wait, duration: 1m}
  - {id: b2, type: set, vars: {x: '1'}, next: b}`, "steps[2].next"},
		{"branch whose every arm waits", `
steps:
  - {id: b, type: branch, conditions: [{when: 'true', next: w}], default: w}
  - {id: w, type: wait, duration: 1m, next: b}`, ""},
		{"self loop through on_invalid", `
steps:
  - {id: q, type: ask, text: "?", validate: number, on_invalid: q}`, ""},
		{"skippable wait", `
steps:
  - {id: w, type: wait, duration: 1m, if: 'vars.x == 1'}
  - {id: g, type: goto, step: w}`, "steps[1].step"},
		{"goto itself", `
steps:
  - {id: g, type: goto, step: g}`, "steps[0].step"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Parse([]byte(c.doc))
			if c.loop == "" {
				if err != nil {
					t.Fatalf("rejected: %v", err)
				}
				return
			}
			var verrs *ValidationErrors
			if !errors.As(err, &verrs) {
				t.Fatalf("accepted (%v)", err)
			}
			for _, fe := range *verrs {
				if fe.Path == c.loop && strings.Contains(fe.Message, "loop without a wait") {
					return
				}
			}
			t.Fatalf("no loop error at %s: %v", c.loop, err)
		})
	}
}

func TestReachability(t *testing.T) {
	// Steps reached only by on_timeout, on_invalid, on_error, a branch arm
	// or an if-skip are reachable.
	_, err := Parse([]byte(`
steps:
  - {id: q, type: ask, text: "?", timeout: 1m, on_timeout: late, on_invalid: bad, next: h}
  - {id: h, type: http, url: "https://example.com", on_error: oops, next: b}
  - {id: b, type: branch, conditions: [{when: 'true', next: arm}], default: s}
  - {id: s, type: send, text: skipped sometimes, if: 'false'}
  - {id: after_skip, type: end}
  - {id: late, type: end}
  - {id: bad, type: end}
  - {id: oops, type: end}
  - {id: arm, type: end}
`))
	if err != nil {
		t.Fatal(err)
	}
	_, err = Parse([]byte(`
steps:
  - {id: a, type: end}
  - {id: b, type: send, text: x}
  - {id: c, type: goto, step: b}
`))
	if err == nil || !strings.Contains(err.Error(), `steps[1]: step "b" is unreachable`) ||
		!strings.Contains(err.Error(), `steps[2]: step "c" is unreachable`) {
		t.Fatalf("got %v", err)
	}
}
