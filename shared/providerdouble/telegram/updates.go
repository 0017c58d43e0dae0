package telegramdouble

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strconv"
	"time"
)

// The types below mirror the Bot API objects (field names and JSON tags from
// the Bot API reference) so that tests feed the code under test the payloads
// Telegram really sends. They are written from the contract, not shared with
// the channel package, so a mistake there cannot hide behind the same
// mistake here.

// User is a Telegram user or bot.
type User struct {
	ID           int64  `json:"id"`
	IsBot        bool   `json:"is_bot"`
	FirstName    string `json:"first_name"`
	LastName     string `json:"last_name,omitempty"`
	Username     string `json:"username,omitempty"`
	LanguageCode string `json:"language_code,omitempty"`
}

// Chat is a conversation.
type Chat struct {
	ID        int64  `json:"id"`
	Type      string `json:"type"`
	Title     string `json:"title,omitempty"`
	Username  string `json:"username,omitempty"`
	FirstName string `json:"first_name,omitempty"`
	LastName  string `json:"last_name,omitempty"`
}

// Message is a message in a chat.
type Message struct {
	MessageID int64  `json:"message_id"`
	From      *User  `json:"from,omitempty"`
	Chat      Chat   `json:"chat"`
	Date      int64  `json:"date"`
	Text      string `json:"text,omitempty"`
	Caption   string `json:"caption,omitempty"`
}

// CallbackQuery is an inline keyboard button press.
type CallbackQuery struct {
	ID           string   `json:"id"`
	From         User     `json:"from"`
	Message      *Message `json:"message,omitempty"`
	ChatInstance string   `json:"chat_instance"`
	Data         string   `json:"data,omitempty"`
}

// ChatMember is a member's status in a chat ("member", "kicked", ...).
type ChatMember struct {
	Status string `json:"status"`
	User   User   `json:"user"`
	// UntilDate is set for kicked members (0 = forever).
	UntilDate *int64 `json:"until_date,omitempty"`
}

// ChatMemberUpdated reports a change of a chat member's status; as
// my_chat_member it tells a bot that a user blocked or unblocked it.
type ChatMemberUpdated struct {
	Chat          Chat       `json:"chat"`
	From          User       `json:"from"`
	Date          int64      `json:"date"`
	OldChatMember ChatMember `json:"old_chat_member"`
	NewChatMember ChatMember `json:"new_chat_member"`
}

// Update is one incoming update.
type Update struct {
	UpdateID      int64              `json:"update_id"`
	Message       *Message           `json:"message,omitempty"`
	EditedMessage *Message           `json:"edited_message,omitempty"`
	CallbackQuery *CallbackQuery     `json:"callback_query,omitempty"`
	MyChatMember  *ChatMemberUpdated `json:"my_chat_member,omitempty"`
}

// JSON is the update as Telegram serialises it.
func (u Update) JSON() []byte {
	b, err := json.Marshal(u)
	if err != nil {
		panic(err) // plain structs: cannot fail
	}
	return b
}

func privateChat(u User) Chat {
	return Chat{ID: u.ID, Type: "private", FirstName: u.FirstName, LastName: u.LastName, Username: u.Username}
}

// TextUpdate is a user's text message in their private chat with the bot
// (chat id = user id, as on Telegram).
func TextUpdate(updateID int64, from User, messageID int64, text string) Update {
	f := from
	return Update{UpdateID: updateID, Message: &Message{
		MessageID: messageID, From: &f, Chat: privateChat(from), Date: time.Now().Unix(), Text: text,
	}}
}

// CallbackUpdate is a press of the inline button whose callback_data is data,
// on the bot's message botMessageID in the user's private chat.
func CallbackUpdate(updateID int64, from User, botMessageID int64, data string) Update {
	bot := User{ID: 1, IsBot: true, FirstName: "Flowgate", Username: "flowgate_bot"}
	return Update{UpdateID: updateID, CallbackQuery: &CallbackQuery{
		ID:           strconv.FormatInt(from.ID, 10) + "-" + strconv.FormatInt(updateID, 10),
		From:         from,
		Message:      &Message{MessageID: botMessageID, From: &bot, Chat: privateChat(from), Date: time.Now().Unix(), Text: "choose"},
		ChatInstance: "-" + strconv.FormatInt(from.ID, 10),
		Data:         data,
	}}
}

// ChatMemberUpdate is a my_chat_member update in the user's private chat:
// the bot's status goes from oldStatus to newStatus.
func ChatMemberUpdate(updateID int64, from User, botID int64, oldStatus, newStatus string) Update {
	bot := User{ID: botID, IsBot: true, FirstName: "Flowgate", Username: "flowgate_bot"}
	m := &ChatMemberUpdated{
		Chat: privateChat(from), From: from, Date: time.Now().Unix(),
		OldChatMember: ChatMember{Status: oldStatus, User: bot},
		NewChatMember: ChatMember{Status: newStatus, User: bot},
	}
	if newStatus == "kicked" {
		zero := int64(0)
		m.NewChatMember.UntilDate = &zero
	}
	return Update{UpdateID: updateID, MyChatMember: m}
}

// BlockedUpdate is what a bot receives when the user blocks it.
func BlockedUpdate(updateID int64, from User, botID int64) Update {
	return ChatMemberUpdate(updateID, from, botID, "member", "kicked")
}

// UnblockedUpdate is what a bot receives when the user unblocks it.
func UnblockedUpdate(updateID int64, from User, botID int64) Update {
	return ChatMemberUpdate(updateID, from, botID, "kicked", "member")
}

// SecretHeader is the header carrying setWebhook's secret_token.
const SecretHeader = "X-Telegram-Bot-Api-Secret-Token"

// WebhookRequest builds the POST Telegram makes to a webhook: the update as
// JSON and, when secret is non-empty, the secret header.
func WebhookRequest(url, secret string, body []byte) (*http.Request, error) {
	r, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	r.Header.Set("Content-Type", "application/json")
	if secret != "" {
		r.Header.Set(SecretHeader, secret)
	}
	return r, nil
}
