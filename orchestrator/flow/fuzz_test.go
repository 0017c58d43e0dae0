package flow

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"
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
		now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
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
			st, _, err = Apply(def, st, ev)
			if err != nil {
				t.Fatalf("%T: %v", ev, err)
			}
			if _, err := json.Marshal(st); err != nil {
				t.Fatalf("state does not marshal: %v", err)
			}
		}
		if !st.Status.Terminal() {
			t.Fatalf("run not ended after cancel: %s", st.Status)
		}
	})
}
