package orchestrator

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	cloudevents "github.com/cloudevents/sdk-go/v2/event"

	"github.com/flowgate/flowgate/orchestrator/flow"
	"github.com/flowgate/flowgate/shared/bus"
	"github.com/flowgate/flowgate/shared/events"
	"github.com/flowgate/flowgate/shared/store"
)

// runState is what the runner keeps in store.Run.State: the interpreter's
// state plus the runner's own bookkeeping.
type runState struct {
	Flow flow.State `json:"flow"`
	// Replies are the provider ids of the last inbound messages applied, so
	// a provider's retry of a reply days later is not applied twice.
	Replies []string `json:"replies,omitempty"`
	// AwaitingWindow is how runs stored before the WhatsApp window moved
	// into the interpreter's state (flow.WaitWindow) said that they wait
	// for it; decodeState turns it into that state, and it is never
	// written again.
	AwaitingWindow bool `json:"awaiting_window,omitempty"`
	// StatusSeq numbers the run's status changes (0 = created). It names
	// each status event, so a slice replayed after a crash or a version
	// conflict publishes the same id and JetStream drops the copy.
	StatusSeq int64 `json:"status_seq,omitempty"`
	// Lane is the delivery lane of the run's messages that answer no user
	// (its first slice, timers): events.LaneBulk for a broadcast's runs.
	// Messages that answer the user always go in the high lane.
	Lane string `json:"lane,omitempty"`
}

// sendLane is the lane of the messages a run sends in answer to ev: a
// user's reply (or the opening of the WhatsApp window, or a completed
// WhatsApp Flow) is answered in the high lane; anything else keeps the
// run's own lane.
func sendLane(st runState, ev flow.Event) string {
	switch ev.(type) {
	case flow.Reply, flow.FlowCompleted, flow.Start:
		return events.LaneHigh
	}
	if events.KnownLane(st.Lane) {
		return st.Lane
	}
	return events.LaneHigh
}

const maxRememberedReplies = 32

func decodeState(r store.Run) (runState, error) {
	var st runState
	if len(r.State) == 0 {
		return st, nil
	}
	if err := json.Unmarshal(r.State, &st); err != nil {
		return st, fmt.Errorf("run %s: corrupt state: %w", r.ID, err)
	}
	if st.AwaitingWindow {
		st.AwaitingWindow = false
		st.Flow.RunID, st.Flow.Status, st.Flow.WaitingFor = r.ID, flow.StatusWaiting, flow.WaitWindow
	}
	return st, nil
}

// MessageID is the id of a run's message with sequence seq: deterministic,
// so a replayed event produces the same ids (and no second send).
func MessageID(runID string, seq int) string { return fmt.Sprintf("%s:%d", runID, seq) }

// latestTTL bounds how long the latest version of a flow is cached: a run
// triggered within this time after a flow is saved may start on the
// previous version.
const latestTTL = time.Second

type latestVersion struct {
	version int
	exp     time.Time
}

// definition loads a flow version, parsed once and cached (versions are
// immutable). Version 0 is the latest, looked up at most every latestTTL.
func (o *Orchestrator) definition(ctx context.Context, botID, flowID string, version int) (*flow.Definition, int, error) {
	if version == 0 {
		o.defsMu.RLock()
		l, ok := o.latest[botID+"\x00"+flowID]
		o.defsMu.RUnlock()
		if ok && time.Now().Before(l.exp) {
			version = l.version
		}
	}
	if version > 0 {
		key := fmt.Sprintf("%s\x00%s\x00%d", botID, flowID, version)
		o.defsMu.RLock()
		d, ok := o.defs[key]
		o.defsMu.RUnlock()
		if ok {
			return d, version, nil
		}
	}
	f, err := o.store.GetFlow(ctx, botID, flowID, version)
	if err != nil {
		return nil, 0, fmt.Errorf("flow %s/%s v%d: %w", botID, flowID, version, err)
	}
	d, err := flow.Parse(f.Definition)
	if err != nil {
		return nil, 0, fmt.Errorf("flow %s/%s v%d no longer parses: %w", botID, flowID, f.Version, err)
	}
	key := fmt.Sprintf("%s\x00%s\x00%d", botID, flowID, f.Version)
	o.defsMu.Lock()
	if len(o.defs) > 10_000 {
		o.defs = map[string]*flow.Definition{}
	}
	o.defs[key] = d
	if version == 0 {
		if len(o.latest) > 10_000 {
			o.latest = map[string]latestVersion{}
		}
		o.latest[botID+"\x00"+flowID] = latestVersion{version: f.Version, exp: time.Now().Add(latestTTL)}
	}
	o.defsMu.Unlock()
	return d, f.Version, nil
}

// slice is the outcome of applying one event to a run, with the effects
// that must leave the orchestrator.
type slice struct {
	state     runState
	lane      string // of sends
	sends     []events.OutboundMessage
	attrs     map[string]any
	waitUntil *time.Time
}

// advance applies ev to run and commits the outcome (commit). A version
// conflict means another event moved the run first: the handler is retried
// and reads the fresh run.
func (o *Orchestrator) advance(ctx context.Context, step string, run store.Run, contact store.Contact, ev flow.Event) error {
	st, err := decodeState(run)
	if err != nil {
		st, ev = corrupt(run, err, ev)
	}
	return o.advanceFrom(ctx, step, run, contact, st, ev)
}

// corrupt is the state and event that end a run whose stored state no
// longer decodes: a cancel still cancels it, anything else fails it. A
// corrupt state has no status sequence: the run's version is unique
// enough.
func corrupt(run store.Run, err error, ev flow.Event) (runState, flow.Event) {
	st := runState{StatusSeq: run.Version}
	if c, ok := ev.(flow.Cancel); ok {
		return st, c
	}
	return st, flow.Fail{Now: time.Now().UTC(), Reason: err.Error()}
}

// advanceFrom is advance with the run's decoded state. step names the step
// for the run's claim (claims.go).
func (o *Orchestrator) advanceFrom(ctx context.Context, step string, run store.Run, contact store.Contact, st runState, ev flow.Event) error {
	if store.RunFinal(run.Status) && !failsCompleted(run, ev) {
		return nil
	}
	if !flow.Accepts(st.Flow, ev) {
		return nil // a stale timer, a late reply: nothing changes
	}
	// Another step of this run in this process may have been taken since
	// the run was read: it is read again under the run's lock, and the
	// event is retried against the run as it is now (runLocks). Between
	// processes, the run's claim, taken before anything goes out, is what
	// lets one step through (claims.go).
	unlock := o.runs.lock(run.ID)
	defer unlock()
	cur, err := o.store.GetRun(ctx, run.BotID, run.ID)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return nil // deleted with its contact
	case err != nil:
		return err
	case cur.Version != run.Version:
		return changed(run.ID)
	}
	sl, err := o.next(ctx, &run, st, ev)
	if err != nil {
		return err
	}
	ctx, cancel := o.withinClaim(ctx)
	defer cancel()
	if err := o.claimRun(ctx, step, run); err != nil {
		if errors.Is(err, errGone) {
			return nil
		}
		return err
	}
	lost, err := o.commit(ctx, []pending{{run: run, contact: contact, sl: sl}}, o.updateRuns)
	if err != nil {
		return err
	}
	if len(lost) > 0 {
		return changed(run.ID)
	}
	return nil
}

// failsCompleted reports whether ev is a delivery failure of a run that
// completed: a short flow completes in the slice that sends its messages,
// before any delivery result exists, so a message that then fails must
// still fail the run (with the provider's reason), or run lookups and
// status webhooks would report success for a message that never arrived.
func failsCompleted(run store.Run, ev flow.Event) bool {
	_, failed := ev.(flow.DeliveryFailed)
	return failed && run.Status == store.RunCompleted
}

// brokenRun is why a run cannot go on — its flow is gone, the interpreter
// refused the event, the flow loops through http steps — as opposed to a
// store or bus failure, which is retried.
type brokenRun struct{ error }

// next computes what applying ev to run does, with the run's flow
// definition (apply). A run that cannot go on fails, through the
// interpreter too (flow.Fail): every status change is flow.Apply's.
func (o *Orchestrator) next(ctx context.Context, run *store.Run, st runState, ev flow.Event) (slice, error) {
	lane := sendLane(st, ev)
	def, _, err := o.definition(ctx, run.BotID, run.FlowID, run.FlowVersion)
	switch {
	case errors.Is(err, store.ErrNotFound):
		def = nil // the interrupts need none
		if flow.NeedsDefinition(ev) {
			ev = flow.Fail{Now: time.Now().UTC(), Reason: err.Error()}
		}
	case err != nil:
		return slice{}, err
	}
	flowID, version := run.FlowID, run.FlowVersion
	sl, err := o.apply(ctx, run, def, st, ev)
	if broken := (brokenRun{}); errors.As(err, &broken) {
		o.log.Warn("run failed", "bot", run.BotID, "run", run.ID, "reason", broken.Error())
		run.FlowID, run.FlowVersion = flowID, version
		sl, err = o.apply(ctx, run, nil, st, flow.Fail{Now: time.Now().UTC(), Reason: broken.Error()})
	}
	if err != nil {
		return slice{}, err
	}
	sl.lane = lane
	return sl, nil
}

// apply runs the interpreter until it waits or ends, performing HTTP calls
// and flow hand-overs inline.
func (o *Orchestrator) apply(ctx context.Context, run *store.Run, def *flow.Definition, st runState, ev flow.Event) (slice, error) {
	sl := slice{}
	fs := st.Flow
	for hops := 0; ; hops++ {
		if hops > 64 {
			return sl, brokenRun{errors.New("too many http calls or flow hand-overs in one step")}
		}
		next, effects, err := flow.Apply(def, fs, ev)
		if err != nil {
			return sl, brokenRun{err}
		}
		fs = next
		ev = nil
		for _, e := range effects {
			switch e := e.(type) {
			case flow.Send:
				sl.sends = append(sl.sends, events.OutboundMessage{
					ID: MessageID(run.ID, e.Seq), Seq: e.Seq, Step: e.Step, Content: e.Content,
				})
			case flow.ScheduleTimer:
				// The state's WaitDeadline is authoritative (below): a timer
				// scheduled by a step that has since completed inline (an
				// http call) must not be stored.
			case flow.SetAttributes:
				if sl.attrs == nil {
					sl.attrs = map[string]any{}
				}
				maps.Copy(sl.attrs, e.Values)
			case flow.CallHTTP:
				res := o.callHTTP(ctx, e)
				ev = res
			case flow.GotoFlow:
				d, v, err := o.definition(ctx, run.BotID, e.FlowID, 0)
				if errors.Is(err, store.ErrNotFound) {
					return sl, brokenRun{err}
				}
				if err != nil {
					return sl, err
				}
				def, run.FlowID, run.FlowVersion = d, e.FlowID, v
				fs = flow.State{}
				start := e.Start
				start.RunID = run.ID
				ev = start
			}
		}
		if ev == nil {
			break
		}
	}
	st.Flow = fs
	sl.state = st
	if fs.Status == flow.StatusWaiting && !fs.WaitDeadline.IsZero() {
		at := fs.WaitDeadline.UTC()
		sl.waitUntil = &at
	}
	return sl, nil
}

// settle gives run the outcome of sl: its state, status, error and wait.
// A status change takes the next status number. It returns the previous
// status.
func settle(run *store.Run, sl *slice, now time.Time) (prev string, err error) {
	prev = run.Status
	status := runStatus(sl.state)
	if status != prev {
		sl.state.StatusSeq++
	}
	raw, err := json.Marshal(sl.state)
	if err != nil {
		return prev, bus.Permanent(err)
	}
	run.State = raw
	run.Status = status
	run.Error = sl.state.Flow.Error
	run.WaitUntil = nil
	if run.Status == store.RunWaiting {
		run.WaitUntil = sl.waitUntil
	}
	run.UpdatedAt = now
	return prev, nil
}

func runStatus(st runState) string {
	switch st.Flow.Status {
	case flow.StatusWaiting:
		return store.RunWaiting
	case flow.StatusCompleted:
		return store.RunCompleted
	case flow.StatusFailed:
		return store.RunFailed
	case flow.StatusCancelled:
		return store.RunCancelled
	case flow.StatusExpired:
		return store.RunExpired
	}
	return store.RunRunning
}

// messageRecords appends the store records of a run's messages to recs.
func messageRecords(recs []store.Message, run store.Run, contact store.Contact, sends []events.OutboundMessage, lane string, now time.Time) ([]store.Message, error) {
	for _, m := range sends {
		content, err := json.Marshal(m.Content)
		if err != nil {
			return recs, bus.Permanent(err)
		}
		recs = append(recs, store.Message{
			ID: m.ID, BotID: run.BotID, RunID: run.ID, TriggerID: run.TriggerID, ContactID: contact.ID,
			Channel: run.Channel, To: contact.ExternalID, Seq: m.Seq, Content: content,
			Status: events.StatusQueued, Lane: lane, CreatedAt: now, UpdatedAt: now,
		})
	}
	return recs, nil
}

// outboundBundle is the bundle of a run's messages for its channel worker
// (published by appendOutbound, under ids that name its messages, so a
// replay is dropped by JetStream).
func outboundBundle(run store.Run, contact store.Contact, sends []events.OutboundMessage, lane string) events.Outbound {
	return events.Outbound{
		BotID: run.BotID, RunID: run.ID, TriggerID: run.TriggerID, ContactID: contact.ID,
		Channel: run.Channel, To: contact.ExternalID, Messages: sends,
		LastInboundAt: contact.LastInboundAt, Lane: lane,
	}
}

// statusEvent is a run's status change number seq; its id names the
// number, so a replay is dropped by JetStream.
//
// The run is as settled, not yet written: its write makes the stored
// version one more (an insert of a new run, at version 0 here, stores 1).
func statusEvent(run store.Run, prev string, seq int64) (cloudevents.Event, error) {
	rs := events.RunStatus{
		BotID: run.BotID, RunID: run.ID, TriggerID: run.TriggerID, FlowID: run.FlowID,
		ContactID: run.ContactID, Status: run.Status, Previous: prev, Error: run.Error,
		Version: seq, At: time.Now().UTC(), RunVersion: run.Version + 1,
	}
	ev, err := bus.NewEvent(fmt.Sprintf("run:%s:%d:%s", run.ID, seq, run.Status), events.TypeRunStatus, run.ID, rs)
	if err != nil {
		return ev, bus.Permanent(err)
	}
	return ev, nil
}

// rememberReply records an applied inbound message id; it reports false if
// the id was applied before.
func (st *runState) rememberReply(id string) bool {
	if id == "" {
		return true
	}
	if slices.Contains(st.Replies, id) {
		return false
	}
	st.Replies = append(st.Replies, id)
	if len(st.Replies) > maxRememberedReplies {
		st.Replies = st.Replies[len(st.Replies)-maxRememberedReplies:]
	}
	return true
}
