package orchestrator

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/flowgate/flowgate/shared/bus"
	"github.com/flowgate/flowgate/shared/events"
	"github.com/flowgate/flowgate/shared/provider"
	"github.com/flowgate/flowgate/shared/store"
)

var runNamespace = uuid.MustParse("a1f0c2de-29a4-4d8e-8a53-6c0d0b3e7f21")

// RunID is the id of the run of trigger for contact: deterministic, so a
// redelivered trigger finds the run it created before. It is the trigger id
// and the contact id joined by a dot: a broadcast's runs (and their
// messages, whose ids start with the run's) then sort in the order they
// are created — contact ids ascend, and trigger ids without an idempotency
// key are time-ordered UUIDs — so the store's indexes grow at their end
// instead of at random places (at a million runs, random inserts had
// halved the fan-out rate). Ids that would be long take the form of a
// UUID derived from both.
func RunID(triggerID, contactID string) string {
	if len(triggerID)+1+len(contactID) <= maxJoinedRunID && !strings.Contains(triggerID, ".") {
		return triggerID + "." + contactID
	}
	return uuid.NewSHA1(runNamespace, []byte(triggerID+"\x00"+contactID)).String()
}

// maxJoinedRunID bounds a trigger.contact run id (store ids may have 128 bytes).
const maxJoinedRunID = 96

// handleTrigger turns an accepted trigger into runs; a trigger batch (the
// ingress's group commit) is each of its triggers.
func (o *Orchestrator) handleTrigger(ctx context.Context, m bus.Message) error {
	if m.Event.Type() == events.TypeTriggerBatch {
		return o.handleTriggerBatch(ctx, m)
	}
	return o.trigger(ctx, m, m.Event.Data())
}

// trigger handles one trigger, spec its JSON.
func (o *Orchestrator) trigger(ctx context.Context, m bus.Message, spec []byte) error {
	f, err := o.prepare(ctx, spec)
	if err != nil || f == nil {
		return err
	}
	return f.run(ctx, m)
}

// prepare stores a trigger (once) and returns its fan-out, or nil when
// there is nothing to fan out: a redelivery of a trigger already handled,
// a paused one (resume publishes it again), or a cancelled one (whose
// batches a crash left under way are finished here).
func (o *Orchestrator) prepare(ctx context.Context, spec []byte) (*fanOut, error) {
	t, row, err := parseTrigger(spec)
	if err != nil {
		return nil, err
	}
	trig, fresh, err := o.store.CreateTrigger(ctx, row)
	if err != nil {
		return nil, storeRefusal(err)
	}
	return o.stored(ctx, t, trig, fresh)
}

// parseTrigger decodes a trigger and returns it with the row to store.
func parseTrigger(spec []byte) (events.Trigger, store.Trigger, error) {
	var t events.Trigger
	if err := json.Unmarshal(spec, &t); err != nil {
		return t, store.Trigger{}, bus.Permanent(fmt.Errorf("trigger payload: %w", err))
	}
	if t.ID == "" || t.BotID == "" || t.FlowID == "" {
		return t, store.Trigger{}, bus.Permanent(errors.New("trigger without id, bot or flow"))
	}
	now := time.Now().UTC()
	return t, store.Trigger{
		ID: t.ID, BotID: t.BotID, Source: t.Source, Event: t.Event, FlowID: t.FlowID, Channel: t.Channel,
		Spec: spec, IdempotencyKey: t.IdempotencyKey, Status: store.TriggerAccepted,
		CreatedAt: now, UpdatedAt: now,
	}, nil
}

// storeRefusal is the failure of a trigger the store will never take: its
// fields (ErrInvalid) or its id, another bot's (ErrConflict). Permanent:
// dead-lettered (a trigger of a batch split off alone) rather than retried
// until the consumer gives up on the whole message. Other errors are as
// they are.
func storeRefusal(err error) error {
	if errors.Is(err, store.ErrInvalid) || errors.Is(err, store.ErrConflict) {
		return bus.Permanent(err)
	}
	return err
}

// stored goes on with a trigger once stored (fresh: by this attempt).
func (o *Orchestrator) stored(ctx context.Context, t events.Trigger, trig store.Trigger, fresh bool) (*fanOut, error) {
	if trig.Status == store.TriggerCancelled && !fresh {
		return nil, o.finishCancelled(ctx, t, trig)
	}
	if stopsFanOut(trig.Status) {
		return nil, nil
	}
	// A trigger stored just now has no runs yet: its batches take the
	// fresh path (see launchBatch).
	return o.newFanOut(ctx, t, trig, fresh)
}

// prepareAll is prepare for the triggers of a batch, stored with one
// CreateTriggers. Input the store refuses (one trigger's fields) sends
// each back to prepare alone, so that only that one fails.
func (o *Orchestrator) prepareAll(ctx context.Context, specs []json.RawMessage) ([]*fanOut, []error) {
	fs := make([]*fanOut, len(specs))
	errs := make([]error, len(specs))
	ts := make([]events.Trigger, len(specs))
	rows := make([]store.Trigger, 0, len(specs))
	owner := make([]int, 0, len(specs))
	for i, spec := range specs {
		var row store.Trigger
		if ts[i], row, errs[i] = parseTrigger(spec); errs[i] == nil {
			rows = append(rows, row)
			owner = append(owner, i)
		}
	}
	created, err := o.store.CreateTriggers(ctx, rows)
	if errors.Is(err, store.ErrInvalid) {
		parallel(len(owner), func(j int) { i := owner[j]; fs[i], errs[i] = o.prepare(ctx, specs[i]) })
		return fs, errs
	}
	if err == nil && len(created) != len(rows) {
		err = fmt.Errorf("create of %d triggers answered %d", len(rows), len(created))
	}
	if err != nil {
		for _, i := range owner {
			errs[i] = err
		}
		return fs, errs
	}
	parallel(len(owner), func(j int) {
		i, c := owner[j], created[j]
		if c.Err != nil {
			errs[i] = storeRefusal(c.Err)
			return
		}
		fs[i], errs[i] = o.stored(ctx, ts[i], c.Trigger, c.Created)
	})
	return fs, errs
}

// handleTriggerBatch handles the triggers of a batch side by side, as if
// each had come alone. A trigger that fails for good is split off: it is
// published alone (its id as the message id, so a redelivered batch splits
// it off once), where the consumer dead-letters it with its reason as it
// would any trigger; the others are not held back by it. Any other failure
// fails the batch, which is redelivered: the triggers handled meanwhile
// find themselves done and are skipped.
func (o *Orchestrator) handleTriggerBatch(ctx context.Context, m bus.Message) error {
	var b events.TriggerBatch
	if err := json.Unmarshal(m.Event.Data(), &b); err != nil {
		return bus.Permanent(fmt.Errorf("trigger batch payload: %w", err))
	}
	fs, errs := o.prepareAll(ctx, b.Triggers)
	// The fresh one-user triggers start together (launchTogether); the
	// others (lists, redeliveries, a user named by an earlier trigger of
	// the batch) each as if it had come alone, after them.
	// They start with those of the other batches handled meanwhile
	// (launchGroups).
	var together []*fanOut
	var keys []string
	var alone []int
	users := map[string]bool{}
	for i, f := range fs {
		if f == nil {
			continue
		}
		if key, ok := f.startsWithOthers(); ok && !users[key] {
			users[key] = true
			together = append(together, f)
			keys = append(keys, key)
			continue
		}
		alone = append(alone, i)
	}
	if err := o.launches.start(ctx, together, keys); err != nil {
		// Never the batch's fault for good: redelivered, these triggers
		// find themselves stored and each goes its own way (a permanent
		// failure is then split off alone). Other errors keep their kind
		// (a store outage is retried for as long as it lasts).
		var perm *bus.PermanentError
		if errors.As(err, &perm) {
			return fmt.Errorf("triggers started together: %v", err)
		}
		return fmt.Errorf("triggers started together: %w", err)
	}
	parallel(len(alone), func(j int) { i := alone[j]; errs[i] = fs[i].run(ctx, m) })
	var first error
	for i, err := range errs {
		var perm *bus.PermanentError
		if errors.As(err, &perm) {
			err = o.splitOff(ctx, m, b.Triggers[i], perm)
		}
		if err != nil && first == nil {
			first = err
		}
	}
	return first
}

// splitOff publishes a trigger of a batch that failed for good as a
// message of its own, for the dead letters.
func (o *Orchestrator) splitOff(ctx context.Context, m bus.Message, raw json.RawMessage, why error) error {
	var t struct {
		ID    string `json:"id"`
		BotID string `json:"bot_id"`
	}
	id := ""
	decoded := json.Unmarshal(raw, &t) == nil
	if decoded && t.ID != "" {
		id = t.ID
	} else {
		id = fmt.Sprintf("%s:%x", m.Event.ID(), sha256.Sum256(raw))
	}
	// On its own bot's subject: a batch of several bots has no bot of its
	// own (events.SubjectTriggerBots), where a trigger that names no bot
	// stays.
	bot := m.Event.Subject()
	if decoded && t.BotID != "" && !strings.ContainsAny(t.BotID, ".*> \t\r\n") {
		bot = t.BotID
	}
	subject := events.SubjectTriggerBots
	if bot != "" {
		subject = events.TriggerSubject(bot)
	}
	ev, err := bus.NewEvent(id, events.TypeTriggerAccepted, bot, raw)
	if err != nil {
		return err
	}
	o.log.Warn("trigger of a batch failed for good; published alone for the dead letters", "trigger", id, "reason", why.Error())
	return o.bus.PublishAll(ctx, []bus.Outgoing{{Subject: subject, Event: ev}})
}

// lastRequest is what the contact's last_request becomes: the trigger's
// data, {} included, whatever selected the contact (a users list, users_bm,
// everyone or a filter); nil, which leaves it as it is, when the request
// carried no data.
func lastRequest(t events.Trigger) map[string]any {
	if t.NoData {
		return nil
	}
	if t.Data == nil {
		return map[string]any{}
	}
	return t.Data
}

// contactLastRequest is the contact's last_request as of its run's start:
// the trigger's data when it replaced it, else what the contact had.
func contactLastRequest(t events.Trigger, c store.Contact) map[string]any {
	if lr := lastRequest(t); lr != nil {
		return lr
	}
	return c.LastRequest
}

// needsInitialMessage reports whether the run must open the contact's
// reply window (WhatsApp: 24 hours, the channel's provider declares it)
// with the trigger's initial template before its flow may speak.
func needsInitialMessage(t events.Trigger, contact store.Contact, now time.Time) bool {
	p, ok := provider.Lookup(contact.Channel)
	if !ok || p.Capabilities.ReplyWindow <= 0 || t.InitialMessage == nil || t.InitialMessage.Type != events.ContentTemplate {
		return false
	}
	return !p.Capabilities.InWindow(contact.LastInboundAt, now)
}

// parallel calls f(0..n-1) side by side and waits for them.
func parallel(n int, f func(i int)) {
	if n == 1 {
		f(0)
		return
	}
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			f(i)
		}()
	}
	wg.Wait()
}
