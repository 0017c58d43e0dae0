package mongo

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"go.mongodb.org/mongo-driver/v2/event"
)

// Option configures Open.
type Option func(*config) error

type config struct {
	maxWait        time.Duration
	maxOps         int
	flushers       int
	retention      time.Duration
	sweepEvery     time.Duration
	opTimeout      time.Duration
	connectTimeout time.Duration
	maxDocBytes    int
	logger         *slog.Logger
	// monitor sees every command the client sends (tests count them).
	monitor *event.CommandMonitor
}

func (c *config) setDefaults() {
	c.maxWait = 2 * time.Millisecond
	c.maxOps = 256
	c.flushers = 4
	c.opTimeout = 30 * time.Second
	c.connectTimeout = 10 * time.Second
	c.maxDocBytes = defaultMaxDocBytes
	c.logger = slog.Default()
}

// defaultMaxDocBytes stays well under MongoDB's 16 MiB document limit: every
// JSON field is capped at store.MaxFieldBytes (1 MiB), and a document holds
// at most a few of them.
const defaultMaxDocBytes = 8 << 20

// WithGroupCommit sets how hot-path writes (run updates, message status
// updates, trigger counters) are batched: a batch is sent as one unordered
// BulkWrite when maxOps operations are gathered or maxWait has passed since
// the first one. Defaults: 2ms, 256.
func WithGroupCommit(maxWait time.Duration, maxOps int) Option {
	return func(c *config) error {
		if maxWait < 0 || maxOps < 1 {
			return fmt.Errorf("mongo: WithGroupCommit(%v, %d): need maxWait >= 0 and maxOps >= 1", maxWait, maxOps)
		}
		c.maxWait, c.maxOps = maxWait, maxOps
		return nil
	}
}

// WithRetention expires runs in a final status (and their messages) once
// they have not changed for d. Runs that become final get an expire_at date
// that a TTL index deletes on MongoDB; a sweeper also runs ExpireBefore
// every d/4 (between 10ms and 1h), which is the only mechanism on servers
// without TTL indexes (FerretDB).
func WithRetention(d time.Duration) Option {
	return func(c *config) error {
		if d <= 0 {
			return fmt.Errorf("mongo: WithRetention(%v): must be positive", d)
		}
		c.retention = d
		c.sweepEvery = min(max(d/4, 10*time.Millisecond), time.Hour)
		return nil
	}
}

// WithTimeout sets the timeout applied to operations whose context has no
// deadline (default 30s).
func WithTimeout(d time.Duration) Option {
	return func(c *config) error {
		if d <= 0 {
			return fmt.Errorf("mongo: WithTimeout(%v): must be positive", d)
		}
		c.opTimeout = d
		return nil
	}
}

// WithConnectTimeout bounds how long Open waits for the server (default 10s).
func WithConnectTimeout(d time.Duration) Option {
	return func(c *config) error {
		if d <= 0 {
			return fmt.Errorf("mongo: WithConnectTimeout(%v): must be positive", d)
		}
		c.connectTimeout = d
		return nil
	}
}

// WithMaxDocumentSize sets the largest encoded document the adapter sends
// (default 8 MiB, at most MongoDB's 16 MiB); larger records are refused with
// a *store.InvalidError before anything is sent.
func WithMaxDocumentSize(n int) Option {
	return func(c *config) error {
		if n < 1024 || n > 16<<20 {
			return fmt.Errorf("mongo: WithMaxDocumentSize(%d): want 1 KiB to 16 MiB", n)
		}
		c.maxDocBytes = n
		return nil
	}
}

// WithLogger sets the logger for background work (index setup, retention).
func WithLogger(l *slog.Logger) Option {
	return func(c *config) error {
		if l == nil {
			return errors.New("mongo: WithLogger(nil)")
		}
		c.logger = l
		return nil
	}
}
