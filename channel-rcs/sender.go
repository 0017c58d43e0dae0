package rcs

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/flowgate/flowgate/shared/channel"
	"github.com/flowgate/flowgate/shared/events"
	"github.com/flowgate/flowgate/shared/store"
)

// RBM limits checked before any HTTP call.
const (
	MaxTextLength         = 3072
	MaxSuggestions        = 11 // per message
	MaxCardSuggestions    = 4  // per rich card
	MaxSuggestionText     = 25
	MaxPostbackData       = 2048
	MaxCardTitle          = 200
	MaxCardDescription    = 2000
	maxResponse           = 1 << 20
	defaultRetryAfterWait = time.Second
)

// messageNamespace makes MessageID's UUIDs Flowgate's own.
var messageNamespace = uuid.NewSHA1(uuid.NameSpaceURL, []byte("https://flowgate.dev/rcs/agentMessages"))

// MessageID is the RBM messageId of a Flowgate message: a UUID derived from
// the message's id (run + step), so that a retried send carries the same
// messageId and RBM ignores the repeat.
func MessageID(flowgateMessageID string) string {
	return uuid.NewSHA1(messageNamespace, []byte(flowgateMessageID)).String()
}

// Sender sends Flowgate messages as RBM agentMessages. It implements
// channel.Sender and is safe for concurrent use; it neither paces nor
// retries, except that a 401 is retried once with a fresh token.
type Sender struct {
	opts   options
	tokens *tokens
}

var _ channel.Sender = (*Sender)(nil)

// NewSender returns a Sender configured by opts.
func NewSender(opts ...Option) (*Sender, error) {
	o := options{apiBase: DefaultAPIBase, requestTimeout: DefaultRequestTimeout, retryAfter: defaultRetryAfterWait}
	for _, opt := range opts {
		if err := opt(&o); err != nil {
			return nil, err
		}
	}
	if o.client == nil {
		o.client = defaultHTTPClient()
	}
	if o.logger == nil {
		o.logger = slog.Default()
	}
	tc := *o.client
	if tc.Timeout == 0 {
		tc.Timeout = o.requestTimeout
	}
	return &Sender{opts: o, tokens: &tokens{client: &tc, tokenURL: o.tokenURL, byAgent: map[string]*agentTokens{}}}, nil
}

// Channel returns events.ChannelRCS.
func (s *Sender) Channel() string { return events.ChannelRCS }

// Account returns the RBM agent id: the pacing key.
func (s *Sender) Account(bot store.Bot) (string, error) {
	acct := bot.Channels.RCS
	if acct == nil || acct.AgentID == "" {
		return "", &channel.PermanentError{Code: "no_account", Reason: "bot " + bot.ID + " has no RCS agent"}
	}
	return acct.AgentID, nil
}

// Send delivers msg to the phone number out.To (E.164). The result's
// ProviderMessageID is the messageId, which RBM's delivery events quote.
func (s *Sender) Send(ctx context.Context, bot store.Bot, out events.Outbound, msg events.OutboundMessage) (channel.Result, error) {
	acct := bot.Channels.RCS
	if acct == nil || acct.AgentID == "" {
		return channel.Result{}, &channel.PermanentError{Code: "no_account", Reason: "bot " + bot.ID + " has no RCS agent"}
	}
	if !isE164(out.To) {
		return channel.Result{}, &channel.PermanentError{Code: "invalid_recipient", Reason: fmt.Sprintf("%q is not an E.164 phone number", out.To)}
	}
	content, err := s.linkMedia(bot.ID, msg.Content)
	if err != nil {
		return channel.Result{}, err
	}
	body, err := buildMessage(content)
	if err != nil {
		return channel.Result{}, err
	}
	if s.opts.ttl > 0 {
		body.TTL = strconv.FormatInt(int64(s.opts.ttl/time.Second), 10) + "s"
	}
	payload, err := json.Marshal(body)
	if err != nil {
		return channel.Result{}, &channel.PermanentError{Code: "invalid_message", Reason: "cannot encode message", Err: err}
	}
	id := MessageID(msg.ID)
	q := url.Values{"messageId": {id}, "agentId": {acct.AgentID}}
	endpoint := s.base(*acct) + "/v1/phones/" + url.PathEscape(out.To) + "/agentMessages?" + q.Encode()
	if err := s.do(ctx, *acct, http.MethodPost, endpoint, payload, nil); err != nil {
		// ALREADY_EXISTS can only mean an earlier attempt with this
		// messageId was accepted: that is the success we are after.
		var ae *APIError
		if errors.As(err, &ae) && ae.Status == http.StatusConflict {
			return channel.Result{ProviderMessageID: id}, nil
		}
		return channel.Result{}, err
	}
	return channel.Result{ProviderMessageID: id}, nil
}

// Capabilities asks RBM which RCS features phone supports. A number that is
// not RCS-capable fails with a *channel.PermanentError, code "404",
// Unreachable.
func (s *Sender) Capabilities(ctx context.Context, acct store.RCSAccount, phone string) ([]string, error) {
	if !isE164(phone) {
		return nil, &channel.PermanentError{Code: "invalid_recipient", Reason: fmt.Sprintf("%q is not an E.164 phone number", phone)}
	}
	q := url.Values{"requestId": {uuid.NewString()}, "agentId": {acct.AgentID}}
	endpoint := s.base(acct) + "/v1/phones/" + url.PathEscape(phone) + "/capabilities?" + q.Encode()
	var res struct {
		Features []string `json:"features"`
	}
	if err := s.do(ctx, acct, http.MethodGet, endpoint, nil, &res); err != nil {
		return nil, err
	}
	return res.Features, nil
}

func (s *Sender) base(acct store.RCSAccount) string {
	if acct.APIBase != "" {
		return strings.TrimRight(acct.APIBase, "/")
	}
	return s.opts.apiBase
}

// do performs an authenticated call; a 401 drops the cached token and is
// retried once (the messageId makes the repeat harmless).
func (s *Sender) do(ctx context.Context, acct store.RCSAccount, method, endpoint string, payload []byte, out any) error {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, s.opts.requestTimeout)
		defer cancel()
	}
	for attempt := 0; ; attempt++ {
		tok, src, err := s.tokens.token(acct)
		if err != nil {
			return err
		}
		var body io.Reader
		if payload != nil {
			body = bytes.NewReader(payload)
		}
		req, err := http.NewRequestWithContext(ctx, method, endpoint, body)
		if err != nil {
			return &channel.PermanentError{Code: "invalid_api_base", Reason: "cannot build request", Err: err}
		}
		req.Header.Set("Authorization", "Bearer "+tok)
		if payload != nil {
			req.Header.Set("Content-Type", "application/json")
		}
		resp, err := s.opts.client.Do(req)
		if err != nil {
			return fmt.Errorf("rcs: agent %s: %w", acct.AgentID, err)
		}
		raw, rerr := io.ReadAll(io.LimitReader(resp.Body, maxResponse))
		resp.Body.Close()
		if resp.StatusCode == http.StatusUnauthorized && attempt == 0 {
			s.tokens.forget(acct, src)
			continue
		}
		if resp.StatusCode >= 200 && resp.StatusCode < 300 {
			if rerr != nil {
				return fmt.Errorf("rcs: agent %s: reading answer: %w", acct.AgentID, rerr)
			}
			if out != nil {
				if err := json.Unmarshal(raw, out); err != nil {
					return fmt.Errorf("rcs: agent %s: undecodable answer: %w", acct.AgentID, err)
				}
			}
			return nil
		}
		e := parseAPIError(resp, raw)
		s.opts.logger.DebugContext(ctx, "rcs API error", "agent_id", acct.AgentID, "status", e.Status, "google_status", e.GoogleStatus, "message", e.Message)
		return classify(e, s.opts.retryAfter)
	}
}

// isE164 accepts "+" followed by 8 to 15 digits, the first not 0.
func isE164(p string) bool {
	if len(p) < 9 || len(p) > 16 || p[0] != '+' || p[1] == '0' {
		return false
	}
	for _, c := range p[1:] {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// The agentMessage JSON shapes.
type agentMessage struct {
	ContentMessage contentMessage `json:"contentMessage"`
	TTL            string         `json:"ttl,omitempty"`
}

type contentMessage struct {
	Text        string       `json:"text,omitempty"`
	RichCard    *richCard    `json:"richCard,omitempty"`
	Suggestions []suggestion `json:"suggestions,omitempty"`
}

type suggestion struct {
	Reply  *suggestedReply  `json:"reply,omitempty"`
	Action *suggestedAction `json:"action,omitempty"`
}

type suggestedReply struct {
	Text         string `json:"text"`
	PostbackData string `json:"postbackData"`
}

type suggestedAction struct {
	Text          string         `json:"text"`
	PostbackData  string         `json:"postbackData"`
	OpenURLAction *openURLAction `json:"openUrlAction,omitempty"`
}

type openURLAction struct {
	URL string `json:"url"`
}

type richCard struct {
	StandaloneCard *standaloneCard `json:"standaloneCard"`
}

type standaloneCard struct {
	CardOrientation string      `json:"cardOrientation"`
	CardContent     cardContent `json:"cardContent"`
}

type cardContent struct {
	Title       string       `json:"title,omitempty"`
	Description string       `json:"description,omitempty"`
	Media       *media       `json:"media,omitempty"`
	Suggestions []suggestion `json:"suggestions,omitempty"`
}

type media struct {
	Height      string      `json:"height"`
	ContentInfo contentInfo `json:"contentInfo"`
}

type contentInfo struct {
	FileURL string `json:"fileUrl"`
}

func invalid(format string, args ...any) error {
	return &channel.PermanentError{Code: "invalid_message", Reason: fmt.Sprintf(format, args...)}
}

// buildMessage maps a channel-neutral message to an agentMessage, refusing
// what RBM would refuse.
func buildMessage(c events.Content) (agentMessage, error) {
	switch c.Type {
	case events.ContentText, events.ContentButtons:
		if err := checkText(c.Text); err != nil {
			return agentMessage{}, err
		}
		if c.Type == events.ContentButtons && len(c.Buttons) == 0 {
			return agentMessage{}, invalid("a buttons message needs at least one button")
		}
		sugg, err := buttonSuggestions(c.Buttons, MaxSuggestions)
		if err != nil {
			return agentMessage{}, err
		}
		return agentMessage{ContentMessage: contentMessage{Text: c.Text, Suggestions: sugg}}, nil
	case events.ContentList:
		if err := checkText(c.Text); err != nil {
			return agentMessage{}, err
		}
		if c.List == nil {
			return agentMessage{}, invalid("list message without list")
		}
		var btns []events.Button
		for _, sec := range c.List.Sections {
			for _, r := range sec.Rows {
				btns = append(btns, events.Button{ID: r.ID, Title: r.Title})
			}
		}
		if len(btns) == 0 {
			return agentMessage{}, invalid("list without rows")
		}
		sugg, err := buttonSuggestions(btns, MaxSuggestions)
		if err != nil {
			return agentMessage{}, err
		}
		return agentMessage{ContentMessage: contentMessage{Text: c.Text, Suggestions: sugg}}, nil
	case events.ContentImage, events.ContentVideo, events.ContentDocument:
		u, err := url.Parse(c.MediaURL)
		if c.MediaURL == "" || err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return agentMessage{}, invalid("media_url %q is not an http(s) URL", c.MediaURL)
		}
		// A document's file name is the card title; the caption describes it.
		title := c.Filename
		if n := len([]rune(title)); n > MaxCardTitle {
			return agentMessage{}, invalid("card title is %d characters, RBM allows %d", n, MaxCardTitle)
		}
		if n := len([]rune(c.Caption)); n > MaxCardDescription {
			return agentMessage{}, invalid("caption is %d characters, RBM allows %d", n, MaxCardDescription)
		}
		sugg, err := buttonSuggestions(c.Buttons, MaxCardSuggestions)
		if err != nil {
			return agentMessage{}, err
		}
		card := &standaloneCard{CardOrientation: "VERTICAL", CardContent: cardContent{
			Title:       title,
			Description: c.Caption,
			Media:       &media{Height: "MEDIUM", ContentInfo: contentInfo{FileURL: c.MediaURL}},
			Suggestions: sugg,
		}}
		return agentMessage{ContentMessage: contentMessage{RichCard: &richCard{StandaloneCard: card}}}, nil
	case events.ContentTemplate, events.ContentWhatsAppFlow:
		return agentMessage{}, &channel.PermanentError{Code: "unsupported_content", Reason: c.Type + " messages exist only on WhatsApp"}
	default:
		return agentMessage{}, &channel.PermanentError{Code: "unsupported_content", Reason: fmt.Sprintf("unknown content type %q", c.Type)}
	}
}

func checkText(text string) error {
	if strings.TrimSpace(text) == "" {
		return invalid("message text is empty")
	}
	if n := len([]rune(text)); n > MaxTextLength {
		return invalid("message text is %d characters, RBM allows %d", n, MaxTextLength)
	}
	return nil
}

// buttonSuggestions turns buttons into suggested replies (postbackData =
// button id) and URL buttons into openUrl actions.
func buttonSuggestions(buttons []events.Button, limit int) ([]suggestion, error) {
	if len(buttons) > limit {
		return nil, invalid("%d buttons, RBM allows %d here", len(buttons), limit)
	}
	out := make([]suggestion, 0, len(buttons))
	for _, b := range buttons {
		if strings.TrimSpace(b.Title) == "" {
			return nil, invalid("button without a title")
		}
		if n := len([]rune(b.Title)); n > MaxSuggestionText {
			return nil, invalid("button title %q is %d characters, RBM allows %d", b.Title, n, MaxSuggestionText)
		}
		if b.URL != "" {
			u, err := url.Parse(b.URL)
			if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
				return nil, invalid("button URL %q is not an http(s) URL", b.URL)
			}
			postback := b.ID
			if postback == "" {
				postback = "open_url"
			}
			if len(postback) > MaxPostbackData {
				return nil, invalid("button id is %d bytes, RBM allows %d", len(postback), MaxPostbackData)
			}
			out = append(out, suggestion{Action: &suggestedAction{Text: b.Title, PostbackData: postback, OpenURLAction: &openURLAction{URL: b.URL}}})
			continue
		}
		if b.ID == "" || len(b.ID) > MaxPostbackData {
			return nil, invalid("button id must be 1-%d bytes", MaxPostbackData)
		}
		out = append(out, suggestion{Reply: &suggestedReply{Text: b.Title, PostbackData: b.ID}})
	}
	if len(out) == 0 {
		return nil, nil
	}
	return out, nil
}
