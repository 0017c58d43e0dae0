package flow

import (
	"testing"

	"github.com/flowgate/flowgate/shared/testclock"
)

// BenchmarkApply measures the pure interpreter. steps/s counts executed
// steps (State.StepsExecuted), the figure the issue asks for.
func BenchmarkApply(b *testing.B) {
	mixed, err := Parse([]byte(`
steps:
  - {id: s1, type: set, attributes: {score: '(attributes.score ?? 0) + 1'}, vars: {vip: 'user_type == "vip"'}}
  - {id: b1, type: branch, conditions: [{when: 'vars.vip && score > 0', next: m1}], default: m2}
  - {id: m1, type: send, text: "Welcome {{ name }}! Your plan: {{ data.plan }}."}
  - {id: m2, type: send, text: "Score {{ score }} for {{ contact.external_id }}"}
  - {id: m3, type: send, text: "Referral code: {{ referralCode }}", skip_if_empty: true}
  - {id: s2, type: set, vars: {n: 'len(data.items)'}}
  - {id: b2, type: branch, conditions: [{when: 'vars.n > 2', next: m4}, {when: 'vars.n > 1', next: m5}]}
  - {id: m4, type: send, text: "many"}
  - {id: m5, type: send, text: "{{ data.items.0 }} and more", buttons: [{id: a, title: A}, {id: b, title: B}]}
  - {id: end, type: end}
`))
	if err != nil {
		b.Fatal(err)
	}
	cases := []struct {
		name   string
		def    *Definition
		start  Start
		events []Event
	}{
		{"welcome_3_messages", loadFlow(b, "welcome.yaml"),
			Start{RunID: "r", Contact: Contact{Name: "John Doe"},
				Data: map[string]any{"plan": "Premium", "referralCode": "REF123"}}, nil},
		{"register_conversation", loadFlow(b, "register.yaml"), Start{RunID: "r"},
			[]Event{Reply{Text: "Anna"}, Reply{Text: "thirty"}, Reply{Text: "30"}}},
		{"mixed_10_steps", mixed,
			Start{RunID: "r", Contact: Contact{Name: "Ann", ExternalID: "+1555"},
				Data: map[string]any{"plan": "Gold", "user_type": "vip", "items": []any{"x", "y"}}}, nil},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			now := testclock.Date(2026, 1, 1, 0, 0, 0)
			steps := 0
			b.ReportAllocs()
			for b.Loop() {
				s := c.start
				s.Now = now
				st, _, err := Apply(c.def, State{}, s)
				if err != nil {
					b.Fatal(err)
				}
				for _, ev := range c.events {
					if st, _, err = Apply(c.def, st, ev); err != nil {
						b.Fatal(err)
					}
				}
				if !st.Status.Terminal() {
					b.Fatalf("run did not finish: %s %s", st.Status, st.Error)
				}
				steps += st.StepsExecuted
			}
			b.ReportMetric(float64(steps)/b.Elapsed().Seconds(), "steps/s")
		})
	}
}
