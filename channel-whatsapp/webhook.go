package whatsapp

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/flowgate/flowgate/shared/events"
	"github.com/flowgate/flowgate/shared/phone"
)

// SignatureHeader is the header Meta signs webhook bodies in.
const SignatureHeader = "X-Hub-Signature-256"

// Errors of VerifySignature, distinct so that the ingress can count them.
var (
	ErrSignatureMissing   = errors.New("whatsapp: webhook signature missing")
	ErrSignatureMalformed = errors.New("whatsapp: webhook signature malformed")
	ErrSignatureMismatch  = errors.New("whatsapp: webhook signature mismatch")
	// ErrNoAppSecret: the bot has no app secret, so nothing can be verified.
	ErrNoAppSecret = errors.New("whatsapp: no app secret configured")
)

// VerifySignature checks header, the X-Hub-Signature-256 value
// "sha256=<hex HMAC-SHA256(body, appSecret)>", against the raw body in
// constant time.
func VerifySignature(body []byte, header, appSecret string) error {
	if appSecret == "" {
		return ErrNoAppSecret
	}
	if header == "" {
		return ErrSignatureMissing
	}
	hexSig, ok := strings.CutPrefix(header, "sha256=")
	if !ok || len(hexSig) != 2*sha256.Size {
		return ErrSignatureMalformed
	}
	got, err := hex.DecodeString(hexSig)
	if err != nil {
		return ErrSignatureMalformed
	}
	mac := hmac.New(sha256.New, []byte(appSecret))
	mac.Write(body)
	if !hmac.Equal(got, mac.Sum(nil)) {
		return ErrSignatureMismatch
	}
	return nil
}

// Sign returns the X-Hub-Signature-256 value Meta would send for body.
func Sign(body []byte, appSecret string) string {
	mac := hmac.New(sha256.New, []byte(appSecret))
	mac.Write(body)
	return "sha256=" + hex.EncodeToString(mac.Sum(nil))
}

// VerifyChallenge answers Meta's subscription check
// GET ?hub.mode=subscribe&hub.verify_token=T&hub.challenge=C: it returns C
// and true when T equals verifyToken (the ingress answers 200 with C), and
// false otherwise (the ingress answers 403). An empty verifyToken never matches.
func VerifyChallenge(query url.Values, verifyToken string) (challenge string, ok bool) {
	if verifyToken == "" || query.Get("hub.mode") != "subscribe" {
		return "", false
	}
	challenge = query.Get("hub.challenge")
	if challenge == "" {
		return "", false
	}
	if subtle.ConstantTimeCompare([]byte(query.Get("hub.verify_token")), []byte(verifyToken)) != 1 {
		return "", false
	}
	return challenge, true
}

// ParsedWebhook is what one webhook POST reported.
type ParsedWebhook struct {
	// Inbound are the users' messages, in the order Meta listed them.
	Inbound []events.Inbound
	// Deliveries are status changes of messages the bot sent.
	Deliveries []events.Delivery
	// PhoneNumberIDs are the business numbers the changes are for
	// (metadata.phone_number_id), so that the ingress can check they
	// belong to the bot.
	PhoneNumberIDs []string
}

// ErrNotWhatsApp: the body is JSON but not a WhatsApp Business Account notification.
var ErrNotWhatsApp = errors.New("whatsapp: webhook object is not whatsapp_business_account")

// ParseWebhook turns a verified webhook body into events for bot botID.
// Changes other than "messages", system messages, reactions and unknown
// statuses are skipped. Duplicates (Meta retries for days) are not removed
// here: the events carry the provider message id to deduplicate on.
//
// Inbound.From is the sender's wa_id in E.164 form ("+" added). For an nfm_reply (a
// completed WhatsApp Flow) FlowToken is response_json's flow_token and
// FlowResponse the whole decoded response_json, flow_token included.
// Button and list replies set ButtonID to the id and Text to the title.
// A body that is not JSON, not a whatsapp_business_account notification,
// or carries a malformed timestamp or response_json is an error.
func ParseWebhook(botID string, body []byte) (ParsedWebhook, error) {
	var n notification
	if err := json.Unmarshal(body, &n); err != nil {
		return ParsedWebhook{}, fmt.Errorf("whatsapp: malformed webhook: %w", err)
	}
	if n.Object != "whatsapp_business_account" {
		return ParsedWebhook{}, ErrNotWhatsApp
	}
	var p ParsedWebhook
	for _, e := range n.Entry {
		for _, c := range e.Changes {
			if c.Field != "messages" {
				continue
			}
			v := c.Value
			if id := v.Metadata.PhoneNumberID; id != "" && !contains(p.PhoneNumberIDs, id) {
				p.PhoneNumberIDs = append(p.PhoneNumberIDs, id)
			}
			for _, m := range v.Messages {
				in, ok, err := inbound(botID, m, v.Contacts)
				if err != nil {
					return ParsedWebhook{}, err
				}
				if ok {
					p.Inbound = append(p.Inbound, in)
				}
			}
			for _, s := range v.Statuses {
				if d, ok := delivery(botID, s); ok {
					p.Deliveries = append(p.Deliveries, d)
				}
			}
		}
	}
	return p, nil
}

func contains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

func inbound(botID string, m whMessage, contacts []whContact) (events.Inbound, bool, error) {
	switch {
	case m.From == "" || m.ID == "":
		return events.Inbound{}, false, nil // nothing to answer or deduplicate on
	case m.Type == "system" || m.Type == "reaction":
		return events.Inbound{}, false, nil
	}
	in := events.Inbound{
		BotID:             botID,
		Channel:           events.ChannelWhatsApp,
		From:              e164(m.From),
		ProviderMessageID: m.ID,
		ReceivedAt:        m.Timestamp.Time,
	}
	for _, c := range contacts {
		if c.WaID == m.From {
			in.Name = c.Profile.Name
			break
		}
	}
	switch m.Type {
	case "text":
		if m.Text != nil {
			in.Text = m.Text.Body
		}
	case "button": // a template's quick-reply button
		if m.Button != nil {
			in.ButtonID, in.Text = m.Button.Payload, m.Button.Text
		}
	case "interactive":
		if m.Interactive == nil {
			break
		}
		switch {
		case m.Interactive.ButtonReply != nil:
			in.ButtonID, in.Text = m.Interactive.ButtonReply.ID, m.Interactive.ButtonReply.Title
		case m.Interactive.ListReply != nil:
			in.ButtonID, in.Text = m.Interactive.ListReply.ID, m.Interactive.ListReply.Title
		case m.Interactive.NFMReply != nil:
			r := m.Interactive.NFMReply
			in.Text = r.Body
			if r.ResponseJSON != "" {
				var resp map[string]any
				if err := json.Unmarshal([]byte(r.ResponseJSON), &resp); err != nil {
					return events.Inbound{}, false, fmt.Errorf("whatsapp: malformed webhook: nfm_reply response_json of %s: %w", m.ID, err)
				}
				if tok, ok := resp["flow_token"].(string); ok {
					in.FlowToken = tok
				}
				if resp == nil {
					resp = map[string]any{}
				}
				in.FlowResponse = resp
			}
		}
	default: // media, location...: the caption is the text, if any
		for _, md := range []*whMedia{m.Image, m.Video, m.Document} {
			if md != nil && md.Caption != "" {
				in.Text = md.Caption
			}
		}
	}
	return in, true, nil
}

// e164 turns Meta's wa_id (country code and number, no "+") into the E.164
// form Flowgate stores contacts in. A wa_id the phone package refuses
// (Meta knows better than the metadata) still gets its "+".
func e164(waID string) string {
	if n, err := phone.Normalize(waID, ""); err == nil {
		return n
	}
	if strings.HasPrefix(waID, "+") {
		return waID
	}
	return "+" + waID
}

func delivery(botID string, s whStatus) (events.Delivery, bool) {
	var status string
	switch s.Status {
	case "sent":
		status = events.StatusSent
	case "delivered":
		status = events.StatusDelivered
	case "read":
		status = events.StatusRead
	case "failed":
		status = events.StatusFailed
	default:
		return events.Delivery{}, false
	}
	if s.ID == "" {
		return events.Delivery{}, false
	}
	d := events.Delivery{
		BotID:             botID,
		Channel:           events.ChannelWhatsApp,
		ProviderMessageID: s.ID,
		Status:            status,
		At:                s.Timestamp.Time,
	}
	if len(s.Errors) > 0 {
		e := s.Errors[0]
		d.Code = strconv.Itoa(e.Code)
		d.Reason = e.Title
		if d.Reason == "" {
			d.Reason = e.Message
		}
		if e.ErrorData.Details != "" {
			d.Reason += ": " + e.ErrorData.Details
		}
		d.Unreachable = e.Code == ErrCodeUndeliverable
	}
	return d, true
}

// The webhook body (providers.md).

type notification struct {
	Object string `json:"object"`
	Entry  []struct {
		ID      string `json:"id"`
		Changes []struct {
			Field string  `json:"field"`
			Value whValue `json:"value"`
		} `json:"changes"`
	} `json:"entry"`
}

type whValue struct {
	MessagingProduct string `json:"messaging_product"`
	Metadata         struct {
		DisplayPhoneNumber string `json:"display_phone_number"`
		PhoneNumberID      string `json:"phone_number_id"`
	} `json:"metadata"`
	Contacts []whContact `json:"contacts"`
	Messages []whMessage `json:"messages"`
	Statuses []whStatus  `json:"statuses"`
}

type whContact struct {
	Profile struct {
		Name string `json:"name"`
	} `json:"profile"`
	WaID string `json:"wa_id"`
}

type whMessage struct {
	From      string   `json:"from"`
	ID        string   `json:"id"`
	Timestamp unixTime `json:"timestamp"`
	Type      string   `json:"type"`
	Text      *struct {
		Body string `json:"body"`
	} `json:"text"`
	Button *struct {
		Payload string `json:"payload"`
		Text    string `json:"text"`
	} `json:"button"`
	Interactive *struct {
		Type        string `json:"type"`
		ButtonReply *struct {
			ID    string `json:"id"`
			Title string `json:"title"`
		} `json:"button_reply"`
		ListReply *struct {
			ID          string `json:"id"`
			Title       string `json:"title"`
			Description string `json:"description"`
		} `json:"list_reply"`
		NFMReply *struct {
			Name         string `json:"name"`
			Body         string `json:"body"`
			ResponseJSON string `json:"response_json"`
		} `json:"nfm_reply"`
	} `json:"interactive"`
	Image    *whMedia `json:"image"`
	Video    *whMedia `json:"video"`
	Document *whMedia `json:"document"`
}

type whMedia struct {
	ID      string `json:"id"`
	Caption string `json:"caption"`
}

type whStatus struct {
	ID          string   `json:"id"`
	Status      string   `json:"status"`
	Timestamp   unixTime `json:"timestamp"`
	RecipientID string   `json:"recipient_id"`
	Errors      []struct {
		Code      int    `json:"code"`
		Title     string `json:"title"`
		Message   string `json:"message"`
		ErrorData struct {
			Details string `json:"details"`
		} `json:"error_data"`
	} `json:"errors"`
}

// unixTime is Meta's timestamp: Unix seconds as a JSON string ("1700000000"),
// accepted as a number too.
type unixTime struct{ time.Time }

func (t *unixTime) UnmarshalJSON(b []byte) error {
	b = bytes.Trim(b, `"`)
	if len(b) == 0 || string(b) == "null" {
		return nil
	}
	sec, err := strconv.ParseInt(string(b), 10, 64)
	if err != nil {
		return fmt.Errorf("timestamp %q: %w", b, err)
	}
	t.Time = time.Unix(sec, 0).UTC()
	return nil
}
