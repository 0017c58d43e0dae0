package rcs

import (
	"crypto/hmac"
	"crypto/sha512"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/flowgate/flowgate/shared/events"
)

// SignatureHeader carries base64(HMAC-SHA512(client token, decoded data)).
const SignatureHeader = "X-Goog-Signature"

// Webhook errors.
var (
	// ErrNoClientToken: the agent has no client token configured, so no
	// event can be authenticated; every event is refused.
	ErrNoClientToken = errors.New("rcs: no client token configured")
	// ErrMissingSignature: the request has no X-Goog-Signature.
	ErrMissingSignature = errors.New("rcs: missing " + SignatureHeader)
	// ErrBadSignature: the signature does not match.
	ErrBadSignature = errors.New("rcs: wrong " + SignatureHeader)
	// ErrMalformedEnvelope: the body is not an RBM Pub/Sub envelope.
	ErrMalformedEnvelope = errors.New("rcs: malformed envelope")
)

// HandshakeResponse recognises RBM's webhook setup request
// {"clientToken":"...","secret":"..."}: ok is true and the caller answers
// 200 with secret as plain text. Compare the client token with the agent's
// before answering.
func HandshakeResponse(body []byte) (secret string, ok bool) {
	var h struct {
		ClientToken string          `json:"clientToken"`
		Secret      string          `json:"secret"`
		Message     json.RawMessage `json:"message"`
	}
	if json.Unmarshal(body, &h) != nil || h.ClientToken == "" || h.Secret == "" || h.Message != nil {
		return "", false
	}
	return h.Secret, true
}

// HandshakeClientToken returns the clientToken of a handshake body ("" if
// body is not one), so the ingress can check it is the agent's.
func HandshakeClientToken(body []byte) string {
	var h struct {
		ClientToken string `json:"clientToken"`
	}
	_ = json.Unmarshal(body, &h)
	return h.ClientToken
}

// VerifySignature checks header = base64(HMAC-SHA512(key = clientToken,
// message = data)) where data is the envelope's decoded message data.
func VerifySignature(data []byte, header, clientToken string) error {
	if clientToken == "" {
		return ErrNoClientToken
	}
	if header == "" {
		return ErrMissingSignature
	}
	got, err := base64.StdEncoding.DecodeString(strings.TrimSpace(header))
	if err != nil {
		return ErrBadSignature
	}
	mac := hmac.New(sha512.New, []byte(clientToken))
	mac.Write(data)
	if !hmac.Equal(got, mac.Sum(nil)) {
		return ErrBadSignature
	}
	return nil
}

// EventKind says what a webhook event means for Flowgate.
type EventKind string

// Event kinds.
const (
	// EventMessage is a user message (text, suggestion response, file,
	// location): Inbound is set.
	EventMessage EventKind = "message"
	// EventDelivery is a DELIVERED or READ event: Delivery is set.
	EventDelivery EventKind = "delivery"
	// EventIgnored is an event Flowgate has no use for (IS_TYPING, ...).
	EventIgnored EventKind = "ignored"
)

// ParsedEvent is an RBM webhook event reduced to what Flowgate needs.
type ParsedEvent struct {
	Kind EventKind
	// DedupID is stable across RBM's redeliveries: "rcs-msg-<messageId>" for
	// user messages, "rcs-evt-<eventId>" for user events.
	DedupID string
	AgentID string
	// From is the user's phone number (E.164).
	From     string
	Inbound  *events.Inbound
	Delivery *events.Delivery
}

type userPayload struct {
	SenderPhoneNumber  string `json:"senderPhoneNumber"`
	MessageID          string `json:"messageId"`
	EventID            string `json:"eventId"`
	EventType          string `json:"eventType"`
	SendTime           string `json:"sendTime"`
	AgentID            string `json:"agentId"`
	Text               string `json:"text"`
	SuggestionResponse *struct {
		PostbackData string `json:"postbackData"`
		Text         string `json:"text"`
		Type         string `json:"type"`
	} `json:"suggestionResponse"`
	UserFile *struct {
		Payload struct {
			MimeType string `json:"mimeType"`
			FileURI  string `json:"fileUri"`
			FileName string `json:"fileName"`
		} `json:"payload"`
	} `json:"userFile"`
	Location *struct {
		Latitude  float64 `json:"latitude"`
		Longitude float64 `json:"longitude"`
	} `json:"location"`
}

func malformed(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrMalformedEnvelope, fmt.Sprintf(format, args...))
}

// ParseEnvelope decodes a Pub/Sub push envelope {"message":{"data":
// "<base64 JSON>"}} for the Flowgate bot botID. decoded is the JSON the
// signature covers: verify it with VerifySignature before trusting parsed.
func ParseEnvelope(botID string, body []byte) (decoded []byte, parsed ParsedEvent, err error) {
	var env struct {
		Message *struct {
			Data string `json:"data"`
		} `json:"message"`
	}
	if err := json.Unmarshal(body, &env); err != nil {
		return nil, ParsedEvent{}, malformed("%v", err)
	}
	if env.Message == nil || env.Message.Data == "" {
		return nil, ParsedEvent{}, malformed("no message.data")
	}
	decoded, err = base64.StdEncoding.DecodeString(env.Message.Data)
	if err != nil {
		if decoded, err = base64.URLEncoding.DecodeString(env.Message.Data); err != nil {
			return nil, ParsedEvent{}, malformed("message.data is not base64")
		}
	}
	var p userPayload
	if err := json.Unmarshal(decoded, &p); err != nil {
		return nil, ParsedEvent{}, malformed("message.data: %v", err)
	}
	if p.SenderPhoneNumber == "" {
		return nil, ParsedEvent{}, malformed("no senderPhoneNumber")
	}
	at, _ := time.Parse(time.RFC3339Nano, p.SendTime)
	ev := ParsedEvent{Kind: EventIgnored, AgentID: p.AgentID, From: p.SenderPhoneNumber}

	if p.EventType != "" {
		if p.EventID == "" {
			return nil, ParsedEvent{}, malformed("user event without eventId")
		}
		ev.DedupID = "rcs-evt-" + p.EventID
		var status string
		switch p.EventType {
		case "DELIVERED":
			status = events.StatusDelivered
		case "READ":
			status = events.StatusRead
		default: // IS_TYPING and events Flowgate does not track
			return decoded, ev, nil
		}
		if p.MessageID == "" {
			return nil, ParsedEvent{}, malformed("%s event without messageId", p.EventType)
		}
		ev.Kind = EventDelivery
		ev.Delivery = &events.Delivery{
			BotID:             botID,
			Channel:           events.ChannelRCS,
			ProviderMessageID: p.MessageID,
			Status:            status,
			At:                at,
		}
		return decoded, ev, nil
	}

	if p.MessageID == "" {
		return nil, ParsedEvent{}, malformed("user message without messageId")
	}
	ev.DedupID = "rcs-msg-" + p.MessageID
	in := &events.Inbound{
		BotID:             botID,
		Channel:           events.ChannelRCS,
		From:              p.SenderPhoneNumber,
		ProviderMessageID: p.MessageID,
		ReceivedAt:        at,
	}
	switch {
	case p.SuggestionResponse != nil:
		in.ButtonID = p.SuggestionResponse.PostbackData
		in.Text = p.SuggestionResponse.Text
	case p.Text != "":
		in.Text = p.Text
	case p.UserFile != nil, p.Location != nil:
		// A file or a location: Inbound has no field for either, but the
		// reply still counts (a flow waiting for an answer moves on).
	default:
		return decoded, ev, nil
	}
	ev.Kind = EventMessage
	ev.Inbound = in
	return decoded, ev, nil
}
