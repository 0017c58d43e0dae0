package app_test

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/flowgate/flowgate/shared/store"
)

// The BuilderBot PAYMENT_RECEIVED example without its adapter: the payment
// provider's own webhook ({userId, amount, orderId}, signed with HMAC-SHA256)
// points at Flowgate's dispatch URL, and the event's input mapping says
// which field is the user.
const paymentFlow = `{"steps":[
  {"id":"received","type":"send","text":"Payment received! 💳"},
  {"id":"amount","type":"send","text":"Amount: $ {{ amount }}"},
  {"id":"order","type":"send","text":"Order ID: {{ orderId }}"},
  {"id":"thanks","type":"send","text":"Thank you for your purchase!"}]}`

const providerSecret = "whsec_provider-shared-secret-42"

// providerSignature is what the payment provider sends: sha256=<hex HMAC>.
func providerSignature(body string) string {
	m := hmac.New(sha256.New, []byte(providerSecret))
	m.Write([]byte(body))
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}

func TestSeedPaymentReceivedFromProviderWebhook(t *testing.T) {
	d, c := startDev(t, t.TempDir())
	defer func() { require.NoError(t, d.Stop()) }()
	key := createBot(c, "shop", map[string]any{})
	c.must("PUT", "/v1/bots/shop/flows/payment", key, paymentFlow, 200)

	// A mapping that does not compile is refused at save, with the field.
	code, b := c.call("PUT", "/v1/bots/shop/events/PAYMENT_RECEIVED", key, `{"flow":"payment","input":{"user":"body.userId +"}}`)
	require.Equal(t, http.StatusUnprocessableEntity, code, string(b))
	var e struct{ Error struct{ Code, Field string } }
	require.NoError(t, json.Unmarshal(b, &e))
	require.Equal(t, "input.user", e.Error.Field)

	ev := c.must("PUT", "/v1/bots/shop/events/PAYMENT_RECEIVED", key, `{"flow":"payment",
	  "input":{"user":"body.userId","name":"'Customer'","idempotency_key":"body.orderId"},
	  "signature":{"secret":"`+providerSecret+`","header":"X-Payment-Signature","prefix":"sha256="}}`, 201)
	require.NotContains(t, ev, "secret")

	// The provider posts its own body, signed, with no API key.
	const body = `{"userId":"cus_31612345678","amount":49.99,"orderId":"ORD-1001"}`
	const dispatch = "/v1/bots/shop/dispatch/PAYMENT_RECEIVED"
	c.must("POST", dispatch, "", body, 202, "X-Payment-Signature", providerSignature(body))
	want := []string{"Payment received! 💳", "Amount: $ 49.99", "Order ID: ORD-1001", "Thank you for your purchase!"}
	require.Eventually(t, func() bool { return len(c.sandbox("shop", key, "cus_31612345678")) == 4 }, 15*time.Second, 20*time.Millisecond)
	require.Equal(t, want, texts(c.sandbox("shop", key, "cus_31612345678")))
	contact, err := d.Store.GetContactByExternalID(context.Background(), "shop", "sandbox", "cus_31612345678")
	require.NoError(t, err)
	require.Equal(t, "Customer", contact.Name)
	require.Equal(t, "ORD-1001", contact.LastRequest["orderId"])

	// The provider retries the same delivery: no second run.
	c.must("POST", dispatch, "", body, 202, "X-Payment-Signature", providerSignature(body))

	// A forged or tampered request is a 401; a body whose mapping yields no
	// user is a 422 naming the mapping's field. Nothing runs for them.
	tampered := `{"userId":"cus_31612345678","amount":0.01,"orderId":"ORD-1001"}`
	code, b = c.call("POST", dispatch, "", tampered, "X-Payment-Signature", providerSignature(body))
	require.Equal(t, http.StatusUnauthorized, code, string(b))
	code, _ = c.call("POST", dispatch, "", body, "X-Payment-Signature", "sha256=00")
	require.Equal(t, http.StatusUnauthorized, code)
	code, _ = c.call("POST", dispatch, "", body)
	require.Equal(t, http.StatusUnauthorized, code)
	noUser := `{"customer":"cus_1","amount":5,"orderId":"ORD-1002"}`
	code, b = c.call("POST", dispatch, "", noUser, "X-Payment-Signature", providerSignature(noUser))
	require.Equal(t, http.StatusUnprocessableEntity, code, string(b))
	require.NoError(t, json.Unmarshal(b, &e))
	require.Equal(t, "input.user", e.Error.Field)

	time.Sleep(300 * time.Millisecond)
	runs, _, err := d.Store.ListRuns(context.Background(), store.RunFilter{BotID: "shop"})
	require.NoError(t, err)
	require.Len(t, runs, 1, "one run: the retry was the same trigger, the refusals ran nothing")
	require.Len(t, c.sandbox("shop", key, "cus_31612345678"), 4)
}
