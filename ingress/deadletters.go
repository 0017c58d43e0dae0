package ingress

import (
	"context"
	"errors"
	"net/http"
	"strconv"

	"github.com/gin-gonic/gin"

	"github.com/flowgate/flowgate/shared/bus"
)

// DeadLetterQueue is the part of the bus the dead-letter routes need
// (*bus.Bus has it). When Deps.Bus lacks it, the routes answer 501.
type DeadLetterQueue interface {
	DeadLetters(ctx context.Context, from uint64, limit int) ([]bus.DeadLetter, uint64, error)
	DeadLetter(ctx context.Context, seq uint64) (bus.DeadLetter, error)
	Replay(ctx context.Context, seq uint64) (bus.DeadLetter, bus.PublishResult, error)
	PurgeDeadLetter(ctx context.Context, seq uint64) error
	PurgeDeadLetters(ctx context.Context) (uint64, error)
}

// deadLetterRoutes are the admin key's view of the dead-letter stream:
// list, show, replay to the original subject, purge.
func (s *server) deadLetterRoutes(r *gin.Engine) {
	g := r.Group("/v1/admin/dlq", s.requireAdmin, s.requireDLQ)
	g.GET("", s.listDeadLetters)
	g.DELETE("", s.purgeDeadLetters)
	g.GET("/:seq", s.showDeadLetter)
	g.DELETE("/:seq", s.purgeDeadLetter)
	g.POST("/:seq/replay", s.replayDeadLetter)
}

func (s *server) requireDLQ(c *gin.Context) {
	if _, ok := s.bus.(DeadLetterQueue); !ok {
		abort(c, newError(http.StatusNotImplemented, "not_implemented", "this bus has no dead-letter stream"))
	}
}

func (s *server) dlq() DeadLetterQueue { return s.bus.(DeadLetterQueue) }

func dlqError(err error) *apiError {
	if errors.Is(err, bus.ErrNoDeadLetter) {
		return newError(http.StatusNotFound, "not_found", "no such dead letter")
	}
	return errBusUnavailable
}

func seqParam(c *gin.Context) (uint64, bool) {
	seq, err := strconv.ParseUint(c.Param("seq"), 10, 64)
	if err != nil || seq == 0 {
		abort(c, fieldError(http.StatusBadRequest, "invalid", "seq", "seq is the dead letter's sequence, a positive integer"))
		return 0, false
	}
	return seq, true
}

// listDeadLetters is GET /v1/admin/dlq?from=SEQ&limit=N.
func (s *server) listDeadLetters(c *gin.Context) {
	var from uint64
	if v := c.Query("from"); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			abort(c, fieldError(http.StatusBadRequest, "invalid", "from", "from is a sequence, a non-negative integer"))
			return
		}
		from = n
	}
	limit := 100
	if v := c.Query("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 1000 {
			abort(c, fieldError(http.StatusBadRequest, "invalid", "limit", "limit is between 1 and 1000"))
			return
		}
		limit = n
	}
	list, next, err := s.dlq().DeadLetters(c.Request.Context(), from, limit)
	if err != nil {
		abort(c, dlqError(err))
		return
	}
	if list == nil {
		list = []bus.DeadLetter{}
	}
	c.JSON(http.StatusOK, gin.H{"dead_letters": list, "next": next})
}

// showDeadLetter is GET /v1/admin/dlq/{seq}: with the payload.
func (s *server) showDeadLetter(c *gin.Context) {
	seq, ok := seqParam(c)
	if !ok {
		return
	}
	dl, err := s.dlq().DeadLetter(c.Request.Context(), seq)
	if err != nil {
		abort(c, dlqError(err))
		return
	}
	c.JSON(http.StatusOK, dl)
}

// replayDeadLetter is POST /v1/admin/dlq/{seq}/replay.
func (s *server) replayDeadLetter(c *gin.Context) {
	seq, ok := seqParam(c)
	if !ok {
		return
	}
	dl, res, err := s.dlq().Replay(c.Request.Context(), seq)
	if err != nil {
		s.log.Warn("dead letter not replayed", "seq", seq, "err", err)
		abort(c, dlqError(err))
		return
	}
	dl.Data = nil
	c.JSON(http.StatusOK, gin.H{"replayed": dl, "duplicate": res.Duplicate})
}

// purgeDeadLetter is DELETE /v1/admin/dlq/{seq}.
func (s *server) purgeDeadLetter(c *gin.Context) {
	seq, ok := seqParam(c)
	if !ok {
		return
	}
	if err := s.dlq().PurgeDeadLetter(c.Request.Context(), seq); err != nil {
		abort(c, dlqError(err))
		return
	}
	c.Status(http.StatusNoContent)
}

// purgeDeadLetters is DELETE /v1/admin/dlq?all=true: every dead letter.
func (s *server) purgeDeadLetters(c *gin.Context) {
	if c.Query("all") != "true" {
		abort(c, fieldError(http.StatusBadRequest, "invalid", "all", "purging every dead letter needs all=true"))
		return
	}
	n, err := s.dlq().PurgeDeadLetters(c.Request.Context())
	if err != nil {
		abort(c, dlqError(err))
		return
	}
	c.JSON(http.StatusOK, gin.H{"purged": n})
}
