package whatsappdouble

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// Notification is a webhook body in Meta's shape:
// {"object":"whatsapp_business_account","entry":[{"id","changes":[{"field":"messages","value":{...}}]}]}.
type Notification struct {
	Object string  `json:"object"`
	Entry  []Entry `json:"entry"`
}

// Entry is one WhatsApp Business Account's changes.
type Entry struct {
	ID      string   `json:"id"`
	Changes []Change `json:"changes"`
}

// Change is one "messages" change.
type Change struct {
	Field string `json:"field"`
	Value Value  `json:"value"`
}

// Value carries the messages and statuses of one business number.
type Value struct {
	MessagingProduct string    `json:"messaging_product"`
	Metadata         Metadata  `json:"metadata"`
	Contacts         []Contact `json:"contacts,omitempty"`
	Messages         []Message `json:"messages,omitempty"`
	Statuses         []Status  `json:"statuses,omitempty"`
}

// Metadata names the business number.
type Metadata struct {
	DisplayPhoneNumber string `json:"display_phone_number"`
	PhoneNumberID      string `json:"phone_number_id"`
}

// Contact is the profile of a user who wrote.
type Contact struct {
	Profile struct {
		Name string `json:"name"`
	} `json:"profile"`
	WaID string `json:"wa_id"`
}

// Message is an inbound user message.
type Message struct {
	From        string       `json:"from"`
	ID          string       `json:"id"`
	Timestamp   string       `json:"timestamp"`
	Type        string       `json:"type"`
	Text        *Text        `json:"text,omitempty"`
	Button      *TemplateBtn `json:"button,omitempty"`
	Interactive *Interactive `json:"interactive,omitempty"`
}

// Text is the text of a text message.
type Text struct {
	Body string `json:"body"`
}

// TemplateBtn is a press on a template's quick-reply button.
type TemplateBtn struct {
	Payload string `json:"payload"`
	Text    string `json:"text"`
}

// Interactive is an answer to an interactive message.
type Interactive struct {
	Type        string    `json:"type"`
	ButtonReply *Reply    `json:"button_reply,omitempty"`
	ListReply   *Reply    `json:"list_reply,omitempty"`
	NFMReply    *NFMReply `json:"nfm_reply,omitempty"`
}

// Reply is a button_reply or list_reply.
type Reply struct {
	ID          string `json:"id"`
	Title       string `json:"title"`
	Description string `json:"description,omitempty"`
}

// NFMReply is a completed WhatsApp Flow: ResponseJSON is a JSON string
// holding flow_token and the answers.
type NFMReply struct {
	Name         string `json:"name"`
	Body         string `json:"body"`
	ResponseJSON string `json:"response_json"`
}

// Status is a status change of a message the business sent.
type Status struct {
	ID          string        `json:"id"`
	Status      string        `json:"status"`
	Timestamp   string        `json:"timestamp"`
	RecipientID string        `json:"recipient_id"`
	Errors      []StatusError `json:"errors,omitempty"`
}

// StatusError explains a failed status.
type StatusError struct {
	Code      int    `json:"code"`
	Title     string `json:"title"`
	Message   string `json:"message,omitempty"`
	ErrorData struct {
		Details string `json:"details"`
	} `json:"error_data"`
}

// NewNotification starts a webhook body for business number phoneNumberID.
func NewNotification(phoneNumberID string) *Notification {
	return &Notification{
		Object: "whatsapp_business_account",
		Entry: []Entry{{
			ID: "WABA-" + phoneNumberID,
			Changes: []Change{{
				Field: "messages",
				Value: Value{
					MessagingProduct: "whatsapp",
					Metadata:         Metadata{DisplayPhoneNumber: "15550000000", PhoneNumberID: phoneNumberID},
				},
			}},
		}},
	}
}

func (n *Notification) value() *Value { return &n.Entry[0].Changes[0].Value }

// AddMessage appends m from a user called profileName (listed in contacts once).
func (n *Notification) AddMessage(profileName string, m Message) *Notification {
	v := n.value()
	known := false
	for _, c := range v.Contacts {
		known = known || c.WaID == m.From
	}
	if !known {
		c := Contact{WaID: m.From}
		c.Profile.Name = profileName
		v.Contacts = append(v.Contacts, c)
	}
	v.Messages = append(v.Messages, m)
	return n
}

// AddStatus appends s.
func (n *Notification) AddStatus(s Status) *Notification {
	n.value().Statuses = append(n.value().Statuses, s)
	return n
}

// MessageID returns a new inbound message id in Meta's "wamid." form.
func MessageID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return "wamid.HBgL" + hex.EncodeToString(b)
}

func ts(t time.Time) string { return strconv.FormatInt(t.Unix(), 10) }

// TextMessage is a text message from a user. Like every builder it writes
// from as Meta's wa_id: digits only, a leading "+" is dropped.
func TextMessage(from, id, body string, at time.Time) Message {
	return Message{From: normalize(from), ID: id, Timestamp: ts(at), Type: "text", Text: &Text{Body: body}}
}

// ButtonReply is a press on a reply button of an interactive message.
func ButtonReply(from, id, buttonID, title string, at time.Time) Message {
	return Message{From: normalize(from), ID: id, Timestamp: ts(at), Type: "interactive",
		Interactive: &Interactive{Type: "button_reply", ButtonReply: &Reply{ID: buttonID, Title: title}}}
}

// ListReply is a choice of a row of an interactive list.
func ListReply(from, id, rowID, title, description string, at time.Time) Message {
	return Message{From: normalize(from), ID: id, Timestamp: ts(at), Type: "interactive",
		Interactive: &Interactive{Type: "list_reply", ListReply: &Reply{ID: rowID, Title: title, Description: description}}}
}

// TemplateButtonReply is a press on a template's quick-reply button.
func TemplateButtonReply(from, id, payload, text string, at time.Time) Message {
	return Message{From: normalize(from), ID: id, Timestamp: ts(at), Type: "button", Button: &TemplateBtn{Payload: payload, Text: text}}
}

// FlowReply is the completion of a WhatsApp Flow (nfm_reply): response_json
// is a JSON string of answers plus flow_token.
func FlowReply(from, id, flowToken string, answers map[string]any, at time.Time) Message {
	resp := map[string]any{}
	for k, v := range answers {
		resp[k] = v
	}
	resp["flow_token"] = flowToken
	raw, _ := json.Marshal(resp)
	return Message{From: normalize(from), ID: id, Timestamp: ts(at), Type: "interactive",
		Interactive: &Interactive{Type: "nfm_reply", NFMReply: &NFMReply{Name: "flow", Body: "Sent", ResponseJSON: string(raw)}}}
}

// StatusUpdate is a status change (sent, delivered, read, failed) of wamid.
func StatusUpdate(wamid, status, recipient string, at time.Time, errs ...StatusError) Status {
	return Status{ID: wamid, Status: status, Timestamp: ts(at), RecipientID: normalize(recipient), Errors: errs}
}

// FailedStatus is a "failed" status with one error of code.
func FailedStatus(wamid, recipient string, at time.Time, code int, title, details string) Status {
	e := StatusError{Code: code, Title: title, Message: title}
	e.ErrorData.Details = details
	return StatusUpdate(wamid, "failed", recipient, at, e)
}

// SignedWebhook marshals payload (a []byte is used as is) and returns it
// with its X-Hub-Signature-256 value "sha256=<hex HMAC-SHA256(body, appSecret)>".
// It panics when payload cannot be marshalled, which is a bug in the test.
func SignedWebhook(appSecret string, payload any) (body []byte, signatureHeader string) {
	switch p := payload.(type) {
	case []byte:
		body = p
	case json.RawMessage:
		body = p
	default:
		var err error
		if body, err = json.Marshal(payload); err != nil {
			panic(fmt.Sprintf("whatsappdouble: webhook payload: %v", err))
		}
	}
	mac := hmac.New(sha256.New, []byte(appSecret))
	mac.Write(body)
	return body, "sha256=" + hex.EncodeToString(mac.Sum(nil))
}

// ChallengeQuery is the query of Meta's subscription check:
// hub.mode=subscribe&hub.verify_token=verifyToken&hub.challenge=challenge.
func ChallengeQuery(verifyToken, challenge string) url.Values {
	return url.Values{"hub.mode": {"subscribe"}, "hub.verify_token": {verifyToken}, "hub.challenge": {challenge}}
}

// PostWebhook POSTs payload, signed with appSecret, to url as Meta would.
func PostWebhook(ctx context.Context, client *http.Client, url, appSecret string, payload any) (*http.Response, error) {
	body, sig := SignedWebhook(appSecret, payload)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Hub-Signature-256", sig)
	if client == nil {
		client = http.DefaultClient
	}
	return client.Do(req)
}
