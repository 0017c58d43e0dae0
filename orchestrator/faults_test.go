package orchestrator

import (
	"context"
	"sync"
	"time"

	"github.com/flowgate/flowgate/shared/bus"
	"github.com/flowgate/flowgate/shared/events"
	"github.com/flowgate/flowgate/shared/store"
)

// The orchestrator's crash tests wrap its Bus and Store in these
// decorators, which fail (or act) at precise points as a crash there
// would: the orchestrator has no test seam of its own.

// faultyBus is a Bus whose afterPublish runs once a batch of events is on
// its streams: an error it returns is the publisher's, as if the process
// had died right after the publish.
type faultyBus struct {
	Bus
	afterPublish func(evs []bus.Outgoing) error
}

func (b *faultyBus) PublishAll(ctx context.Context, evs []bus.Outgoing) error {
	if err := b.Bus.PublishAll(ctx, evs); err != nil {
		return err
	}
	if b.afterPublish != nil {
		return b.afterPublish(evs)
	}
	return nil
}

// eachPublishedRun calls f for the run of every message bundle in evs, in
// order, and stops at its first error: a test's "crash after the n-th run
// published its messages".
func eachPublishedRun(f func(runID string) error) func(evs []bus.Outgoing) error {
	return func(evs []bus.Outgoing) error {
		for _, o := range evs {
			if o.Event.Type() != events.TypeOutbound && o.Event.Type() != events.TypeOutboundBatch {
				continue
			}
			bundles, err := events.Bundles(o.Event.Type(), o.Event.Data())
			if err != nil {
				return err
			}
			for _, b := range bundles { // alone, or sharing a message (outbatch.go)
				if err := f(b.RunID); err != nil {
					return err
				}
			}
		}
		return nil
	}
}

// faultyStore is a Store whose hooks run around its writes. before[name]
// runs before the write of that name (an error fails it, nothing
// written); afterUpdateTrigger runs after a trigger update or checkpoint
// succeeded (an error is returned as the update's, as a crash right after
// it).
type faultyStore struct {
	Store
	mu                 sync.Mutex
	before             map[string]func() error
	calls              []string
	afterUpdateTrigger func(store.Trigger) error
	// afterListRuns runs after a list of runs was read.
	afterListRuns func()
}

func (s *faultyStore) ListRuns(ctx context.Context, f store.RunFilter) ([]store.Run, string, error) {
	runs, next, err := s.Store.ListRuns(ctx, f)
	s.mu.Lock()
	after := s.afterListRuns
	s.mu.Unlock()
	if after != nil {
		after()
	}
	return runs, next, err
}

// onceBefore runs f (with the store's lock released) before the next write
// named name, which then goes ahead.
func (s *faultyStore) onceBefore(name string, f func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.before[name] = func() error {
		s.mu.Lock()
		delete(s.before, name)
		s.mu.Unlock()
		f()
		return nil
	}
}

// record notes a write and runs its before hook.
func (s *faultyStore) record(name string) error {
	s.mu.Lock()
	s.calls = append(s.calls, name)
	f := s.before[name]
	s.mu.Unlock()
	if f != nil {
		return f()
	}
	return nil
}

// writes returns the writes made so far, in order, and forgets them.
func (s *faultyStore) writes() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := s.calls
	s.calls = nil
	return out
}

func (s *faultyStore) UpdateTrigger(ctx context.Context, t store.Trigger) (store.Trigger, error) {
	if err := s.record("UpdateTrigger"); err != nil {
		return store.Trigger{}, err
	}
	u, err := s.Store.UpdateTrigger(ctx, t)
	if err == nil && s.afterUpdateTrigger != nil {
		err = s.afterUpdateTrigger(u)
	}
	return u, err
}

func (s *faultyStore) CheckpointTrigger(ctx context.Context, t store.Trigger, d store.TriggerCounters) (store.Trigger, error) {
	if err := s.record("CheckpointTrigger"); err != nil {
		return store.Trigger{}, err
	}
	u, err := s.Store.CheckpointTrigger(ctx, t, d)
	if err == nil && s.afterUpdateTrigger != nil {
		err = s.afterUpdateTrigger(u)
	}
	return u, err
}

func (s *faultyStore) CheckpointTriggers(ctx context.Context, cps []store.TriggerCheckpoint) ([]error, error) {
	if err := s.record("CheckpointTriggers"); err != nil {
		return nil, err
	}
	return s.Store.CheckpointTriggers(ctx, cps)
}

func (s *faultyStore) UpsertContacts(ctx context.Context, us []store.ContactUpsert) ([]store.Contact, error) {
	if err := s.record("UpsertContacts"); err != nil {
		return nil, err
	}
	return s.Store.UpsertContacts(ctx, us)
}

func (s *faultyStore) InsertMessages(ctx context.Context, ms []store.Message) error {
	if err := s.record("InsertMessages"); err != nil {
		return err
	}
	return s.Store.InsertMessages(ctx, ms)
}

func (s *faultyStore) CreateRuns(ctx context.Context, rs []store.Run) ([]store.Run, []bool, error) {
	if err := s.record("CreateRuns"); err != nil {
		return nil, nil, err
	}
	return s.Store.CreateRuns(ctx, rs)
}

func (s *faultyStore) UpdateRuns(ctx context.Context, rs []store.Run) ([]int, error) {
	if err := s.record("UpdateRuns"); err != nil {
		return nil, err
	}
	return s.Store.UpdateRuns(ctx, rs)
}

func (s *faultyStore) ClaimRuns(ctx context.Context, claims []store.RunClaim, by string, now, until time.Time) ([]store.ClaimRefusal, error) {
	if err := s.record("ClaimRuns"); err != nil {
		return nil, err
	}
	return s.Store.ClaimRuns(ctx, claims, by, now, until)
}
