package store

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// unavailableError is ErrUnavailable: a comparable value (errors.Is works
// as with errors.New) that also says it is transient, so that the bus
// retries a message that failed with it instead of dead-lettering it,
// without the bus importing the store.
type unavailableError struct{}

func (unavailableError) Error() string   { return "store: unavailable" }
func (unavailableError) Transient() bool { return true }

// WriteProber is a store that can prove it accepts writes now. Readiness
// checks use it: a database can answer pings while refusing writes (disk
// full, read-only file system).
type WriteProber interface {
	PingWrite(ctx context.Context) error
}

// Writable reports whether st accepts writes: its PingWrite when it has
// one, else Ping, and in both cases no operation that failed with
// ErrUnavailable recently, if st records them (see UnavailableRecorder).
func Writable(ctx context.Context, st interface{ Ping(context.Context) error }) error {
	if r, ok := st.(UnavailableRecorder); ok {
		if err := r.RecentUnavailable(); err != nil {
			return err
		}
	}
	if p, ok := st.(WriteProber); ok {
		return p.PingWrite(ctx)
	}
	return st.Ping(ctx)
}

// UnavailableRecorder is a store (a decorator) that remembers the last
// operation that failed with ErrUnavailable.
type UnavailableRecorder interface {
	// RecentUnavailable returns that failure while it is recent (and no
	// write succeeded since), else nil.
	RecentUnavailable() error
}

// UnavailableWindow is how long a failure with ErrUnavailable keeps a store
// unready when no write succeeded since: long enough to outlast the
// retries of a failed write, short enough to end soon after an outage.
const UnavailableWindow = 15 * time.Second

// Outages remembers the last ErrUnavailable failure and the last success of
// a store's operations (a decorator embeds one). Safe for concurrent use.
type Outages struct {
	mu     sync.Mutex
	failed time.Time
	err    error // nil once a write succeeded after the failure
	now    func() time.Time
}

// Observe records the outcome of one operation. Only a write's success
// ends an outage: reads go on succeeding on a full disk.
func (o *Outages) Observe(write bool, err error) {
	if err != nil && !errors.Is(err, ErrUnavailable) {
		return // a refusal (not found, conflict, invalid) is an answer
	}
	if err == nil && !write {
		return
	}
	now := o.clock()
	o.mu.Lock()
	defer o.mu.Unlock()
	if err == nil {
		o.err = nil
		return
	}
	o.failed, o.err = now, err
}

// RecentUnavailable returns the last ErrUnavailable failure if it happened
// within UnavailableWindow and after the last successful write.
func (o *Outages) RecentUnavailable() error {
	now := o.clock()
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.err == nil || now.Sub(o.failed) > UnavailableWindow {
		return nil
	}
	return fmt.Errorf("last operation failed %s ago: %w", now.Sub(o.failed).Round(time.Millisecond), o.err)
}

func (o *Outages) clock() time.Time {
	if o.now != nil {
		return o.now()
	}
	return time.Now()
}
