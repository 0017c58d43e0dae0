package inputmap_test

import (
	"encoding/json"
	"errors"
	"testing"

	"github.com/flowgate/flowgate/ingress/inputmap"
)

// FuzzMapping compiles any expression as the user mapping and runs it on
// any body: Compile and Apply never panic, and either fail with an
// *inputmap.Error or give a user id that is a JSON string or number and
// data that is a JSON object.
//
//	go test -run '^$' -fuzz FuzzMapping -fuzztime 60s ./ingress/inputmap/
func FuzzMapping(f *testing.F) {
	seeds := []struct{ user, data, body string }{
		{"body.userId", "", `{"userId":"+31612345678","amount":49.99,"orderId":"ORD-1001"}`},
		{"body.customer.phone", "{amount: body.amount}", `{"customer":{"phone":31612345678},"amount":1}`},
		{"body[0]", "", `["x"]`},
		{"string(body.n) + 'x'", "body.m", `{"n":1e308,"m":{"a":[1,2,{"b":null}]}}`},
		{"headers['x-user'] ?? body.id", "nil", `{"id":-9007199254740993}`},
		{"len(1..100000000)", "", `{}`},
		{"body.a.b.c.d", "{x: body}", `{"a":{"b":{"c":{"d":"deep"}}}}`},
		{"toJSON(body)", "fromJSON(toJSON(body))", `{"s":"\u0000\ud800"}`},
		{"map(body.l, # * 2)[0]", "", `{"l":[1.5,2]}`},
	}
	for _, s := range seeds {
		f.Add(s.user, s.data, s.body)
	}
	f.Fuzz(func(t *testing.T, user, data, body string) {
		m, err := inputmap.Compile(inputmap.Spec{User: user, Data: data})
		var e *inputmap.Error
		if err != nil {
			if !errors.As(err, &e) || e.Field == "" {
				t.Fatalf("compile error is not an *Error with a field: %v", err)
			}
			return
		}
		r, err := m.Apply([]byte(body), map[string]string{"x-user": "42"})
		if err != nil {
			if !errors.As(err, &e) || e.Field == "" || e.Message == "" {
				t.Fatalf("apply error is not an *Error with a field and message: %v", err)
			}
			return
		}
		var u any
		if json.Unmarshal(r.User, &u) != nil {
			t.Fatalf("user %q is not JSON", r.User)
		}
		switch u.(type) {
		case string, float64:
		default:
			t.Fatalf("user %s is neither a string nor a number", r.User)
		}
		if r.Data != nil {
			var d map[string]any
			if err := json.Unmarshal(r.Data, &d); err != nil {
				t.Fatalf("data %s is not a JSON object: %v", r.Data, err)
			}
		}
	})
}
