package store

import (
	"encoding/json"
	"fmt"
	"time"
)

// Record checks that every adapter applies before any I/O. Each returns an
// *InvalidError naming the first bad field, checking fields in a fixed
// order, so that both adapters refuse the same input with the same error.
// What the adapters store differently (time precision, encodings) stays
// with them.

// The range of times a record may carry: int64 nanoseconds since 1970, what
// the SQLite adapter stores.
var (
	minTime = time.Unix(0, -1<<63+1)
	maxTime = time.Unix(0, 1<<63-1)
)

// CheckTime returns an *InvalidError unless t is within 1678..2262 (int64
// nanoseconds since 1970). The zero time means "not set" and passes.
func CheckTime(field string, t time.Time) error {
	if !t.IsZero() && (t.Before(minTime) || t.After(maxTime)) {
		return &InvalidError{Field: field, Reason: "time out of range (1678..2262)"}
	}
	return nil
}

// CheckText returns an *InvalidError if a free-text field is larger than
// MaxFieldBytes.
func CheckText(field, s string) error {
	return CheckSize(field, len(s))
}

// CheckJSON returns an *InvalidError unless raw is valid JSON of at most
// MaxFieldBytes; an empty raw passes unless required.
func CheckJSON(field string, raw json.RawMessage, required bool) error {
	if len(raw) == 0 {
		if required {
			return &InvalidError{Field: field, Reason: "required"}
		}
		return nil
	}
	if err := CheckSize(field, len(raw)); err != nil {
		return err
	}
	if !json.Valid(raw) {
		return &InvalidError{Field: field, Reason: "not valid JSON"}
	}
	return nil
}

// CheckLimit returns the page size for a requested limit: def when it is
// 0, at most most. A negative limit is an *InvalidError.
func CheckLimit(limit, def, most int) (int, error) {
	switch {
	case limit < 0:
		return 0, &InvalidError{Field: "limit", Reason: "negative"}
	case limit == 0:
		return def, nil
	case limit > most:
		return most, nil
	}
	return limit, nil
}

// CheckRunStatus returns an *InvalidError unless s is a run status.
func CheckRunStatus(s string) error {
	switch s {
	case RunCreated, RunQueued, RunRunning, RunWaiting, RunCompleted, RunFailed, RunCancelled, RunExpired:
		return nil
	}
	return &InvalidError{Field: "status", Reason: fmt.Sprintf("unknown run status %q", s)}
}

func checkMessageStatus(s string) error {
	switch s {
	case MessageQueued, MessageSent, MessageDelivered, MessageRead, MessageFailed:
		return nil
	}
	return &InvalidError{Field: "status", Reason: fmt.Sprintf("unknown message status %q", s)}
}

func checkTriggerStatus(s string) error {
	switch s {
	case TriggerAccepted, TriggerFanningOut, TriggerDone, TriggerCancelled, TriggerPaused:
		return nil
	}
	return &InvalidError{Field: "status", Reason: fmt.Sprintf("unknown trigger status %q", s)}
}

// FirstErr returns the first non-nil error.
func FirstErr(errs ...error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// Checker checks records before an adapter writes them. Its zero value
// checks free text by size only; an adapter with stricter rules for text
// sets Text. The checks that take a pointer also fill the record's default
// status; the other defaults (times, versions) are the adapter's, as it
// knows its time precision.
type Checker struct {
	// Text checks a free-text field (a name, an error, an id that is not a
	// key); nil means CheckText. The MongoDB adapter also requires UTF-8.
	Text func(field, s string) error
}

func (c Checker) text(field, s string) error {
	if c.Text == nil {
		return CheckText(field, s)
	}
	return c.Text(field, s)
}

// Bot checks a bot to be created or updated.
func (c Checker) Bot(b Bot) error {
	return FirstErr(CheckBotID("id", b.ID), c.text("name", b.Name),
		CheckTime("created_at", b.CreatedAt), CheckTime("updated_at", b.UpdatedAt))
}

// APIKey checks an API key to be created.
func (c Checker) APIKey(k APIKey) error {
	return FirstErr(CheckID("id", k.ID), CheckBotID("bot_id", k.BotID),
		CheckID("hash", k.Hash), c.text("prefix", k.Prefix), CheckTime("created_at", k.CreatedAt),
		checkKeyScope(k))
}

// Flow checks a flow version to be stored, but for its definition, which
// the adapter checks (CheckJSON, required) as it encodes it.
func (c Checker) Flow(f Flow) error {
	return FirstErr(CheckBotID("bot_id", f.BotID), CheckID("id", f.ID), CheckTime("created_at", f.CreatedAt))
}

// Event checks an event to be put.
func (c Checker) Event(e Event) error {
	return FirstErr(CheckBotID("bot_id", e.BotID), CheckID("name", e.Name),
		CheckID("flow_id", e.FlowID), c.text("token_hash", e.TokenHash),
		CheckTime("created_at", e.CreatedAt), CheckTime("updated_at", e.UpdatedAt),
		CheckJSON("input", e.Input, false))
}

// ContactUpsert checks an upsert but for its attributes and last request,
// which the adapter checks as it encodes them.
func (c Checker) ContactUpsert(u ContactUpsert) error {
	err := FirstErr(CheckBotID("bot_id", u.BotID), CheckID("channel", u.Channel),
		CheckID("external_id", u.ExternalID), c.text("name", u.Name))
	if err == nil && u.NewID != "" {
		err = CheckID("id", u.NewID)
	}
	if err == nil && u.LastInboundAt != nil {
		err = CheckTime("last_inbound_at", *u.LastInboundAt)
	}
	if err == nil {
		err = CheckTime("now", u.Now)
	}
	return err
}

// ContactReachability checks the arguments of SetContactReachability.
func (c Checker) ContactReachability(botID, id, reason string) error {
	return FirstErr(CheckBotID("bot_id", botID), CheckID("id", id), c.text("reason", reason))
}

// Trigger checks a trigger to be created or updated, but for its spec,
// which the adapter checks (CheckJSON) as it encodes it. An empty status
// becomes accepted.
func (c Checker) Trigger(t *Trigger) error {
	err := FirstErr(CheckID("id", t.ID), CheckBotID("bot_id", t.BotID),
		c.text("source", t.Source), c.text("event", t.Event), c.text("flow_id", t.FlowID),
		c.text("channel", t.Channel), c.text("idempotency_key", t.IdempotencyKey), c.text("cursor", t.Cursor),
		CheckTime("created_at", t.CreatedAt), CheckTime("updated_at", t.UpdatedAt))
	if err != nil {
		return err
	}
	if t.Status == "" {
		t.Status = TriggerAccepted
	}
	return checkTriggerStatus(t.Status)
}

// MaxTriggersPerCall bounds the triggers of one CreateTriggers.
const MaxTriggersPerCall = 1000

// CheckTriggerCount checks the number of triggers of one CreateTriggers.
func CheckTriggerCount(n int) error {
	if n > MaxTriggersPerCall {
		return &InvalidError{Field: "triggers", Reason: fmt.Sprintf("more than %d", MaxTriggersPerCall)}
	}
	return nil
}

// MaxTriggerCheckpoints bounds the checkpoints of one CheckpointTriggers.
const MaxTriggerCheckpoints = 1000

// TriggerCheckpoints checks CheckpointTriggers' checkpoints: each names a
// trigger at a version, a known status, a cursor of text and skip reasons
// SkipReasons accepts; at most MaxTriggerCheckpoints of them.
func (c Checker) TriggerCheckpoints(cps []TriggerCheckpoint) error {
	if len(cps) > MaxTriggerCheckpoints {
		return &InvalidError{Field: "checkpoints", Reason: fmt.Sprintf("more than %d", MaxTriggerCheckpoints)}
	}
	for i, cp := range cps {
		err := FirstErr(CheckBotID("bot_id", cp.BotID), CheckID("id", cp.ID), checkTriggerStatus(cp.Status),
			c.text("cursor", cp.Cursor), c.SkipReasons(cp.Delta.SkipReasons))
		if err == nil && cp.Version < 1 {
			err = &InvalidError{Field: "version", Reason: "must be at least 1"}
		}
		if err != nil {
			return fmt.Errorf("checkpoint %d: %w", i, err)
		}
	}
	return nil
}

// SkipReasons checks the keys of skip-reason counters: 1 to MaxIDBytes bytes.
func (c Checker) SkipReasons(m map[string]int64) error {
	for k := range m {
		if k == "" || len(k) > MaxIDBytes {
			return &InvalidError{Field: "skip_reasons", Reason: "reason must be 1 to 128 bytes"}
		}
		if err := c.text("skip_reasons", k); err != nil {
			return err
		}
	}
	return nil
}

// RunIDs checks a run's keys: id and bot_id, and when the run is to be
// created also contact_id, flow_id and trigger_id (if set). An update may
// carry a flow_id or not; adapters check a set one themselves.
func (c Checker) RunIDs(r *Run, create bool) error {
	err := FirstErr(CheckID("id", r.ID), CheckBotID("bot_id", r.BotID))
	if err == nil && create {
		err = FirstErr(CheckID("contact_id", r.ContactID), CheckID("flow_id", r.FlowID))
		if err == nil && r.TriggerID != "" {
			err = CheckID("trigger_id", r.TriggerID)
		}
	}
	return err
}

// RunFields checks a run's other fields but for state and data, which the
// adapter checks as it encodes them: channel, status, times and error. An
// empty status of a run to be created becomes created.
func (c Checker) RunFields(r *Run, create bool) error {
	if len(r.Channel) > MaxIDBytes {
		return &InvalidError{Field: "channel", Reason: "too long"}
	}
	if err := c.text("channel", r.Channel); err != nil {
		return err
	}
	if r.Status == "" && create {
		r.Status = RunCreated
	}
	if err := CheckRunStatus(r.Status); err != nil {
		return err
	}
	if r.WaitUntil != nil {
		if err := CheckTime("wait_until", *r.WaitUntil); err != nil {
			return err
		}
	}
	return FirstErr(CheckTime("created_at", r.CreatedAt), CheckTime("updated_at", r.UpdatedAt), c.text("error", r.Error))
}

// Message checks a message to be inserted, but for its content, which the
// adapter checks (CheckJSON) as it encodes it. An empty status becomes
// queued.
func (c Checker) Message(m *Message) error {
	err := FirstErr(CheckID("id", m.ID), CheckBotID("bot_id", m.BotID), CheckID("run_id", m.RunID),
		c.text("trigger_id", m.TriggerID), c.text("contact_id", m.ContactID), c.text("channel", m.Channel),
		c.text("to", m.To), c.text("provider_message_id", m.ProviderMessageID), c.text("error", m.Error),
		CheckTime("created_at", m.CreatedAt), CheckTime("updated_at", m.UpdatedAt))
	if err != nil {
		return err
	}
	if m.Status == "" {
		m.Status = MessageQueued
	}
	return checkMessageStatus(m.Status)
}

// MessageStatusUpdate checks the argument of UpdateMessageStatus.
func (c Checker) MessageStatusUpdate(u StatusUpdate) error {
	if err := FirstErr(CheckBotID("bot_id", u.BotID), CheckID("id", u.MessageID),
		c.text("provider_id", u.ProviderMessageID), c.text("reason", u.Reason)); err != nil {
		return err
	}
	if len(u.ProviderMessageID) > 4*MaxIDBytes {
		return &InvalidError{Field: "provider_id", Reason: "longer than 512 bytes"}
	}
	return FirstErr(checkMessageStatus(u.Status), CheckTime("at", u.At))
}

// SandboxMessage checks a sandbox message to be appended, but for its
// content, which the adapter checks (CheckJSON) as it encodes it.
func (c Checker) SandboxMessage(m SandboxMessage) error {
	return FirstErr(CheckID("message_id", m.MessageID), CheckBotID("bot_id", m.BotID),
		c.text("run_id", m.RunID), c.text("to", m.To), CheckTime("created_at", m.CreatedAt))
}

// SandboxDeliveries checks DeliverSandboxMany's deliveries: every message
// (SandboxMessage), then each delivery and their size
// (DeliverSandboxManyArgs, whose marks it returns).
func (c Checker) SandboxDeliveries(ds []SandboxDelivery) ([]SandboxMarks, error) {
	for _, d := range ds {
		for _, m := range d.Messages {
			if err := c.SandboxMessage(m); err != nil {
				return nil, err
			}
		}
	}
	return DeliverSandboxManyArgs(ds)
}

// Subscription checks a webhook subscription to be created.
func (c Checker) Subscription(sub Subscription) error {
	if err := FirstErr(CheckID("id", sub.ID), CheckBotID("bot_id", sub.BotID),
		CheckID("secret", sub.Secret), c.text("url", sub.URL), CheckTime("created_at", sub.CreatedAt)); err != nil {
		return err
	}
	if sub.URL == "" {
		return &InvalidError{Field: "url", Reason: "required"}
	}
	return nil
}

// MaxWaitingRunsContacts bounds the contact ids of one WaitingRuns call.
const MaxWaitingRunsContacts = 10_000

// ContactIDsArgs checks a bot id and a batch of its contact ids (WaitingRuns,
// SetLastRequest).
func ContactIDsArgs(botID string, contactIDs []string) error {
	if err := CheckBotID("bot_id", botID); err != nil {
		return err
	}
	if len(contactIDs) > MaxWaitingRunsContacts {
		return &InvalidError{Field: "contact_ids", Reason: fmt.Sprintf("more than %d", MaxWaitingRunsContacts)}
	}
	for _, id := range contactIDs {
		if err := CheckID("contact_id", id); err != nil {
			return err
		}
	}
	return nil
}

// SetLastRequestArgs checks the arguments of SetLastRequest.
func SetLastRequestArgs(botID string, contactIDs []string, at time.Time) error {
	if err := ContactIDsArgs(botID, contactIDs); err != nil {
		return err
	}
	return CheckTime("at", at)
}

// MaxSentMessages bounds the messages of one MarkSent call.
const MaxSentMessages = 1000

// MarkSentArgs checks the arguments of MarkSent.
func MarkSentArgs(botID, triggerID string, ms []SentMessage) error {
	if err := CheckBotID("bot_id", botID); err != nil {
		return err
	}
	if triggerID != "" {
		if err := CheckID("trigger_id", triggerID); err != nil {
			return err
		}
	}
	if len(ms) > MaxSentMessages {
		return &InvalidError{Field: "messages", Reason: fmt.Sprintf("more than %d", MaxSentMessages)}
	}
	for _, m := range ms {
		if err := FirstErr(CheckID("id", m.ID), CheckText("provider_message_id", m.ProviderMessageID), CheckTime("at", m.At)); err != nil {
			return err
		}
	}
	return nil
}

// PrepareRun checks r (RunIDs, RunFields, and on an update a FlowID that is
// set) and fills what the store sets, alike in every adapter: a created run
// gets Version 1, CreatedAt (now when zero) and UpdatedAt (CreatedAt when
// zero); an updated run is stamped UpdatedAt now. A zero WaitUntil is none.
// now is the adapter's clock and round its precision (SQLite keeps
// nanoseconds, MongoDB milliseconds). The adapter encodes the JSON fields.
func (c Checker) PrepareRun(r *Run, create bool, now func() time.Time, round func(time.Time) time.Time) error {
	err := c.RunIDs(r, create)
	if err == nil && !create && r.FlowID != "" {
		err = CheckID("flow_id", r.FlowID)
	}
	if err == nil {
		err = c.RunFields(r, create)
	}
	if err != nil {
		return err
	}
	if r.WaitUntil != nil {
		if r.WaitUntil.IsZero() {
			r.WaitUntil = nil
		} else {
			w := round(*r.WaitUntil)
			r.WaitUntil = &w
		}
	}
	if !create {
		r.UpdatedAt = now()
		return nil
	}
	r.Version = 1
	if r.CreatedAt.IsZero() {
		r.CreatedAt = now()
	} else {
		r.CreatedAt = round(r.CreatedAt)
	}
	if r.UpdatedAt.IsZero() {
		r.UpdatedAt = r.CreatedAt
	}
	r.UpdatedAt = round(r.UpdatedAt)
	return nil
}

// SandboxProviderPrefix prefixes the provider message id of a sandbox
// message: "sandbox-" and the message id.
const SandboxProviderPrefix = "sandbox-"

// DeliverSandboxArgs checks DeliverSandbox's arguments (the messages
// themselves are checked as AppendSandbox checks them) and returns their
// bot and what is recorded as sent: one SentMessage each, with the
// provider id "sandbox-<id>", at CreatedAt.
func DeliverSandboxArgs(triggerID string, ms []SandboxMessage) (string, []SentMessage, error) {
	if len(ms) == 0 {
		return "", nil, nil
	}
	botID := ms[0].BotID
	sent := make([]SentMessage, len(ms))
	for i, m := range ms {
		if m.BotID != botID {
			return "", nil, &InvalidError{Field: "messages", Reason: "messages of more than one bot"}
		}
		sent[i] = SentMessage{ID: m.MessageID, ProviderMessageID: SandboxProviderPrefix + m.MessageID, At: m.CreatedAt}
	}
	return botID, sent, MarkSentArgs(botID, triggerID, sent)
}

// MaxSandboxDeliveries bounds the messages of one DeliverSandboxMany.
const MaxSandboxDeliveries = MaxSentMessages

// SandboxMarks is what DeliverSandboxArgs returns for one delivery: its
// bot and its messages as MarkSent takes them.
type SandboxMarks struct {
	BotID string
	Sent  []SentMessage
}

// DeliverSandboxManyArgs checks DeliverSandboxMany's deliveries as
// DeliverSandboxArgs checks each, and their number of messages; it
// returns each delivery's marks (an empty delivery's are zero).
func DeliverSandboxManyArgs(ds []SandboxDelivery) ([]SandboxMarks, error) {
	n := 0
	marks := make([]SandboxMarks, len(ds))
	for i, d := range ds {
		botID, sent, err := DeliverSandboxArgs(d.TriggerID, d.Messages)
		if err != nil {
			return nil, err
		}
		marks[i] = SandboxMarks{BotID: botID, Sent: sent}
		n += len(d.Messages)
	}
	if n > MaxSandboxDeliveries {
		return nil, &InvalidError{Field: "messages", Reason: fmt.Sprintf("more than %d in one delivery", MaxSandboxDeliveries)}
	}
	return marks, nil
}

// MaxClaimBy bounds the length of a claimant's name (ClaimRuns).
const MaxClaimBy = 512

// CheckClaims validates ClaimRuns' arguments: a claimant's name, now
// (required) and an until after it, and each claim's run.
func CheckClaims(claims []RunClaim, by string, now, until time.Time) error {
	if by == "" || len(by) > MaxClaimBy {
		return &InvalidError{Field: "by", Reason: fmt.Sprintf("must be 1 to %d bytes", MaxClaimBy)}
	}
	if now.IsZero() {
		return &InvalidError{Field: "now", Reason: "required"}
	}
	if err := FirstErr(CheckTime("now", now), CheckTime("until", until)); err != nil {
		return err
	}
	if !until.After(now) {
		return &InvalidError{Field: "until", Reason: "must be after now"}
	}
	for i, c := range claims {
		if err := FirstErr(CheckBotID("bot_id", c.BotID), CheckID("run_id", c.RunID)); err != nil {
			return fmt.Errorf("claim %d: %w", i, err)
		}
		if c.Version < 1 {
			return &InvalidError{Field: "version", Reason: fmt.Sprintf("claim %d: must be at least 1", i)}
		}
	}
	return nil
}
