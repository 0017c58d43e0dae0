package flow

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// validFlows are every flow file in testdata (not testdata/invalid).
func validFlows(t testing.TB) []string {
	t.Helper()
	var files []string
	for _, pat := range []string{"testdata/*.yaml", "testdata/*.json"} {
		m, err := filepath.Glob(pat)
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, m...)
	}
	if len(files) < 10 {
		t.Fatalf("found only %d flow files", len(files))
	}
	return files
}

func loadFlow(t testing.TB, name string) *Definition {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	d, err := Parse(b)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return d
}

func TestParseTestdataAndCanonicalRoundTrip(t *testing.T) {
	for _, f := range validFlows(t) {
		t.Run(filepath.Base(f), func(t *testing.T) {
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			d, err := Parse(b)
			if err != nil {
				t.Fatal(err)
			}
			canon, err := d.JSON()
			if err != nil {
				t.Fatal(err)
			}
			// The canonical form must parse to the same canonical form.
			d2, err := Parse(canon)
			if err != nil {
				t.Fatalf("canonical JSON does not parse: %v\n%s", err, canon)
			}
			canon2, err := d2.JSON()
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(canon, canon2) {
				t.Fatalf("canonical JSON is not stable:\n%s\n%s", canon, canon2)
			}
		})
	}
}

func TestYAMLAndJSONAreOneSchema(t *testing.T) {
	yamlDoc := `
name: same
steps:
  - id: ask_age
    type: ask
    text: "Age, {{ name }}?"
    validate: number
    retries: 1
    timeout: 1d
    on_timeout: bye
  - {id: bye, type: end}
`
	jsonDoc := `{"name":"same","steps":[
	  {"id":"ask_age","type":"ask","text":"Age, {{ name }}?","validate":{"type":"number"},
	   "retries":1,"timeout":"24h","on_timeout":"bye"},
	  {"id":"bye","type":"end"}]}`
	a, err := Parse([]byte(yamlDoc))
	if err != nil {
		t.Fatal(err)
	}
	b, err := Parse([]byte(jsonDoc))
	if err != nil {
		t.Fatal(err)
	}
	ja, _ := a.JSON()
	jb, _ := b.JSON()
	if !bytes.Equal(ja, jb) {
		t.Fatalf("YAML and JSON differ:\n%s\n%s", ja, jb)
	}
	want := `{"name":"same","steps":[{"id":"ask_age","type":"ask","text":"Age, {{ name }}?","attribute":"","validate":{"type":"number"},"retries":1,"timeout":"24h0m0s","on_timeout":"bye"},{"id":"bye","type":"end"}]}`
	want = strings.Replace(want, `"attribute":"",`, "", 1)
	if string(ja) != want {
		t.Fatalf("canonical JSON\n got %s\nwant %s", ja, want)
	}
}

func TestYAMLFlowStyleStartingWithABrace(t *testing.T) {
	d, err := Parse([]byte(`{steps: [{id: a, type: send, text: "hi {{ name }}"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	if d.Steps[0].Text != "hi {{ name }}" {
		t.Fatalf("%+v", d.Steps)
	}
	// Neither JSON nor YAML: the JSON error is reported.
	_, err = Parse([]byte(`{"steps": [}`))
	if err == nil || !strings.Contains(err.Error(), "invalid JSON") {
		t.Fatalf("got %v", err)
	}
}

func TestParseInvalid(t *testing.T) {
	cases := []struct {
		file, path, msg string
	}{
		{"unknown_type.yaml", "steps[1].type", `unknown step type "sendd"`},
		{"duplicate_id.yaml", "steps[1].id", `duplicate step id "a"`},
		{"dangling_next.yaml", "steps[0].next", `no step with id "nowhere"`},
		{"dangling_branch.json", "steps[0].conditions[1].next", `no step with id "ghost"`},
		{"unreachable.yaml", "steps[1]", `step "b" is unreachable`},
		{"bad_expr.yaml", "steps[0].conditions[0].when", "invalid expression"},
		{"bad_regex.yaml", "steps[0].validate.regex", "invalid regular expression"},
		{"loop_no_wait.yaml", "steps[2].step", "loop without a wait: a → b → c → a"},
		{"loop_skippable_ask.yaml", "steps[2].step", "loop without a wait"},
		{"unknown_field.yaml", "steps[0].txt", "unknown field"},
		{"field_not_allowed.yaml", "steps[0].duration", "not allowed in a send step"},
		{"bad_placeholder.yaml", "steps[0].text", "unterminated placeholder"},
		{"bad_duration.yaml", "steps[0].duration", `invalid duration "soon"`},
		{"bad_scheme.yaml", "steps[0].url", "http:// or https://"},
		{"no_steps.yaml", "steps", "at least one step"},
		{"syntax.json", "", "invalid JSON"},
		{"wrong_types.yaml", "steps[0].id", "must be a string"},
		{"goto_both.yaml", "steps[0].flow", "either step or flow"},
		{"reserved_attribute.yaml", "steps[0].attribute", "reserved"},
		{"media_and_text.yaml", "steps[0].text", "caption, not text"},
		{"media_local_path.yaml", "steps[1].image", "neither an absolute http(s) URL nor an uploaded file (media:<id>)"},
	}
	files, _ := filepath.Glob("testdata/invalid/*")
	if len(files) != len(cases) {
		t.Errorf("testdata/invalid has %d files, the table %d", len(files), len(cases))
	}
	for _, c := range cases {
		t.Run(c.file, func(t *testing.T) {
			b, err := os.ReadFile(filepath.Join("testdata/invalid", c.file))
			if err != nil {
				t.Fatal(err)
			}
			d, err := Parse(b)
			if err == nil {
				t.Fatalf("parsed: %+v", d)
			}
			var verrs *ValidationErrors
			if !errors.As(err, &verrs) {
				t.Fatalf("error is %T, not *ValidationErrors: %v", err, err)
			}
			for _, fe := range *verrs {
				if fe.Path == c.path && strings.Contains(fe.Message, c.msg) {
					return
				}
			}
			t.Fatalf("no error at %q containing %q; got %v", c.path, c.msg, err)
		})
	}
}

func TestParseReportsEveryProblem(t *testing.T) {
	_, err := Parse([]byte(`
steps:
  - {id: a, type: ask, text: "Age?", validate: {type: number, regex: "x"}, retries: 99}
  - {id: b, type: wait}
  - {id: c, type: whatsapp_flow, text: hi, flow_id: "1", flow_name: x}
  - {id: d, type: template, template: t, timeout: 5m}
`))
	var verrs *ValidationErrors
	if !errors.As(err, &verrs) {
		t.Fatalf("got %v", err)
	}
	want := map[string]bool{
		"steps[0].retries":        false,
		"steps[0].validate.regex": false,
	}
	// Structural errors stop before semantic ones; fix retries to see the rest.
	for _, fe := range *verrs {
		if _, ok := want[fe.Path]; ok {
			want[fe.Path] = true
		}
	}
	if !want["steps[0].retries"] {
		t.Fatalf("retries out of range not reported: %v", err)
	}
	_, err = Parse([]byte(`
steps:
  - {id: a, type: ask, text: "Age?", validate: {type: number, regex: "x"}}
  - {id: b, type: wait}
  - {id: c, type: whatsapp_flow, text: hi, flow_id: "1", flow_name: x}
  - {id: d, type: template, template: t, timeout: 5m}
`))
	if !errors.As(err, &verrs) {
		t.Fatalf("got %v", err)
	}
	paths := map[string]bool{}
	for _, fe := range *verrs {
		paths[fe.Path] = true
	}
	for _, p := range []string{"steps[0].validate.regex", "steps[1].duration", "steps[2].flow_name",
		"steps[2].cta", "steps[3].language", "steps[3].timeout"} {
		if !paths[p] {
			t.Errorf("no error at %s; got %v", p, err)
		}
	}
}

func TestValidationErrorsJSON(t *testing.T) {
	_, err := Parse([]byte(`{"steps":[{"id":"a","type":"nope"}]}`))
	var verrs *ValidationErrors
	if !errors.As(err, &verrs) {
		t.Fatal(err)
	}
	b, _ := json.Marshal(verrs)
	if !strings.Contains(string(b), `"path":"steps[0].type"`) {
		t.Fatalf("got %s", b)
	}
	if !strings.HasPrefix(err.Error(), "invalid flow: steps[0].type: unknown step type") {
		t.Fatalf("got %q", err.Error())
	}
}

func TestParseOddDocuments(t *testing.T) {
	for name, doc := range map[string]string{
		"empty":          "",
		"blank":          " \n\t ",
		"scalar":         "42",
		"list":           "- a\n- b",
		"null steps":     "steps:",
		"steps scalar":   "steps: 3",
		"step scalar":    "steps: [3]",
		"two yaml docs":  "steps: []\n---\nsteps: []",
		"json trailing":  `{"steps":[]} {}`,
		"yaml tab":       "steps:\n\t- id: a",
		"non-string key": "steps:\n  - {1: a, type: send}",
		"nan":            "steps:\n  - {id: a, type: ask, text: x, validate: {type: number, min: .nan}}",
		"deep":           "steps: " + strings.Repeat("[", 200) + strings.Repeat("]", 200),
		"alias bomb":     "a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\nc: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]\ne: [*d, *d, *d, *d, *d, *d, *d, *d, *d]\nsteps: []",
		"huge":           "steps: []\n#" + strings.Repeat("x", MaxDocumentSize),
	} {
		t.Run(name, func(t *testing.T) {
			d, err := Parse([]byte(doc))
			var verrs *ValidationErrors
			if err == nil || !errors.As(err, &verrs) || len(*verrs) == 0 {
				t.Fatalf("Parse = %v, %v; want *ValidationErrors", d, err)
			}
		})
	}
}

func TestStepFieldsCoverStruct(t *testing.T) {
	// Every field Parse accepts must be a JSON field of Step, or Parse
	// would accept a field and then silently drop it.
	tags := map[string]bool{}
	st := reflect.TypeOf(Step{})
	for i := 0; i < st.NumField(); i++ {
		name, _, _ := strings.Cut(st.Field(i).Tag.Get("json"), ",")
		tags[name] = true
	}
	for k := range stepFields {
		if !tags[k] {
			t.Errorf("field %q has a spec but no Step field", k)
		}
	}
	for k := range tags {
		if stepFields[k] == nil {
			t.Errorf("Step field %q has no spec", k)
		}
	}
	for _, typ := range StepTypes {
		for _, f := range StepFields(typ) {
			if !tags[f] {
				t.Errorf("%s accepts %q, which is no Step field", typ, f)
			}
		}
	}
	if StepFields("nope") != nil {
		t.Error("unknown type has fields")
	}
}
