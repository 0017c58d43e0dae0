package orchestrator

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
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

// errTriggerTaken: the trigger changed under the fan-out (another replica
// took it over after a stall); this one steps back and looks again later.
var errTriggerTaken = errors.New("trigger changed by another fan-out")

// fanOut turns a trigger's audience into runs, one batch at a time: read
// the next batch of the audience (a slice of the users list, or contacts
// streamed from the store in id order), skip those that must not be
// messaged, create their runs in one bulk write, start them concurrently,
// add the batch's counts, and checkpoint the cursor with a version check.
//
// A crash anywhere resumes at the last checkpoint: the unfinished batch is
// redone, which creates no second run (run ids are deterministic and
// CreateRuns returns existing runs) and sends no second message (message ids
// are deterministic, publishes are de-duplicated, and a run that already
// started is not started again). A cancel (status cancelled) is seen before
// each batch and at each checkpoint; it takes effect at a batch boundary:
// the batches under way finish (their messages published, their runs
// stored) and are counted, and none starts after, so the counters equal
// the stored runs and no published message lacks its run.
func (o *Orchestrator) fanOut(ctx context.Context, m bus.Message, t events.Trigger, trig store.Trigger, fresh bool) error {
	cp, err := decodeCheckpoint(trig.Cursor)
	if err != nil {
		return bus.Permanent(err)
	}
	aud, err := newAudience(t)
	if err != nil {
		return bus.Permanent(err)
	}
	// A long fan-out keeps its trigger message: without this JetStream would
	// hand it to another replica after AckWait (4 s for triggers, so that a
	// dead orchestrator's fan-out is taken over quickly). bus.Consume sends
	// the same heartbeat for every message it holds; this one keeps the
	// fan-out's guarantee whatever consumes it.
	stop := keepInProgress(m, time.Second)
	defer stop()

	if d, ok := cp.correction(trig.Counters); ok {
		if err := o.store.IncrTriggerCounters(ctx, t.BotID, t.ID, d); err != nil {
			return err
		}
	}
	if cp.FlowVersion == 0 {
		_, v, err := o.definition(ctx, t.BotID, t.FlowID, 0)
		if err != nil {
			if errors.Is(err, store.ErrNotFound) {
				return bus.Permanent(err)
			}
			return err
		}
		cp.FlowVersion = v
	}
	// The next batch of the audience is read (and its contacts' last_request
	// stored) while the current one starts: reading uses a reader
	// connection and the write is small, so the store's writer and the
	// bus are kept busy. A prefetched batch that a crash or a cancel
	// leaves unused only had its contacts' last_request written, which the
	// batch's redo writes again.
	// A failure anywhere (or a cancel met at a checkpoint) stops the
	// prefetch and the start of further batches. A batch that has begun
	// runs to its end under runCtx, the handler's own context, whatever
	// happens to the others: it publishes its messages before it stores
	// its runs, so stopping it in between would leave delivered messages
	// with no run (and a cancelled trigger is never resumed to repair it).
	runCtx := ctx
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	type fetched struct {
		contacts []store.Contact
		counts   store.TriggerCounters
		next     string
		last     bool
		err      error
	}
	fetch := func(after string) chan fetched {
		ch := make(chan fetched, 1)
		go func() {
			var f fetched
			f.contacts, f.counts, f.next, f.last, f.err = aud.next(ctx, o, after, o.cfg.FanOutBatch)
			ch <- f
		}()
		return ch
	}
	pending := fetch(cp.After)
	defer func() {
		if pending != nil {
			<-pending // no read or write of this fan-out outlives it
		}
	}()

	// Two batches are under way at once: the next one starts while the
	// previous one is still storing, so the interpreter, the bus and the
	// store's writer work side by side. Checkpoints stay in order: each
	// batch's counts and cursor are stored after its own start and after
	// the previous batch's checkpoint (a chain of done channels), so a
	// crash resumes at the last checkpoint and redoes at most the two
	// batches after it. A failure anywhere cancels the rest.
	sem := make(chan struct{}, fanOutDepth)
	// underway counts the contacts of the batches started and not yet
	// published, for the back-pressure bound (awaitDrain).
	var underway atomic.Int64
	// prev is the done channel of the last batch started. Each done channel
	// is read once: by the next batch, or by whoever returns (fanOutEnd, or
	// the last batch's wait), so no batch of this fan-out outlives it.
	var prev chan error
	count := func(f fetched) error {
		if f.counts.Targeted == 0 {
			return nil
		}
		return o.store.IncrTriggerCounters(runCtx, t.BotID, t.ID, f.counts)
	}
	checkpoint := func(n int, f fetched) error {
		if err := count(f); err != nil {
			return err
		}
		cp.After = f.next
		cp.add(f.counts)
		trig.Status = store.TriggerFanningOut
		if f.last {
			trig.Status = store.TriggerDone
		}
		trig.Cursor = cp.encode()
		trig.UpdatedAt = time.Now().UTC()
		updated, err := o.store.UpdateTrigger(runCtx, trig)
		if errors.Is(err, store.ErrVersionConflict) {
			cur, gerr := o.store.GetTrigger(runCtx, t.BotID, t.ID)
			if gerr != nil {
				return gerr
			}
			if stopsFanOut(cur.Status) {
				return errFanOutStopped
			}
			return bus.RetryAfter(errTriggerTaken, 10*time.Second)
		}
		if err != nil {
			return err
		}
		trig = updated
		return nil
	}
	for n := 1; ; n++ {
		var f fetched
		select {
		case f = <-pending:
		case <-ctx.Done(): // a batch under way failed
			return o.fanOutEnd(prev, ctx.Err())
		}
		pending = nil
		if f.err != nil {
			return o.fanOutEnd(prev, f.err)
		}
		if !f.last {
			pending = fetch(f.next)
		}
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			return o.fanOutEnd(prev, ctx.Err())
		}
		if n > 1 {
			// Waiting for the slot let the batch before finish: a cancel
			// or pause its checkpoint met is seen here, before another one
			// starts.
			cur, err := o.store.GetTrigger(ctx, t.BotID, t.ID)
			if err == nil && stopsFanOut(cur.Status) {
				err = errFanOutStopped
			}
			if err != nil {
				<-sem
				return o.fanOutEnd(prev, err)
			}
		}
		// Back-pressure: the batch starts once the account's bulk lane
		// has room for it (QueueSeconds of its rate).
		if err := o.awaitDrain(ctx, t, len(f.contacts), func() uint64 { return uint64(underway.Load()) }); err != nil {
			<-sem
			return o.fanOutEnd(prev, err)
		}
		done := make(chan error, 1)
		underway.Add(int64(len(f.contacts)))
		go func(n int, f fetched, before chan error) {
			defer func() { <-sem }()
			err := o.startBatch(runCtx, t, cp.FlowVersion, f.contacts, &f.counts, fresh)
			underway.Add(-int64(len(f.contacts))) // published (or failed)
			var berr error
			if before != nil {
				berr = <-before
			}
			switch {
			case err != nil:
				// The chain carries the first failure; a stop (cancel) of
				// the batch before does not hide this batch's failure,
				// which the redelivery must repair (finishCancelled).
				if berr != nil && !errors.Is(berr, errFanOutStopped) {
					err = berr
				}
			case berr != nil:
				// The fan-out stops before this batch's checkpoint (a
				// cancel, or a failure of the batch before), but its runs
				// are stored: they are counted, so that the counters equal
				// the stored runs. A fan-out resumed after a failure takes
				// counts past its checkpoint back (correction); one taken
				// over by another replica is that replica's to count.
				if !errors.Is(berr, errTriggerTaken) {
					if cerr := count(f); cerr != nil {
						berr = cerr
					}
				}
				err = berr
			default:
				err = checkpoint(n, f)
			}
			if err != nil {
				cancel()
			}
			done <- err
		}(n, f, prev)
		prev = done
		if f.last {
			err := <-prev
			prev = nil
			return stoppedIsNil(err)
		}
		m.InProgress()
	}
}

// fanOutDepth is how many batches of one fan-out are under way at once.
const fanOutDepth = 2

// errFanOutStopped: the trigger was cancelled or finished meanwhile.
var errFanOutStopped = errors.New("fan-out stopped")

// fanOutEnd waits for the batches under way and returns the first failure
// of the chain, or err.
func (o *Orchestrator) fanOutEnd(prev chan error, err error) error {
	if prev != nil {
		if perr := <-prev; perr != nil && !errors.Is(perr, context.Canceled) {
			err = perr
		}
	}
	return stoppedIsNil(err)
}

func stoppedIsNil(err error) error {
	if errors.Is(err, errFanOutStopped) {
		return nil
	}
	return err
}

// keepInProgress tells JetStream every interval that m is still being
// handled, until the returned stop is called.
func keepInProgress(m bus.Message, interval time.Duration) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(interval)
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-tick.C:
				m.InProgress()
			}
		}
	}()
	return func() { close(done); wg.Wait() }
}

// startBatch creates and starts the runs of the batch's contacts
// (launchBatch). Contacts that must not be messaged were already left out
// (and counted) by the audience. fresh says that no attempt at this
// trigger came before, so none of the runs can exist yet.
func (o *Orchestrator) startBatch(ctx context.Context, t events.Trigger, version int, contacts []store.Contact, c *store.TriggerCounters, fresh bool) error {
	if len(contacts) == 0 {
		return nil
	}
	rs := batchRuns(t, version, contacts)
	// Every run of the batch counts, new or found: a batch found half done
	// was rolled back from the counters at the checkpoint.
	c.RunsCreated += int64(len(rs))
	if fresh {
		return o.launchBatch(ctx, t, rs, contacts, nil)
	}
	runs, created, err := o.store.CreateRuns(ctx, rs)
	if err != nil {
		return err
	}
	return o.launchBatch(ctx, t, runs, contacts, created)
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
	channel := a.channel
	if channel == "" {
		channel = a.t.Channel
	}
	if channel == "" {
		channel = events.ChannelSandbox
	}
	now := time.Now().UTC()
	ups := make([]store.ContactUpsert, 0, to-from)
	for _, u := range users[from:to] {
		c.Targeted++
		if store.CheckID("external_id", u) != nil {
			skip(&c, SkipInvalidUser)
			continue
		}
		ups = append(ups, store.ContactUpsert{
			BotID: a.t.BotID, Channel: channel, ExternalID: u, Name: a.t.Name,
			Attributes: a.t.Attributes, LastRequest: lastRequest(a.t), NewID: store.NewContactID(), Now: now,
		})
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
	batch, err := o.store.StreamContacts(ctx, a.t.BotID, store.ContactFilter{Channel: a.channel, After: after, Limit: size})
	if err != nil {
		return nil, c, after, false, err
	}
	next, last := after, len(batch) < size
	if len(batch) > 0 {
		next = batch[len(batch)-1].ID
	}
	c.Targeted = int64(len(batch))
	contacts := a.eligible(batch, &c)
	if err := a.store(ctx, o, contacts); err != nil {
		return nil, c, after, false, err
	}
	return contacts, c, next, last, nil
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
