package flow

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"sort"
	"strconv"
	"time"

	"gopkg.in/yaml.v3"
)

// MaxDocumentSize bounds a flow document. Flows are hand-written; a larger
// body is a mistake or an attack, and bounding it bounds validation time.
const MaxDocumentSize = 1 << 20

// maxDepth bounds nesting in a document (free-form bodies and Flow data
// included) so that walking it cannot exhaust the stack.
const maxDepth = 64

// Parse reads a flow document — JSON when its first non-space character is
// '{' (or YAML written in flow style), YAML otherwise; one schema — validates
// it and returns it. Every
// problem, including syntax errors, is reported as *ValidationErrors with
// the path of the offending field. Parse never panics.
func Parse(doc []byte) (def *Definition, err error) {
	defer func() {
		// The YAML decoder and the expression compiler are third-party
		// code fed with untrusted input; a panic there must become a
		// validation error, not a crashed ingress.
		if r := recover(); r != nil {
			def, err = nil, &ValidationErrors{{Message: fmt.Sprintf("unreadable flow document (%v)", r)}}
		}
	}()
	var errs ValidationErrors
	if len(doc) > MaxDocumentSize {
		errs.add("", "document is larger than %d bytes", MaxDocumentSize)
		return nil, &errs
	}
	tree, err := decodeDocument(doc)
	if err != nil {
		errs.add("", "%v", err)
		return nil, &errs
	}
	root, ok := tree.(map[string]any)
	if !ok {
		errs.add("", "a flow document must be an object with a steps list")
		return nil, &errs
	}
	checkObject(root, definitionSpec, "", &errs)
	if len(errs) > 0 {
		return nil, &errs
	}
	// The tree now has exactly the shape of Definition, so a JSON round
	// trip is a faithful, strict conversion.
	raw, err := json.Marshal(root)
	if err != nil {
		errs.add("", "%v", err)
		return nil, &errs
	}
	def = &Definition{}
	if err := json.Unmarshal(raw, def); err != nil {
		errs.add("", "%v", err)
		return nil, &errs
	}
	validate(def, &errs)
	if len(errs) > 0 {
		return nil, &errs
	}
	return def, nil
}

// decodeDocument turns JSON or YAML into a tree of map[string]any, []any,
// string, bool, json.Number/int/float64 and nil.
func decodeDocument(doc []byte) (any, error) {
	doc = bytes.TrimPrefix(doc, []byte("\xef\xbb\xbf"))
	trimmed := bytes.TrimSpace(doc)
	if len(trimmed) == 0 {
		return nil, errors.New("flow document is empty")
	}
	var tree any
	if trimmed[0] == '{' {
		var jsonErr error
		tree, jsonErr = decodeJSON(trimmed)
		if jsonErr != nil {
			// A one-line YAML flow mapping ({steps: [...]}) starts with '{'
			// too; if it is not JSON, it may still be YAML. A document
			// that is neither gets the JSON error, which is what its
			// author most likely meant to write.
			var yamlErr error
			if tree, yamlErr = decodeYAML(doc); yamlErr != nil {
				return nil, jsonErr
			}
		}
	} else {
		var err error
		if tree, err = decodeYAML(doc); err != nil {
			return nil, err
		}
	}
	return normalizeTree(tree, 0)
}

func decodeJSON(doc []byte) (any, error) {
	var tree any
	dec := json.NewDecoder(bytes.NewReader(doc))
	dec.UseNumber()
	if err := dec.Decode(&tree); err != nil {
		return nil, fmt.Errorf("invalid JSON: %v", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("invalid JSON: data after the top-level object")
	}
	return tree, nil
}

func decodeYAML(doc []byte) (any, error) {
	var tree any
	dec := yaml.NewDecoder(bytes.NewReader(doc))
	if err := dec.Decode(&tree); err != nil {
		return nil, fmt.Errorf("invalid YAML: %v", err)
	}
	var more any
	if err := dec.Decode(&more); err != io.EOF {
		return nil, errors.New("invalid YAML: a flow file holds exactly one document")
	}
	return tree, nil
}

// normalizeTree makes a YAML tree JSON-shaped: string keys only, no
// timestamps, no NaN or infinities.
func normalizeTree(v any, depth int) (any, error) {
	if depth > maxDepth {
		return nil, fmt.Errorf("document nests deeper than %d levels", maxDepth)
	}
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			n, err := normalizeTree(e, depth+1)
			if err != nil {
				return nil, err
			}
			x[k] = n
		}
		return x, nil
	case map[any]any:
		m := make(map[string]any, len(x))
		for k, e := range x {
			n, err := normalizeTree(e, depth+1)
			if err != nil {
				return nil, err
			}
			m[fmt.Sprint(k)] = n
		}
		return m, nil
	case []any:
		for i, e := range x {
			n, err := normalizeTree(e, depth+1)
			if err != nil {
				return nil, err
			}
			x[i] = n
		}
		return x, nil
	case float64:
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return nil, errors.New("numbers must be finite")
		}
		return x, nil
	case time.Time:
		return x.UTC().Format(time.RFC3339Nano), nil
	case nil, string, bool, json.Number, int, int64, uint64:
		return x, nil
	default:
		return fmt.Sprint(x), nil
	}
}

// kind is the JSON shape a field must have.
type kind uint8

const (
	kString kind = iota
	kBool
	kInt
	kNumber
	kDuration
	kAny       // any JSON value
	kObject    // fixed fields (spec.fields)
	kArray     // of spec.elem
	kStringMap // object of strings
	kAnyMap    // object of any values
	kValidate  // a validation type name or object
)

// spec describes one field of the document for structural checks.
type spec struct {
	kind   kind
	fields map[string]*spec
	elem   *spec
	// min and max bound kInt fields.
	min, max int64
}

var (
	stringSpec    = &spec{kind: kString}
	boolSpec      = &spec{kind: kBool}
	durationSpec  = &spec{kind: kDuration}
	anySpec       = &spec{kind: kAny}
	stringMapSpec = &spec{kind: kStringMap}
	anyMapSpec    = &spec{kind: kAnyMap}
)

var buttonSpec = &spec{kind: kObject, fields: map[string]*spec{
	"id": stringSpec, "title": stringSpec, "url": stringSpec,
}}

var listSpec = &spec{kind: kObject, fields: map[string]*spec{
	"button": stringSpec,
	"sections": {kind: kArray, elem: &spec{kind: kObject, fields: map[string]*spec{
		"title": stringSpec,
		"rows": {kind: kArray, elem: &spec{kind: kObject, fields: map[string]*spec{
			"id": stringSpec, "title": stringSpec, "description": stringSpec,
		}}},
	}}},
}}

var validationSpec = &spec{kind: kValidate, fields: map[string]*spec{
	"type": stringSpec, "regex": stringSpec,
	"min": {kind: kNumber}, "max": {kind: kNumber},
}}

// stepFields is every field a step may have; stepTypeFields says which
// ones each type accepts.
var stepFields = map[string]*spec{
	"id": stringSpec, "type": stringSpec, "next": stringSpec, "if": stringSpec,

	"text": stringSpec, "image": stringSpec, "document": stringSpec, "video": stringSpec,
	"caption": stringSpec, "filename": stringSpec,
	"buttons":       {kind: kArray, elem: buttonSpec},
	"list":          listSpec,
	"skip_if_empty": boolSpec,

	"template": stringSpec, "language": stringSpec,
	"params":     {kind: kArray, elem: stringSpec},
	"components": {kind: kArray, elem: anyMapSpec},
	"flow_button": {kind: kObject, fields: map[string]*spec{
		"index": stringSpec, "flow_token": stringSpec, "flow_action_data": anyMapSpec,
	}},
	"wait_completion": boolSpec,

	"flow_id": stringSpec, "flow_name": stringSpec, "cta": stringSpec,
	"header": stringSpec, "footer": stringSpec, "screen": stringSpec,
	"action": stringSpec, "mode": stringSpec, "flow_action_data": anyMapSpec,
	"flow_token": stringSpec,

	"attribute": stringSpec, "validate": validationSpec,
	"retries":    {kind: kInt, min: 0, max: 10},
	"retry_text": stringSpec, "on_invalid": stringSpec,
	"timeout": durationSpec, "on_timeout": stringSpec,

	"attributes": stringMapSpec, "vars": stringMapSpec,

	"conditions": {kind: kArray, elem: &spec{kind: kObject, fields: map[string]*spec{
		"when": stringSpec, "next": stringSpec,
	}}},
	"default": stringSpec,

	"duration": durationSpec,

	"method": stringSpec, "url": stringSpec, "headers": stringMapSpec, "body": anySpec,
	"map": stringMapSpec, "on_error": stringSpec,

	"step": stringSpec, "flow": stringSpec,

	"status": stringSpec, "reason": stringSpec,
}

var contentFields = []string{"text", "image", "document", "video", "caption", "filename", "buttons", "list"}

// stepTypeFields lists, per type, the fields allowed besides id, type and if.
var stepTypeFields = map[StepType][]string{
	StepSend: append([]string{"next", "skip_if_empty"}, contentFields...),
	StepAsk: append([]string{"next", "attribute", "validate", "retries", "retry_text",
		"on_invalid", "timeout", "on_timeout"}, contentFields...),
	StepTemplate: {"next", "template", "language", "params", "components", "flow_button",
		"skip_if_empty", "wait_completion", "timeout", "on_timeout", "attribute", "map"},
	StepWhatsAppFlow: {"next", "text", "flow_id", "flow_name", "cta", "header", "footer",
		"screen", "action", "mode", "flow_action_data", "flow_token", "timeout",
		"on_timeout", "attribute", "map"},
	StepSet:    {"next", "attributes", "vars"},
	StepBranch: {"conditions", "default"},
	StepWait:   {"next", "duration"},
	StepHTTP:   {"next", "method", "url", "headers", "body", "timeout", "map", "on_error"},
	StepGoto:   {"step", "flow"},
	StepEnd:    {"status", "reason"},
}

// StepFields returns the document fields a step of type t accepts,
// including id, type and if, sorted. The JSON Schema is tested against it.
func StepFields(t StepType) []string {
	extra, ok := stepTypeFields[t]
	if !ok {
		return nil
	}
	out := append([]string{"id", "type", "if"}, extra...)
	sort.Strings(out)
	return out
}

var definitionSpec = &spec{kind: kObject, fields: map[string]*spec{
	"id": stringSpec, "name": stringSpec, "description": stringSpec,
	"version":   {kind: kInt, min: 0, max: math.MaxInt32},
	"max_steps": {kind: kInt, min: 0, max: 1_000_000},
	"steps":     {kind: kArray}, // checked step by step in checkSteps
}}

// maxStepCount bounds the number of steps in a flow.
const maxStepCount = 1000

// checkObject checks obj against an object spec, reporting unknown fields
// and wrongly typed values. It rewrites shorthand forms in place.
func checkObject(obj map[string]any, sp *spec, path string, errs *ValidationErrors) {
	for _, k := range sortedKeys(obj) {
		fs, ok := sp.fields[k]
		if !ok {
			errs.add(join(path, k), "unknown field")
			continue
		}
		if path == "" && k == "steps" {
			checkSteps(obj[k], "steps", errs)
			continue
		}
		obj[k] = checkValue(obj[k], fs, join(path, k), errs)
	}
	if path == "" {
		if _, ok := obj["steps"]; !ok {
			errs.add("steps", "is required")
		}
	}
}

func checkSteps(v any, path string, errs *ValidationErrors) {
	list, ok := v.([]any)
	if !ok {
		errs.add(path, "must be a list of steps")
		return
	}
	if len(list) == 0 {
		errs.add(path, "a flow needs at least one step")
		return
	}
	if len(list) > maxStepCount {
		errs.add(path, "a flow has at most %d steps", maxStepCount)
		return
	}
	for i, item := range list {
		p := fmt.Sprintf("%s[%d]", path, i)
		obj, ok := item.(map[string]any)
		if !ok {
			errs.add(p, "a step must be an object")
			continue
		}
		t, _ := obj["type"].(string)
		allowed, known := stepTypeFields[StepType(t)]
		switch {
		case obj["type"] == nil:
			errs.add(p+".type", "is required")
		case !known:
			errs.add(p+".type", "unknown step type %q (want one of %s)", fmt.Sprint(obj["type"]), stepTypeList())
		}
		for _, k := range sortedKeys(obj) {
			fs, ok := stepFields[k]
			if !ok {
				errs.add(join(p, k), "unknown field")
				continue
			}
			if known && k != "id" && k != "type" && k != "if" && !contains(allowed, k) {
				errs.add(join(p, k), "not allowed in a %s step", t)
				continue
			}
			obj[k] = checkValue(obj[k], fs, join(p, k), errs)
		}
	}
}

// checkValue checks one value against its spec and returns it, possibly
// rewritten to its canonical shape.
func checkValue(v any, sp *spec, path string, errs *ValidationErrors) any {
	switch sp.kind {
	case kString:
		if _, ok := v.(string); !ok {
			errs.add(path, "must be a string")
		}
	case kBool:
		if _, ok := v.(bool); !ok {
			errs.add(path, "must be true or false")
		}
	case kInt:
		n, ok := intValue(v)
		if !ok {
			errs.add(path, "must be an integer")
			break
		}
		if n < sp.min || n > sp.max {
			errs.add(path, "must be between %d and %d", sp.min, sp.max)
		}
		return n
	case kNumber:
		if _, ok := numberValue(v); !ok {
			errs.add(path, "must be a number")
		}
	case kDuration:
		s, ok := v.(string)
		if !ok {
			errs.add(path, "must be a duration string such as \"30s\", \"10m\" or \"1d\"")
			break
		}
		d, err := ParseDuration(s)
		if err != nil {
			errs.add(path, "%v", err)
			break
		}
		if d <= 0 || d > maxDuration {
			errs.add(path, "must be positive and at most %s", "366d")
		}
	case kAny:
	case kAnyMap:
		if _, ok := v.(map[string]any); !ok {
			errs.add(path, "must be an object")
		}
	case kStringMap:
		m, ok := v.(map[string]any)
		if !ok {
			errs.add(path, "must be an object of strings")
			break
		}
		for _, k := range sortedKeys(m) {
			if _, ok := m[k].(string); !ok {
				errs.add(join(path, k), "must be a string")
			}
		}
	case kArray:
		list, ok := v.([]any)
		if !ok {
			errs.add(path, "must be a list")
			break
		}
		for i := range list {
			list[i] = checkValue(list[i], sp.elem, fmt.Sprintf("%s[%d]", path, i), errs)
		}
	case kObject:
		m, ok := v.(map[string]any)
		if !ok {
			errs.add(path, "must be an object")
			break
		}
		checkObject(m, sp, path, errs)
	case kValidate:
		if s, ok := v.(string); ok {
			return map[string]any{"type": s}
		}
		m, ok := v.(map[string]any)
		if !ok {
			errs.add(path, "must be a validation type name or an object")
			break
		}
		checkObject(m, sp, path, errs)
		if _, ok := m["type"]; !ok {
			if _, hasRegex := m["regex"]; hasRegex {
				// validate: {regex: …} says enough.
				m["type"] = ValidateRegex
			}
		}
	}
	return v
}

func intValue(v any) (int64, bool) {
	switch x := v.(type) {
	case json.Number:
		n, err := strconv.ParseInt(string(x), 10, 64)
		return n, err == nil
	case int:
		return int64(x), true
	case int64:
		return x, true
	case uint64:
		if x > math.MaxInt64 {
			return 0, false
		}
		return int64(x), true
	case float64:
		if x != math.Trunc(x) || math.Abs(x) > 1<<53 {
			return 0, false
		}
		return int64(x), true
	}
	return 0, false
}

func numberValue(v any) (float64, bool) {
	switch x := v.(type) {
	case json.Number:
		f, err := strconv.ParseFloat(string(x), 64)
		return f, err == nil && !math.IsInf(f, 0)
	case int:
		return float64(x), true
	case int64:
		return float64(x), true
	case uint64:
		return float64(x), true
	case float64:
		return x, true
	}
	return 0, false
}

func join(path, field string) string {
	if path == "" {
		return field
	}
	return path + "." + field
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func contains(list []string, s string) bool {
	for _, e := range list {
		if e == s {
			return true
		}
	}
	return false
}

func stepTypeList() string {
	var b bytes.Buffer
	for i, t := range StepTypes {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(string(t))
	}
	return b.String()
}
