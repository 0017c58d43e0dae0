package flow

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/flowgate/flowgate/shared/testclock"
)

// FuzzParse feeds arbitrary documents to Parse. Nothing may panic; a
// document that parses must round-trip through its canonical JSON, and a
// run of it must survive a handful of events without error.
func FuzzParse(f *testing.F) {
	files, _ := filepath.Glob("testdata/*.*")
	invalid, _ := filepath.Glob("testdata/invalid/*")
	for _, name := range append(files, invalid...) {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte(`{"steps":[{"id":"a","type":"send","text":"{{ data.x }}"}]}`))
	f.Add([]byte("steps:\n  - {id: a, type: wait, duration: 1d}\n  - {id: b, type: goto, step: a}"))
	f.Fuzz(func(t *testing.T, doc []byte) {
		def, err := Parse(doc)
		if err != nil {
			if _, ok := err.(*ValidationErrors); !ok {
				t.Fatalf("error of type %T: %v", err, err)
			}
			return
		}
		canon, err := def.JSON()
		if err != nil {
			t.Fatalf("JSON: %v", err)
		}
		def2, err := Parse(canon)
		if err != nil {
			t.Fatalf("canonical form does not parse: %v\n%s", err, canon)
		}
		canon2, _ := def2.JSON()
		if !bytes.Equal(canon, canon2) {
			t.Fatalf("canonical form not stable:\n%s\n%s", canon, canon2)
		}
		now := testclock.Date(2026, 1, 1, 0, 0, 0)
		st, _, err := Apply(def, State{}, Start{Now: now, RunID: "f", Contact: Contact{Name: "F"},
			Data: map[string]any{"x": "1", "plan": "pro", "user_type": "vip"}})
		if err != nil {
			t.Fatalf("start: %v", err)
		}
		for _, ev := range []Event{
			Reply{Now: now.Add(time.Second), Text: "1"},
			FlowCompleted{Now: now.Add(2 * time.Second), FlowToken: st.FlowToken, Data: map[string]any{"a": "b"}},
			HTTPResult{Now: now.Add(3 * time.Second), StatusCode: 200, Body: json.RawMessage(`{"a":{"b":[1]}}`)},
			TimerFired{Now: now.Add(400 * 24 * time.Hour)},
			Cancel{Now: now.Add(401 * 24 * time.Hour)},
		} {
			// The runner stores the state as JSON between events: applying
			// an event to the reloaded state must give the same result.
			raw, err := json.Marshal(st)
			if err != nil {
				t.Fatalf("state does not marshal: %v", err)
			}
			var reloaded State
			if err := json.Unmarshal(raw, &reloaded); err != nil {
				t.Fatalf("state does not unmarshal: %v", err)
			}
			next, effs, err := Apply(def, st, ev)
			if err != nil {
				t.Fatalf("%T: %v", ev, err)
			}
			next2, effs2, err := Apply(def, reloaded, ev)
			if err != nil {
				t.Fatalf("%T on reloaded state: %v", ev, err)
			}
			a, _ := json.Marshal([]any{next, effs})
			b, _ := json.Marshal([]any{next2, effs2})
			if !bytes.Equal(a, b) {
				t.Fatalf("%T: reloaded state behaves differently:\n%s\n%s", ev, a, b)
			}
			st = next
		}
		if !st.Status.Terminal() {
			t.Fatalf("run not ended after cancel: %s", st.Status)
		}
	})
}

// FuzzAnswer feeds arbitrary replies to every kind of ask: validation must
// never panic, and an accepted answer must be stored as a JSON-stable value.
func FuzzAnswer(f *testing.F) {
	def, err := Parse([]byte(`
steps:
  - {id: text, type: ask, text: q, validate: {type: text, min: 1, max: 20}}
  - {id: number, type: ask, text: q, validate: {type: number, min: -5, max: 1e6}}
  - {id: email, type: ask, text: q, validate: email}
  - {id: phone, type: ask, text: q, validate: phone}
  - {id: regex, type: ask, text: q, validate: {regex: '^(?i)[a-z]{2}-\d+$'}}
  - {id: button, type: ask, text: q, validate: button, buttons: [{id: "y", title: "Yes"}, {id: "n", title: "No"}]}
`))
	if err != nil {
		f.Fatal(err)
	}
	for _, s := range []string{"", "30", "1,5", "ann@example.com", "+1 (555) 010-0000", "AB-12", "yes", "NaN", "1e400", "\x00", "😀"} {
		f.Add(s, "")
	}
	f.Add("", "y")
	f.Fuzz(func(t *testing.T, text, button string) {
		for i := range def.Steps {
			s := &def.Steps[i]
			v, _, problem := checkAnswer(def, s, Reply{Text: text, ButtonID: button}, nil)
			if problem != "" {
				continue
			}
			b, err := json.Marshal(v)
			if err != nil {
				t.Fatalf("%s: value %#v does not marshal: %v", s.ID, v, err)
			}
			var back any
			if err := json.Unmarshal(b, &back); err != nil || back != v {
				t.Fatalf("%s: value %#v is not JSON-stable (%#v)", s.ID, v, back)
			}
		}
	})
}
