// Package instrumented wraps a store.Store with Prometheus metrics: the
// latency of every operation and its failures by kind. It delegates and
// changes nothing else, so it wraps any adapter (sqlite, mongo).
//
// Every method of the port is declared here and measured; a test fails
// when the port gains a method this package does not declare (the wrapper
// embeds the store, which would otherwise pass it through unmeasured).
package instrumented

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"github.com/flowgate/flowgate/shared/store"
)

var (
	opSeconds = promauto.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "flowgate_store_operation_duration_seconds",
		Help:    "Store operation latency, by adapter (sqlite, mongo) and operation (the port's method name).",
		Buckets: prometheus.ExponentialBuckets(0.0001, 2.5, 12),
	}, []string{"adapter", "operation"})
	opErrors = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "flowgate_store_operation_errors_total",
		Help: "Store operations that returned an error, by adapter, operation and kind (not_found, conflict, version_conflict, invalid, unavailable, canceled, other).",
	}, []string{"adapter", "operation", "kind"})
)

// Store measures the operations of the store it wraps.
type Store struct {
	store.Store
	adapter string
	outages store.Outages
}

// New wraps st; adapter names it in the metrics ("sqlite", "mongo").
func New(st store.Store, adapter string) *Store {
	return &Store{Store: st, adapter: adapter}
}

// Unwrap returns the wrapped store.
func (s *Store) Unwrap() store.Store { return s.Store }

// ErrorKind classifies a store error for the errors counter.
func ErrorKind(err error) string {
	switch {
	case errors.Is(err, store.ErrNotFound):
		return "not_found"
	case errors.Is(err, store.ErrVersionConflict):
		return "version_conflict"
	case errors.Is(err, store.ErrConflict):
		return "conflict"
	case errors.Is(err, store.ErrInvalid):
		return "invalid"
	case errors.Is(err, store.ErrUnavailable):
		return "unavailable"
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return "canceled"
	default:
		return "other"
	}
}

// observe records one operation that started at start and ended with err.
func (s *Store) observe(op string, start time.Time, err error) {
	opSeconds.WithLabelValues(s.adapter, op).Observe(time.Since(start).Seconds())
	if op != "PingWrite" {
		// The probe is store.Writable's other half: a probe that slips
		// through a full disk (a small write) must not clear what real
		// writes saw.
		s.outages.Observe(IsWrite(op), err)
	}
	if err != nil {
		opErrors.WithLabelValues(s.adapter, op, ErrorKind(err)).Inc()
	}
}

func measure[T any](s *Store, op string, f func() (T, error)) (T, error) {
	start := time.Now()
	v, err := f()
	s.observe(op, start, err)
	return v, err
}

func measure0(s *Store, op string, f func() error) error {
	start := time.Now()
	err := f()
	s.observe(op, start, err)
	return err
}

// CreateBot delegates and measures.
func (s *Store) CreateBot(ctx context.Context, b store.Bot) error {
	return measure0(s, "CreateBot", func() error { return s.Store.CreateBot(ctx, b) })
}

// GetBot delegates and measures.
func (s *Store) GetBot(ctx context.Context, id string) (store.Bot, error) {
	return measure(s, "GetBot", func() (store.Bot, error) { return s.Store.GetBot(ctx, id) })
}

// GetAPIKeyByHash delegates and measures.
func (s *Store) GetAPIKeyByHash(ctx context.Context, hash string) (store.APIKey, error) {
	return measure(s, "GetAPIKeyByHash", func() (store.APIKey, error) { return s.Store.GetAPIKeyByHash(ctx, hash) })
}

// PutFlow delegates and measures.
func (s *Store) PutFlow(ctx context.Context, f store.Flow) (store.Flow, error) {
	return measure(s, "PutFlow", func() (store.Flow, error) { return s.Store.PutFlow(ctx, f) })
}

// GetFlow delegates and measures.
func (s *Store) GetFlow(ctx context.Context, botID, flowID string, version int) (store.Flow, error) {
	return measure(s, "GetFlow", func() (store.Flow, error) { return s.Store.GetFlow(ctx, botID, flowID, version) })
}

// PutEvent delegates and measures.
func (s *Store) PutEvent(ctx context.Context, e store.Event) error {
	return measure0(s, "PutEvent", func() error { return s.Store.PutEvent(ctx, e) })
}

// GetEvent delegates and measures.
func (s *Store) GetEvent(ctx context.Context, botID, name string) (store.Event, error) {
	return measure(s, "GetEvent", func() (store.Event, error) { return s.Store.GetEvent(ctx, botID, name) })
}

// UpsertContact delegates and measures.
func (s *Store) UpsertContact(ctx context.Context, u store.ContactUpsert) (store.Contact, bool, error) {
	start := time.Now()
	c, created, err := s.Store.UpsertContact(ctx, u)
	s.observe("UpsertContact", start, err)
	return c, created, err
}

// GetContact delegates and measures.
func (s *Store) GetContact(ctx context.Context, botID, id string) (store.Contact, error) {
	return measure(s, "GetContact", func() (store.Contact, error) { return s.Store.GetContact(ctx, botID, id) })
}

// CreateTrigger delegates and measures.
func (s *Store) CreateTrigger(ctx context.Context, t store.Trigger) (store.Trigger, bool, error) {
	start := time.Now()
	tr, created, err := s.Store.CreateTrigger(ctx, t)
	s.observe("CreateTrigger", start, err)
	return tr, created, err
}

// GetTrigger delegates and measures.
func (s *Store) GetTrigger(ctx context.Context, botID, id string) (store.Trigger, error) {
	return measure(s, "GetTrigger", func() (store.Trigger, error) { return s.Store.GetTrigger(ctx, botID, id) })
}

// UpdateTrigger delegates and measures.
func (s *Store) UpdateTrigger(ctx context.Context, t store.Trigger) (store.Trigger, error) {
	return measure(s, "UpdateTrigger", func() (store.Trigger, error) { return s.Store.UpdateTrigger(ctx, t) })
}

// CreateRun delegates and measures.
func (s *Store) CreateRun(ctx context.Context, r store.Run) (store.Run, bool, error) {
	start := time.Now()
	run, created, err := s.Store.CreateRun(ctx, r)
	s.observe("CreateRun", start, err)
	return run, created, err
}

// GetRun delegates and measures.
func (s *Store) GetRun(ctx context.Context, botID, id string) (store.Run, error) {
	return measure(s, "GetRun", func() (store.Run, error) { return s.Store.GetRun(ctx, botID, id) })
}

// UpdateRun delegates and measures.
func (s *Store) UpdateRun(ctx context.Context, r store.Run) (store.Run, error) {
	return measure(s, "UpdateRun", func() (store.Run, error) { return s.Store.UpdateRun(ctx, r) })
}

// ListRuns delegates and measures.
func (s *Store) ListRuns(ctx context.Context, f store.RunFilter) ([]store.Run, string, error) {
	start := time.Now()
	runs, next, err := s.Store.ListRuns(ctx, f)
	s.observe("ListRuns", start, err)
	return runs, next, err
}

// InsertMessages delegates and measures.
func (s *Store) InsertMessages(ctx context.Context, ms []store.Message) error {
	return measure0(s, "InsertMessages", func() error { return s.Store.InsertMessages(ctx, ms) })
}

// GetMessage delegates and measures.
func (s *Store) GetMessage(ctx context.Context, botID, id string) (store.Message, error) {
	return measure(s, "GetMessage", func() (store.Message, error) { return s.Store.GetMessage(ctx, botID, id) })
}

// UpdateMessageStatus delegates and measures.
func (s *Store) UpdateMessageStatus(ctx context.Context, u store.StatusUpdate) error {
	return measure0(s, "UpdateMessageStatus", func() error {
		return s.Store.UpdateMessageStatus(ctx, u)
	})
}

// DeliverSandbox delegates and measures.
func (s *Store) DeliverSandbox(ctx context.Context, triggerID string, ms []store.SandboxMessage) error {
	return measure0(s, "DeliverSandbox", func() error { return s.Store.DeliverSandbox(ctx, triggerID, ms) })
}

// DeliverSandboxMany delegates and measures.
func (s *Store) DeliverSandboxMany(ctx context.Context, ds []store.SandboxDelivery) error {
	return measure0(s, "DeliverSandboxMany", func() error { return s.Store.DeliverSandboxMany(ctx, ds) })
}

// AppendSandbox delegates and measures.
func (s *Store) AppendSandbox(ctx context.Context, ms ...store.SandboxMessage) error {
	return measure0(s, "AppendSandbox", func() error { return s.Store.AppendSandbox(ctx, ms...) })
}

// ListSandbox delegates and measures.
func (s *Store) ListSandbox(ctx context.Context, botID, to string, afterSeq int64, limit int) ([]store.SandboxMessage, error) {
	return measure(s, "ListSandbox", func() ([]store.SandboxMessage, error) {
		return s.Store.ListSandbox(ctx, botID, to, afterSeq, limit)
	})
}

// CreateRuns delegates and measures.
func (s *Store) CreateRuns(ctx context.Context, rs []store.Run) ([]store.Run, []bool, error) {
	start := time.Now()
	runs, created, err := s.Store.CreateRuns(ctx, rs)
	s.observe("CreateRuns", start, err)
	return runs, created, err
}

// StreamContacts delegates and measures.
func (s *Store) StreamContacts(ctx context.Context, botID string, f store.ContactFilter) ([]store.Contact, error) {
	return measure(s, "StreamContacts", func() ([]store.Contact, error) { return s.Store.StreamContacts(ctx, botID, f) })
}

// IncrTriggerCounters delegates and measures.
func (s *Store) IncrTriggerCounters(ctx context.Context, botID, triggerID string, delta store.TriggerCounters) error {
	return measure0(s, "IncrTriggerCounters", func() error { return s.Store.IncrTriggerCounters(ctx, botID, triggerID, delta) })
}

// CreateTriggers delegates and measures.
func (s *Store) CreateTriggers(ctx context.Context, ts []store.Trigger) ([]store.CreatedTrigger, error) {
	return measure(s, "CreateTriggers", func() ([]store.CreatedTrigger, error) { return s.Store.CreateTriggers(ctx, ts) })
}

// CheckpointTriggers delegates and measures.
func (s *Store) CheckpointTriggers(ctx context.Context, cps []store.TriggerCheckpoint) ([]error, error) {
	return measure(s, "CheckpointTriggers", func() ([]error, error) { return s.Store.CheckpointTriggers(ctx, cps) })
}

// CheckpointTrigger delegates and measures.
func (s *Store) CheckpointTrigger(ctx context.Context, t store.Trigger, delta store.TriggerCounters) (store.Trigger, error) {
	return measure(s, "CheckpointTrigger", func() (store.Trigger, error) { return s.Store.CheckpointTrigger(ctx, t, delta) })
}

// UpdateRuns delegates and measures.
func (s *Store) ClaimRuns(ctx context.Context, claims []store.RunClaim, by string, now, until time.Time) ([]store.ClaimRefusal, error) {
	return measure(s, "ClaimRuns", func() ([]store.ClaimRefusal, error) { return s.Store.ClaimRuns(ctx, claims, by, now, until) })
}

func (s *Store) UpdateRuns(ctx context.Context, rs []store.Run) ([]int, error) {
	return measure(s, "UpdateRuns", func() ([]int, error) { return s.Store.UpdateRuns(ctx, rs) })
}

// SetLastRequest delegates and measures.
func (s *Store) SetLastRequest(ctx context.Context, botID string, contactIDs []string, data map[string]any, at time.Time) error {
	start := time.Now()
	err := s.Store.SetLastRequest(ctx, botID, contactIDs, data, at)
	s.observe("SetLastRequest", start, err)
	return err
}

// UpsertContacts delegates and measures.
func (s *Store) UpsertContacts(ctx context.Context, us []store.ContactUpsert) ([]store.Contact, error) {
	return measure(s, "UpsertContacts", func() ([]store.Contact, error) { return s.Store.UpsertContacts(ctx, us) })
}

// MarkSent delegates and measures.
func (s *Store) MarkSent(ctx context.Context, botID, triggerID string, ms []store.SentMessage) error {
	start := time.Now()
	err := s.Store.MarkSent(ctx, botID, triggerID, ms)
	s.observe("MarkSent", start, err)
	return err
}

// WaitingRuns delegates and measures.
func (s *Store) WaitingRuns(ctx context.Context, botID string, contactIDs []string) ([]store.Run, error) {
	return measure(s, "WaitingRuns", func() ([]store.Run, error) { return s.Store.WaitingRuns(ctx, botID, contactIDs) })
}

// DueRuns delegates and measures.
func (s *Store) DueRuns(ctx context.Context, now time.Time, limit int) ([]store.Run, error) {
	return measure(s, "DueRuns", func() ([]store.Run, error) { return s.Store.DueRuns(ctx, now, limit) })
}

// ImportContacts delegates and measures.
func (s *Store) ImportContacts(ctx context.Context, us []store.ContactUpsert) (int, int, error) {
	start := time.Now()
	created, updated, err := s.Store.ImportContacts(ctx, us)
	s.observe("ImportContacts", start, err)
	return created, updated, err
}

// Ping delegates and measures.
func (s *Store) Ping(ctx context.Context) error {
	return measure0(s, "Ping", func() error { return s.Store.Ping(ctx) })
}

var _ store.Store = (*Store)(nil)

// IsWrite reports whether the port operation op writes (by its name: reads
// are Get*, List*, Stream*, Due*, Waiting*, Ping*, Find*).
func IsWrite(op string) bool {
	for _, read := range []string{"Get", "List", "Stream", "Due", "Waiting", "Ping", "Find"} {
		if strings.HasPrefix(op, read) {
			return false
		}
	}
	return true
}

// RecentUnavailable returns the last operation's failure with
// store.ErrUnavailable while it is recent and no write succeeded since
// (store.Writable uses it).
func (s *Store) RecentUnavailable() error { return s.outages.RecentUnavailable() }

// PingWrite delegates (when the wrapped store has it) and measures.
func (s *Store) PingWrite(ctx context.Context) error {
	p, ok := s.Store.(store.WriteProber)
	if !ok {
		return s.Ping(ctx)
	}
	return measure0(s, "PingWrite", func() error { return p.PingWrite(ctx) })
}
