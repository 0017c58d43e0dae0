package ingress

import (
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/google/uuid"

	"github.com/flowgate/flowgate/shared/events"
	"github.com/flowgate/flowgate/shared/provider"
)

// sandboxMessage is a message the bot sent on the sandbox channel.
type sandboxMessage struct {
	Seq     int64          `json:"seq"`
	To      string         `json:"to"`
	RunID   string         `json:"run_id"`
	Type    string         `json:"type"`
	Text    string         `json:"text,omitempty"`
	Content events.Content `json:"content"`
	SentAt  time.Time      `json:"sent_at"`
}

// listSandbox shows what the bot sent on the sandbox channel, oldest first.
func (s *server) listSandbox(c *gin.Context) {
	after := int64(0)
	if v := c.Query("after"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			abort(c, fieldError(http.StatusUnprocessableEntity, "invalid", "after", "after must be a sequence number"))
			return
		}
		after = n
	}
	limit := 1000
	if v := c.Query("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 10000 {
			abort(c, fieldError(http.StatusUnprocessableEntity, "invalid", "limit", "limit must be 1..10000"))
			return
		}
		limit = n
	}
	ms, err := s.store.ListSandbox(c.Request.Context(), botOf(c).ID, c.Query("to"), after, limit)
	if err != nil {
		abort(c, storeError(err, "sandbox messages"))
		return
	}
	out := make([]sandboxMessage, 0, len(ms))
	for _, m := range ms {
		var ct events.Content
		_ = json.Unmarshal(m.Content, &ct)
		text := ct.Text
		if text == "" {
			text = ct.Caption
		}
		out = append(out, sandboxMessage{Seq: m.Seq, To: m.To, RunID: m.RunID, Type: ct.Type, Text: text, Content: ct, SentAt: m.CreatedAt})
	}
	c.JSON(http.StatusOK, gin.H{"messages": out})
}

type sandboxReply struct {
	From     string `json:"from"`
	Text     string `json:"text"`
	ButtonID string `json:"button_id"`
	Name     string `json:"name"`
}

// postSandbox simulates a user writing to the bot on the sandbox channel.
func (s *server) postSandbox(c *gin.Context) {
	body, aerr := s.readBody(c, "application/json")
	if aerr != nil {
		abort(c, aerr)
		return
	}
	var req sandboxReply
	if err := strictJSON(body, &req); err != nil {
		abort(c, newError(http.StatusBadRequest, "invalid_json", err.Error()))
		return
	}
	if req.From == "" || len(req.From) > 128 {
		abort(c, fieldError(http.StatusUnprocessableEntity, "required", "from", "from is required (at most 128 characters)"))
		return
	}
	if req.Text == "" && req.ButtonID == "" {
		abort(c, fieldError(http.StatusUnprocessableEntity, "required", "text", "text or button_id is required"))
		return
	}
	if len(req.Text) > 4096 {
		abort(c, fieldError(http.StatusUnprocessableEntity, "invalid", "text", "text is longer than 4096 characters"))
		return
	}
	bot := botOf(c)
	in := events.Inbound{
		BotID: bot.ID, Channel: events.ChannelSandbox, From: req.From, Name: req.Name,
		ProviderMessageID: "sandbox-" + uuid.NewString(), Text: req.Text, ButtonID: req.ButtonID,
		ReceivedAt: time.Now().UTC(),
	}
	// Published as a provider's webhook publishes its replies.
	if err := provider.PublishInbound(c.Request.Context(), s.bus, in); err != nil {
		aerr := errBusUnavailable
		if !errors.Is(err, provider.ErrBus) {
			aerr = newError(http.StatusUnprocessableEntity, "invalid", err.Error())
		}
		abort(c, aerr)
		return
	}
	c.JSON(http.StatusAccepted, gin.H{"message_id": in.ProviderMessageID, "status": "accepted"})
}
