package ingress_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/flowgate/flowgate/ingress/inputmap"
)

const (
	paymentSecret = "whsec_payments-0123456789"
	paymentBody   = `{"userId":"+31612345678","amount":49.99,"orderId":"ORD-1001"}`
)

var paymentSig = inputmap.Signature{Secret: paymentSecret, Header: "X-Payment-Signature", Encoding: "hex", Prefix: "sha256="}

// putPaymentEvent saves PAYMENT_RECEIVED with the provider's mapping and signature.
func putPaymentEvent(e *env, want int) []byte {
	key := e.keys["acme"]
	e.do("PUT", "/v1/bots/acme/flows/payment", key, "application/json", `{"steps":[{"id":"s","type":"send","text":"Amount: $ {{ amount }}"}]}`, 200)
	return e.do("PUT", "/v1/bots/acme/events/PAYMENT_RECEIVED", key, "application/json", `{"flow":"payment",
		"input":{"user":"body.userId","name":"'Customer'","idempotency_key":"body.orderId"},
		"signature":{"secret":"`+paymentSecret+`","header":"x-payment-signature","prefix":"sha256="}}`, want)
}

func TestEventInputSavedAndShownWithoutSecret(t *testing.T) {
	e := newEnv(t)
	b := putPaymentEvent(e, 201)
	require.NotContains(t, string(b), paymentSecret)
	b = e.do("GET", "/v1/bots/acme/events/PAYMENT_RECEIVED", e.keys["acme"], "", "", 200)
	require.NotContains(t, string(b), paymentSecret, "the secret is write-only")
	var got struct {
		Event struct {
			Input     map[string]string
			Signature map[string]any
		}
	}
	require.NoError(t, json.Unmarshal(b, &got))
	require.Equal(t, "body.userId", got.Event.Input["user"])
	require.Equal(t, "X-Payment-Signature", got.Event.Signature["header"])
	require.Equal(t, "hex", got.Event.Signature["encoding"])
	require.Equal(t, true, got.Event.Signature["secret_set"])

	// A PUT that omits the secret keeps it; one that omits the signature drops it.
	e.do("PUT", "/v1/bots/acme/events/PAYMENT_RECEIVED", e.keys["acme"], "application/json", `{"flow":"payment",
		"input":{"user":"body.userId"},"signature":{"header":"X-Payment-Signature","prefix":"sha256="}}`, 200)
	e.do("POST", "/v1/bots/acme/dispatch/PAYMENT_RECEIVED", "", "application/json", paymentBody, 202,
		"X-Payment-Signature", paymentSig.Sign([]byte(paymentBody)))
	e.do("PUT", "/v1/bots/acme/events/PAYMENT_RECEIVED", e.keys["acme"], "application/json", `{"flow":"payment","input":{"user":"body.userId"}}`, 200)
	e.do("POST", "/v1/bots/acme/dispatch/PAYMENT_RECEIVED", "", "application/json", paymentBody, 401,
		"X-Payment-Signature", paymentSig.Sign([]byte(paymentBody)))
}

func TestEventInputValidatedAtSave(t *testing.T) {
	e := newEnv(t)
	key := e.keys["acme"]
	e.do("PUT", "/v1/bots/acme/flows/payment", key, "application/json", `{"steps":[{"id":"s","type":"send","text":"hi"}]}`, 200)
	cases := []struct{ name, body, field string }{
		{"no user", `{"flow":"payment","input":{"name":"body.name"}}`, "input.user"},
		{"syntax", `{"flow":"payment","input":{"user":"body.userId +"}}`, "input.user"},
		{"unknown variable", `{"flow":"payment","input":{"user":"payload.userId"}}`, "input.user"},
		{"bad data", `{"flow":"payment","input":{"user":"body.userId","data":"{amount: "}}`, "input.data"},
		{"short secret", `{"flow":"payment","input":{"user":"body.userId"},"signature":{"secret":"x","header":"X-Sig"}}`, "signature.secret"},
		{"no secret at creation", `{"flow":"payment","signature":{"header":"X-Sig"}}`, "signature.secret"},
		{"bad header", `{"flow":"payment","signature":{"secret":"` + paymentSecret + `","header":"X Sig"}}`, "signature.header"},
		{"bad encoding", `{"flow":"payment","signature":{"secret":"` + paymentSecret + `","header":"X-Sig","encoding":"rot13"}}`, "signature.encoding"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			b := e.do("PUT", "/v1/bots/acme/events/PAYMENT_RECEIVED", key, "application/json", c.body, 422)
			code, field := errorField(t, b)
			require.Equal(t, "invalid_mapping", code)
			require.Equal(t, c.field, field)
		})
	}
	e.do("GET", "/v1/bots/acme/events/PAYMENT_RECEIVED", key, "", "", 404) // nothing stored
}

func TestSignedDispatchWithMapping(t *testing.T) {
	e := newEnv(t)
	putPaymentEvent(e, 201)
	sig := paymentSig.Sign([]byte(paymentBody))
	const path = "/v1/bots/acme/dispatch/PAYMENT_RECEIVED"

	before := e.queuedTriggers()
	b := e.do("POST", path, "", "application/json", paymentBody, 202, "X-Payment-Signature", sig)
	var first struct {
		TriggerID string `json:"trigger_id"`
	}
	require.NoError(t, json.Unmarshal(b, &first))
	// The provider retries: the orderId makes it the same trigger.
	b = e.do("POST", path, "", "application/json", paymentBody, 202, "X-Payment-Signature", sig)
	var again struct {
		TriggerID string `json:"trigger_id"`
	}
	require.NoError(t, json.Unmarshal(b, &again))
	require.Equal(t, first.TriggerID, again.TriggerID)
	require.Equal(t, before+1, e.queuedTriggers(), "one trigger queued")
	// Another event keyed by the same order id is another trigger.
	e.do("PUT", "/v1/bots/acme/events/ORDER_SHIPPED", e.keys["acme"], "application/json", `{"flow":"payment",
		"input":{"user":"body.userId","idempotency_key":"body.orderId"},"signature":{"secret":"`+paymentSecret+`","header":"X-Payment-Signature","prefix":"sha256="}}`, 201)
	b = e.do("POST", "/v1/bots/acme/dispatch/ORDER_SHIPPED", "", "application/json", paymentBody, 202, "X-Payment-Signature", sig)
	var shipped struct {
		TriggerID string `json:"trigger_id"`
	}
	require.NoError(t, json.Unmarshal(b, &shipped))
	require.NotEqual(t, first.TriggerID, shipped.TriggerID)
	require.Equal(t, before+2, e.queuedTriggers())

	// Refusals, none of which queues anything.
	before = e.queuedTriggers()
	for name, c := range map[string]struct {
		path, key, body string
		hdr             []string
		status          int
		code, field     string
	}{
		"bad signature":             {path, "", paymentBody, []string{"X-Payment-Signature", "sha256=" + strings.Repeat("0", 64)}, 401, "invalid_signature", ""},
		"signature of another body": {path, "", strings.Replace(paymentBody, "49.99", "4999", 1), []string{"X-Payment-Signature", sig}, 401, "invalid_signature", ""},
		"no signature":              {path, "", paymentBody, nil, 401, "invalid_signature", ""},
		"unknown event":             {"/v1/bots/acme/dispatch/NOPE", "", paymentBody, []string{"X-Payment-Signature", sig}, 401, "unauthenticated", ""},
		"unknown bot":               {"/v1/bots/nobody/dispatch/PAYMENT_RECEIVED", "", paymentBody, []string{"X-Payment-Signature", sig}, 401, "unauthenticated", ""},
		"other bot's key":           {path, e.keys["globex"], paymentBody, nil, 403, "forbidden", ""},
		"no user": {path, "", `{"customer":"+31612345678","amount":1}`,
			[]string{"X-Payment-Signature", paymentSig.Sign([]byte(`{"customer":"+31612345678","amount":1}`))}, 422, "", "input.user"},
		"not json": {path, "", `userId=1`, []string{"X-Payment-Signature", paymentSig.Sign([]byte(`userId=1`))}, 400, "invalid_json", ""},
	} {
		t.Run(name, func(t *testing.T) {
			b := e.do("POST", c.path, c.key, "application/json", c.body, c.status, c.hdr...)
			code, field := errorField(t, b)
			if c.code != "" {
				require.Equal(t, c.code, code)
			}
			require.Equal(t, c.field, field)
		})
	}
	// An event without a signature check still needs a key.
	e.do("PUT", "/v1/bots/acme/events/WELCOME", e.keys["acme"], "application/json", `{"flow":"payment"}`, 200)
	e.do("POST", "/v1/bots/acme/dispatch/WELCOME", "", "application/json", `{"from":"1234567890"}`, 401)
	require.Equal(t, before, e.queuedTriggers())

	// The bot's own key needs no signature, and the mapping still applies.
	e.do("POST", path, e.keys["acme"], "application/json", `{"userId":"+31612345679","orderId":"ORD-1002"}`, http.StatusAccepted)
	require.Equal(t, before+1, e.queuedTriggers())
}
