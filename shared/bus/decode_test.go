package bus

import (
	"testing"
	"time"

	"github.com/nats-io/nats.go"
)

// A message without CloudEvents headers (a stray publish on a Flowgate
// subject) must be refused, not crash the consumer.
func TestFromMsgRefusesNonCloudEvents(t *testing.T) {
	for _, h := range []nats.Header{nil, {}, {"ce-specversion": {"9.9"}}, {"ce-id": {"x"}}} {
		if _, err := FromMsg(h, []byte("not a CloudEvent")); err == nil {
			t.Errorf("headers %v: decoded without error", h)
		}
	}
}

// The not-before extension travels as the ce-notbefore header: set, it
// comes back as the same instant; absent or unparsable, it holds nothing
// back; an event without it gets no header.
func TestNotBeforeTravelsInItsHeader(t *testing.T) {
	ev, err := NewEvent("e1", "dev.flowgate.test", "s", map[string]int{"a": 1})
	if err != nil {
		t.Fatal(err)
	}
	ev.SetSource("/test")
	if m := ToMsg("flowgate.x", ev); m.Header.Get(hdrNotBefore) != "" {
		t.Fatalf("an event without it has the header %q", m.Header.Get(hdrNotBefore))
	}
	at := ev.Time().Add(1500 * time.Millisecond)
	SetNotBefore(&ev, at)
	m := ToMsg("flowgate.x", ev)
	got, err := FromMsg(m.Header, m.Data)
	if err != nil {
		t.Fatal(err)
	}
	if nb := NotBefore(got); !nb.Equal(at) {
		t.Fatalf("not before %s, want %s", nb, at)
	}
	m.Header.Set(hdrNotBefore, "soon")
	got, err = FromMsg(m.Header, m.Data)
	if err != nil {
		t.Fatal(err)
	}
	if nb := NotBefore(got); !nb.IsZero() {
		t.Fatalf("an unparsable time held back until %s", nb)
	}
}
