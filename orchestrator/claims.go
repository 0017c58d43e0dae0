package orchestrator

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/flowgate/flowgate/shared/bus"
	"github.com/flowgate/flowgate/shared/store"
)

// Claims close the window runLocks leave between orchestrator processes. A
// step publishes its effects before it stores the run's new state (commit),
// so two replicas stepping one run at once — a reply on one, a cancel on
// the other — would both publish, and the loser of the version check
// would have sent its messages and announced its status for a change that
// never happened. Before any effect leaves, a step claims the run in the
// store (store.ClaimRuns) at the version it read: of two steps, one takes
// the claim, the other is refused and retried against the run as the
// first leaves it. The run's write ends the claim.
//
// A claim is named for its step's event (stepName): the same event
// redelivered after its process died takes the run back at once and
// replays the same effects (JetStream and the channel workers drop the
// copies), where any other step waits. A claim whose step died and whose
// event never comes back lapses after Config.ClaimLease.

// errRunClaimed: another step holds the run's claim.
var errRunClaimed = errors.New("another step of the run is under way")

// stepName names a step for its claims: what kind of step, and the event
// (or the run and deadline) that makes it. Long event ids are hashed.
func stepName(kind, id string) string {
	if len(kind)+1+len(id) > 200 {
		sum := sha256.Sum256([]byte(id))
		id = "sha256:" + hex.EncodeToString(sum[:])
	}
	return kind + ":" + id
}

// timerStep names the step of a run's timer in this process. Every
// replica polls for due timers and finds the same ones: named per process,
// one replica's step takes the run and the others are refused before they
// publish anything (named alike, all would go through the claim, publish
// copies and lose the version check but one). A timer whose process died
// mid-step fires again once its claim lapses.
func (o *Orchestrator) timerStep(run store.Run) string {
	at := int64(0)
	if run.WaitUntil != nil {
		at = run.WaitUntil.UnixNano()
	}
	return stepName("timer", fmt.Sprintf("%s:%d:%s", run.ID, at, o.id))
}

// claimRuns claims runs (as read) for step until the lease ends.
func (o *Orchestrator) claimRuns(ctx context.Context, step string, runs []store.Run) ([]store.ClaimRefusal, error) {
	claims := make([]store.RunClaim, len(runs))
	for i, r := range runs {
		claims[i] = store.RunClaim{BotID: r.BotID, RunID: r.ID, Version: r.Version}
	}
	now := o.now()
	return o.store.ClaimRuns(ctx, claims, step, now, now.Add(o.cfg.ClaimLease))
}

// withinClaim bounds what a step does under its claims (taken after this
// call) to nine tenths of the lease: a step stalled that long gives up
// before its claim lapses and another step may take the run, so the two do
// not publish side by side (but for publishes already in flight then).
func (o *Orchestrator) withinClaim(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, o.cfg.ClaimLease*9/10)
}

// claimRun claims one run for a step: nil if it is the step's, errGone if
// the run no longer exists, a retry otherwise — soon if the run moved on
// (the step is taken again against the run as it is now), later if another
// step holds it (transient: never dead-lettered for waiting).
func (o *Orchestrator) claimRun(ctx context.Context, step string, run store.Run) error {
	refused, err := o.claimRuns(ctx, step, []store.Run{run})
	if err != nil || len(refused) == 0 {
		return err
	}
	return refusalErr(run.ID, refused[0])
}

// errGone: the run was deleted (with its contact) since it was read.
var errGone = errors.New("run is gone")

// claimRetryCap caps the backoff of a step waiting for another step's
// claim. The holder usually finishes within milliseconds; if it died, the
// run is free once its claim lapses or its event comes back to another
// replica (after the step consumers' 5 s ack wait, bus.StepAckWait), and
// a waiting step then goes on within this cap rather than after a backoff
// grown to a minute.
// A retry costs one claim attempt (one store write).
const claimRetryCap = 2 * time.Second

func refusalErr(runID string, r store.ClaimRefusal) error {
	switch {
	case r.Gone:
		return errGone
	case !r.HeldUntil.IsZero():
		runsClaimBusy.Inc()
		return bus.TransientWithin(fmt.Errorf("run %s: %w (its claim lapses at %s)", runID, errRunClaimed, r.HeldUntil.Format(time.RFC3339Nano)), claimRetryCap)
	}
	return changed(runID)
}

// changed is the retry of a step whose run moved on since it was read: soon,
// against the run as it is now. Transient: a run stepped often (a reply
// and the delivery results of many messages at once) may make a step meet
// it more often than MaxDeliver allows, and the step is not poison.
func changed(runID string) error {
	return bus.Transient(bus.RetryAfter(fmt.Errorf("run %s changed since it was read: %w", runID, store.ErrVersionConflict), 50*time.Millisecond))
}

// claimBatch claims the stored runs of a batch before it starts them: runs
// that moved on or are gone are left out (they keep what they became); if
// another step holds one, the batch is retried (its own claims are renewed
// then, under the same step name).
func (o *Orchestrator) claimBatch(ctx context.Context, step string, batch []pending) ([]pending, error) {
	runs := make([]store.Run, len(batch))
	for i, b := range batch {
		runs[i] = b.run
	}
	refused, err := o.claimRuns(ctx, step, runs)
	if err != nil || len(refused) == 0 {
		return batch, err
	}
	out := make([]pending, 0, len(batch))
	skip := make(map[int]bool, len(refused))
	for _, r := range refused {
		if !r.HeldUntil.IsZero() {
			return nil, refusalErr(batch[r.Index].run.ID, r)
		}
		skip[r.Index] = true
		o.log.Debug("run changed while it started", "bot", batch[r.Index].run.BotID, "run", batch[r.Index].run.ID)
	}
	for i, b := range batch {
		if !skip[i] {
			out = append(out, b)
		}
	}
	return out, nil
}

// newProcessID is a random name for this orchestrator instance.
func newProcessID() string {
	var b [8]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go 1.24+)
	return hex.EncodeToString(b[:])
}
