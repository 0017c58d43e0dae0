// Package whatsapp owns Flowgate's side of the WhatsApp Business Cloud API:
// the Sender that translates channel-neutral messages into Cloud API sends
// and classifies Meta's errors for the channel runner, the 24-hour
// customer-service window rule, and the pure webhook functions (signature,
// verification challenge, parsing) behind its provider value (provider.go),
// which the ingress and the worker reach through shared/provider.
//
// The contract followed is the WhatsApp section of providers.md.
package whatsapp

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/flowgate/flowgate/shared/channel"
	"github.com/flowgate/flowgate/shared/events"
	"github.com/flowgate/flowgate/shared/store"
)

// Window is the customer-service window: free-form messages may only be
// sent this long after the user last wrote.
const Window = 24 * time.Hour

// maxResponse bounds how much of a Cloud API answer is read.
const maxResponse = 1 << 20

// Sender sends messages through the WhatsApp Cloud API. It implements
// channel.Sender and is safe for concurrent use. It neither paces nor
// retries: the channel runner does both, guided by the errors Send returns.
type Sender struct {
	opts options
	// clientTimeout: the client itself bounds every call by opts.timeout
	// (the default client), so Send needs no context deadline of its own.
	clientTimeout bool
	// bases caches cleanAPIBase per account api_base (a handful of
	// values; parsed once instead of per send).
	bases sync.Map // string -> apiBase
}

type apiBase struct {
	base string
	err  error
}

var _ channel.Sender = (*Sender)(nil)

// NewSender returns a Sender. Without options it calls DefaultAPIBase with a
// pooled HTTP client and the system clock.
func NewSender(opts ...Option) (*Sender, error) {
	o := options{
		apiBase: DefaultAPIBase,
		now:     time.Now,
		timeout: 30 * time.Second,
		waits:   DefaultWaits,

		mediaRenewAfter: DefaultMediaRenewAfter,
	}
	for _, opt := range opts {
		if err := opt(&o); err != nil {
			return nil, err
		}
	}
	own := o.client == nil
	if own {
		o.client = defaultClient(o.timeout)
	}
	return &Sender{opts: o, clientTimeout: own}, nil
}

// Channel returns events.ChannelWhatsApp.
func (s *Sender) Channel() string { return events.ChannelWhatsApp }

// Account returns the bot's phone-number id, the key the runner paces on.
func (s *Sender) Account(bot store.Bot) (string, error) {
	a, err := account(bot)
	if err != nil {
		return "", err
	}
	return a.PhoneNumberID, nil
}

func account(bot store.Bot) (*store.WhatsAppAccount, error) {
	a := bot.Channels.WhatsApp
	if a == nil || a.PhoneNumberID == "" {
		return nil, &channel.PermanentError{Code: CodeNoAccount, Reason: "bot " + bot.ID + " has no WhatsApp phone number id"}
	}
	if a.AccessToken == "" {
		return nil, &channel.PermanentError{Code: CodeNoAccount, Reason: "bot " + bot.ID + " has no WhatsApp access token"}
	}
	return a, nil
}

// DefaultTemplateLanguage is the language of templates that name none,
// unless the account sets TemplateLanguage.
const DefaultTemplateLanguage = "en"

// Send sends msg, one message of out, to out.To.
//
// A free-form message (anything but a template) to a contact whose last
// inbound message is unknown or older than 24 hours is never handed to
// Meta: Send fails with a *channel.PermanentError coded "outside_window".
// (The orchestrator opens the window of such a contact with the trigger's
// template initial message before the flow speaks.)
func (s *Sender) Send(ctx context.Context, bot store.Bot, out events.Outbound, msg events.OutboundMessage) (channel.Result, error) {
	a, err := account(bot)
	if err != nil {
		return channel.Result{}, err
	}
	content, err := s.windowContent(out, msg)
	if err != nil {
		return channel.Result{}, err
	}
	if t := content.Template; content.Type == events.ContentTemplate && t != nil && t.Language == "" {
		// Recrubo's initialMessage names a template by id with no language:
		// use the number's default.
		tc := *t
		tc.Language = a.TemplateLanguage
		if tc.Language == "" {
			tc.Language = DefaultTemplateLanguage
		}
		content.Template = &tc
	}
	base := s.opts.apiBase
	if a.APIBase != "" {
		if base, err = s.accountBase(a.APIBase); err != nil {
			return channel.Result{}, &channel.PermanentError{Code: CodeNoAccount, Reason: "bot " + bot.ID + " has an invalid WhatsApp api_base", Err: err}
		}
	}
	if _, ok := ctx.Deadline(); !ok && !s.clientTimeout {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, s.opts.timeout)
		defer cancel()
	}
	mediaID, err := s.mediaID(ctx, bot, a, base, content)
	if err != nil {
		return channel.Result{}, err
	}
	r, err := buildRequest(out.To, content, mediaID)
	if err != nil {
		return channel.Result{}, err
	}
	body, err := json.Marshal(r)
	if err != nil {
		return channel.Result{}, invalid("cannot encode the message: " + err.Error())
	}
	return s.post(ctx, base+"/"+url.PathEscape(a.PhoneNumberID)+"/messages", a.AccessToken, body)
}

// accountBase is cleanAPIBase(raw), cached.
func (s *Sender) accountBase(raw string) (string, error) {
	if v, ok := s.bases.Load(raw); ok {
		b := v.(apiBase)
		return b.base, b.err
	}
	b, err := cleanAPIBase(raw)
	s.bases.Store(raw, apiBase{base: b, err: err})
	return b, err
}

// windowContent applies the 24-hour window rule to msg.
func (s *Sender) windowContent(out events.Outbound, msg events.OutboundMessage) (events.Content, error) {
	c := msg.Content
	if c.Type == events.ContentTemplate || InWindow(out.LastInboundAt, s.opts.now()) {
		return c, nil
	}
	reason := "the contact has never written: free-form messages need an open 24-hour window"
	if out.LastInboundAt != nil {
		reason = fmt.Sprintf("the contact last wrote at %s, more than 24 hours ago", out.LastInboundAt.UTC().Format(time.RFC3339))
	}
	return c, &channel.PermanentError{Code: CodeOutsideWindow, Reason: reason}
}

// InWindow reports whether a contact who last wrote at lastInbound may get
// free-form messages at now.
func InWindow(lastInbound *time.Time, now time.Time) bool {
	return Provider.Capabilities.InWindow(lastInbound, now)
}

func (s *Sender) post(ctx context.Context, endpoint, token string, body []byte) (channel.Result, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, bytes.NewReader(body))
	if err != nil {
		return channel.Result{}, &channel.PermanentError{Code: CodeNoAccount, Reason: "cannot build the request", Err: err}
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := s.opts.client.Do(req)
	if err != nil {
		// Network errors and timeouts are retryable. The *url.Error names
		// the URL, never the Authorization header.
		return channel.Result{}, fmt.Errorf("whatsapp: send: %w", err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxResponse))
	if err != nil {
		if resp.StatusCode/100 == 2 {
			return channel.Result{}, &channel.PermanentError{Code: CodeInvalidResponse, Reason: "reading a 2xx answer failed; the message may have been accepted", Err: err}
		}
		return channel.Result{}, fmt.Errorf("whatsapp: read answer (http %d): %w", resp.StatusCode, err)
	}
	var r wResponse
	jsonErr := json.Unmarshal(raw, &r)
	if jsonErr == nil && r.Error != nil {
		return channel.Result{}, s.classify(&APIError{
			HTTPStatus: resp.StatusCode,
			Code:       r.Error.Code,
			Subcode:    r.Error.ErrorSubcode,
			Type:       r.Error.Type,
			Message:    r.Error.Message,
			Details:    r.Error.ErrorData.Details,
			FBTraceID:  r.Error.FBTraceID,
		})
	}
	if resp.StatusCode/100 == 2 {
		if jsonErr != nil || len(r.Messages) == 0 || r.Messages[0].ID == "" {
			if jsonErr == nil {
				jsonErr = errors.New("no messages[0].id")
			}
			return channel.Result{}, &channel.PermanentError{Code: CodeInvalidResponse, Reason: fmt.Sprintf("http %d without a message id; the message may have been accepted", resp.StatusCode), Err: jsonErr}
		}
		return channel.Result{ProviderMessageID: r.Messages[0].ID}, nil
	}
	// An error without Meta's error body (a proxy, a load balancer...).
	return channel.Result{}, s.classify(&APIError{HTTPStatus: resp.StatusCode, Message: http.StatusText(resp.StatusCode)})
}
