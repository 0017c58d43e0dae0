package flow

import (
	"maps"
	"slices"
	"time"
)

// Status is where a run is in its life.
type Status string

// Run statuses. created and queued are the runner's (a State with either,
// or with none, accepts Start); a State returned by Apply is waiting or
// terminal.
const (
	StatusCreated   Status = "created"
	StatusQueued    Status = "queued"
	StatusRunning   Status = "running"
	StatusWaiting   Status = "waiting"
	StatusCompleted Status = "completed"
	StatusFailed    Status = "failed"
	StatusCancelled Status = "cancelled"
	StatusExpired   Status = "expired"
)

// Terminal reports whether no event can change a run with this status.
func (s Status) Terminal() bool {
	switch s {
	case StatusCompleted, StatusFailed, StatusCancelled, StatusExpired:
		return true
	}
	return false
}

// WaitKind is what a waiting run waits for.
type WaitKind string

// Wait kinds.
const (
	WaitReply          WaitKind = "reply"           // an ask: a Reply event
	WaitTimer          WaitKind = "timer"           // a wait step: TimerFired
	WaitHTTP           WaitKind = "http"            // an http step: HTTPResult
	WaitFlowCompletion WaitKind = "flow_completion" // a WhatsApp Flow: FlowCompleted
	// WaitWindow: the run sent the template that opens the contact's reply
	// window (Start.OpenWindow); the flow starts with the next Start.
	WaitWindow WaitKind = "window"
)

// MaxHistory bounds State.History: older entries are dropped first, so a
// long-lived run's state stays small.
const MaxHistory = 200

// State is everything the interpreter knows about one run. It is plain
// data: the runner stores it as JSON and hands it back on the next event.
type State struct {
	// RunID is the runner's id for the run; it seeds default Flow tokens.
	RunID  string `json:"run_id,omitempty"`
	Status Status `json:"status,omitempty"`
	// Cursor is the id of the current step (the waiting step, or the last
	// step once the run ended).
	Cursor string `json:"cursor,omitempty"`
	// WaitingFor and WaitDeadline describe a waiting run; the deadline is
	// zero when the wait has no timeout.
	WaitingFor   WaitKind  `json:"waiting_for,omitempty"`
	WaitDeadline time.Time `json:"wait_deadline,omitzero"`
	// FlowToken is the token a WaitFlowCompletion wait expects.
	FlowToken string `json:"flow_token,omitempty"`
	// Retries counts invalid answers to the current ask.
	Retries int `json:"retries,omitempty"`

	// Attributes is the contact's attributes as this run sees them: the
	// snapshot taken at start plus everything the run captured or set.
	// Changes also leave as SetAttributes effects.
	Attributes map[string]any `json:"attributes,omitempty"`
	// Vars are run variables: set steps, last_reply, http_status,
	// flow_response.
	Vars map[string]any `json:"vars,omitempty"`
	// Data is the trigger's data; it never changes during the run.
	Data map[string]any `json:"data,omitempty"`
	// LastRequest is the contact's last_request when the run started (the
	// data of the last external request that carried data, Botmother's
	// last_request); it never changes during the run.
	LastRequest map[string]any `json:"last_request,omitempty"`
	// Contact is a snapshot of who the run talks to (Attributes moved to
	// State.Attributes).
	Contact Contact `json:"contact"`

	// History is the most recent MaxHistory steps and resumptions.
	History []HistoryEntry `json:"history,omitempty"`
	// StepsExecuted counts every step this run executed, for the budget.
	StepsExecuted int `json:"steps_executed"`
	// NextSeq is the sequence number of the next message; message ids are
	// run id + seq, so they are the same however often an event is replayed.
	NextSeq int `json:"next_seq"`

	// Error says why a run failed, expired or was cancelled.
	Error     string    `json:"error,omitempty"`
	StartedAt time.Time `json:"started_at,omitzero"`
	UpdatedAt time.Time `json:"updated_at,omitzero"`
	EndedAt   time.Time `json:"ended_at,omitzero"`
}

// Contact is the part of a contact a flow can see.
type Contact struct {
	ID         string         `json:"id,omitempty"`
	Name       string         `json:"name,omitempty"`
	ExternalID string         `json:"external_id,omitempty"`
	Channel    string         `json:"channel,omitempty"`
	Attributes map[string]any `json:"attributes,omitempty"`
	// LastRequest is the contact's last_request, an input of Start only
	// (moved to State.LastRequest).
	LastRequest map[string]any `json:"last_request,omitempty"`
}

// HistoryEntry records one executed step or one resumption of a wait.
type HistoryEntry struct {
	Step    string    `json:"step"`
	Type    StepType  `json:"type"`
	At      time.Time `json:"at"`
	Outcome string    `json:"outcome"`
}

// clone copies the parts of a state Apply mutates, so that Apply never
// changes the caller's maps or slices.
func (st State) clone() State {
	st.Attributes = maps.Clone(st.Attributes)
	st.Vars = maps.Clone(st.Vars)
	st.History = slices.Clip(st.History)
	return st
}

func (st *State) record(step *Step, at time.Time, outcome string) {
	if len(st.History) >= MaxHistory {
		// Copy rather than reslice so the dropped entries can be collected.
		st.History = append(st.History[:0:0], st.History[len(st.History)-MaxHistory+1:]...)
	}
	st.History = append(st.History, HistoryEntry{Step: step.ID, Type: step.Type, At: at, Outcome: outcome})
}
