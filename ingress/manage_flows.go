package ingress

import (
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/gin-gonic/gin"
	"gopkg.in/yaml.v3"

	"github.com/flowgate/flowgate/shared/store"
)

// Flows, events and triggers: listing, deleting, rolling back.

// listFlows is GET /v1/bots/{bot}/flows: each flow's latest version.
func (s *server) listFlows(c *gin.Context) {
	flows, err := s.store.ListFlows(c.Request.Context(), botOf(c).ID)
	if err != nil {
		abort(c, storeError(err, "flows"))
		return
	}
	out := make([]gin.H, 0, len(flows))
	for _, f := range flows {
		out = append(out, gin.H{"id": f.ID, "version": f.Version, "created_at": f.CreatedAt})
	}
	c.JSON(http.StatusOK, gin.H{"flows": out})
}

// deleteFlow is DELETE /v1/bots/{bot}/flows/{flow}: every version. A flow
// that an event starts is refused (409): delete or re-point the event first.
func (s *server) deleteFlow(c *gin.Context) {
	ctx := c.Request.Context()
	bot := botOf(c)
	id := c.Param("flow")
	evs, err := s.store.ListEvents(ctx, bot.ID)
	if err != nil {
		abort(c, storeError(err, "events"))
		return
	}
	var using []string
	for _, e := range evs {
		if e.FlowID == id {
			using = append(using, e.Name)
		}
	}
	if len(using) > 0 {
		abort(c, newError(http.StatusConflict, "flow_in_use", "events "+strings.Join(using, ", ")+" start this flow; delete or re-point them first"))
		return
	}
	err = s.store.DeleteFlow(ctx, bot.ID, id)
	if errors.Is(err, store.ErrInvalid) {
		err = store.ErrNotFound
	}
	if err != nil {
		abort(c, storeError(err, "flow"))
		return
	}
	c.JSON(http.StatusOK, gin.H{"deleted": true, "flow": id})
}

// flowVersion loads the path's flow version (404 for a bad or unknown one).
func (s *server) flowVersion(c *gin.Context, version string) (store.Flow, bool) {
	v := 0
	if version != "" {
		n, err := strconv.Atoi(version)
		if err != nil || n < 1 {
			abort(c, fieldError(http.StatusUnprocessableEntity, "invalid", "version", "version must be a positive integer"))
			return store.Flow{}, false
		}
		v = n
	}
	f, err := s.store.GetFlow(c.Request.Context(), botOf(c).ID, c.Param("flow"), v)
	if errors.Is(err, store.ErrInvalid) {
		err = store.ErrNotFound
	}
	if err != nil {
		abort(c, storeError(err, "flow version"))
		return store.Flow{}, false
	}
	return f, true
}

// getFlowVersion is GET /v1/bots/{bot}/flows/{flow}/versions/{version}.
func (s *server) getFlowVersion(c *gin.Context) {
	f, ok := s.flowVersion(c, c.Param("version"))
	if !ok {
		return
	}
	c.JSON(http.StatusOK, gin.H{"flow": gin.H{"id": f.ID, "version": f.Version, "definition": f.Definition, "created_at": f.CreatedAt}})
}

// activateFlowVersion is POST .../flows/{flow}/versions/{version}/activate:
// a rollback. The old definition becomes a new latest version, so history
// only grows and runs keep the version they started with.
func (s *server) activateFlowVersion(c *gin.Context) {
	old, ok := s.flowVersion(c, c.Param("version"))
	if !ok {
		return
	}
	f, err := s.store.PutFlow(c.Request.Context(), store.Flow{
		BotID: old.BotID, ID: old.ID, Definition: old.Definition, CreatedAt: time.Now().UTC(),
	})
	if err != nil {
		abort(c, storeError(err, "flow"))
		return
	}
	c.JSON(http.StatusOK, gin.H{"flow": gin.H{"id": f.ID, "version": f.Version, "activated_from": old.Version, "created_at": f.CreatedAt}})
}

// downloadFlow is GET /v1/bots/{bot}/flows/{flow}/definition: the
// definition as YAML (default) or JSON, in the canonical key order, so that
// two downloads diff line by line. ?version= picks a version (default latest).
func (s *server) downloadFlow(c *gin.Context) {
	format := c.DefaultQuery("format", "yaml")
	if format != "yaml" && format != "json" {
		abort(c, fieldError(http.StatusUnprocessableEntity, "invalid", "format", `format must be "yaml" or "json"`))
		return
	}
	f, ok := s.flowVersion(c, c.Query("version"))
	if !ok {
		return
	}
	name := f.ID + ".v" + strconv.Itoa(f.Version)
	c.Header("X-Flow-Version", strconv.Itoa(f.Version))
	if format == "json" {
		c.Header("Content-Disposition", `attachment; filename="`+name+`.json"`)
		c.Data(http.StatusOK, "application/json", f.Definition)
		return
	}
	out, err := jsonToYAML(f.Definition)
	if err != nil {
		abort(c, newError(http.StatusInternalServerError, "internal", "the stored definition cannot be rendered as YAML: "+err.Error()))
		return
	}
	c.Header("Content-Disposition", `attachment; filename="`+name+`.yaml"`)
	c.Data(http.StatusOK, "application/yaml", out)
}

// jsonToYAML renders JSON as block-style YAML keeping the key order (JSON
// is YAML: the node tree keeps the document's order; clearing the flow
// and quoting styles makes it block style with plain scalars where safe).
func jsonToYAML(js []byte) ([]byte, error) {
	var n yaml.Node
	if err := yaml.Unmarshal(js, &n); err != nil {
		return nil, err
	}
	var plain func(*yaml.Node)
	plain = func(n *yaml.Node) {
		n.Style = 0
		for _, c := range n.Content {
			plain(c)
		}
	}
	plain(&n)
	return yaml.Marshal(&n)
}

// listEvents is GET /v1/bots/{bot}/events.
func (s *server) listEvents(c *gin.Context) {
	evs, err := s.store.ListEvents(c.Request.Context(), botOf(c).ID)
	if err != nil {
		abort(c, storeError(err, "events"))
		return
	}
	out := make([]gin.H, 0, len(evs))
	for _, e := range evs {
		out = append(out, gin.H{"name": e.Name, "flow": e.FlowID, "created_at": e.CreatedAt, "updated_at": e.UpdatedAt})
	}
	c.JSON(http.StatusOK, gin.H{"events": out})
}

// deleteEvent is DELETE /v1/bots/{bot}/events/{event}: dispatches of it and
// its Botmother trigger URL answer 404 from now on (other replicas: within
// their cache TTL).
func (s *server) deleteEvent(c *gin.Context) {
	bot := botOf(c)
	name := c.Param("event")
	err := s.store.DeleteEvent(c.Request.Context(), bot.ID, name)
	if errors.Is(err, store.ErrInvalid) {
		err = store.ErrNotFound
	}
	if err != nil {
		abort(c, storeError(err, "event"))
		return
	}
	s.events.forget(bot.ID + "\x00" + name)
	c.JSON(http.StatusOK, gin.H{"deleted": true, "event": name})
}

// listTriggers is GET /v1/bots/{bot}/triggers?status=&event=&since=&limit=&cursor=.
func (s *server) listTriggers(c *gin.Context) {
	f := store.TriggerFilter{BotID: botOf(c).ID, Status: c.Query("status"), Event: c.Query("event"), Cursor: c.Query("cursor")}
	if f.Status != "" && store.CheckTriggerStatus(f.Status) != nil {
		abort(c, fieldError(http.StatusUnprocessableEntity, "invalid", "status", "status must be accepted, fanning_out, done or cancelled"))
		return
	}
	if f.Event != "" && !eventIDPattern.MatchString(f.Event) {
		abort(c, fieldError(http.StatusUnprocessableEntity, "invalid", "event", "event name must match "+eventIDPattern.String()))
		return
	}
	var ok bool
	if f.Limit, ok = queryLimit(c); !ok {
		return
	}
	if v := c.Query("since"); v != "" {
		t, err := time.Parse(time.RFC3339, v)
		if err != nil {
			abort(c, fieldError(http.StatusUnprocessableEntity, "invalid", "since", "since must be an RFC 3339 time"))
			return
		}
		f.Since = t
	}
	ts, next, err := s.store.ListTriggers(c.Request.Context(), f)
	if err != nil {
		abort(c, storeError(err, "triggers"))
		return
	}
	out := make([]gin.H, 0, len(ts))
	bot, now := botOf(c), time.Now()
	for _, t := range ts {
		out = append(out, triggerView(bot, t, now))
	}
	c.JSON(http.StatusOK, gin.H{"triggers": out, "next_cursor": next})
}
