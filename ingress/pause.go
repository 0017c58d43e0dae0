package ingress

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/flowgate/flowgate/shared/bus"
	"github.com/flowgate/flowgate/shared/events"
	"github.com/flowgate/flowgate/shared/provider"
	"github.com/flowgate/flowgate/shared/store"
)

// pauseTrigger holds a broadcast's fan-out: no new run starts until it is
// resumed. Messages already queued for the account (at most the
// orchestrator's queue bound, a few minutes of its rate) still go out.
func (s *server) pauseTrigger(c *gin.Context) {
	s.setTriggerStatus(c, store.TriggerPaused, func(t store.Trigger) *apiError {
		switch t.Status {
		case store.TriggerAccepted, store.TriggerFanningOut:
			return nil
		case store.TriggerDone:
			return newError(http.StatusConflict, "already_done", "the trigger's runs have all been started; nothing left to pause")
		case store.TriggerCancelled:
			return newError(http.StatusConflict, "cancelled", "the trigger was cancelled")
		}
		return newError(http.StatusConflict, "conflict", "the trigger cannot be paused in status "+t.Status)
	}, nil)
}

// resumeTrigger lets a paused broadcast go on from its checkpoint: the
// trigger is queued for the orchestrator again.
func (s *server) resumeTrigger(c *gin.Context) {
	s.setTriggerStatus(c, store.TriggerFanningOut, func(t store.Trigger) *apiError {
		if t.Status == store.TriggerPaused {
			return nil
		}
		return newError(http.StatusConflict, "not_paused", "only a paused trigger can be resumed (status "+t.Status+")")
	}, s.requeueTrigger)
}

// setTriggerStatus moves a trigger to status when allowed says so (a
// trigger already in status is answered as it is), then runs after (which
// may undo the change by failing).
func (s *server) setTriggerStatus(c *gin.Context, status string, allowed func(store.Trigger) *apiError,
	after func(c *gin.Context, t store.Trigger) *apiError) {
	ctx := c.Request.Context()
	bot := botOf(c)
	for attempt := 0; attempt < 5; attempt++ {
		t, err := s.store.GetTrigger(ctx, bot.ID, c.Param("trigger"))
		if err != nil {
			abort(c, storeError(err, "trigger"))
			return
		}
		if t.Status == status || status == store.TriggerFanningOut && t.Status == store.TriggerAccepted {
			c.JSON(http.StatusOK, gin.H{"trigger": triggerView(bot, t, time.Now())})
			return
		}
		if e := allowed(t); e != nil {
			abort(c, e)
			return
		}
		prev := t.Status
		t.Status = status
		t.UpdatedAt = time.Now().UTC()
		updated, err := s.store.UpdateTrigger(ctx, t)
		if errors.Is(err, store.ErrVersionConflict) {
			continue
		}
		if err != nil {
			abort(c, storeError(err, "trigger"))
			return
		}
		if after != nil {
			if e := after(c, updated); e != nil {
				// Put the status back so that the call can be retried.
				updated.Status, updated.UpdatedAt = prev, time.Now().UTC()
				if _, err := s.store.UpdateTrigger(ctx, updated); err != nil {
					s.log.Warn("trigger status not restored after a failed resume", "bot", bot.ID, "trigger", t.ID, "err", err)
				}
				abort(c, e)
				return
			}
		}
		c.JSON(http.StatusOK, gin.H{"trigger": triggerView(bot, updated, time.Now())})
		return
	}
	abort(c, newError(http.StatusConflict, "conflict", "the trigger is changing quickly; retry"))
}

// requeueTrigger publishes a resumed trigger for the orchestrator again,
// with an id of its own (the first publish is still in the duplicate
// window): the orchestrator goes on from the trigger's checkpoint.
func (s *server) requeueTrigger(c *gin.Context, t store.Trigger) *apiError {
	ev, err := bus.NewEvent(fmt.Sprintf("resume:%s:%d", t.ID, t.Version), events.TypeTriggerAccepted, t.BotID, json.RawMessage(t.Spec))
	if err != nil {
		return newError(http.StatusInternalServerError, "internal", "the trigger cannot be encoded")
	}
	if _, err := s.bus.Publish(c.Request.Context(), events.TriggerSubject(t.BotID), ev); err != nil {
		s.log.Warn("resumed trigger not queued", "bot", t.BotID, "trigger", t.ID, "err", err)
		return errBusUnavailable
	}
	return nil
}

// deliveryView is a trigger's delivery progress: what is queued and sent,
// the rate of the account it sends through, and when it should be done.
type deliveryView struct {
	// Lane is the delivery lane of the trigger's messages.
	Lane string `json:"lane"`
	// Queued counts runs whose first message is not sent (nor failed)
	// yet: exact for flows that start with one message.
	Queued int64 `json:"queued"`
	// Sent counts messages the provider accepted.
	Sent int64 `json:"sent"`
	// Remaining counts audience entries not fanned out yet; absent when
	// unknown (everyone, a filter: the audience is streamed).
	Remaining *int64 `json:"remaining,omitempty"`
	// AccountRate is the rate of the sending account, messages per second
	// (absent for the sandbox, which is not paced).
	AccountRate float64 `json:"account_rate,omitempty"`
	// EstimatedFinishAt is when the last message should be sent at the
	// account's rate; null when finished, paused, cancelled or unknown.
	EstimatedFinishAt *time.Time `json:"estimated_finish_at"`
	// EstimateCovers says what the estimate counts: "all" or "queued"
	// (the audience's unstreamed rest is unknown).
	EstimateCovers string `json:"estimate_covers,omitempty"`
}

func triggerView(bot store.Bot, t store.Trigger, now time.Time) gin.H {
	return gin.H{"id": t.ID, "status": t.Status, "source": t.Source, "event": t.Event, "flow": t.FlowID,
		"channel": t.Channel, "counters": t.Counters, "delivery": delivery(bot, t, now),
		"created_at": t.CreatedAt, "updated_at": t.UpdatedAt}
}

func delivery(bot store.Bot, t store.Trigger, now time.Time) deliveryView {
	var spec events.Trigger
	_ = json.Unmarshal(t.Spec, &spec) // a spec that does not decode gives no lane or audience size
	lane := spec.Priority
	if !events.KnownLane(lane) {
		lane = events.LaneHigh
		if a := spec.Audience; a.Everyone || a.Filter != "" || len(a.Users)+len(a.UsersBM) > 1 {
			lane = events.LaneBulk
		}
	}
	c := t.Counters
	d := deliveryView{Lane: lane, Sent: c.Sent, Queued: max(0, c.RunsCreated-c.Sent-c.Failed)}
	covers := "queued"
	if n := len(spec.Audience.Users) + len(spec.Audience.UsersBM); n > 0 || !spec.Audience.Everyone {
		r := max(0, int64(n)-c.Targeted)
		if t.Status == store.TriggerDone || t.Status == store.TriggerCancelled {
			r = 0
		}
		d.Remaining, covers = &r, "all"
	}
	ch := t.Channel
	if p := spec.Audience.Platform; p != "" && p != "any" {
		ch = p
	}
	d.AccountRate = provider.Rate(bot, ch) // 0: not paced (the sandbox)
	work := d.Queued
	if d.Remaining != nil {
		work += *d.Remaining
	}
	if d.AccountRate > 0 && work > 0 && t.Status != store.TriggerPaused && t.Status != store.TriggerCancelled {
		at := now.Add(time.Duration(float64(work) / d.AccountRate * float64(time.Second))).UTC()
		d.EstimatedFinishAt, d.EstimateCovers = &at, covers
	}
	return d
}
