package rcsdouble

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha512"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"time"
)

// The builders below produce the JSON RBM puts in a webhook's
// message.data, written from the RBM reference (not shared with the channel
// package).

func marshal(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err) // plain maps: cannot fail
	}
	return b
}

func now() string { return time.Now().UTC().Format(time.RFC3339Nano) }

// UserText is a user's text message.
func UserText(phone, agentID, messageID, text string) []byte {
	return marshal(map[string]any{
		"senderPhoneNumber": phone, "messageId": messageID, "sendTime": now(), "agentId": agentID, "text": text,
	})
}

// UserSuggestionResponse is a tap on a suggested reply (or action).
func UserSuggestionResponse(phone, agentID, messageID, postbackData, text string) []byte {
	return marshal(map[string]any{
		"senderPhoneNumber": phone, "messageId": messageID, "sendTime": now(), "agentId": agentID,
		"suggestionResponse": map[string]any{"postbackData": postbackData, "text": text, "type": "REPLY"},
	})
}

// UserFile is a file the user sent.
func UserFile(phone, agentID, messageID, fileURI, mimeType string) []byte {
	return marshal(map[string]any{
		"senderPhoneNumber": phone, "messageId": messageID, "sendTime": now(), "agentId": agentID,
		"userFile": map[string]any{"payload": map[string]any{"mimeType": mimeType, "fileSizeBytes": 1234, "fileUri": fileURI, "fileName": "photo.jpg"}},
	})
}

// UserLocation is a location the user shared.
func UserLocation(phone, agentID, messageID string, lat, lng float64) []byte {
	return marshal(map[string]any{
		"senderPhoneNumber": phone, "messageId": messageID, "sendTime": now(), "agentId": agentID,
		"location": map[string]any{"latitude": lat, "longitude": lng},
	})
}

// UserEvent is a DELIVERED, READ or IS_TYPING event about the agent's
// message messageID.
func UserEvent(phone, agentID, eventID, eventType, messageID string) []byte {
	return marshal(map[string]any{
		"senderPhoneNumber": phone, "eventType": eventType, "eventId": eventID, "messageId": messageID,
		"sendTime": now(), "agentId": agentID,
	})
}

// Envelope wraps data the way RBM's Pub/Sub push does.
func Envelope(data []byte) []byte {
	return marshal(map[string]any{
		"message": map[string]any{
			"data":        base64.StdEncoding.EncodeToString(data),
			"messageId":   "2070443601311540",
			"publishTime": now(),
		},
		"subscription": "projects/rbm-double/subscriptions/rbm-agent-sub",
	})
}

// Signature is X-Goog-Signature for data: base64(HMAC-SHA512(clientToken, data)).
func Signature(data []byte, clientToken string) string {
	mac := hmac.New(sha512.New, []byte(clientToken))
	mac.Write(data)
	return base64.StdEncoding.EncodeToString(mac.Sum(nil))
}

// SignatureHeader is RBM's webhook signature header.
const SignatureHeader = "X-Goog-Signature"

// WebhookRequest builds RBM's POST of data to a webhook: enveloped and,
// when clientToken is non-empty, signed.
func WebhookRequest(url, clientToken string, data []byte) (*http.Request, error) {
	r, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(Envelope(data)))
	if err != nil {
		return nil, err
	}
	r.Header.Set("Content-Type", "application/json")
	if clientToken != "" {
		r.Header.Set(SignatureHeader, Signature(data, clientToken))
	}
	return r, nil
}

// HandshakeBody is RBM's webhook setup request.
func HandshakeBody(clientToken, secret string) []byte {
	return marshal(map[string]string{"clientToken": clientToken, "secret": secret})
}
