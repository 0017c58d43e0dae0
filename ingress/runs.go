package ingress

import (
	"net/http"
	"strconv"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/flowgate/flowgate/shared/bus"
	"github.com/flowgate/flowgate/shared/events"
	"github.com/flowgate/flowgate/shared/store"
)

func (s *server) getRun(c *gin.Context) {
	bot := botOf(c)
	r, err := s.store.GetRun(c.Request.Context(), bot.ID, c.Param("run"))
	if err != nil {
		abort(c, storeError(err, "run"))
		return
	}
	msgs, err := s.store.ListRunMessages(c.Request.Context(), bot.ID, r.ID)
	if err != nil {
		abort(c, storeError(err, "messages"))
		return
	}
	c.JSON(http.StatusOK, gin.H{"run": r, "messages": msgs})
}

func (s *server) listRuns(c *gin.Context) {
	f := store.RunFilter{
		BotID:     botOf(c).ID,
		Status:    c.Query("status"),
		ContactID: c.Query("contact"),
		TriggerID: c.Query("trigger"),
		FlowID:    c.Query("flow"),
		Cursor:    c.Query("cursor"),
	}
	if f.Status != "" && !validRunStatus(f.Status) {
		abort(c, fieldError(http.StatusUnprocessableEntity, "invalid", "status", "unknown run status "+f.Status))
		return
	}
	if v := c.Query("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 1000 {
			abort(c, fieldError(http.StatusUnprocessableEntity, "invalid", "limit", "limit must be 1..1000"))
			return
		}
		f.Limit = n
	}
	for _, tf := range []struct {
		name string
		dst  *time.Time
	}{{"since", &f.Since}, {"until", &f.Until}} {
		if v := c.Query(tf.name); v != "" {
			t, err := time.Parse(time.RFC3339, v)
			if err != nil {
				abort(c, fieldError(http.StatusUnprocessableEntity, "invalid", tf.name, tf.name+" must be an RFC 3339 time"))
				return
			}
			*tf.dst = t
		}
	}
	runs, next, err := s.store.ListRuns(c.Request.Context(), f)
	if err != nil {
		abort(c, storeError(err, "runs"))
		return
	}
	if runs == nil {
		runs = []store.Run{}
	}
	c.JSON(http.StatusOK, gin.H{"runs": runs, "next_cursor": next})
}

// cancelRun asks the orchestrator to cancel a run: 202 once the command is
// durable; the run's status becomes cancelled shortly after.
func (s *server) cancelRun(c *gin.Context) {
	bot := botOf(c)
	r, err := s.store.GetRun(c.Request.Context(), bot.ID, c.Param("run"))
	if err != nil {
		abort(c, storeError(err, "run"))
		return
	}
	if store.RunFinal(r.Status) {
		abort(c, newError(http.StatusConflict, "run_ended", "the run has ended ("+r.Status+")"))
		return
	}
	cmd := events.RunCommand{BotID: bot.ID, RunID: r.ID, Command: "cancel", At: time.Now().UTC()}
	ev, err := bus.NewEvent("cancel:"+r.ID, events.TypeRunCommand, r.ID, cmd)
	if err != nil {
		abort(c, newError(http.StatusInternalServerError, "internal", err.Error()))
		return
	}
	if _, err := s.bus.Publish(c.Request.Context(), events.ControlSubject(bot.ID), ev); err != nil {
		abort(c, errBusUnavailable)
		return
	}
	c.JSON(http.StatusAccepted, gin.H{"run_id": r.ID, "status": "cancelling"})
}

func validRunStatus(s string) bool {
	switch s {
	case store.RunCreated, store.RunQueued, store.RunRunning, store.RunWaiting,
		store.RunCompleted, store.RunFailed, store.RunCancelled, store.RunExpired:
		return true
	}
	return false
}
