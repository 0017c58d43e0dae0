// Package bus owns Flowgate's use of NATS JetStream: the stream and consumer
// topology, CloudEvents in binary mode on NATS headers, publishing with a
// deterministic Nats-Msg-Id, and consuming with explicit ack / nak-with-delay
// / term semantics and a dead-letter stream.
package bus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// ErrUnavailable means JetStream could not be reached or refused the
// message (stream full, no quorum). Callers answer 503 and retry later.
var ErrUnavailable = errors.New("bus: unavailable")

// The two kinds of ErrUnavailable a publish returns.
var (
	// ErrNotQueued: the message was certainly not stored (not connected,
	// refused by the server). Retrying cannot run it twice.
	ErrNotQueued = fmt.Errorf("%w: nothing was queued", ErrUnavailable)
	// ErrOutcomeUnknown: the message was sent but its acknowledgement did
	// not come back in time; the server may have stored it. Retry with the
	// same event id (the same Nats-Msg-Id is dropped as a duplicate).
	ErrOutcomeUnknown = fmt.Errorf("%w: the outcome is unknown", ErrUnavailable)

	errNotConnected = errors.New("not connected to NATS")

	// errNoAnswer is the ErrNotQueued of a publish no server answered
	// (nats.ErrNoResponders): no stream listens on the subject, on a
	// cluster for the moment only (its stream has no leader), which
	// Publish tries again for a while (publishAgain).
	errNoAnswer = fmt.Errorf("%w: no server answered", ErrNotQueued)

	// errInProcess is the ErrOutcomeUnknown of a publish JetStream
	// answered "duplicate message id is in process" (409, err_code 10158):
	// an earlier try of the same message is being stored (proposed to the
	// stream's replicas, not yet applied). Tried again a moment later, the
	// publish finds that copy stored (a duplicate) or, if it was not,
	// stores this one (publishAgain).
	errInProcess = fmt.Errorf("%w: an earlier try is being stored", ErrOutcomeUnknown)

	// errNoAck is the ErrOutcomeUnknown of a publish whose acknowledgement
	// did not come in time: typically sent to a stream leader that was
	// lost under it. Tried again while the bus's retry wait lasts (a wait
	// longer than the publish timeout: a consumer's handler), the publish
	// reaches the new leader, which keeps one copy (publishAgain).
	errNoAck = fmt.Errorf("%w: no acknowledgement in time", ErrOutcomeUnknown)
)

// Bus is a connection to JetStream with Flowgate's topology in place.
type Bus struct {
	nc      *nats.Conn
	js      jetstream.JetStream
	log     *slog.Logger
	source  string
	timeout time.Duration
	// retryWait bounds the tries of a publish that failed for a reason
	// that passes by itself (Config.RetryWait).
	retryWait time.Duration
	ownsNC    bool
	// standbyAfter > 0 (nanoseconds): trigger publishes may go to the
	// standby stream after that long without FLOWGATE_TRIGGERS's
	// acknowledgement (standby.go). standbyWant is the configured wait,
	// used while the triggers stream is replicated (negative: never).
	standbyAfter atomic.Int64
	standbyWant  time.Duration
}

// Config configures a Bus.
type Config struct {
	// Source is the CloudEvents source of published events, e.g. "/flowgate/ingress".
	Source string
	// Limits bound the streams.
	Limits Limits
	// PublishTimeout bounds one publish when the context has no deadline (0 = 5 s).
	PublishTimeout time.Duration
	// StandbyAfter is how long a trigger publish waits for
	// FLOWGATE_TRIGGERS before it is published on the standby stream
	// (standby.go): 0 = DefaultStandbyAfter, negative = never. The standby
	// is used only when the triggers stream is replicated (a NATS cluster).
	StandbyAfter time.Duration
	// RetryWait is how long a publish that failed for a reason that passes
	// by itself (the connection lost, a stream without a leader for the
	// moment, an earlier copy being stored) is tried again, from its first
	// try (0 = DefaultRetryWait). A publisher with nobody waiting on an
	// answer (a consumer's handler) may wait out a cluster's leader
	// election rather than fail and be redelivered.
	RetryWait time.Duration
	Logger    *slog.Logger
}

// Connect dials a NATS server by URL and sets up the topology.
func Connect(ctx context.Context, url string, cfg Config, opts ...nats.Option) (*Bus, error) {
	opts = append([]nats.Option{
		nats.Name("flowgate" + cfg.Source),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(500 * time.Millisecond),
		// No reconnect buffer: a publish while disconnected is not left in
		// the client's buffer to reach the server after its caller gave up
		// and answered 503. Publish instead waits for the reconnection (at
		// most Config.RetryWait, within its context) and tries again
		// itself, with the same message id; then it fails (ErrNotQueued).
		nats.ReconnectBufSize(-1),
	}, opts...)
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		return nil, fmt.Errorf("%w: connect %s: %v", ErrUnavailable, url, err)
	}
	b, err := New(ctx, nc, cfg)
	if err != nil {
		nc.Close()
		return nil, err
	}
	b.ownsNC = true
	return b, nil
}

// New wraps an existing connection and sets up the topology (idempotent:
// every replica of every service may call it at start).
func New(ctx context.Context, nc *nats.Conn, cfg Config) (*Bus, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Source == "" {
		cfg.Source = "/flowgate"
	}
	timeout := cfg.PublishTimeout
	if timeout == 0 {
		timeout = 5 * time.Second
	}
	// The async publish timeout frees the client's record of a publish
	// whose acknowledgement never comes (its server lost mid-request):
	// without it such records stay until the next reconnect, and enough of
	// them stall every publish (jetstream.ErrTooManyStalledMsgs).
	js, err := jetstream.New(nc, jetstream.WithDefaultTimeout(timeout), jetstream.WithPublishAsyncMaxPending(16384),
		jetstream.WithPublishAsyncTimeout(timeout))
	if err != nil {
		return nil, fmt.Errorf("bus: jetstream: %w", err)
	}
	if cfg.RetryWait < 0 {
		return nil, fmt.Errorf("bus: RetryWait %v is negative", cfg.RetryWait)
	}
	retryWait := cfg.RetryWait
	if retryWait == 0 {
		retryWait = DefaultRetryWait
	}
	b := &Bus{nc: nc, js: js, log: cfg.Logger, source: cfg.Source, timeout: timeout, retryWait: retryWait}
	if err := b.ensure(ctx, cfg.Limits); err != nil {
		return nil, err
	}
	if err := b.setStandby(ctx, cfg.StandbyAfter); err != nil {
		return nil, err
	}
	return b, nil
}

// JetStream exposes the underlying JetStream context (tests, benchmarks).
func (b *Bus) JetStream() jetstream.JetStream { return b.js }

// Conn exposes the underlying NATS connection.
func (b *Bus) Conn() *nats.Conn { return b.nc }

// Ping reports whether JetStream answers.
func (b *Bus) Ping(ctx context.Context) error {
	if !b.nc.IsConnected() {
		return fmt.Errorf("%w: not connected", ErrUnavailable)
	}
	if _, err := b.js.AccountInfo(ctx); err != nil {
		return fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	return nil
}

// Close closes the connection if the Bus opened it.
func (b *Bus) Close() {
	if b.ownsNC {
		b.nc.Close()
	}
}
