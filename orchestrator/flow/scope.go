package flow

import (
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"reflect"
	"strings"
	"time"

	"github.com/expr-lang/expr"
	"github.com/expr-lang/expr/ast"
	"github.com/expr-lang/expr/vm"
)

// scope is what placeholders and expressions can see during one Apply.
type scope struct {
	st  *State
	now time.Time
	// cached is the expression environment, built on first use and
	// dropped whenever the run changes attributes or variables.
	cached map[string]any
}

// changed drops the cached expression environment.
func (sc *scope) changed() { sc.cached = nil }

// Reserved roots. A trigger data field with one of these names is still
// reachable as data.<name>.
const (
	rootData       = "data"
	rootAttributes = "attributes"
	rootVars       = "vars"
	rootContact    = "contact"
	rootNow        = "now"
	// rootLastRequest is the contact's last_request (Botmother's
	// last_request.x): the data of the last request that carried data.
	rootLastRequest = "last_request"
)

// lookup resolves a placeholder path (see placeholder.go for the rules).
func (sc *scope) lookup(path string) (any, bool) {
	root, rest, _ := strings.Cut(path, ".")
	switch root {
	case rootData:
		return descend(sc.st.Data, rest)
	case rootAttributes:
		return descend(sc.st.Attributes, rest)
	case rootVars:
		return descend(sc.st.Vars, rest)
	case rootContact:
		return descend(sc.contact(), rest)
	case rootNow:
		return descend(sc.now, rest)
	case rootLastRequest:
		return descend(sc.st.LastRequest, rest)
	}
	for _, m := range [...]map[string]any{sc.st.Vars, sc.st.Attributes, sc.st.Data} {
		if v, ok := m[root]; ok {
			return descend(v, rest)
		}
	}
	if v, ok := sc.contactField(root); ok {
		return descend(v, rest)
	}
	return nil, false
}

func (sc *scope) contactField(name string) (any, bool) {
	c := &sc.st.Contact
	switch name {
	case "name":
		return c.Name, true
	case "external_id":
		return c.ExternalID, true
	case "channel":
		return c.Channel, true
	}
	return nil, false
}

func (sc *scope) contact() map[string]any {
	c := &sc.st.Contact
	return map[string]any{"id": c.ID, "name": c.Name, "external_id": c.ExternalID, "channel": c.Channel}
}

// env is the variable set of an expression: the same names placeholders
// see, with the same precedence (vars over attributes over data over the
// contact's own fields for bare names), plus now (the event time).
func (sc *scope) env() map[string]any {
	if sc.cached != nil {
		return sc.cached
	}
	st := sc.st
	env := make(map[string]any, len(st.Data)+len(st.Attributes)+len(st.Vars)+8)
	env["name"] = st.Contact.Name
	env["external_id"] = st.Contact.ExternalID
	env["channel"] = st.Contact.Channel
	maps.Copy(env, st.Data)
	maps.Copy(env, st.Attributes)
	maps.Copy(env, st.Vars)
	env[rootData] = orEmpty(st.Data)
	env[rootAttributes] = orEmpty(st.Attributes)
	env[rootVars] = orEmpty(st.Vars)
	env[rootContact] = sc.contact()
	env[rootNow] = sc.now
	env[rootLastRequest] = orEmpty(st.LastRequest)
	sc.cached = env
	return env
}

func orEmpty(m map[string]any) map[string]any {
	if m == nil {
		return map[string]any{}
	}
	return m
}

// exprOptions are the compile options of every flow expression. Undefined
// names evaluate to nil (an attribute the contact does not have yet is not
// an error); the clock builtin is disabled because interpretation must be
// deterministic — expressions use now, the event time, instead.
func exprOptions() []expr.Option {
	return []expr.Option{
		expr.AllowUndefinedVariables(),
		expr.DisableBuiltin("now"),
		expr.Timezone("UTC"),
	}
}

// compileExpr compiles an expression, turning a compiler panic into an error.
func compileExpr(src string) (p *vm.Program, err error) {
	defer func() {
		if r := recover(); r != nil {
			p, err = nil, fmt.Errorf("cannot compile expression: %v", r)
		}
	}()
	if strings.TrimSpace(src) == "" {
		return nil, fmt.Errorf("empty expression")
	}
	calls := &callFinder{}
	p, err = expr.Compile(src, append(exprOptions(), expr.Patch(calls))...)
	if err != nil {
		return nil, err
	}
	if calls.name != "" {
		// The environment holds only data, so calling anything that is
		// not a builtin (now() included) could only fail at run time.
		return nil, fmt.Errorf("unknown function %s()", calls.name)
	}
	return p, nil
}

// callFinder records the first call of a plain name that is not a builtin
// (builtins are BuiltinNodes; method calls such as now.Hour() have a
// member callee).
type callFinder struct{ name string }

func (c *callFinder) Visit(n *ast.Node) {
	if call, ok := (*n).(*ast.CallNode); ok && c.name == "" {
		if id, ok := call.Callee.(*ast.IdentifierNode); ok {
			c.name = id.Value
		}
	}
}

// eval runs a compiled expression of the definition.
func (d *Definition) eval(src string, sc *scope) (v any, err error) {
	p, ok := d.programs[src]
	if !ok {
		return nil, fmt.Errorf("expression %q was not compiled", src)
	}
	defer func() {
		if r := recover(); r != nil {
			v, err = nil, fmt.Errorf("expression %q: %v", src, r)
		}
	}()
	v, err = expr.Run(p, sc.env())
	if err != nil {
		return nil, fmt.Errorf("expression %q: %v", src, err)
	}
	return v, nil
}

// evalBool runs a condition. nil (e.g. an undefined name) counts as false;
// any other non-boolean is an error, since it is almost always a mistake
// such as `plan = "pro"`.
func (d *Definition) evalBool(src string, sc *scope) (bool, error) {
	v, err := d.eval(src, sc)
	if err != nil {
		return false, err
	}
	switch x := v.(type) {
	case bool:
		return x, nil
	case nil:
		return false, nil
	}
	return false, fmt.Errorf("condition %q is a %T, not true or false", src, v)
}

// jsonValue converts an expression result to what the value will be after
// the state's JSON round trip (numbers become float64, times strings), so a
// stored-and-reloaded state behaves exactly like the in-memory one.
func jsonValue(v any) (any, error) {
	switch x := v.(type) {
	case nil, string, bool:
		return x, nil
	case float64:
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return nil, fmt.Errorf("result %v is not a finite number", x)
		}
		return x, nil
	case int:
		return float64(x), nil
	case int64:
		return float64(x), nil
	case time.Time:
		return x.UTC().Format(time.RFC3339Nano), nil
	case time.Duration:
		return x.String(), nil
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			n, err := jsonValue(e)
			if err != nil {
				return nil, err
			}
			out[i] = n
		}
		return out, nil
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			n, err := jsonValue(e)
			if err != nil {
				return nil, err
			}
			out[k] = n
		}
		return out, nil
	}
	if k := reflect.ValueOf(v).Kind(); k == reflect.Func || k == reflect.Chan {
		return nil, fmt.Errorf("result of type %T cannot be stored", v)
	}
	b, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("result of type %T cannot be stored: %v", v, err)
	}
	var out any
	if err := json.Unmarshal(b, &out); err != nil {
		return nil, err
	}
	return out, nil
}
