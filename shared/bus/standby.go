package bus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	cloudevents "github.com/cloudevents/sdk-go/v2/event"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/flowgate/flowgate/shared/events"
)

// The standby triggers stream.
//
// On a NATS cluster a stream takes no message while it has no leader: when
// the node leading FLOWGATE_TRIGGERS is lost, its followers wait for the
// leader's heartbeat for a random 4–9 s (nats-server's raft election
// timeout, a constant) before electing another. For that long every
// trigger publish would fail, and the ingress would answer 503.
//
// So a trigger goes to a second stream, FLOWGATE_TRIGGERS_STANDBY, when
// FLOWGATE_TRIGGERS does not take it: when no server answers the publish
// (no leader) or no acknowledgement comes within StandbyAfter. The
// orchestrator reads both streams alike, and KeepTriggerLeadersApart keeps
// the two streams' leaders on different nodes, so that one lost node
// leaves one of them able to take triggers at once.
//
// Nothing is doubled: a trigger published on both (its first publish
// stored after all, its acknowledgement lost) has one id in both, and the
// store keeps a trigger once by id (CreateTrigger), as for a redelivery.
// JetStream's duplicate window is per stream, though: a client's retry
// that lands on the other stream is answered 202 rather than "duplicate",
// and still starts nothing twice. A stream that refuses a trigger (full:
// maximum bytes) is not bypassed: that refusal is back-pressure, answered
// 503.
//
// Only a replicated triggers stream has a standby worth using: on one
// server both streams are there together, and a publish that timed out
// would only load that server twice.

// DefaultStandbyAfter is how long a trigger publish waits for
// FLOWGATE_TRIGGERS's acknowledgement before publishing on the standby
// stream: about 40 times the p99 of an fsynced publish on a loaded
// three-node cluster (docs/performance.md), and short against the
// election it steps around.
const DefaultStandbyAfter = time.Second

// triggerPrefix is the start of every trigger subject.
const triggerPrefix = events.SubjectTrigger + "."

// noRetry turns off the client's own retries of a publish no server
// answered (2 × 250 ms by default): with a standby to go to, waiting out a
// leaderless stream only delays the trigger.
var noRetry = jetstream.WithRetryAttempts(0)

// standbySubject is the standby stream's subject for a trigger subject.
func standbySubject(subject string) string {
	return events.SubjectTriggerStandby + "." + subject[len(triggerPrefix):]
}

// setStandby records the configured wait (Config.StandbyAfter) and
// switches the standby on when the triggers stream is replicated.
func (b *Bus) setStandby(ctx context.Context, after time.Duration) error {
	if after == 0 {
		after = DefaultStandbyAfter
	}
	b.standbyWant = after
	_, err := b.refreshStandby(ctx)
	return err
}

// refreshStandby switches the standby on or off as the triggers stream is
// replicated or not (an operator may change it while Flowgate runs) and
// says whether it changed.
func (b *Bus) refreshStandby(ctx context.Context) (bool, error) {
	if b.standbyWant < 0 {
		return false, nil
	}
	s, err := b.js.Stream(ctx, StreamTriggers)
	if err != nil {
		return false, fmt.Errorf("bus: stream %s: %w", StreamTriggers, err)
	}
	want := int64(0)
	if s.CachedInfo().Config.Replicas > 1 {
		want = int64(b.standbyWant)
	}
	return b.standbyAfter.Swap(want) != want, nil
}

// publishTrigger publishes a trigger on subject and, when FLOWGATE_TRIGGERS
// does not take it, on the standby stream.
func (b *Bus) publishTrigger(ctx context.Context, subject string, e cloudevents.Event, after time.Duration) (PublishResult, error) {
	id := MsgID(e.ID())
	actx, cancel := context.WithTimeout(ctx, after)
	res, err := b.publishMsg(actx, toMsg(subject, e, id), noRetry)
	cancel()
	if err == nil {
		return res, nil
	}
	reason := standbyReason(err)
	if reason == "" || ctx.Err() != nil {
		return res, classifyPublishError(err)
	}
	sres, serr := b.publishMsg(ctx, toMsg(standbySubject(subject), e, id))
	if serr == nil {
		standbyPublishes.WithLabelValues(reason).Inc()
		return sres, nil
	}
	first, second := classifyPublishError(err), classifyPublishError(serr)
	if errors.Is(first, ErrOutcomeUnknown) && !errors.Is(second, ErrOutcomeUnknown) {
		// The first publish may have been stored: say so.
		return PublishResult{}, &standbyFailed{fmt.Errorf("%w (standby stream: %v)", first, serr)}
	}
	return PublishResult{}, &standbyFailed{fmt.Errorf("%w (triggers stream: %v)", second, err)}
}

// standbyFailed is the error of a trigger that neither stream took. Publish
// counts it (flowgate_bus_trigger_standby_publishes_total{reason="failed"})
// when its last try ends so: a try that fails and is followed by one that
// succeeds answers no request 503.
type standbyFailed struct{ err error }

func (e *standbyFailed) Error() string { return e.err.Error() }
func (e *standbyFailed) Unwrap() error { return e.err }

// standbyReason says why a failed trigger publish goes to the standby
// stream ("no_responders": the stream has no leader; "no_ack": no
// acknowledgement in time, or the connection was lost while waiting), or
// "" when it does not: the server refused it (stream full, …), the caller
// gave up, or nothing could be sent at all (not connected).
func standbyReason(err error) string {
	var apiErr *jetstream.APIError
	switch {
	case errors.Is(err, nats.ErrNoResponders), errors.Is(err, jetstream.ErrNoStreamResponse):
		return "no_responders"
	case errors.As(err, &apiErr), errors.Is(err, context.Canceled),
		errors.Is(err, errNotConnected), errors.Is(err, nats.ErrConnectionClosed),
		errors.Is(err, nats.ErrConnectionDraining), errors.Is(err, nats.ErrReconnectBufExceeded),
		errors.Is(err, jetstream.ErrTooManyStalledMsgs):
		return ""
	default:
		return "no_ack"
	}
}

// StandbyEnabled reports whether trigger publishes may go to the standby
// stream (the triggers stream is replicated).
func (b *Bus) StandbyEnabled() bool { return b.standbyAfter.Load() > 0 }

// KeepTriggerLeadersApart checks every interval (0 = 5 s) whether the
// triggers stream is replicated, switching the standby on or off to match
// (an operator's `nats stream edit --replicas` takes effect without a
// restart), and that the triggers stream and its standby are led by
// different NATS servers: when one server leads both, it asks the
// standby's leader to step down in favour of another current replica. It
// returns when ctx ends, at once when the standby is configured off
// (Config.StandbyAfter < 0). Several processes may run it: a second step
// down finds the leaders apart and does nothing.
func (b *Bus) KeepTriggerLeadersApart(ctx context.Context, interval time.Duration) error {
	if b.standbyWant < 0 {
		return nil
	}
	if interval <= 0 {
		interval = 5 * time.Second
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		changed, err := b.refreshStandby(ctx)
		switch {
		case err != nil && ctx.Err() == nil:
			b.log.Warn("bus: could not read the triggers stream's replicas", "err", err)
		case changed:
			b.log.Info("bus: the standby triggers stream is now used as the triggers stream's replicas say", "stream", StreamTriggersStandby, "on", b.StandbyEnabled())
		}
		if b.StandbyEnabled() {
			if _, err := b.SpreadTriggerLeaders(ctx); err != nil && ctx.Err() == nil {
				b.log.Warn("bus: could not move the standby triggers stream's leader away from the triggers stream's", "err", err)
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// SpreadTriggerLeaders does one check of KeepTriggerLeadersApart and says
// to which server it asked the standby's leadership to move ("" when it
// asked nothing: the leaders are apart, or either stream has no leader or
// no other current replica).
func (b *Bus) SpreadTriggerLeaders(ctx context.Context) (string, error) {
	primary, err := b.streamCluster(ctx, StreamTriggers)
	if err != nil || primary == nil {
		return "", err
	}
	standby, err := b.streamCluster(ctx, StreamTriggersStandby)
	if err != nil || standby == nil {
		return "", err
	}
	if primary.Leader == "" || standby.Leader != primary.Leader {
		return "", nil
	}
	to := ""
	for _, p := range standby.Replicas {
		if p != nil && p.Current && !p.Offline && p.Name != primary.Leader {
			to = p.Name
			break
		}
	}
	if to == "" {
		return "", nil
	}
	req, _ := json.Marshal(map[string]any{"placement": map[string]string{"preferred": to}})
	msg, err := b.nc.RequestWithContext(ctx, "$JS.API.STREAM.LEADER.STEPDOWN."+StreamTriggersStandby, req)
	if err != nil {
		return "", fmt.Errorf("step down %s: %w", StreamTriggersStandby, err)
	}
	var resp struct {
		Success bool `json:"success"`
		Error   *struct {
			Description string `json:"description"`
		} `json:"error"`
	}
	if err := json.Unmarshal(msg.Data, &resp); err != nil {
		return "", fmt.Errorf("step down %s: %w", StreamTriggersStandby, err)
	}
	if !resp.Success {
		desc := "refused"
		if resp.Error != nil {
			desc = resp.Error.Description
		}
		return "", fmt.Errorf("step down %s: %s", StreamTriggersStandby, desc)
	}
	leaderMoves.Inc()
	b.log.Info("bus: moved the standby triggers stream's leader away from the triggers stream's", "from", primary.Leader, "to", to)
	return to, nil
}

// streamCluster is the cluster part of a stream's info, nil when the
// stream is not replicated on a cluster.
func (b *Bus) streamCluster(ctx context.Context, name string) (*jetstream.ClusterInfo, error) {
	s, err := b.js.Stream(ctx, name)
	if err != nil {
		return nil, fmt.Errorf("stream %s: %w", name, err)
	}
	ci := s.CachedInfo()
	if ci.Config.Replicas < 2 {
		return nil, nil
	}
	return ci.Cluster, nil
}
