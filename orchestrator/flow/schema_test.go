package flow

import (
	"encoding/json"
	"os"
	"reflect"
	"sort"
	"testing"
)

// TestSchemaMatchesParser keeps docs/flow.schema.json and the parser in
// step: the same step types, the same fields per type, the same top-level
// fields.
func TestSchemaMatchesParser(t *testing.T) {
	b, err := os.ReadFile("../../docs/flow.schema.json")
	if err != nil {
		t.Fatal(err)
	}
	var schema struct {
		Properties map[string]any `json:"properties"`
		Defs       map[string]struct {
			Properties map[string]any `json:"properties"`
		} `json:"$defs"`
	}
	if err := json.Unmarshal(b, &schema); err != nil {
		t.Fatal(err)
	}
	if got, want := sortedKeys(schema.Properties), sortedKeys(definitionSpec.fields); !reflect.DeepEqual(got, want) {
		t.Errorf("top-level fields: schema %v, parser %v", got, want)
	}
	var enum struct {
		Defs struct {
			Step struct {
				Properties struct {
					Type struct {
						Enum []StepType `json:"enum"`
					} `json:"type"`
				} `json:"properties"`
			} `json:"step"`
		} `json:"$defs"`
	}
	if err := json.Unmarshal(b, &enum); err != nil {
		t.Fatal(err)
	}
	if got := enum.Defs.Step.Properties.Type.Enum; !reflect.DeepEqual(got, StepTypes) {
		t.Errorf("step types: schema %v, parser %v", got, StepTypes)
	}
	for _, typ := range StepTypes {
		def, ok := schema.Defs["step_"+string(typ)]
		if !ok {
			t.Errorf("schema has no $defs.step_%s", typ)
			continue
		}
		got := sortedKeys(def.Properties)
		sort.Strings(got)
		if want := StepFields(typ); !reflect.DeepEqual(got, want) {
			t.Errorf("%s fields: schema %v, parser %v", typ, got, want)
		}
	}
}
