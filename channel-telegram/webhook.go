package telegram

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/flowgate/flowgate/shared/events"
)

// SecretHeader carries the webhook secret_token on every update.
const SecretHeader = "X-Telegram-Bot-Api-Secret-Token"

// Webhook errors.
var (
	// ErrNoSecretConfigured: the bot has no webhook secret, so no update can
	// be authenticated; every update is refused.
	ErrNoSecretConfigured = errors.New("telegram: no webhook secret configured")
	// ErrMissingSecret: the request has no secret header.
	ErrMissingSecret = errors.New("telegram: missing " + SecretHeader)
	// ErrWrongSecret: the header does not match the configured secret.
	ErrWrongSecret = errors.New("telegram: wrong " + SecretHeader)
	// ErrMalformedUpdate: the body is not a Telegram Update.
	ErrMalformedUpdate = errors.New("telegram: malformed update")
)

// VerifySecret checks the X-Telegram-Bot-Api-Secret-Token header against the
// bot's webhook secret in constant time.
func VerifySecret(header, secret string) error {
	if secret == "" {
		return ErrNoSecretConfigured
	}
	if header == "" {
		return ErrMissingSecret
	}
	// Comparing digests keeps the time independent of the length too.
	h, s := sha256.Sum256([]byte(header)), sha256.Sum256([]byte(secret))
	if subtle.ConstantTimeCompare(h[:], s[:]) != 1 {
		return ErrWrongSecret
	}
	return nil
}

// UpdateKind says what an update means for Flowgate.
type UpdateKind string

// Update kinds.
const (
	// UpdateMessage is a user's message: Inbound is set.
	UpdateMessage UpdateKind = "message"
	// UpdateCallback is an inline button press: Inbound (with ButtonID) and
	// CallbackQueryID are set; answer it with AnswerCallbackQuery.
	UpdateCallback UpdateKind = "callback_query"
	// UpdateBlocked: the user blocked the bot (or the bot left the chat); the
	// contact ChatID is unreachable.
	UpdateBlocked UpdateKind = "blocked"
	// UpdateUnblocked: the user unblocked or restarted the bot.
	UpdateUnblocked UpdateKind = "unblocked"
	// UpdateIgnored is an update Flowgate has no use for.
	UpdateIgnored UpdateKind = "ignored"
)

// ParsedUpdate is a Telegram Update reduced to what Flowgate needs.
type ParsedUpdate struct {
	UpdateID int64
	Kind     UpdateKind
	// DedupID is "tg-update-<update_id>": Telegram resends an update until
	// it gets a 2xx, always with the same update_id.
	DedupID string
	// ChatID is the chat concerned, as a decimal string (the contact's
	// external id); empty for ignored updates.
	ChatID string
	// Inbound is set for messages and button presses.
	Inbound *events.Inbound
	// CallbackQueryID is the query to answer for a button press.
	CallbackQueryID string
	// At is the update's date (zero when it carries none).
	At time.Time
}

type tgUser struct {
	ID        int64  `json:"id"`
	IsBot     bool   `json:"is_bot"`
	FirstName string `json:"first_name"`
	LastName  string `json:"last_name"`
	Username  string `json:"username"`
}

type tgChat struct {
	ID        int64  `json:"id"`
	Type      string `json:"type"`
	FirstName string `json:"first_name"`
	LastName  string `json:"last_name"`
	Username  string `json:"username"`
	Title     string `json:"title"`
}

type tgMessage struct {
	MessageID int64   `json:"message_id"`
	From      *tgUser `json:"from"`
	Chat      *tgChat `json:"chat"`
	Date      int64   `json:"date"`
	Text      string  `json:"text"`
	Caption   string  `json:"caption"`
}

type tgCallbackQuery struct {
	ID      string     `json:"id"`
	From    *tgUser    `json:"from"`
	Message *tgMessage `json:"message"`
	Data    string     `json:"data"`
}

type tgChatMember struct {
	Status string `json:"status"`
	User   tgUser `json:"user"`
}

type tgChatMemberUpdated struct {
	Chat          *tgChat      `json:"chat"`
	From          *tgUser      `json:"from"`
	Date          int64        `json:"date"`
	OldChatMember tgChatMember `json:"old_chat_member"`
	NewChatMember tgChatMember `json:"new_chat_member"`
}

type tgUpdate struct {
	UpdateID      *int64               `json:"update_id"`
	Message       *tgMessage           `json:"message"`
	CallbackQuery *tgCallbackQuery     `json:"callback_query"`
	MyChatMember  *tgChatMemberUpdated `json:"my_chat_member"`
}

func malformed(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrMalformedUpdate, fmt.Sprintf(format, args...))
}

// ParseUpdate decodes one webhook (or getUpdates) Update for the Flowgate
// bot botID. Update kinds Flowgate does not use parse as UpdateIgnored; a
// body that is not an Update is an error wrapping ErrMalformedUpdate.
func ParseUpdate(botID string, body []byte) (ParsedUpdate, error) {
	var u tgUpdate
	if err := json.Unmarshal(body, &u); err != nil {
		return ParsedUpdate{}, malformed("%v", err)
	}
	if u.UpdateID == nil {
		return ParsedUpdate{}, malformed("no update_id")
	}
	p := ParsedUpdate{
		UpdateID: *u.UpdateID,
		Kind:     UpdateIgnored,
		DedupID:  "tg-update-" + strconv.FormatInt(*u.UpdateID, 10),
	}
	switch {
	case u.Message != nil:
		m := u.Message
		if m.Chat == nil || m.Chat.ID == 0 {
			return ParsedUpdate{}, malformed("message without chat")
		}
		p.Kind = UpdateMessage
		p.ChatID = strconv.FormatInt(m.Chat.ID, 10)
		p.At = unixTime(m.Date)
		text := m.Text
		if text == "" {
			text = m.Caption
		}
		p.Inbound = &events.Inbound{
			BotID:             botID,
			Channel:           events.ChannelTelegram,
			From:              p.ChatID,
			Name:              displayName(m.From, m.Chat),
			ProviderMessageID: p.DedupID,
			Text:              text,
			ReceivedAt:        p.At,
		}
	case u.CallbackQuery != nil:
		q := u.CallbackQuery
		if q.ID == "" || q.From == nil || q.From.ID == 0 {
			return ParsedUpdate{}, malformed("callback_query without id or from")
		}
		chatID := q.From.ID
		var chat *tgChat
		if q.Message != nil && q.Message.Chat != nil && q.Message.Chat.ID != 0 {
			chat = q.Message.Chat
			chatID = chat.ID
			p.At = unixTime(q.Message.Date)
		}
		p.Kind = UpdateCallback
		p.ChatID = strconv.FormatInt(chatID, 10)
		p.CallbackQueryID = q.ID
		p.Inbound = &events.Inbound{
			BotID:             botID,
			Channel:           events.ChannelTelegram,
			From:              p.ChatID,
			Name:              displayName(q.From, chat),
			ProviderMessageID: p.DedupID,
			ButtonID:          q.Data,
			ReceivedAt:        p.At,
		}
	case u.MyChatMember != nil:
		m := u.MyChatMember
		if m.Chat == nil || m.Chat.ID == 0 {
			return ParsedUpdate{}, malformed("my_chat_member without chat")
		}
		p.ChatID = strconv.FormatInt(m.Chat.ID, 10)
		p.At = unixTime(m.Date)
		switch m.NewChatMember.Status {
		case "kicked", "left":
			p.Kind = UpdateBlocked
		case "member", "administrator":
			p.Kind = UpdateUnblocked
		}
	}
	return p, nil
}

func unixTime(sec int64) time.Time {
	if sec <= 0 {
		return time.Time{}
	}
	return time.Unix(sec, 0).UTC()
}

func displayName(u *tgUser, c *tgChat) string {
	if u != nil {
		if n := strings.TrimSpace(u.FirstName + " " + u.LastName); n != "" {
			return n
		}
		if u.Username != "" {
			return u.Username
		}
	}
	if c != nil {
		if n := strings.TrimSpace(c.FirstName + " " + c.LastName); n != "" {
			return n
		}
		if c.Title != "" {
			return c.Title
		}
		return c.Username
	}
	return ""
}
