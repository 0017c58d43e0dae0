package bus

import (
	"testing"

	cloudevents "github.com/cloudevents/sdk-go/v2/event"
)

// validate must refuse exactly what Event.Validate refuses.
func TestValidateAgreesWithEventValidate(t *testing.T) {
	base := func() cloudevents.Event {
		e, err := NewEvent("id-1", "flowgate.test", "acme", map[string]string{"a": "b"})
		if err != nil {
			t.Fatal(err)
		}
		e.SetSource("/flowgate/test")
		return e
	}
	cases := map[string]func(e *cloudevents.Event){
		"ok":              func(e *cloudevents.Event) {},
		"absolute source": func(e *cloudevents.Event) { e.SetSource("https://example.com/x") },
		"relative source": func(e *cloudevents.Event) { e.SetSource("x/y") },
		"no source":       func(e *cloudevents.Event) { e.SetSource("") },
		"blank id":        func(e *cloudevents.Event) { e.SetID(" ") },
		"no type":         func(e *cloudevents.Event) { e.SetType("") },
		"blank subject":   func(e *cloudevents.Event) { s := " "; e.Context.(*cloudevents.EventContextV1).Subject = &s },
		"no subject":      func(e *cloudevents.Event) { e.SetSubject("") },
		"other type":      func(e *cloudevents.Event) { e.SetDataContentType("text/plain; charset=utf-8") },
		"bad type": func(e *cloudevents.Event) {
			ct := "a/b/c;;"
			e.Context.(*cloudevents.EventContextV1).DataContentType = &ct
		},
		"blank type": func(e *cloudevents.Event) { ct := " "; e.Context.(*cloudevents.EventContextV1).DataContentType = &ct },
		"schema":     func(e *cloudevents.Event) { e.SetDataSchema("https://example.com/schema") },
		"bad source": func(e *cloudevents.Event) { e.SetSource("%zz") },
		"v0.3":       func(e *cloudevents.Event) { e.SetSpecVersion("0.3") },
		"no context": func(e *cloudevents.Event) { e.Context = nil },
	}
	for name, mod := range cases {
		e := base()
		mod(&e)
		want, got := e.Validate(), validate(e)
		if (want == nil) != (got == nil) {
			t.Errorf("%s: validate %v, Event.Validate %v", name, got, want)
		}
	}
}
