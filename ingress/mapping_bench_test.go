package ingress_test

import (
	"encoding/json"
	"testing"

	"github.com/flowgate/flowgate/ingress/inputmap"
	"github.com/flowgate/flowgate/shared/store"
)

// BenchmarkDispatchSignedMapped is BenchmarkDispatch for a third party's
// webhook: no key, an HMAC signature to check and an input mapping to run
// (compiled once, cached). Compare its allocations with BenchmarkDispatch.
func BenchmarkDispatchSignedMapped(b *testing.B) {
	sig := inputmap.Signature{Secret: "whsec_bench-0123456789", Header: "X-Payment-Signature", Encoding: "hex", Prefix: "sha256="}
	input, err := json.Marshal(inputmap.Input{Mapping: &inputmap.Spec{User: "body.userId", Name: "'Customer'"}, Signature: &sig})
	if err != nil {
		b.Fatal(err)
	}
	_, h := benchHandler(b, "shop", `{"steps":[{"id":"a","type":"send","text":"Amount: $ {{ amount }}"}]}`,
		store.Event{Name: "PAYMENT_RECEIVED", Input: input})
	const body = `{"userId":"1234567890","amount":49.99,"orderId":"ORD-1001"}`
	benchDispatch(b, h, "/v1/bots/shop/dispatch/PAYMENT_RECEIVED", body, "X-Payment-Signature", sig.Sign([]byte(body)))
}
