// Package inputmap owns an event's input mapping: how a third party's own
// webhook body (a payment provider's {userId, amount, orderId}) becomes a
// trigger (which value is the user, the name, the data, the idempotency
// key), and the HMAC signature check that lets that webhook call Flowgate
// without an API key.
//
// Mappings are expr-lang/expr expressions over two variables: body (the
// request's JSON body) and headers (lower-case header name → first value).
// Expressions are compiled and checked when the event is saved. They may
// use field access, literals, operators, conditionals and linear-time
// builtins, not loops, ranges or let: a mapping's cost is bounded by its
// size times the body's.
package inputmap

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/expr-lang/expr"
	"github.com/expr-lang/expr/ast"
	"github.com/expr-lang/expr/vm"
)

// Limits of a mapping.
const (
	// MaxExprBytes bounds one expression's source.
	MaxExprBytes = 1024
	// maxNodes bounds one compiled expression's size.
	maxNodes = 200
)

// Spec is a mapping as stored and as the API takes it. User is required;
// the others are optional.
type Spec struct {
	// User is the user id: a string or an integer (a phone number for
	// WhatsApp and RCS, a chat id for Telegram).
	User string `json:"user"`
	// Name is the contact's display name (a string, or null/empty).
	Name string `json:"name,omitempty"`
	// Data is the trigger's data: an object. Default: the whole body.
	Data string `json:"data,omitempty"`
	// IdempotencyKey makes a redelivered webhook name the same trigger
	// (a string or an integer; empty: none), e.g. body.orderId.
	IdempotencyKey string `json:"idempotency_key,omitempty"`
}

// Error says which field of a mapping, or of its result, is wrong.
type Error struct {
	// Field is "input.user", "input.name", "input.data" or "input.idempotency_key".
	Field   string
	Message string
}

func (e *Error) Error() string { return e.Field + ": " + e.Message }

// Mapping is a compiled Spec, safe for concurrent use.
type Mapping struct {
	spec                   Spec
	user, name, data, idem *vm.Program
}

// Spec returns what m was compiled from.
func (m *Mapping) Spec() Spec { return m.spec }

// env declares the variables an expression may use; any other identifier
// is a compile error (a typo shows at save time, not at the first webhook).
// Body is untyped: its fields are checked at run time.
type env struct {
	Body    any               `expr:"body"`
	Headers map[string]string `expr:"headers"`
}

// Compile checks and compiles a mapping. Its errors are *Error.
func Compile(s Spec) (*Mapping, error) {
	m := &Mapping{spec: s}
	if strings.TrimSpace(s.User) == "" {
		return nil, &Error{Field: "input.user", Message: "is required: an expression naming the user id in the body, e.g. body.userId"}
	}
	for _, f := range []struct {
		field, src string
		dst        **vm.Program
	}{
		{"input.user", s.User, &m.user}, {"input.name", s.Name, &m.name},
		{"input.data", s.Data, &m.data}, {"input.idempotency_key", s.IdempotencyKey, &m.idem},
	} {
		if strings.TrimSpace(f.src) == "" {
			continue
		}
		p, err := compile(f.src)
		if err != nil {
			return nil, &Error{Field: f.field, Message: err.Error()}
		}
		*f.dst = p
	}
	return m, nil
}

func compile(src string) (p *vm.Program, err error) {
	defer func() {
		if r := recover(); r != nil {
			p, err = nil, fmt.Errorf("cannot compile expression: %v", r)
		}
	}()
	if len(src) > MaxExprBytes {
		return nil, fmt.Errorf("expression longer than %d bytes", MaxExprBytes)
	}
	calls := &callFinder{}
	p, err = expr.Compile(src, expr.Env(env{}), expr.DisableBuiltin("now"), expr.Timezone("UTC"),
		expr.MaxNodes(maxNodes), expr.Patch(calls))
	if err != nil {
		return nil, fmt.Errorf("invalid expression: %s", firstLine(err.Error()))
	}
	if calls.name != "" {
		return nil, fmt.Errorf("invalid expression: %s", calls.name)
	}
	return p, nil
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	return s
}

// allowedBuiltins are the functions a mapping may call: each runs in time
// linear in its input. Loops (map, filter, reduce…), ranges, repeat,
// replace and let (which could double a string per step) are refused, so
// that evaluating a mapping costs at most its size times the body's.
var allowedBuiltins = map[string]bool{
	"len": true, "type": true, "abs": true, "ceil": true, "floor": true, "round": true,
	"int": true, "float": true, "string": true, "trim": true, "trimPrefix": true, "trimSuffix": true,
	"upper": true, "lower": true, "split": true, "join": true, "indexOf": true, "hasPrefix": true,
	"hasSuffix": true, "first": true, "last": true, "get": true, "keys": true, "values": true,
	"toBase64": true, "fromBase64": true, "toJSON": true, "fromJSON": true,
}

// callFinder records the first construct a mapping may not use.
type callFinder struct{ name string }

func (c *callFinder) Visit(n *ast.Node) {
	if c.name != "" {
		return
	}
	switch x := (*n).(type) {
	case *ast.CallNode:
		c.name = "a call of " + x.Callee.String()
		if id, ok := x.Callee.(*ast.IdentifierNode); ok {
			c.name = "unknown function " + id.Value + "()"
			if allowedBuiltins[id.Value] {
				c.name = ""
			}
		}
	case *ast.BuiltinNode:
		if !allowedBuiltins[x.Name] {
			c.name = "function " + x.Name + "() is not allowed in a mapping"
		}
	case *ast.BinaryNode:
		if x.Operator == ".." {
			c.name = "ranges (..) are not allowed in a mapping"
		}
	case *ast.PredicateNode, *ast.PointerNode:
		c.name = "predicates are not allowed in a mapping"
	case *ast.VariableDeclaratorNode:
		c.name = "let is not allowed in a mapping"
	}
}

// Result is what a mapping took from a request. User and IdempotencyKey
// are JSON (a string or a number) for the caller's own checks; Name is ""
// when absent; Data is a JSON object.
type Result struct {
	User           json.RawMessage
	Name           json.RawMessage
	Data           json.RawMessage
	IdempotencyKey string
}

// Apply runs the mapping on a request's JSON body and headers. Its errors
// are *Error naming the mapping field whose result is unusable.
func (m *Mapping) Apply(body []byte, headers map[string]string) (Result, error) {
	var b any
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(&b); err != nil || dec.More() {
		return Result{}, &Error{Field: "body", Message: "the request body is not one JSON value"}
	}
	if headers == nil {
		headers = map[string]string{}
	}
	vars := env{Body: b, Headers: headers}
	var r Result
	user, err := run(m.user, vars)
	if err != nil {
		return r, &Error{Field: "input.user", Message: err.Error()}
	}
	if r.User, err = scalar(user); err != nil || r.User == nil {
		return r, &Error{Field: "input.user", Message: fmt.Sprintf("the mapping %q gave %s, not a user id (a string or an integer)", m.spec.User, describe(user))}
	}
	if m.name != nil {
		name, err := run(m.name, vars)
		if err != nil {
			return r, &Error{Field: "input.name", Message: err.Error()}
		}
		if s, ok := name.(string); ok {
			r.Name, _ = json.Marshal(s)
		} else if name != nil {
			return r, &Error{Field: "input.name", Message: fmt.Sprintf("the mapping %q gave %s, not a string", m.spec.Name, describe(name))}
		}
	}
	data := b
	if m.data != nil {
		if data, err = run(m.data, vars); err != nil {
			return r, &Error{Field: "input.data", Message: err.Error()}
		}
	}
	if _, ok := data.(map[string]any); !ok && data != nil {
		return r, &Error{Field: "input.data", Message: fmt.Sprintf("the data is %s, not an object", describe(data))}
	}
	if data != nil && m.data == nil {
		// The whole body, byte for byte: numbers keep their precision
		// (inside expressions they are float64).
		r.Data = append(json.RawMessage(nil), bytes.TrimSpace(body)...)
	} else if data != nil {
		if r.Data, err = json.Marshal(data); err != nil {
			return r, &Error{Field: "input.data", Message: "the data cannot be encoded as JSON: " + err.Error()}
		}
	}
	if m.idem != nil {
		k, err := run(m.idem, vars)
		if err != nil {
			return r, &Error{Field: "input.idempotency_key", Message: err.Error()}
		}
		raw, err := scalar(k)
		if err != nil {
			return r, &Error{Field: "input.idempotency_key", Message: fmt.Sprintf("gave %s, not a string or an integer", describe(k))}
		}
		if raw != nil {
			var s string
			if json.Unmarshal(raw, &s) != nil {
				s = string(raw)
			}
			if len(s) > 256 {
				return r, &Error{Field: "input.idempotency_key", Message: "longer than 256 bytes"}
			}
			r.IdempotencyKey = s
		}
	}
	return r, nil
}

// run evaluates p, turning a panic into an error.
func run(p *vm.Program, vars env) (out any, err error) {
	defer func() {
		if r := recover(); r != nil {
			out, err = nil, fmt.Errorf("expression failed: %v", r)
		}
	}()
	out, err = expr.Run(p, vars)
	if err != nil {
		return nil, fmt.Errorf("expression failed: %s", firstLine(err.Error()))
	}
	return out, nil
}

// scalar encodes a string or an integral number as JSON; nil and "" give
// nil; anything else is an error.
func scalar(v any) (json.RawMessage, error) {
	switch x := v.(type) {
	case nil:
		return nil, nil
	case string:
		if strings.TrimSpace(x) == "" {
			return nil, nil
		}
		return json.Marshal(x)
	case float64:
		if x != math.Trunc(x) || math.Abs(x) > 1<<53 {
			return nil, errors.New("not an integer")
		}
		return json.RawMessage(strconv.FormatFloat(x, 'f', -1, 64)), nil
	case int:
		return json.RawMessage(strconv.Itoa(x)), nil
	case int64:
		return json.RawMessage(strconv.FormatInt(x, 10)), nil
	}
	return nil, errors.New("not a scalar")
}

func describe(v any) string {
	switch v.(type) {
	case nil:
		return "nothing (null or a missing field)"
	case string:
		return "an empty string"
	case float64, int, int64:
		return "a number that is not an exact integer (a fraction, or beyond 2^53)"
	case bool:
		return "a boolean"
	case map[string]any:
		return "an object"
	case []any:
		return "a list"
	}
	return fmt.Sprintf("a %T", v)
}
