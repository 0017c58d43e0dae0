package telegram

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strconv"
	"strings"

	"github.com/flowgate/flowgate/shared/channel"
	"github.com/flowgate/flowgate/shared/events"
	"github.com/flowgate/flowgate/shared/store"
)

// Bot API limits checked before any HTTP call, so that a message Telegram
// would refuse fails permanently without spending a request.
const (
	MaxTextLength      = 4096 // sendMessage text, in UTF-16 code units
	MaxCaptionLength   = 1024 // media caption, in UTF-16 code units
	MaxCallbackData    = 64   // inline button callback_data, in bytes
	MaxKeyboardButtons = 100
)

// Sender sends Flowgate messages through the Bot API. It implements
// channel.Sender and is safe for concurrent use; it neither paces nor
// retries (the channel runner does both).
type Sender struct {
	opts options
}

var _ channel.Sender = (*Sender)(nil)

// NewSender returns a Sender configured by opts.
func NewSender(opts ...Option) (*Sender, error) {
	o := options{apiBase: DefaultAPIBase, requestTimeout: DefaultRequestTimeout}
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
	return &Sender{opts: o}, nil
}

// Channel returns events.ChannelTelegram.
func (s *Sender) Channel() string { return events.ChannelTelegram }

// Account returns the bot id (the digits before ':' of the token): the
// pacing key. The token itself is a secret and never used as a key.
func (s *Sender) Account(bot store.Bot) (string, error) {
	acct := bot.Channels.Telegram
	if acct == nil || acct.BotToken == "" {
		return "", &channel.PermanentError{Code: "no_account", Reason: "bot " + bot.ID + " has no Telegram account"}
	}
	id, err := BotID(acct.BotToken)
	if err != nil {
		return "", &channel.PermanentError{Code: "invalid_token", Reason: err.Error()}
	}
	return id, nil
}

// Send delivers msg to the chat out.To (a chat id, or @channelusername).
// The result's ProviderMessageID is "<chat_id>:<message_id>".
func (s *Sender) Send(ctx context.Context, bot store.Bot, out events.Outbound, msg events.OutboundMessage) (channel.Result, error) {
	acct := bot.Channels.Telegram
	if acct == nil || acct.BotToken == "" {
		return channel.Result{}, &channel.PermanentError{Code: "no_account", Reason: "bot " + bot.ID + " has no Telegram account"}
	}
	chatID, err := chatIDParam(out.To)
	if err != nil {
		return channel.Result{}, err
	}
	tgBotID, err := BotID(acct.BotToken)
	if err != nil {
		return channel.Result{}, &channel.PermanentError{Code: "invalid_token", Reason: err.Error()}
	}
	ref, upload, err := s.resolveMedia(ctx, bot, tgBotID, msg.Content)
	if err != nil {
		return channel.Result{}, err
	}
	method, req, err := buildRequest(chatID, msg.Content, s.opts.paidBroadcast, ref)
	if err != nil {
		return channel.Result{}, err
	}
	var res sentMessage
	if upload != nil {
		if err := s.callUpload(ctx, *acct, method, req, upload, &res); err != nil {
			return channel.Result{}, err
		}
		if fid := sentFileID(res); fid != "" {
			// A failed write only costs another upload next time.
			_ = s.opts.media.PutMediaUpload(ctx, store.MediaUpload{BotID: bot.ID, MediaID: upload.ID,
				Channel: events.ChannelTelegram, Account: tgBotID, ProviderID: fid})
		}
	} else if err := s.call(ctx, *acct, method, req, &res); err != nil {
		return channel.Result{}, err
	}
	chat := out.To
	if res.Chat.ID != 0 {
		chat = strconv.FormatInt(res.Chat.ID, 10)
	}
	return channel.Result{ProviderMessageID: chat + ":" + strconv.FormatInt(res.MessageID, 10)}, nil
}

// AnswerCallbackQuery acknowledges a button press so that the user's client
// stops showing a progress indicator. Telegram expects it within seconds.
func (s *Sender) AnswerCallbackQuery(ctx context.Context, acct store.TelegramAccount, callbackQueryID string) error {
	if callbackQueryID == "" {
		return &channel.PermanentError{Code: "invalid_request", Reason: "empty callback_query_id"}
	}
	return s.call(ctx, acct, "answerCallbackQuery", map[string]string{"callback_query_id": callbackQueryID}, nil)
}

// WebhookUpdates are the update types Flowgate asks Telegram for.
var WebhookUpdates = []string{"message", "callback_query", "my_chat_member"}

// SetWebhook points the bot's updates at webhookURL; Telegram then sends
// secret in X-Telegram-Bot-Api-Secret-Token with every update.
func (s *Sender) SetWebhook(ctx context.Context, acct store.TelegramAccount, webhookURL, secret string) error {
	u, err := url.Parse(webhookURL)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return &channel.PermanentError{Code: "invalid_request", Reason: "webhook URL must be an absolute URL"}
	}
	if err := validSecretToken(secret); err != nil {
		return &channel.PermanentError{Code: "invalid_request", Reason: err.Error()}
	}
	req := map[string]any{
		"url":             webhookURL,
		"secret_token":    secret,
		"allowed_updates": WebhookUpdates,
	}
	return s.call(ctx, acct, "setWebhook", req, nil)
}

// DeleteWebhook removes the bot's webhook (needed before getUpdates works).
func (s *Sender) DeleteWebhook(ctx context.Context, acct store.TelegramAccount) error {
	return s.call(ctx, acct, "deleteWebhook", map[string]any{"drop_pending_updates": false}, nil)
}

// validSecretToken applies setWebhook's rule: 1–256 of A-Z a-z 0-9 _ -.
func validSecretToken(secret string) error {
	if secret == "" || len(secret) > 256 {
		return errors.New("webhook secret must be 1-256 characters")
	}
	for _, c := range secret {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return errors.New("webhook secret may only contain A-Z, a-z, 0-9, _ and -")
		}
	}
	return nil
}

// chatIDParam turns a contact's external id into chat_id: an int64 (users,
// groups) or an @username (public channels).
func chatIDParam(to string) (any, error) {
	if id, err := strconv.ParseInt(to, 10, 64); err == nil && id != 0 {
		return id, nil
	}
	if len(to) > 1 && to[0] == '@' {
		return to, nil
	}
	return nil, &channel.PermanentError{Code: "invalid_recipient", Reason: fmt.Sprintf("%q is not a Telegram chat id", to)}
}

type inlineButton struct {
	Text         string `json:"text"`
	CallbackData string `json:"callback_data,omitempty"`
	URL          string `json:"url,omitempty"`
}

type inlineKeyboard struct {
	InlineKeyboard [][]inlineButton `json:"inline_keyboard"`
}

type sendMessageRequest struct {
	ChatID             any             `json:"chat_id"`
	Text               string          `json:"text"`
	ReplyMarkup        *inlineKeyboard `json:"reply_markup,omitempty"`
	AllowPaidBroadcast bool            `json:"allow_paid_broadcast,omitempty"`
}

type sendPhotoRequest struct {
	ChatID             any             `json:"chat_id"`
	Photo              string          `json:"photo"`
	Caption            string          `json:"caption,omitempty"`
	ReplyMarkup        *inlineKeyboard `json:"reply_markup,omitempty"`
	AllowPaidBroadcast bool            `json:"allow_paid_broadcast,omitempty"`
}

type sendDocumentRequest struct {
	ChatID             any             `json:"chat_id"`
	Document           string          `json:"document"`
	Caption            string          `json:"caption,omitempty"`
	ReplyMarkup        *inlineKeyboard `json:"reply_markup,omitempty"`
	AllowPaidBroadcast bool            `json:"allow_paid_broadcast,omitempty"`
}

type sendVideoRequest struct {
	ChatID             any             `json:"chat_id"`
	Video              string          `json:"video"`
	Caption            string          `json:"caption,omitempty"`
	ReplyMarkup        *inlineKeyboard `json:"reply_markup,omitempty"`
	AllowPaidBroadcast bool            `json:"allow_paid_broadcast,omitempty"`
}

func invalid(format string, args ...any) error {
	return &channel.PermanentError{Code: "invalid_message", Reason: fmt.Sprintf(format, args...)}
}

// buildRequest maps a channel-neutral message to a Bot API method and its
// JSON body. It refuses what Telegram would refuse. ref, when set, is the
// file_id (or upload placeholder) of the uploaded file c names.
func buildRequest(chatID any, c events.Content, paid bool, ref string) (string, any, error) {
	switch c.Type {
	case events.ContentText:
		if err := checkText(c.Text); err != nil {
			return "", nil, err
		}
		kb, err := buttonKeyboard(c.Buttons)
		if err != nil {
			return "", nil, err
		}
		return "sendMessage", sendMessageRequest{ChatID: chatID, Text: c.Text, ReplyMarkup: kb, AllowPaidBroadcast: paid}, nil
	case events.ContentButtons:
		if err := checkText(c.Text); err != nil {
			return "", nil, err
		}
		if len(c.Buttons) == 0 {
			return "", nil, invalid("a buttons message needs at least one button")
		}
		kb, err := buttonKeyboard(c.Buttons)
		if err != nil {
			return "", nil, err
		}
		return "sendMessage", sendMessageRequest{ChatID: chatID, Text: c.Text, ReplyMarkup: kb, AllowPaidBroadcast: paid}, nil
	case events.ContentList:
		text := c.Text
		if strings.TrimSpace(text) == "" && c.List != nil {
			text = c.List.Button
		}
		if err := checkText(text); err != nil {
			return "", nil, err
		}
		kb, err := listKeyboard(c.List)
		if err != nil {
			return "", nil, err
		}
		return "sendMessage", sendMessageRequest{ChatID: chatID, Text: text, ReplyMarkup: kb, AllowPaidBroadcast: paid}, nil
	case events.ContentImage, events.ContentDocument, events.ContentVideo:
		if ref != "" {
			c.MediaURL = ref
		} else if err := checkMediaURL(c.MediaURL); err != nil {
			return "", nil, err
		}
		if n := utf16Len(c.Caption); n > MaxCaptionLength {
			return "", nil, invalid("caption is %d characters, Telegram allows %d", n, MaxCaptionLength)
		}
		kb, err := buttonKeyboard(c.Buttons)
		if err != nil {
			return "", nil, err
		}
		switch c.Type {
		case events.ContentImage:
			return "sendPhoto", sendPhotoRequest{ChatID: chatID, Photo: c.MediaURL, Caption: c.Caption, ReplyMarkup: kb, AllowPaidBroadcast: paid}, nil
		case events.ContentDocument:
			return "sendDocument", sendDocumentRequest{ChatID: chatID, Document: c.MediaURL, Caption: c.Caption, ReplyMarkup: kb, AllowPaidBroadcast: paid}, nil
		default:
			return "sendVideo", sendVideoRequest{ChatID: chatID, Video: c.MediaURL, Caption: c.Caption, ReplyMarkup: kb, AllowPaidBroadcast: paid}, nil
		}
	case events.ContentTemplate, events.ContentWhatsAppFlow:
		return "", nil, &channel.PermanentError{Code: "unsupported_content", Reason: c.Type + " messages exist only on WhatsApp"}
	default:
		return "", nil, &channel.PermanentError{Code: "unsupported_content", Reason: fmt.Sprintf("unknown content type %q", c.Type)}
	}
}

func checkText(text string) error {
	if strings.TrimSpace(text) == "" {
		return invalid("message text is empty")
	}
	if n := utf16Len(text); n > MaxTextLength {
		return invalid("message text is %d characters, Telegram allows %d", n, MaxTextLength)
	}
	return nil
}

func checkMediaURL(raw string) error {
	if raw == "" {
		return invalid("media message without media_url")
	}
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return invalid("media_url %q is not an http(s) URL", raw)
	}
	return nil
}

// buttonKeyboard puts each button on its own row: titles stay readable on
// narrow screens.
func buttonKeyboard(buttons []events.Button) (*inlineKeyboard, error) {
	if len(buttons) == 0 {
		return nil, nil
	}
	if len(buttons) > MaxKeyboardButtons {
		return nil, invalid("%d buttons, Telegram allows %d", len(buttons), MaxKeyboardButtons)
	}
	kb := &inlineKeyboard{InlineKeyboard: make([][]inlineButton, 0, len(buttons))}
	for _, b := range buttons {
		btn, err := inlineButtonFor(b.Title, b.ID, b.URL)
		if err != nil {
			return nil, err
		}
		kb.InlineKeyboard = append(kb.InlineKeyboard, []inlineButton{btn})
	}
	return kb, nil
}

// listKeyboard renders a list as one row per list row; section titles have
// no place in an inline keyboard and are dropped.
func listKeyboard(l *events.List) (*inlineKeyboard, error) {
	if l == nil {
		return nil, invalid("list message without list")
	}
	kb := &inlineKeyboard{}
	for _, sec := range l.Sections {
		for _, r := range sec.Rows {
			btn, err := inlineButtonFor(r.Title, r.ID, "")
			if err != nil {
				return nil, err
			}
			kb.InlineKeyboard = append(kb.InlineKeyboard, []inlineButton{btn})
		}
	}
	if len(kb.InlineKeyboard) == 0 {
		return nil, invalid("list without rows")
	}
	if len(kb.InlineKeyboard) > MaxKeyboardButtons {
		return nil, invalid("%d list rows, Telegram allows %d", len(kb.InlineKeyboard), MaxKeyboardButtons)
	}
	return kb, nil
}

func inlineButtonFor(title, id, link string) (inlineButton, error) {
	if strings.TrimSpace(title) == "" {
		return inlineButton{}, invalid("button without a title")
	}
	if link != "" {
		u, err := url.Parse(link)
		if err != nil || !(u.Scheme == "http" || u.Scheme == "https" || u.Scheme == "tg") {
			return inlineButton{}, invalid("button URL %q is not http(s) or tg", link)
		}
		return inlineButton{Text: title, URL: link}, nil
	}
	if len(id) < 1 || len(id) > MaxCallbackData {
		return inlineButton{}, invalid("button id %q must be 1-%d bytes (callback_data)", id, MaxCallbackData)
	}
	return inlineButton{Text: title, CallbackData: id}, nil
}

// utf16Len counts UTF-16 code units: Telegram measures text lengths in them,
// so an emoji outside the BMP counts twice.
func utf16Len(s string) int {
	n := 0
	for _, r := range s {
		if r >= 0x10000 {
			n += 2
		} else {
			n++
		}
	}
	return n
}
