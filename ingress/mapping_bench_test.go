package ingress_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/flowgate/flowgate/cmd/flowgate/app"
	"github.com/flowgate/flowgate/ingress"
	"github.com/flowgate/flowgate/ingress/inputmap"
	"github.com/flowgate/flowgate/shared/store"
)

// BenchmarkDispatchSignedMapped is BenchmarkDispatch for a third party's
// webhook: no key, an HMAC signature to check and an input mapping to run
// (compiled once, cached). Compare its allocations with BenchmarkDispatch.
func BenchmarkDispatchSignedMapped(b *testing.B) {
	ctx := context.Background()
	bb, st, quiet, now := benchEnv(b, "shop", "payment", `{"steps":[{"id":"a","type":"send","text":"Amount: $ {{ amount }}"}]}`)
	var err error
	sig := inputmap.Signature{Secret: "whsec_bench-0123456789", Header: "X-Payment-Signature", Encoding: "hex", Prefix: "sha256="}
	input, err := json.Marshal(inputmap.Input{Mapping: &inputmap.Spec{User: "body.userId", Name: "'Customer'"}, Signature: &sig})
	if err != nil {
		b.Fatal(err)
	}
	if err := st.PutEvent(ctx, store.Event{BotID: "shop", Name: "PAYMENT_RECEIVED", FlowID: "payment", Input: input, CreatedAt: now, UpdatedAt: now}); err != nil {
		b.Fatal(err)
	}
	h, err := ingress.NewHandler(ingress.Config{AdminKey: "bench-admin-key-0123456789"},
		ingress.Deps{Store: st, Bus: bb, CompileFlow: app.CompileFlow, Logger: quiet})
	if err != nil {
		b.Fatal(err)
	}
	const body = `{"userId":"1234567890","amount":49.99,"orderId":"ORD-1001"}`
	signature := sig.Sign([]byte(body))
	b.ReportAllocs()
	b.SetParallelism(16)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			req := httptest.NewRequest("POST", "/v1/bots/shop/dispatch/PAYMENT_RECEIVED", strings.NewReader(body))
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("X-Payment-Signature", signature)
			w := httptest.NewRecorder()
			h.ServeHTTP(w, req)
			if w.Code != http.StatusAccepted {
				b.Errorf("status %d: %s", w.Code, w.Body)
				return
			}
		}
	})
}
