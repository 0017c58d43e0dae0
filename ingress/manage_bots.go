package ingress

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/flowgate/flowgate/shared/provider"
	"github.com/flowgate/flowgate/shared/store"
)

// listBots is GET /v1/bots (admin key).
func (s *server) listBots(c *gin.Context) {
	bots, err := s.store.ListBots(c.Request.Context())
	if err != nil {
		abort(c, storeError(err, "bots"))
		return
	}
	out := make([]botView, 0, len(bots))
	for _, b := range bots {
		out = append(out, viewBot(b))
	}
	c.JSON(http.StatusOK, gin.H{"bots": out})
}

// updateBotRequest is a PATCH of a bot. Channels are merged field by field:
// a channel object sets the fields it names and keeps the others (so a
// token is rotated by sending only the token); a channel set to null is
// removed.
type updateBotRequest struct {
	Name     *string                    `json:"name"`
	Channels map[string]json.RawMessage `json:"channels"`
}

// maxRatePerSecond bounds a configured send rate (WhatsApp's highest tier is 1,000/s).
const maxRatePerSecond = 10_000

// updateBot is PATCH /v1/bots/{bot}: name, channel credentials (write-only
// secrets), default channel and send rates.
func (s *server) updateBot(c *gin.Context) {
	body, aerr := s.readBody(c, "application/json", "application/merge-patch+json")
	if aerr != nil {
		abort(c, aerr)
		return
	}
	var req updateBotRequest
	if err := strictJSON(body, &req); err != nil {
		abort(c, newError(http.StatusBadRequest, "invalid_json", err.Error()))
		return
	}
	ctx := c.Request.Context()
	// Read the stored bot, not the cached one: a second PATCH within the
	// cache TTL must not undo the first.
	b, err := s.store.GetBot(ctx, botOf(c).ID)
	if err != nil {
		abort(c, storeError(err, "bot"))
		return
	}
	if req.Name != nil {
		if *req.Name == "" || len(*req.Name) > 256 {
			abort(c, fieldError(http.StatusUnprocessableEntity, "invalid", "name", "name must be 1 to 256 characters"))
			return
		}
		b.Name = *req.Name
	}
	ch := b.Channels
	for name, raw := range req.Channels {
		field := "channels." + name
		var err error
		switch name {
		case "default_channel":
			var d string
			if err = json.Unmarshal(raw, &d); err == nil {
				ch.DefaultChannel = d
			}
		default:
			p, ok := provider.Lookup(name)
			if !ok || p.MergeAccount == nil {
				abort(c, fieldError(http.StatusUnprocessableEntity, "invalid", field, "unknown channel "+clipText(name, 32)+" ("+strings.Join(mergeable(), ", ")+", default_channel)"))
				return
			}
			err = p.MergeAccount(&ch, raw)
		}
		if err != nil {
			abort(c, fieldError(http.StatusUnprocessableEntity, "invalid", field, err.Error()))
			return
		}
	}
	if aerr := checkChannels(ch); aerr != nil {
		abort(c, aerr)
		return
	}
	b.Channels = ch
	b.UpdatedAt = time.Now().UTC()
	if err := s.store.UpdateBot(ctx, b); err != nil {
		abort(c, storeError(err, "bot"))
		return
	}
	s.bots.forget(b.ID)
	c.JSON(http.StatusOK, gin.H{"bot": viewBot(b)})
}

// mergeable lists the channels whose accounts PATCH can change.
func mergeable() []string {
	var out []string
	for _, p := range provider.All() {
		if p.MergeAccount != nil {
			out = append(out, p.Name)
		}
	}
	return out
}

// checkChannels checks a bot's channel accounts after an update: what
// checkAccounts checks, and the default channel configured.
func checkChannels(ch store.ChannelAccounts) *apiError {
	if aerr := checkAccounts(ch); aerr != nil {
		return aerr
	}
	bad := func(field, msg string) *apiError {
		return fieldError(http.StatusUnprocessableEntity, "invalid", "channels."+field, msg)
	}
	if d := ch.DefaultChannel; d != "" {
		b := store.Bot{Channels: ch}
		if !provider.Known(d) {
			return bad("default_channel", "unknown channel "+clipText(d, 32))
		}
		if !channelConfigured(b, d) {
			return fieldError(http.StatusUnprocessableEntity, "channel_not_configured", "channels.default_channel",
				"channel "+d+" is not configured for this bot")
		}
	}
	return nil
}

// botDeleteChunk is how many records of each kind one deletion round takes.
const botDeleteChunk = 1000

// deleteBot is DELETE /v1/bots/{bot} (admin key): 202 at once; the bot's
// keys are revoked now (refused within MaxKeyCacheTTL everywhere), its data
// is deleted in the background, chunk by chunk. GET /v1/bots/{bot} reports
// "status":"deleting" until it is gone (then 404). An interrupted deletion
// resumes when an ingress starts.
func (s *server) deleteBot(c *gin.Context) {
	ctx := c.Request.Context()
	bot := botOf(c)
	if err := s.store.MarkBotDeleting(ctx, bot.ID, time.Now().UTC()); err != nil {
		abort(c, storeError(err, "bot"))
		return
	}
	keys, err := s.store.ListAPIKeys(ctx, bot.ID)
	if err != nil {
		abort(c, storeError(err, "api keys"))
		return
	}
	for _, k := range keys {
		err := s.store.RevokeAPIKey(ctx, bot.ID, k.ID, time.Now().UTC())
		if err != nil && !errors.Is(err, store.ErrNotFound) { // gone: a deletion under way took it
			abort(c, storeError(err, "api key"))
			return
		}
		s.keys.forget(k.Hash)
	}
	s.startBotDeletion(bot.ID)
	c.JSON(http.StatusAccepted, gin.H{"bot": gin.H{"id": bot.ID, "status": "deleting"}})
}

// startBotDeletion deletes the bot's data in the background unless this
// replica is at it already. Store errors are retried with a growing pause.
func (s *server) startBotDeletion(botID string) {
	if _, busy := s.deleting.LoadOrStore(botID, true); busy {
		return
	}
	bg := s.background()
	s.bgWG.Add(1)
	go func() {
		defer s.bgWG.Done()
		defer s.deleting.Delete(botID)
		pause := time.Second
		for bg.Err() == nil {
			ctx, cancel := context.WithTimeout(bg, time.Minute)
			done, err := s.store.DeleteBotData(ctx, botID, botDeleteChunk)
			cancel()
			if err != nil {
				if bg.Err() != nil {
					return // stopping: the next start resumes it
				}
				s.log.Warn("bot deletion: retrying", "bot", botID, "err", err, "in", pause)
				select {
				case <-bg.Done():
				case <-time.After(pause):
				}
				pause = min(2*pause, 30*time.Second)
				continue
			}
			if done {
				s.bots.forget(botID)
				s.log.Info("bot deleted with its data", "bot", botID)
				return
			}
		}
	}()
}

// resumeBotDeletions restarts the deletions an earlier process left.
func (s *server) resumeBotDeletions(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	ds, err := s.store.BotDeletions(ctx)
	if err != nil {
		s.log.Warn("bot deletions not resumed", "err", err)
		return
	}
	for _, d := range ds {
		s.startBotDeletion(d.BotID)
	}
}

// botStatus is "deleting" while a deletion runs, else "active".
func (s *server) botStatus(ctx context.Context, id string) string {
	ds, err := s.store.BotDeletions(ctx)
	if err != nil {
		return "unknown"
	}
	for _, d := range ds {
		if d.BotID == id {
			return "deleting"
		}
	}
	return "active"
}
