package flow

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"
)

// Golden files, in the manner of goflow's runner tests: every scenario of
// TestScenarios writes down, for each event it applies, the event, the
// effects Apply returned and the whole serialized state after it. A change to
// what the interpreter does — or to the stored shape of an in-flight run's
// state, which runs already in a store must still decode — shows up as a diff
// of testdata/golden/<scenario>.json.
//
//	go test ./orchestrator/flow/ -run TestScenarios -update
//
// rewrites the files; review the diff before committing it.
var update = flag.Bool("update", false, "rewrite the golden files of orchestrator/flow/testdata/golden")

const goldenDir = "testdata/golden"

// goldenStep is one event of a scenario and what it did.
type goldenStep struct {
	Event   tagged          `json:"event"`
	Effects []tagged        `json:"effects"`
	State   json.RawMessage `json:"state"`
}

// tagged is an event or effect with its Go type name, so that two kinds with
// the same fields cannot be confused.
type tagged struct {
	Type  string `json:"type"`
	Value any    `json:"value"`
}

func tag(v any) tagged {
	typeName := strings.TrimPrefix(fmt.Sprintf("%T", v), "flow.")
	if r, ok := v.(HTTPResult); ok {
		// The body is whatever the server answered, JSON or not: kept as text.
		v = struct {
			HTTPResult
			Body string
		}{r, string(r.Body)}
	}
	return tagged{Type: typeName, Value: v}
}

// record appends one applied event to the conversation's transcript.
func (c *conversation) record(ev Event, effs []Effect, state []byte) {
	step := goldenStep{Event: tag(ev), Effects: []tagged{}, State: state}
	for _, e := range effs {
		step.Effects = append(step.Effects, tag(e))
	}
	c.transcript = append(c.transcript, step)
}

var rfc3339 = regexp.MustCompile(`"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)"`)

// golden renders the transcript with every instant written relative to t0
// ("t0+1m0s"), so that the files do not depend on the date the test clock
// stands at (see shared/testclock), and compares it with the stored file.
func (c *conversation) golden(t *testing.T, name string) {
	t.Helper()
	b, err := json.MarshalIndent(c.transcript, "", "  ")
	if err != nil {
		t.Fatalf("transcript does not marshal: %v", err)
	}
	b = rfc3339.ReplaceAllFunc(b, func(m []byte) []byte {
		at, err := time.Parse(time.RFC3339Nano, string(m[1:len(m)-1]))
		if err != nil {
			return m
		}
		d := at.Sub(t0)
		if d < 0 {
			return []byte(fmt.Sprintf(`"t0-%s"`, -d))
		}
		return []byte(fmt.Sprintf(`"t0+%s"`, d))
	})
	b = append(b, '\n')
	path := filepath.Join(goldenDir, goldenName(name))
	if *update {
		if err := os.MkdirAll(goldenDir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, b, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("no golden file for scenario %q (%v): run go test ./orchestrator/flow/ -run TestScenarios -update", name, err)
	}
	if !bytes.Equal(want, b) {
		t.Errorf("scenario %q differs from %s (run with -update and review the diff):\n%s", name, path, firstDiff(string(want), string(b)))
	}
}

var nonWord = regexp.MustCompile(`[^a-z0-9]+`)

func goldenName(scenario string) string {
	return strings.Trim(nonWord.ReplaceAllString(strings.ToLower(scenario), "_"), "_") + ".json"
}

// firstDiff shows the first differing line with a little context.
func firstDiff(want, got string) string {
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	for i := 0; i < len(w) || i < len(g); i++ {
		var wl, gl string
		if i < len(w) {
			wl = w[i]
		}
		if i < len(g) {
			gl = g[i]
		}
		if wl != gl {
			return fmt.Sprintf("line %d:\n want: %s\n  got: %s", i+1, wl, gl)
		}
	}
	return "(no line differs)"
}

// TestGoldenFilesCoverTestdata: every flow of testdata has a scenario with
// a golden file, and no golden file is left over from a removed scenario.
func TestGoldenFilesCoverTestdata(t *testing.T) {
	flows := map[string]bool{}
	names := map[string]bool{}
	for _, sc := range scenarios() {
		flows[sc.flow] = true
		names[goldenName(sc.name)] = true
	}
	entries, err := os.ReadDir("testdata")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.IsDir() {
			continue
		}
		if ext := filepath.Ext(e.Name()); (ext == ".yaml" || ext == ".json") && !flows[e.Name()] {
			t.Errorf("testdata/%s has no scenario (and so no golden file)", e.Name())
		}
	}
	files, err := os.ReadDir(goldenDir)
	if err != nil {
		t.Fatal(err)
	}
	var stale []string
	for _, f := range files {
		if !names[f.Name()] {
			stale = append(stale, f.Name())
		}
	}
	sort.Strings(stale)
	if len(stale) > 0 && !*update {
		t.Errorf("golden files without a scenario: %v", stale)
	}
	if len(names) != len(scenarios()) {
		t.Errorf("two scenarios share a golden file name")
	}
}
