package inputmap_test

import (
	"encoding/json"
	"errors"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/flowgate/flowgate/ingress/inputmap"
)

// The BuilderBot PAYMENT_RECEIVED provider body.
const payment = `{"userId":"+31612345678","amount":49.99,"orderId":"ORD-1001","customer":{"first":"Ana","phone":31612345678}}`

func TestApply(t *testing.T) {
	m, err := inputmap.Compile(inputmap.Spec{User: "body.userId", Name: "'Customer'", IdempotencyKey: "body.orderId"})
	require.NoError(t, err)
	r, err := m.Apply([]byte(payment), nil)
	require.NoError(t, err)
	require.JSONEq(t, `"+31612345678"`, string(r.User))
	require.JSONEq(t, `"Customer"`, string(r.Name))
	require.JSONEq(t, payment, string(r.Data), "no data mapping: the whole body")
	require.Equal(t, "ORD-1001", r.IdempotencyKey)

	// The default data is the body as sent: a large integer keeps its digits.
	big := `{"userId":"+31612345678","orderId":12345678901234567891}`
	plain, err := inputmap.Compile(inputmap.Spec{User: "body.userId"})
	require.NoError(t, err)
	r, err = plain.Apply([]byte(big), nil)
	require.NoError(t, err)
	require.Equal(t, big, string(r.Data))

	m, err = inputmap.Compile(inputmap.Spec{User: "body.customer.phone", Name: "upper(trim(body.customer.first)) + ' (' + (headers['x-shop'] ?? 'web') + ')'",
		Data: "{amount: body.amount, orderId: body.orderId}"})
	require.NoError(t, err)
	r, err = m.Apply([]byte(payment), map[string]string{"x-shop": "north"})
	require.NoError(t, err)
	require.Equal(t, "31612345678", string(r.User), "an integer stays an integer, not 3.16e+10")
	require.JSONEq(t, `"ANA (north)"`, string(r.Name))
	require.JSONEq(t, `{"amount":49.99,"orderId":"ORD-1001"}`, string(r.Data))
	require.Empty(t, r.IdempotencyKey)
}

func TestApplyRefusals(t *testing.T) {
	cases := []struct {
		spec  inputmap.Spec
		body  string
		field string
	}{
		{inputmap.Spec{User: "body.from"}, payment, "input.user"},           // yields nothing
		{inputmap.Spec{User: "body.userId"}, `{"userId":""}`, "input.user"}, // empty
		{inputmap.Spec{User: "body.amount"}, payment, "input.user"},         // 49.99
		{inputmap.Spec{User: "body.customer"}, payment, "input.user"},       // an object
		{inputmap.Spec{User: "body.userId.x.y"}, `{"userId":"1"}`, "input.user"},
		{inputmap.Spec{User: "body.userId", Name: "body.amount"}, payment, "input.name"},
		{inputmap.Spec{User: "body.userId", Data: "body.orderId"}, payment, "input.data"},
		{inputmap.Spec{User: "body[0]"}, `["+31612345678"]`, "input.data"}, // the default data, an array
		{inputmap.Spec{User: "body.userId"}, `["+31612345678"]`, "input.user"},
		{inputmap.Spec{User: "body.userId", IdempotencyKey: "body.customer"}, payment, "input.idempotency_key"},
		{inputmap.Spec{User: "body.userId", IdempotencyKey: "body.n"}, `{"userId":"1","n":12345678901234567891}`, "input.idempotency_key"}, // beyond 2^53
		{inputmap.Spec{User: "body.userId"}, `{"userId":"1"} trailing`, "body"},
		{inputmap.Spec{User: "body.userId"}, `not json`, "body"},
	}
	for _, c := range cases {
		m, err := inputmap.Compile(c.spec)
		require.NoError(t, err, "%+v", c.spec)
		_, err = m.Apply([]byte(c.body), nil)
		var e *inputmap.Error
		require.True(t, errors.As(err, &e), "%+v on %s: %v", c.spec, c.body, err)
		require.Equal(t, c.field, e.Field, "%+v: %v", c.spec, err)
		require.NotEmpty(t, e.Message)
	}
}

func TestCompileRefusals(t *testing.T) {
	cases := []struct {
		spec  inputmap.Spec
		field string
	}{
		{inputmap.Spec{}, "input.user"},
		{inputmap.Spec{User: "  "}, "input.user"},
		{inputmap.Spec{User: "bdy.userId"}, "input.user"}, // unknown variable
		{inputmap.Spec{User: "body.userId +"}, "input.user"},
		{inputmap.Spec{User: "now()"}, "input.user"},
		{inputmap.Spec{User: "exec('rm')"}, "input.user"},
		{inputmap.Spec{User: "len(1..100000000)"}, "input.user"},
		{inputmap.Spec{User: "repeat(body.userId, 1000000000)"}, "input.user"},
		{inputmap.Spec{User: "let x = body.s + body.s; x + x"}, "input.user"},
		{inputmap.Spec{User: "map(body.l, #)[0]"}, "input.user"},
		{inputmap.Spec{User: "body.l | filter(# > 1) | first()"}, "input.user"},
		{inputmap.Spec{User: "replace(body.a, '', body.b)"}, "input.user"},
		{inputmap.Spec{User: "body.userId", Name: "'a"}, "input.name"},
		{inputmap.Spec{User: "body.userId", Data: "{"}, "input.data"},
		{inputmap.Spec{User: "body.userId", IdempotencyKey: "env.HOME"}, "input.idempotency_key"},
		{inputmap.Spec{User: "body." + string(make([]byte, 1100))}, "input.user"},
	}
	for _, c := range cases {
		_, err := inputmap.Compile(c.spec)
		var e *inputmap.Error
		require.True(t, errors.As(err, &e), "%+v: %v", c.spec, err)
		require.Equal(t, c.field, e.Field)
	}
}

func TestSignature(t *testing.T) {
	body := []byte(payment)
	s := inputmap.Signature{Secret: "whsec_0123456789abcdef", Header: "x-signature", Prefix: "sha256="}
	require.NoError(t, s.Normalize())
	require.Equal(t, "X-Signature", s.Header)
	require.Equal(t, "hex", s.Encoding)
	sig := s.Sign(body)
	require.Regexp(t, `^sha256=[0-9a-f]{64}$`, sig)
	require.NoError(t, s.Verify(body, sig))
	require.NoError(t, s.Verify(body, " "+sig+" "))
	require.ErrorIs(t, s.Verify(body, ""), inputmap.ErrNoSignature)
	require.ErrorIs(t, s.Verify([]byte(payment+" "), sig), inputmap.ErrBadSignature, "another body")
	require.ErrorIs(t, s.Verify(body, sig[len("sha256="):]), inputmap.ErrBadSignature, "no prefix")
	require.ErrorIs(t, s.Verify(body, "sha256=zz"), inputmap.ErrBadSignature)
	other := s
	other.Secret = "whsec_another-secret-0000"
	require.ErrorIs(t, other.Verify(body, sig), inputmap.ErrBadSignature, "another secret")

	b64 := inputmap.Signature{Secret: "whsec_0123456789abcdef", Header: "X-Webhook-Signature", Encoding: "base64"}
	require.NoError(t, b64.Normalize())
	sig = b64.Sign(body)
	require.NoError(t, b64.Verify(body, sig))
	require.NoError(t, b64.Verify(body, sig[:len(sig)-1]), "unpadded base64 too")
	require.ErrorIs(t, b64.Verify(body, s.Sign(body)), inputmap.ErrBadSignature)

	for field, bad := range map[string]inputmap.Signature{
		"signature.secret":   {Secret: "short", Header: "X-Sig"},
		"signature.header":   {Secret: "whsec_0123456789abcdef", Header: "X Sig"},
		"signature.encoding": {Secret: "whsec_0123456789abcdef", Header: "X-Sig", Encoding: "base32"},
	} {
		var e *inputmap.Error
		require.True(t, errors.As(bad.Normalize(), &e), field)
		require.Equal(t, field, e.Field)
	}
	auth := inputmap.Signature{Secret: "whsec_0123456789abcdef", Header: "Authorization"}
	require.Error(t, auth.Normalize())

	// The secret is write-only in the API, but the stored input keeps it.
	raw, err := json.Marshal(inputmap.Input{Signature: &s})
	require.NoError(t, err)
	require.Contains(t, string(raw), "whsec_")
}
