package ingress

import (
	"net/http"
	"strconv"

	"github.com/gin-gonic/gin"
)

// manageRoutes registers the management API: what an operator lists,
// changes and deletes without recreating a bot (API keys, bots, flows,
// events, triggers, contacts and messages).
func (s *server) manageRoutes(r *gin.Engine, bot *gin.RouterGroup) {
	r.GET("/v1/bots", s.requireAdmin, s.listBots)
	bot.PATCH("", s.updateBot)
	bot.DELETE("", s.requireAdminKey, s.deleteBot)

	bot.POST("/keys", s.createKey)
	bot.GET("/keys", s.listKeys)
	bot.DELETE("/keys/:key", s.revokeKey)

	bot.GET("/flows", s.listFlows)
	bot.DELETE("/flows/:flow", s.deleteFlow)
	bot.GET("/flows/:flow/versions/:version", s.getFlowVersion)
	bot.POST("/flows/:flow/versions/:version/activate", s.activateFlowVersion)
	bot.GET("/flows/:flow/definition", s.downloadFlow)

	bot.GET("/events", s.listEvents)
	bot.DELETE("/events/:event", s.deleteEvent)

	bot.GET("/triggers", s.listTriggers)

	bot.GET("/contacts", s.searchContacts)
	bot.GET("/contacts/:contact", s.getContact)
	bot.PATCH("/contacts/:contact", s.patchContact)
	bot.DELETE("/contacts/:contact", s.deleteContact)
	bot.POST("/contacts/:contact/opt-out", s.optOut)
	bot.POST("/contacts/:contact/opt-in", s.optIn)
	bot.GET("/contacts/:contact/messages", s.contactMessages)
	bot.GET("/runs/:run/messages", s.runMessages)

	bot.POST("/webhooks/:id/rotate-secret", s.rotateWebhookSecret)
	bot.DELETE("/webhooks/:id/previous-secret", s.dropPreviousWebhookSecret)
}

// requireAdminKey follows requireBot on routes that only the admin key
// (not a bot's own key) may call.
func (s *server) requireAdminKey(c *gin.Context) {
	if !c.MustGet(ctxPrincipal).(principal).admin {
		abort(c, errAdminOnly)
	}
}

// queryLimit reads ?limit= (1..1000); 0 when absent.
func queryLimit(c *gin.Context) (int, bool) {
	v := c.Query("limit")
	if v == "" {
		return 0, true
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > 1000 {
		abort(c, fieldError(http.StatusUnprocessableEntity, "invalid", "limit", "limit must be 1..1000"))
		return 0, false
	}
	return n, true
}
