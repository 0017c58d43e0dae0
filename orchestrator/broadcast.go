package orchestrator

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/expr-lang/expr"
	"github.com/expr-lang/expr/vm"

	"github.com/flowgate/flowgate/shared/bus"
	"github.com/flowgate/flowgate/shared/events"
	"github.com/flowgate/flowgate/shared/store"
)

// Reasons a targeted contact gets no run, as counted in the trigger's
// skip_reasons.
const (
	SkipOptedOut       = "opted_out"
	SkipUnreachable    = "unreachable"
	SkipFilterMismatch = "filter_mismatch"
	SkipFilterError    = "filter_error"
	SkipUnknownContact = "unknown_contact"
	SkipOtherPlatform  = "other_platform"
	SkipInvalidUser    = "invalid_user"
)

// checkpoint is a broadcast's progress as stored in store.Trigger.Cursor.
// After says where the next batch starts; the counts are the trigger's
// fan-out counters as of that point, so that a resumed fan-out can take
// back the increments of the batch it is about to redo (counters stay exact
// across crashes, as runs do).
type checkpoint struct {
	// After is the last contact id streamed (everyone, filter) or the
	// number of list entries done (users, users_bm).
	After string `json:"after,omitempty"`
	// FlowVersion pins the flow version of every run of the broadcast.
	FlowVersion int              `json:"flow_version,omitempty"`
	Targeted    int64            `json:"targeted,omitempty"`
	RunsCreated int64            `json:"runs_created,omitempty"`
	Skipped     int64            `json:"skipped,omitempty"`
	SkipReasons map[string]int64 `json:"skip_reasons,omitempty"`
}

func decodeCheckpoint(cursor string) (checkpoint, error) {
	var cp checkpoint
	if cursor == "" {
		return cp, nil
	}
	if err := json.Unmarshal([]byte(cursor), &cp); err != nil {
		return cp, fmt.Errorf("trigger cursor %q: %w", cursor, err)
	}
	return cp, nil
}

func (cp checkpoint) encode() string {
	b, _ := json.Marshal(cp) // a struct of strings and numbers always encodes
	return string(b)
}

// add folds a batch's counts into the checkpoint.
func (cp *checkpoint) add(c store.TriggerCounters) {
	cp.Targeted += c.Targeted
	cp.RunsCreated += c.RunsCreated
	cp.Skipped += c.Skipped
	for k, v := range c.SkipReasons {
		if cp.SkipReasons == nil {
			cp.SkipReasons = map[string]int64{}
		}
		cp.SkipReasons[k] += v
	}
}

// correction is what must be added to the stored counters to bring the
// fan-out's own counters back to the checkpoint.
func (cp checkpoint) correction(actual store.TriggerCounters) (store.TriggerCounters, bool) {
	d := store.TriggerCounters{
		Targeted:    cp.Targeted - actual.Targeted,
		RunsCreated: cp.RunsCreated - actual.RunsCreated,
		Skipped:     cp.Skipped - actual.Skipped,
	}
	nonZero := d.Targeted != 0 || d.RunsCreated != 0 || d.Skipped != 0
	for k, v := range actual.SkipReasons {
		if diff := cp.SkipReasons[k] - v; diff != 0 {
			d.SkipReasons = addReasonN(d.SkipReasons, k, diff)
			nonZero = true
		}
	}
	for k, v := range cp.SkipReasons {
		if _, ok := actual.SkipReasons[k]; !ok && v != 0 {
			d.SkipReasons = addReasonN(d.SkipReasons, k, v)
			nonZero = true
		}
	}
	return d, nonZero
}

func addReasonN(m map[string]int64, reason string, n int64) map[string]int64 {
	if m == nil {
		m = map[string]int64{}
	}
	m[reason] += n
	return m
}

func skip(c *store.TriggerCounters, reason string) {
	c.Skipped++
	c.SkipReasons = addReasonN(c.SkipReasons, reason, 1)
}

// batchRuns is the runs (status created) of the trigger for contacts.
func batchRuns(t events.Trigger, version int, contacts []store.Contact) []store.Run {
	now := time.Now().UTC()
	rs := make([]store.Run, len(contacts))
	for i, ct := range contacts {
		rs[i] = store.Run{
			ID: runIDFor(t, ct.ID, len(contacts)), BotID: t.BotID, TriggerID: t.ID, FlowID: t.FlowID, FlowVersion: version,
			ContactID: ct.ID, Channel: ct.Channel, Status: store.RunCreated, Data: t.Data,
			CreatedAt: now, UpdatedAt: now,
		}
	}
	return rs
}

// runIDFor is the id of the trigger's run for a contact of a batch of n:
// the id the caller chose for a one-user trigger, else RunID.
func runIDFor(t events.Trigger, contactID string, n int) string {
	if t.RunID != "" && n == 1 {
		return t.RunID
	}
	return RunID(t.ID, contactID)
}

// audience yields a trigger's contacts batch by batch.
type audience struct {
	t       events.Trigger
	channel string // "" = every channel
	filter  *vm.Program
	update  bool // data or attributes to store on each contact
}

func newAudience(t events.Trigger) (*audience, error) {
	// A list names each user once (two spellings of one phone number were
	// made one by the ingress): a user named twice gets one run, counted once.
	t.Audience.Users = dedup(t.Audience.Users)
	t.Audience.UsersBM = dedup(t.Audience.UsersBM)
	a := &audience{t: t, update: !t.NoData || len(t.Attributes) > 0}
	switch p := t.Audience.Platform; p {
	case "any":
	case "":
		// Ids in users_bm name contacts, each on its own channel; the other
		// selectors use the channel the trigger was accepted for.
		if len(t.Audience.UsersBM) == 0 {
			a.channel = t.Channel
		}
	default:
		a.channel = p
	}
	if t.Audience.Filter != "" {
		prog, err := CompileFilter(t.Audience.Filter)
		if err != nil {
			return nil, err
		}
		a.filter = prog
	}
	return a, nil
}

// dedup drops repeated ids, keeping the first of each.
func dedup(ids []string) []string {
	if len(ids) < 2 {
		return ids
	}
	seen := make(map[string]struct{}, len(ids))
	out := make([]string, 0, len(ids))
	for _, id := range ids {
		if _, dup := seen[id]; !dup {
			seen[id] = struct{}{}
			out = append(out, id)
		}
	}
	return out
}

// CompileFilter compiles an audience filter: a boolean expr-lang expression
// over a contact's attributes and its name, channel and external_id.
func CompileFilter(src string) (prog *vm.Program, err error) {
	defer func() {
		if r := recover(); r != nil { // expr is not ours: a panic is a refusal
			err = fmt.Errorf("filter %q: %v", src, r)
		}
	}()
	prog, err = expr.Compile(src, expr.AllowUndefinedVariables(), expr.AsBool(), expr.MaxNodes(2000))
	if err != nil {
		return nil, fmt.Errorf("filter %q: %w", src, err)
	}
	return prog, nil
}

// MatchFilter evaluates a compiled filter for c.
func MatchFilter(prog *vm.Program, c store.Contact) (ok bool, err error) {
	defer func() {
		if r := recover(); r != nil {
			ok, err = false, fmt.Errorf("filter panicked: %v", r)
		}
	}()
	env := make(map[string]any, len(c.Attributes)+3)
	for k, v := range c.Attributes {
		env[k] = v
	}
	env["name"], env["channel"], env["external_id"] = c.Name, c.Channel, c.ExternalID
	out, err := expr.Run(prog, env)
	if err != nil {
		return false, err
	}
	b, isBool := out.(bool)
	if !isBool {
		return false, fmt.Errorf("filter returned %T, not a boolean", out)
	}
	return b, nil
}

// next returns the contacts of the batch after `after` that get a run, the
// batch's counts (targeted and skipped), where the following batch starts,
// and whether this was the last batch.
func (a *audience) next(ctx context.Context, o *Orchestrator, after string, size int) (
	contacts []store.Contact, c store.TriggerCounters, next string, last bool, err error) {
	switch {
	case len(a.t.Audience.Users) > 0:
		return a.nextUsers(ctx, o, after, size)
	case len(a.t.Audience.UsersBM) > 0:
		return a.nextUsersBM(ctx, o, after, size)
	case a.t.Audience.Everyone:
		return a.nextStreamed(ctx, o, after, size)
	}
	return nil, c, after, true, nil // an empty audience
}

// peek reads the batch after `after` as it stands, writing nothing: the
// contacts of a users list that exist (none is created), the contacts of
// a users_bm list and the streamed contacts on the audience's channel, with
// no eligibility filter. finishCancelled uses it to find what a crashed
// launch left behind: a cancelled trigger's contacts are not touched again.
func (a *audience) peek(ctx context.Context, o *Orchestrator, after string, size int) (
	contacts []store.Contact, next string, last bool, err error) {
	var ids []string
	byExternal := false
	switch {
	case len(a.t.Audience.Users) > 0:
		ids, byExternal = a.t.Audience.Users, true
	case len(a.t.Audience.UsersBM) > 0:
		ids = a.t.Audience.UsersBM
	case a.t.Audience.Everyone:
		return a.stream(ctx, o, after, size)
	default:
		return nil, after, true, nil
	}
	from, to, err := listWindow(after, len(ids), size)
	if err != nil {
		return nil, after, false, err
	}
	channel := a.listChannel()
	for _, id := range ids[from:to] {
		var ct store.Contact
		if byExternal {
			if store.CheckID("external_id", id) != nil {
				continue
			}
			ct, err = o.store.GetContactByExternalID(ctx, a.t.BotID, channel, id)
		} else {
			ct, err = o.store.GetContact(ctx, a.t.BotID, id)
		}
		if errors.Is(err, store.ErrNotFound) || errors.Is(err, store.ErrInvalid) {
			continue // never created, so never launched
		}
		if err != nil {
			return nil, after, false, err
		}
		if !byExternal && a.channel != "" && ct.Channel != a.channel {
			continue
		}
		contacts = append(contacts, ct)
	}
	return contacts, strconv.Itoa(to), to == len(ids), nil
}

// userUpsert is the upsert of user u of a users list: created if new,
// with the trigger's name, attributes and data (as last_request).
func (a *audience) userUpsert(u string, now time.Time) store.ContactUpsert {
	return store.ContactUpsert{
		BotID: a.t.BotID, Channel: a.listChannel(), ExternalID: u, Name: a.t.Name,
		Attributes: a.t.Attributes, LastRequest: lastRequest(a.t), NewID: store.NewContactID(), Now: now,
	}
}

// listChannel is the channel of a users list's contacts.
func (a *audience) listChannel() string {
	switch {
	case a.channel != "":
		return a.channel
	case a.t.Channel != "":
		return a.t.Channel
	}
	return events.ChannelSandbox
}

// listWindow parses a list cursor and returns the slice [from, to).
func listWindow(after string, n, size int) (from, to int, err error) {
	if after != "" {
		if from, err = strconv.Atoi(after); err != nil || from < 0 {
			return 0, 0, bus.Permanent(fmt.Errorf("list cursor %q is not an offset", after))
		}
	}
	from = min(from, n)
	return from, min(from+size, n), nil
}

// oneBatch reports whether the audience is a list that fits in one batch
// of size (a dispatch to one user, a short list).
func (a *audience) oneBatch(size int) bool {
	n := len(a.t.Audience.Users) + len(a.t.Audience.UsersBM)
	return !a.t.Audience.Everyone && n > 0 && n <= size
}

// nextUsers upserts the next slice of external ids as contacts in one bulk
// write (storing name, attributes and data as last_request), which returns
// them.
func (a *audience) nextUsers(ctx context.Context, o *Orchestrator, after string, size int) (
	[]store.Contact, store.TriggerCounters, string, bool, error) {
	var c store.TriggerCounters
	users := a.t.Audience.Users
	from, to, err := listWindow(after, len(users), size)
	if err != nil {
		return nil, c, after, false, err
	}
	now := time.Now().UTC()
	ups := make([]store.ContactUpsert, 0, to-from)
	for _, u := range users[from:to] {
		c.Targeted++
		if store.CheckID("external_id", u) != nil {
			skip(&c, SkipInvalidUser)
			continue
		}
		ups = append(ups, a.userUpsert(u, now))
	}
	contacts, err := o.store.UpsertContacts(ctx, ups)
	if err != nil {
		return nil, c, after, false, err
	}
	contacts = a.eligible(contacts, &c)
	return contacts, c, strconv.Itoa(to), to == len(users), nil
}

// nextUsersBM reads the next slice of internal contact ids.
func (a *audience) nextUsersBM(ctx context.Context, o *Orchestrator, after string, size int) (
	[]store.Contact, store.TriggerCounters, string, bool, error) {
	var c store.TriggerCounters
	ids := a.t.Audience.UsersBM
	from, to, err := listWindow(after, len(ids), size)
	if err != nil {
		return nil, c, after, false, err
	}
	contacts := make([]store.Contact, 0, to-from)
	for _, id := range ids[from:to] {
		c.Targeted++
		ct, err := o.store.GetContact(ctx, a.t.BotID, id)
		if errors.Is(err, store.ErrNotFound) || errors.Is(err, store.ErrInvalid) {
			skip(&c, SkipUnknownContact)
			continue
		}
		if err != nil {
			return nil, c, after, false, err
		}
		if a.channel != "" && ct.Channel != a.channel {
			skip(&c, SkipOtherPlatform)
			continue
		}
		contacts = append(contacts, ct)
	}
	contacts = a.eligible(contacts, &c)
	if err := a.store(ctx, o, contacts); err != nil {
		return nil, c, after, false, err
	}
	return contacts, c, strconv.Itoa(to), to == len(ids), nil
}

// nextStreamed reads the next batch of the bot's contacts on the channel.
// Opted-out and unreachable contacts are read too, so that they are counted.
func (a *audience) nextStreamed(ctx context.Context, o *Orchestrator, after string, size int) (
	[]store.Contact, store.TriggerCounters, string, bool, error) {
	var c store.TriggerCounters
	batch, next, last, err := a.stream(ctx, o, after, size)
	if err != nil {
		return nil, c, after, false, err
	}
	c.Targeted = int64(len(batch))
	contacts := a.eligible(batch, &c)
	if err := a.store(ctx, o, contacts); err != nil {
		return nil, c, after, false, err
	}
	return contacts, c, next, last, nil
}

// stream reads the batch of the bot's contacts on the audience's channel
// after the contact id `after`, and where the next one starts.
func (a *audience) stream(ctx context.Context, o *Orchestrator, after string, size int) (
	batch []store.Contact, next string, last bool, err error) {
	batch, err = o.store.StreamContacts(ctx, a.t.BotID, store.ContactFilter{Channel: a.channel, After: after, Limit: size})
	if err != nil {
		return nil, after, false, err
	}
	next, last = after, len(batch) < size
	if len(batch) > 0 {
		next = batch[len(batch)-1].ID
	}
	return batch, next, last, nil
}

// eligible keeps the contacts that match the filter and can be messaged,
// counting the others with their reason. It filters in place.
func (a *audience) eligible(cs []store.Contact, c *store.TriggerCounters) []store.Contact {
	out := cs[:0]
	for _, ct := range cs {
		if a.filter != nil {
			ok, err := MatchFilter(a.filter, ct)
			if err != nil {
				skip(c, SkipFilterError)
				continue
			}
			if !ok {
				skip(c, SkipFilterMismatch)
				continue
			}
		}
		switch {
		case ct.OptedOut:
			skip(c, SkipOptedOut)
		case ct.Unreachable:
			skip(c, SkipUnreachable)
		default:
			out = append(out, ct)
		}
	}
	return out
}

// store records the trigger's data as each contact's last_request (and its
// attributes) in one bulk write.
func (a *audience) store(ctx context.Context, o *Orchestrator, cs []store.Contact) error {
	if !a.update || len(cs) == 0 {
		return nil
	}
	now := time.Now().UTC()
	if len(a.t.Attributes) == 0 {
		if a.t.NoData {
			return nil
		}
		// Only last_request changes: one update of the batch's contacts,
		// with nothing to read or merge.
		ids := make([]string, len(cs))
		for i, ct := range cs {
			ids[i] = ct.ID
		}
		return o.store.SetLastRequest(ctx, a.t.BotID, ids, lastRequest(a.t), now)
	}
	ups := make([]store.ContactUpsert, len(cs))
	for i, ct := range cs {
		// NewID is the contact's own id: a contact deleted since it was read
		// comes back as it was rather than failing the whole batch.
		ups[i] = store.ContactUpsert{BotID: ct.BotID, Channel: ct.Channel, ExternalID: ct.ExternalID,
			Attributes: a.t.Attributes, LastRequest: lastRequest(a.t), NewID: ct.ID, Now: now}
	}
	_, _, err := o.store.ImportContacts(ctx, ups)
	return err
}
