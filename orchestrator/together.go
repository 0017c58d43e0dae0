package orchestrator

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/flowgate/flowgate/shared/events"
	"github.com/flowgate/flowgate/shared/store"
)

// startsWithOthers reports whether the fan-out may start together with
// the other one-user triggers of its batch (launchTogether): a trigger
// stored just now (no attempt came before, so none of its runs exists)
// whose audience is one user of a list, in the high lane (nothing to wait
// for). key names the user: two triggers of a batch for one user do not
// start together (the later one starts after, and takes the conversation
// over as it would have alone).
func (f *fanOut) startsWithOthers() (key string, ok bool) {
	a := f.t.Audience
	if !f.fresh || f.cp.After != "" || len(a.Users) != 1 || len(a.UsersBM) > 0 || a.Everyone || LaneOf(f.t) != events.LaneHigh {
		return "", false
	}
	return f.t.BotID + "\x00" + f.aud.listChannel() + "\x00" + a.Users[0], true
}

// launchTogether starts fresh one-user triggers (startsWithOthers) as one
// batch: what each would do alone (fanOut.once), with one contact upsert,
// one supersede query per bot, one commit (one message insert, one
// publish of every bundle, one run insert) for all of them, and then each
// trigger's checkpoint. A failure anywhere leaves each trigger as a crash
// there would: its redelivery finds it stored, not fresh, and redoes it
// alone (launchBatch's recovery path).
//
// It returns an error for the whole batch (nothing or only part of it was
// done: every trigger of it must be tried again) or else each trigger's
// own, from its checkpoint.
func (o *Orchestrator) launchTogether(ctx context.Context, fs []*fanOut) ([]error, error) {
	if len(fs) == 0 {
		return nil, nil
	}
	now := time.Now().UTC()
	counts := make([]store.TriggerCounters, len(fs))
	ups := make([]store.ContactUpsert, 0, len(fs))
	owner := make([]int, 0, len(fs))
	for i, f := range fs {
		counts[i].Targeted = 1
		u := f.t.Audience.Users[0]
		if store.CheckID("external_id", u) != nil {
			skip(&counts[i], SkipInvalidUser)
			continue
		}
		ups = append(ups, f.aud.userUpsert(u, now))
		owner = append(owner, i)
	}
	var contacts []store.Contact
	if len(ups) > 0 {
		var err error
		if contacts, err = o.store.UpsertContacts(ctx, ups); err != nil {
			return nil, err
		}
		if len(contacts) != len(ups) {
			return nil, fmt.Errorf("upsert of %d contacts returned %d", len(ups), len(contacts))
		}
	}
	batch := make([]pending, 0, len(contacts))
	byBot := map[string][]int{}
	for j, c := range contacts {
		i := owner[j]
		f := fs[i]
		eligible := f.aud.eligible([]store.Contact{c}, &counts[i])
		if len(eligible) == 0 {
			continue
		}
		run := batchRuns(f.t, f.version, eligible)[0]
		counts[i].RunsCreated++
		byBot[f.t.BotID] = append(byBot[f.t.BotID], len(batch))
		batch = append(batch, pending{run: run, contact: eligible[0], trig: &fs[i].t})
	}
	if len(batch) > 0 {
		for botID, idx := range byBot {
			group := make([]pending, len(idx))
			for k, b := range idx {
				group[k] = batch[b]
			}
			if err := o.supersedeBatch(ctx, botID, group); err != nil {
				return nil, err
			}
		}
		if err := o.firstSlices(ctx, batch, now); err != nil {
			return nil, err
		}
		if _, err := o.commit(ctx, batch, func(ctx context.Context, settled []store.Run) (map[int]bool, error) {
			return o.insertFirstStates(ctx, batch, settled)
		}); err != nil {
			return nil, err
		}
	}
	// The triggers' checkpoints in one write; one refused for its version
	// (cancelled or taken over meanwhile) is handled as checkpoint would.
	cps := make([]store.TriggerCheckpoint, len(fs))
	for i, f := range fs {
		cps[i] = f.checkpointOf(batchOf(counts[i]))
	}
	errs, err := o.store.CheckpointTriggers(ctx, cps)
	if err != nil {
		return nil, err
	}
	if len(errs) != len(fs) {
		return nil, fmt.Errorf("checkpoint of %d triggers answered %d", len(fs), len(errs))
	}
	parallel(len(fs), func(i int) {
		if errors.Is(errs[i], store.ErrVersionConflict) {
			errs[i] = stoppedIsNil(fs[i].refused(ctx, batchOf(counts[i])))
		}
	})
	return errs, nil
}

// batchOf is the one batch of a one-user trigger, as read.
func batchOf(c store.TriggerCounters) batch {
	return batch{counts: c, next: "1", last: true}
}
