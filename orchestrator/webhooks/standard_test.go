package webhooks_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/flowgate/flowgate/orchestrator/webhooks"
)

// TestStandardWebhooksVector: the signature of the Standard Webhooks
// specification's example (the libraries' test vector).
func TestStandardWebhooksVector(t *testing.T) {
	const secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	got := webhooks.SignStandard([]string{secret}, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, []byte(`{"test": 2432232314}`))
	require.Equal(t, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=", got)
	require.Equal(t, secret, webhooks.StandardSecret(secret), "a whsec_ secret is given to libraries as it is")

	// A plain secret is given to libraries as whsec_ + base64(secret): both
	// sign the same.
	plain := "s3cret-0123456789abcdef"
	require.Equal(t, webhooks.SignStandard([]string{plain}, "id", 1, []byte("b")),
		webhooks.SignStandard([]string{webhooks.StandardSecret(plain)}, "id", 1, []byte("b")))

	now := time.Unix(1614265330, 0)
	h := http.Header{}
	h.Set(webhooks.HeaderWebhookID, "msg_p5jXN8AQM9LWM0D4loKWxJek")
	h.Set(webhooks.HeaderWebhookTimestamp, "1614265330")
	h.Set(webhooks.HeaderWebhookSignature, "v1,bm9wZQ== "+got) // any listed signature may match
	body := []byte(`{"test": 2432232314}`)
	require.NoError(t, webhooks.VerifyStandard(secret, h, body, time.Minute, now))
	require.ErrorIs(t, webhooks.VerifyStandard(secret, h, append(body, ' '), time.Minute, now), webhooks.ErrBadSignature)
	require.ErrorIs(t, webhooks.VerifyStandard(secret, h, body, time.Minute, now.Add(time.Hour)), webhooks.ErrStale)
	h.Set(webhooks.HeaderWebhookID, "msg_other")
	require.ErrorIs(t, webhooks.VerifyStandard(secret, h, body, time.Minute, now), webhooks.ErrBadSignature, "the id is signed")
}

// capture records every request a subscription receives.
type capture struct {
	mu   sync.Mutex
	reqs []captured
	srv  *httptest.Server
}

type captured struct {
	h    http.Header
	body []byte
}

func newCapture(t *testing.T) *capture {
	c := &capture{}
	c.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		c.mu.Lock()
		c.reqs = append(c.reqs, captured{h: r.Header.Clone(), body: b})
		c.mu.Unlock()
	}))
	t.Cleanup(c.srv.Close)
	return c
}

func (c *capture) all() []captured {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]captured(nil), c.reqs...)
}

// TestSecretRotationSignsWithBothSecrets: after a rotation, deliveries
// carry two Standard Webhooks signatures (receivers holding the old or the
// new secret both verify); once the previous secret is dropped, only the
// new one signs. The webhook-id is the delivery id, the same on retries.
func TestSecretRotationSignsWithBothSecrets(t *testing.T) {
	const oldSecret, newSecret = "old-secret-0123456789abcdef", "new-secret-0123456789abcdef"
	rcv := newCapture(t)
	e := newEnv(t, webhooks.Config{AllowPrivate: true}, nil)
	e.subscribe("wh_rot", rcv.srv.URL, oldSecret)
	verify := func(c captured, secret string) error {
		return webhooks.VerifyStandard(secret, c.h, c.body, time.Minute, time.Now())
	}

	e.publishStatuses("run-1", false, "created")
	require.Eventually(t, func() bool { return len(rcv.all()) == 1 }, 20*time.Second, 10*time.Millisecond)
	first := rcv.all()[0]
	require.NoError(t, verify(first, oldSecret))
	require.Error(t, verify(first, newSecret))
	require.Equal(t, "run:run-1:0:created:wh_rot", first.h.Get(webhooks.HeaderWebhookID))
	require.Equal(t, first.h.Get(webhooks.HeaderTimestamp), first.h.Get(webhooks.HeaderWebhookTimestamp))
	require.Len(t, strings.Fields(first.h.Get(webhooks.HeaderWebhookSignature)), 1)

	require.NoError(t, e.store.RotateSubscriptionSecret(context.Background(), "acme", "wh_rot", newSecret))
	// The delivery service picks the rotation up at its next reconcile.
	var during captured
	for i := 2; ; i++ {
		require.Less(t, i, 200, "the rotated secret was never used")
		e.publishStatuses("run-"+string(rune('a'+i%26))+strings.Repeat("x", i/26), false, "created")
		require.Eventually(t, func() bool { return len(rcv.all()) == i }, 20*time.Second, 10*time.Millisecond)
		during = rcv.all()[i-1]
		if len(strings.Fields(during.h.Get(webhooks.HeaderWebhookSignature))) == 2 {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	require.NoError(t, verify(during, oldSecret), "a receiver still on the old secret verifies")
	require.NoError(t, verify(during, newSecret), "a receiver on the new secret verifies")
	require.NoError(t, webhooks.Verify(newSecret, during.h, during.body, time.Minute, time.Now()), "X-Flowgate-Signature uses the new secret")

	require.NoError(t, e.store.DropPreviousSecret(context.Background(), "acme", "wh_rot"))
	var after captured
	for i := len(rcv.all()) + 1; ; i++ {
		require.Less(t, i, 400, "the previous secret was never dropped")
		e.publishStatuses("run-z"+strings.Repeat("y", i), false, "created")
		require.Eventually(t, func() bool { return len(rcv.all()) == i }, 20*time.Second, 10*time.Millisecond)
		after = rcv.all()[i-1]
		if len(strings.Fields(after.h.Get(webhooks.HeaderWebhookSignature))) == 1 {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	require.NoError(t, verify(after, newSecret))
	require.ErrorIs(t, verify(after, oldSecret), webhooks.ErrBadSignature)
}
