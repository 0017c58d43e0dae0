package bus

import (
	"testing"

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
