package rcs_test

import (
	"encoding/base64"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	rcs "github.com/flowgate/flowgate/channel-rcs"
	"github.com/flowgate/flowgate/shared/events"
	rcsdouble "github.com/flowgate/flowgate/shared/providerdouble/rcs"
)

const clientToken = "client-token-1"

func TestHandshake(t *testing.T) {
	secret, ok := rcs.HandshakeResponse(rcsdouble.HandshakeBody(clientToken, "s3cr3t"))
	require.True(t, ok)
	require.Equal(t, "s3cr3t", secret)
	require.Equal(t, clientToken, rcs.HandshakeClientToken(rcsdouble.HandshakeBody(clientToken, "s3cr3t")))
	for _, body := range []string{
		string(rcsdouble.Envelope(rcsdouble.UserText("+1", "a", "m", "x"))),
		`{"clientToken":"x"}`, `{"secret":"x"}`, `not json`,
	} {
		_, ok := rcs.HandshakeResponse([]byte(body))
		require.False(t, ok, body)
	}
}

func TestVerifySignature(t *testing.T) {
	data := rcsdouble.UserText("+14155550100", agent, "msg-1", "hello")
	sig := rcsdouble.Signature(data, clientToken)
	require.NoError(t, rcs.VerifySignature(data, sig, clientToken))
	require.ErrorIs(t, rcs.VerifySignature(data, "", clientToken), rcs.ErrMissingSignature)
	require.ErrorIs(t, rcs.VerifySignature(data, sig, "other-token"), rcs.ErrBadSignature)
	require.ErrorIs(t, rcs.VerifySignature(append(data, ' '), sig, clientToken), rcs.ErrBadSignature)
	require.ErrorIs(t, rcs.VerifySignature(data, "!!not base64!!", clientToken), rcs.ErrBadSignature)
	require.ErrorIs(t, rcs.VerifySignature(data, sig, ""), rcs.ErrNoClientToken)
}

func TestParseEnvelope(t *testing.T) {
	const phone = "+14155550100"
	t.Run("text", func(t *testing.T) {
		data := rcsdouble.UserText(phone, agent, "msg-1", "hello")
		decoded, p, err := rcs.ParseEnvelope("acme", rcsdouble.Envelope(data))
		require.NoError(t, err)
		require.Equal(t, data, decoded)
		require.Equal(t, rcs.EventMessage, p.Kind)
		require.Equal(t, "rcs-msg-msg-1", p.DedupID)
		require.Equal(t, agent, p.AgentID)
		require.Equal(t, &events.Inbound{BotID: "acme", Channel: events.ChannelRCS, From: phone,
			ProviderMessageID: "msg-1", Text: "hello", ReceivedAt: p.Inbound.ReceivedAt}, p.Inbound)
		require.False(t, p.Inbound.ReceivedAt.IsZero())
	})
	t.Run("suggestion response", func(t *testing.T) {
		_, p, err := rcs.ParseEnvelope("acme", rcsdouble.Envelope(rcsdouble.UserSuggestionResponse(phone, agent, "msg-2", "yes", "Yes")))
		require.NoError(t, err)
		require.Equal(t, rcs.EventMessage, p.Kind)
		require.Equal(t, "yes", p.Inbound.ButtonID)
		require.Equal(t, "Yes", p.Inbound.Text)
	})
	t.Run("file and location are replies", func(t *testing.T) {
		for _, data := range [][]byte{
			rcsdouble.UserFile(phone, agent, "msg-3", "https://rcs.example/f.jpg", "image/jpeg"),
			rcsdouble.UserLocation(phone, agent, "msg-4", 37.42, -122.08),
		} {
			_, p, err := rcs.ParseEnvelope("acme", rcsdouble.Envelope(data))
			require.NoError(t, err)
			require.Equal(t, rcs.EventMessage, p.Kind)
			require.Equal(t, phone, p.Inbound.From)
		}
	})
	t.Run("delivered and read", func(t *testing.T) {
		for typ, status := range map[string]string{"DELIVERED": events.StatusDelivered, "READ": events.StatusRead} {
			_, p, err := rcs.ParseEnvelope("acme", rcsdouble.Envelope(rcsdouble.UserEvent(phone, agent, "evt-"+typ, typ, rcs.MessageID("run1:1"))))
			require.NoError(t, err)
			require.Equal(t, rcs.EventDelivery, p.Kind)
			require.Equal(t, "rcs-evt-evt-"+typ, p.DedupID)
			require.Equal(t, status, p.Delivery.Status)
			require.Equal(t, rcs.MessageID("run1:1"), p.Delivery.ProviderMessageID, "matches the ProviderMessageID Send returned")
			require.Equal(t, events.ChannelRCS, p.Delivery.Channel)
			require.Equal(t, "acme", p.Delivery.BotID)
		}
	})
	t.Run("typing is ignored", func(t *testing.T) {
		_, p, err := rcs.ParseEnvelope("acme", rcsdouble.Envelope(rcsdouble.UserEvent(phone, agent, "evt-9", "IS_TYPING", "")))
		require.NoError(t, err)
		require.Equal(t, rcs.EventIgnored, p.Kind)
		require.Nil(t, p.Delivery)
		require.Nil(t, p.Inbound)
	})
	t.Run("malformed", func(t *testing.T) {
		b64 := func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
		for name, body := range map[string]string{
			"not json":            `{"message":`,
			"no message":          `{"subscription":"x"}`,
			"empty data":          `{"message":{"data":""}}`,
			"not base64":          `{"message":{"data":"%%%"}}`,
			"data not json":       `{"message":{"data":"` + b64("nope") + `"}}`,
			"no sender":           `{"message":{"data":"` + b64(`{"messageId":"m","text":"x"}`) + `"}}`,
			"message without id":  `{"message":{"data":"` + b64(`{"senderPhoneNumber":"+1","text":"x"}`) + `"}}`,
			"event without id":    `{"message":{"data":"` + b64(`{"senderPhoneNumber":"+1","eventType":"READ","messageId":"m"}`) + `"}}`,
			"read without msg id": `{"message":{"data":"` + b64(`{"senderPhoneNumber":"+1","eventType":"READ","eventId":"e"}`) + `"}}`,
		} {
			_, _, err := rcs.ParseEnvelope("acme", []byte(body))
			require.ErrorIs(t, err, rcs.ErrMalformedEnvelope, name)
		}
	})
}

// webhookReceiver plays the ingress: handshake, signature check over the
// decoded data, dedupe on DedupID.
type webhookReceiver struct {
	mu   sync.Mutex
	seen map[string]bool
	got  []rcs.ParsedEvent
}

func (h *webhookReceiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	if secret, ok := rcs.HandshakeResponse(body); ok {
		if rcs.HandshakeClientToken(body) != clientToken {
			http.Error(w, "unknown client token", http.StatusForbidden)
			return
		}
		_, _ = io.WriteString(w, secret)
		return
	}
	decoded, p, err := rcs.ParseEnvelope("acme", body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	if err := rcs.VerifySignature(decoded, r.Header.Get(rcs.SignatureHeader), clientToken); err != nil {
		http.Error(w, err.Error(), http.StatusUnauthorized)
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.seen[p.DedupID] {
		h.seen[p.DedupID] = true
		h.got = append(h.got, p)
	}
}

func TestWebhookEndToEnd(t *testing.T) {
	recv := &webhookReceiver{seen: map[string]bool{}}
	srv := httptest.NewServer(recv)
	defer srv.Close()
	post := func(r *http.Request, err error) (int, string) {
		t.Helper()
		require.NoError(t, err)
		resp, err := http.DefaultClient.Do(r)
		require.NoError(t, err)
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}

	status, body := post(http.NewRequest(http.MethodPost, srv.URL, strings.NewReader(string(rcsdouble.HandshakeBody(clientToken, "the-secret")))))
	require.Equal(t, 200, status)
	require.Equal(t, "the-secret", body)

	msg := rcsdouble.UserText("+14155550100", agent, "msg-1", "hi")
	status, _ = post(rcsdouble.WebhookRequest(srv.URL, clientToken, msg))
	require.Equal(t, 200, status)
	status, _ = post(rcsdouble.WebhookRequest(srv.URL, clientToken, msg)) // RBM redelivers
	require.Equal(t, 200, status)
	status, _ = post(rcsdouble.WebhookRequest(srv.URL, "wrong-token", rcsdouble.UserText("+14155550100", agent, "msg-2", "forged")))
	require.Equal(t, http.StatusUnauthorized, status)
	status, _ = post(rcsdouble.WebhookRequest(srv.URL, "", rcsdouble.UserText("+14155550100", agent, "msg-3", "unsigned")))
	require.Equal(t, http.StatusUnauthorized, status)
	status, _ = post(rcsdouble.WebhookRequest(srv.URL, clientToken, rcsdouble.UserEvent("+14155550100", agent, "evt-1", "DELIVERED", "m-1")))
	require.Equal(t, 200, status)

	require.Len(t, recv.got, 2)
	require.Equal(t, "hi", recv.got[0].Inbound.Text)
	require.Equal(t, events.StatusDelivered, recv.got[1].Delivery.Status)
}

func FuzzParseEnvelope(f *testing.F) {
	f.Add(rcsdouble.Envelope(rcsdouble.UserText("+14155550100", agent, "m1", "hi")))
	f.Add(rcsdouble.Envelope(rcsdouble.UserSuggestionResponse("+14155550100", agent, "m2", "yes", "Yes")))
	f.Add(rcsdouble.Envelope(rcsdouble.UserEvent("+14155550100", agent, "e1", "READ", "m1")))
	f.Add(rcsdouble.Envelope(rcsdouble.UserEvent("+14155550100", agent, "e2", "IS_TYPING", "")))
	f.Add(rcsdouble.Envelope(rcsdouble.UserLocation("+14155550100", agent, "m3", 1, 2)))
	f.Add([]byte(`{"message":{"data":"e30="}}`))
	f.Add([]byte(`garbage`))
	f.Fuzz(func(t *testing.T, body []byte) {
		decoded, p, err := rcs.ParseEnvelope("acme", body)
		if err != nil {
			require.Nil(t, decoded)
			require.Equal(t, rcs.ParsedEvent{}, p)
			return
		}
		require.NotEmpty(t, decoded)
		require.NotEmpty(t, p.From)
		require.NotEmpty(t, p.DedupID)
		switch p.Kind {
		case rcs.EventMessage:
			require.NotNil(t, p.Inbound)
			require.Nil(t, p.Delivery)
			require.Equal(t, p.From, p.Inbound.From)
			require.Equal(t, "rcs-msg-"+p.Inbound.ProviderMessageID, p.DedupID)
		case rcs.EventDelivery:
			require.NotNil(t, p.Delivery)
			require.Nil(t, p.Inbound)
			require.NotEmpty(t, p.Delivery.ProviderMessageID)
			require.Contains(t, []string{events.StatusDelivered, events.StatusRead}, p.Delivery.Status)
		case rcs.EventIgnored:
			require.Nil(t, p.Inbound)
			require.Nil(t, p.Delivery)
		default:
			t.Fatalf("unknown kind %q", p.Kind)
		}
		// The signature covers exactly the decoded bytes.
		require.NoError(t, rcs.VerifySignature(decoded, rcsdouble.Signature(decoded, "k"), "k"))
	})
}
