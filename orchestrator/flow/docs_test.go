package flow_test

import (
	"errors"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/flowgate/flowgate/orchestrator/flow"
)

// Every flow example in docs/flows.md is a flow Flowgate accepts: whole
// documents as they are, step fragments as the steps of a flow. A fragment
// may point at steps the page leaves out (next: vip); those references are
// the only errors forgiven, and only in fragments.
func TestDocsFlowExamplesParse(t *testing.T) {
	raw, err := os.ReadFile("../../docs/flows.md")
	if err != nil {
		t.Fatal(err)
	}
	blocks := regexp.MustCompile("(?s)```yaml\n(.*?)```").FindAllStringSubmatch(string(raw), -1)
	if len(blocks) < 8 {
		t.Fatalf("docs/flows.md has %d yaml examples; the page changed shape", len(blocks))
	}
	for i, b := range blocks {
		doc, fragment := b[1], false
		if first := firstLine(doc); strings.HasPrefix(first, "-") {
			fragment = true
			doc = "steps:\n" + indent(doc)
		}
		_, err := flow.Parse([]byte(doc))
		if err == nil {
			continue
		}
		var verrs *flow.ValidationErrors
		if !errors.As(err, &verrs) {
			t.Errorf("example %d: %v", i+1, err)
			continue
		}
		for _, e := range *verrs {
			if fragment && strings.Contains(e.Message, "no step") {
				continue
			}
			t.Errorf("example %d (line %q): %s: %s", i+1, firstLine(b[1]), e.Path, e.Message)
		}
	}
}

func firstLine(doc string) string {
	for _, l := range strings.Split(doc, "\n") {
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
			return l
		}
	}
	return ""
}

func indent(doc string) string {
	lines := strings.Split(doc, "\n")
	for i, l := range lines {
		if l != "" {
			lines[i] = "  " + l
		}
	}
	return strings.Join(lines, "\n")
}
