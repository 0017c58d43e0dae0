package storetest

import (
	"encoding/json"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/flowgate/flowgate/shared/store"
	"github.com/stretchr/testify/require"
)

func testTriggers(t *testing.T, s store.Store, e env) {
	mkBot(t, s, e)
	in := store.Trigger{
		ID: "tr1", BotID: e.bot, Source: "builderbot", Event: "WELCOME", FlowID: "welcome", Channel: "whatsapp",
		Spec: json.RawMessage(`{"from":"+15550001","data":{"name":"Ann"}}`), IdempotencyKey: "idem-1",
		Counters: store.TriggerCounters{Targeted: 1}, CreatedAt: base(),
	}
	tr, created, err := s.CreateTrigger(e.ctx, in)
	require.NoError(t, err)
	require.True(t, created)
	require.Equal(t, store.TriggerAccepted, tr.Status, "status defaults to accepted")
	require.EqualValues(t, 1, tr.Version)

	again := in
	again.Event, again.Spec = "OTHER", json.RawMessage(`{"different":true}`)
	tr2, created, err := s.CreateTrigger(e.ctx, again)
	require.NoError(t, err)
	require.False(t, created, "same id: the existing trigger")
	require.Equal(t, "WELCOME", tr2.Event, "the existing trigger is returned unchanged")
	jsonEq(t, in.Spec, tr2.Spec)

	got, err := s.GetTrigger(e.ctx, e.bot, "tr1")
	require.NoError(t, err)
	require.Equal(t, "builderbot", got.Source)
	require.Equal(t, "welcome", got.FlowID)
	require.Equal(t, "whatsapp", got.Channel)
	require.Equal(t, "idem-1", got.IdempotencyKey)
	require.EqualValues(t, 1, got.Counters.Targeted)
	requireTime(t, e, in.CreatedAt, got.CreatedAt, "created_at")

	got.Status, got.Cursor = store.TriggerFanningOut, "c042"
	upd, err := s.UpdateTrigger(e.ctx, got)
	require.NoError(t, err)
	require.EqualValues(t, 2, upd.Version)
	require.Equal(t, store.TriggerFanningOut, upd.Status)
	require.Equal(t, "c042", upd.Cursor)

	stale := got // still Version 1
	stale.Status = store.TriggerCancelled
	_, err = s.UpdateTrigger(e.ctx, stale)
	requireIs(t, err, store.ErrVersionConflict)
	got, err = s.GetTrigger(e.ctx, e.bot, "tr1")
	require.NoError(t, err)
	require.Equal(t, store.TriggerFanningOut, got.Status, "a stale update changes nothing")
	require.EqualValues(t, 2, got.Version)

	_, err = s.UpdateTrigger(e.ctx, store.Trigger{ID: "nope", BotID: e.bot, Version: 1, Status: store.TriggerDone})
	requireIs(t, err, store.ErrNotFound)
	_, err = s.GetTrigger(e.ctx, e.bot, "nope")
	requireIs(t, err, store.ErrNotFound)
}

func testTriggerConcurrentUpdate(t *testing.T, s store.Store, e env) {
	mkBot(t, s, e)
	tr := mkTrigger(t, s, e, "tr1")
	n := e.feats.Concurrency
	var wins, conflicts atomic.Int32
	errs := make([]error, n)
	parallel(n, func(i int) {
		x := tr
		x.Cursor = fmt.Sprintf("c%d", i)
		_, err := s.UpdateTrigger(e.ctx, x)
		switch {
		case err == nil:
			wins.Add(1)
		case errors.Is(err, store.ErrVersionConflict):
			conflicts.Add(1)
		default:
			errs[i] = err
		}
	})
	for _, err := range errs {
		require.NoError(t, err)
	}
	require.EqualValues(t, 1, wins.Load(), "exactly one updater wins")
	require.EqualValues(t, n-1, conflicts.Load())
	got, err := s.GetTrigger(e.ctx, e.bot, "tr1")
	require.NoError(t, err)
	require.EqualValues(t, 2, got.Version)
}

func testTriggerCounters(t *testing.T, s store.Store, e env) {
	mkBot(t, s, e)
	mkTrigger(t, s, e, "tr1")
	n := e.feats.Concurrency * 4
	errs := make([]error, n)
	parallel(n, func(i int) {
		d := store.TriggerCounters{RunsCreated: 1, Sent: 2, Targeted: 3}
		if i%4 == 0 {
			d.Skipped, d.SkipReasons = 1, map[string]int64{"opted_out": 1}
		}
		if i%8 == 1 {
			d.Delivered, d.Failed = 1, 1
			d.Skipped, d.SkipReasons = 2, map[string]int64{"unreachable": 1, "opted_out": 1}
		}
		errs[i] = s.IncrTriggerCounters(e.ctx, e.bot, "tr1", d)
	})
	for _, err := range errs {
		require.NoError(t, err)
	}
	var skipped, delivered, opted, unreachable int64
	for i := range n {
		if i%4 == 0 {
			skipped++
			opted++
		}
		if i%8 == 1 {
			delivered++
			skipped += 2
			opted++
			unreachable++
		}
	}
	got, err := s.GetTrigger(e.ctx, e.bot, "tr1")
	require.NoError(t, err)
	c := got.Counters
	require.EqualValues(t, n, c.RunsCreated, "every concurrent increment counts")
	require.EqualValues(t, 2*n, c.Sent)
	require.EqualValues(t, 3*n, c.Targeted)
	require.EqualValues(t, delivered, c.Delivered)
	require.EqualValues(t, delivered, c.Failed)
	require.EqualValues(t, skipped, c.Skipped)
	require.Equal(t, map[string]int64{"opted_out": opted, "unreachable": unreachable}, c.SkipReasons)
	require.EqualValues(t, 1, got.Version, "counters do not bump the version")

	// UpdateTrigger leaves counters to IncrTriggerCounters.
	got.Status, got.Counters = store.TriggerDone, store.TriggerCounters{}
	upd, err := s.UpdateTrigger(e.ctx, got)
	require.NoError(t, err)
	require.EqualValues(t, n, upd.Counters.RunsCreated, "UpdateTrigger does not overwrite counters")
	got, err = s.GetTrigger(e.ctx, e.bot, "tr1")
	require.NoError(t, err)
	require.Equal(t, store.TriggerDone, got.Status)
	require.EqualValues(t, n, got.Counters.RunsCreated)

	requireIs(t, s.IncrTriggerCounters(e.ctx, e.bot, "nope", store.TriggerCounters{Sent: 1}), store.ErrNotFound)
}

// testTriggerCheckpoint: CheckpointTrigger writes the trigger and adds to
// its counters in one write, both or neither.
func testTriggerCheckpoint(t *testing.T, s store.Store, e env) {
	mkBot(t, s, e)
	tr := mkTrigger(t, s, e, "tr1")
	require.NoError(t, s.IncrTriggerCounters(e.ctx, e.bot, "tr1", store.TriggerCounters{Sent: 2, Skipped: 1,
		SkipReasons: map[string]int64{"opted_out": 1}}))
	tr.Status, tr.Cursor = store.TriggerDone, `{"after":"3"}`
	delta := store.TriggerCounters{Targeted: 3, RunsCreated: 2, Skipped: 1, SkipReasons: map[string]int64{"opted_out": 1}}
	got, err := s.CheckpointTrigger(e.ctx, tr, delta)
	require.NoError(t, err)
	require.Equal(t, tr.Version+1, got.Version)
	require.Equal(t, store.TriggerDone, got.Status)
	require.Equal(t, `{"after":"3"}`, got.Cursor)
	want := store.TriggerCounters{Targeted: tr.Counters.Targeted + 3, RunsCreated: tr.Counters.RunsCreated + 2,
		Sent: tr.Counters.Sent + 2, Skipped: tr.Counters.Skipped + 2, SkipReasons: map[string]int64{"opted_out": 2}}
	require.Equal(t, want, got.Counters, "the returned trigger has the new counts")
	stored, err := s.GetTrigger(e.ctx, e.bot, "tr1")
	require.NoError(t, err)
	require.Equal(t, want, stored.Counters)

	// A stale version: neither the trigger nor its counters change.
	tr.Status = store.TriggerCancelled
	_, err = s.CheckpointTrigger(e.ctx, tr, delta)
	requireIs(t, err, store.ErrVersionConflict)
	stored, err = s.GetTrigger(e.ctx, e.bot, "tr1")
	require.NoError(t, err)
	require.Equal(t, store.TriggerDone, stored.Status)
	require.Equal(t, want, stored.Counters, "a conflict adds nothing")

	_, err = s.CheckpointTrigger(e.ctx, store.Trigger{ID: "nope", BotID: e.bot, Version: 1, Status: store.TriggerDone}, delta)
	requireIs(t, err, store.ErrNotFound)
	_, err = s.CheckpointTrigger(e.ctx, stored, store.TriggerCounters{SkipReasons: map[string]int64{"": 1}})
	requireIs(t, err, store.ErrInvalid)
}

// testTriggerCheckpoints: CheckpointTriggers writes each trigger at its
// version (status, cursor, counters; the descriptive fields stay), reports
// a stale or unknown one at its index without changing it, and refuses bad
// input whole.
func testTriggerCheckpoints(t *testing.T, s store.Store, e env) {
	mkBot(t, s, e)
	a, b, c := mkTrigger(t, s, e, "tr1"), mkTrigger(t, s, e, "tr2"), mkTrigger(t, s, e, "tr3")
	require.NoError(t, s.IncrTriggerCounters(e.ctx, e.bot, "tr2", store.TriggerCounters{Skipped: 1,
		SkipReasons: map[string]int64{"opted_out": 1}}))
	// tr3 moves on before its checkpoint is written: stale.
	c.Status = store.TriggerCancelled
	_, err := s.UpdateTrigger(e.ctx, c)
	require.NoError(t, err)

	errs, err := s.CheckpointTriggers(e.ctx, []store.TriggerCheckpoint{
		{BotID: e.bot, ID: "tr1", Version: a.Version, Status: store.TriggerDone, Cursor: `{"after":"1"}`,
			Delta: store.TriggerCounters{Targeted: 1, RunsCreated: 1}},
		{BotID: e.bot, ID: "tr2", Version: b.Version, Status: store.TriggerFanningOut, Cursor: `{"after":"7"}`,
			Delta: store.TriggerCounters{Targeted: 3, RunsCreated: 1, Skipped: 2, SkipReasons: map[string]int64{"opted_out": 1, "invalid_user": 1}}},
		{BotID: e.bot, ID: "tr3", Version: c.Version, Status: store.TriggerDone, Delta: store.TriggerCounters{Targeted: 5}},
		{BotID: e.bot, ID: "nope", Version: 1, Status: store.TriggerDone, Delta: store.TriggerCounters{Targeted: 1}},
	})
	require.NoError(t, err)
	require.Len(t, errs, 4)
	require.NoError(t, errs[0])
	require.NoError(t, errs[1])
	requireIs(t, errs[2], store.ErrVersionConflict)
	requireIs(t, errs[3], store.ErrNotFound)

	got, err := s.GetTrigger(e.ctx, e.bot, "tr1")
	require.NoError(t, err)
	require.Equal(t, a.Version+1, got.Version)
	require.Equal(t, store.TriggerDone, got.Status)
	require.Equal(t, `{"after":"1"}`, got.Cursor)
	require.Equal(t, store.TriggerCounters{Targeted: 1, RunsCreated: 1}, got.Counters)
	require.Equal(t, a.Source, got.Source, "the descriptive fields stay")
	require.JSONEq(t, string(a.Spec), string(got.Spec))
	require.Equal(t, a.IdempotencyKey, got.IdempotencyKey)

	got, err = s.GetTrigger(e.ctx, e.bot, "tr2")
	require.NoError(t, err)
	require.Equal(t, b.Version+1, got.Version)
	require.Equal(t, store.TriggerFanningOut, got.Status)
	require.Equal(t, store.TriggerCounters{Targeted: 3, RunsCreated: 1, Skipped: 3,
		SkipReasons: map[string]int64{"opted_out": 2, "invalid_user": 1}}, got.Counters, "the skip reasons merged")

	got, err = s.GetTrigger(e.ctx, e.bot, "tr3")
	require.NoError(t, err)
	require.Equal(t, store.TriggerCancelled, got.Status, "a stale checkpoint changes nothing")
	require.Equal(t, c.Version+1, got.Version)
	require.Zero(t, got.Counters.Targeted, "a stale checkpoint adds nothing")

	// Bad input anywhere: an error, nothing written.
	for name, bad := range map[string]store.TriggerCheckpoint{
		"status":      {BotID: e.bot, ID: "tr1", Version: 2, Status: "sideways"},
		"version":     {BotID: e.bot, ID: "tr1", Version: 0, Status: store.TriggerDone},
		"id":          {BotID: e.bot, ID: "", Version: 2, Status: store.TriggerDone},
		"skip reason": {BotID: e.bot, ID: "tr1", Version: 2, Status: store.TriggerDone, Delta: store.TriggerCounters{SkipReasons: map[string]int64{"": 1}}},
	} {
		_, err := s.CheckpointTriggers(e.ctx, []store.TriggerCheckpoint{
			{BotID: e.bot, ID: "tr1", Version: 2, Status: store.TriggerDone, Delta: store.TriggerCounters{Targeted: 1}}, bad})
		requireIs(t, err, store.ErrInvalid)
		got, err := s.GetTrigger(e.ctx, e.bot, "tr1")
		require.NoError(t, err)
		require.Equal(t, a.Version+1, got.Version, "%s: nothing written", name)
		require.EqualValues(t, 1, got.Counters.Targeted, "%s: nothing written", name)
	}
	too := make([]store.TriggerCheckpoint, store.MaxTriggerCheckpoints+1)
	for i := range too {
		too[i] = store.TriggerCheckpoint{BotID: e.bot, ID: "tr1", Version: 2, Status: store.TriggerDone}
	}
	_, err = s.CheckpointTriggers(e.ctx, too)
	requireIs(t, err, store.ErrInvalid)
	errs, err = s.CheckpointTriggers(e.ctx, nil)
	require.NoError(t, err)
	require.Empty(t, errs)
}

// testTriggerCheckpointsInBulk: a CheckpointTriggers call of more
// checkpoints than the adapter writes with one statement, with a stale
// one, an unknown one and one with skip reasons among them, writes each
// as it would alone; an id given twice is written once, and the second
// checkpoint (at the same version) is stale.
func testTriggerCheckpointsInBulk(t *testing.T, s store.Store, e env) {
	mkBot(t, s, e)
	n := e.feats.BulkChunk + 22 // two statements, the second one short
	stale, unknown, reasons := 7, e.feats.BulkChunk-3, e.feats.BulkChunk+5
	ts := make([]store.Trigger, n)
	for i := range ts {
		id := fmt.Sprintf("tb%03d", i)
		ts[i] = store.Trigger{ID: id, BotID: e.bot, Source: "native", Event: "welcome", FlowID: "f1", Channel: "sandbox",
			Spec: json.RawMessage(`{"audience":{"users":["+15550001"]}}`), IdempotencyKey: "k-" + id,
			Status: store.TriggerAccepted, CreatedAt: base()}
	}
	created, err := s.CreateTriggers(e.ctx, ts)
	require.NoError(t, err)
	cps := make([]store.TriggerCheckpoint, n)
	for i, c := range created {
		require.NoError(t, c.Err)
		cps[i] = store.TriggerCheckpoint{BotID: e.bot, ID: c.Trigger.ID, Version: c.Trigger.Version, Status: store.TriggerDone,
			Cursor: fmt.Sprintf(`{"after":"%d"}`, i), Delta: store.TriggerCounters{Targeted: int64(i + 1), RunsCreated: 1, Sent: 2}}
	}
	moved := created[stale].Trigger
	moved.Status = store.TriggerCancelled
	_, err = s.UpdateTrigger(e.ctx, moved)
	require.NoError(t, err)
	cps[unknown].ID = "nope"
	cps[reasons].Delta.Skipped = 1
	cps[reasons].Delta.SkipReasons = map[string]int64{"opted_out": 1}

	errs, err := s.CheckpointTriggers(e.ctx, cps)
	require.NoError(t, err)
	require.Len(t, errs, n)
	for i, cp := range cps {
		switch i {
		case stale:
			requireIs(t, errs[i], store.ErrVersionConflict)
			got, err := s.GetTrigger(e.ctx, e.bot, cp.ID)
			require.NoError(t, err)
			require.Equal(t, store.TriggerCancelled, got.Status, "a stale checkpoint changes nothing")
			require.Zero(t, got.Counters.Targeted, "a stale checkpoint adds nothing")
			continue
		case unknown:
			requireIs(t, errs[i], store.ErrNotFound)
			_, err := s.GetTrigger(e.ctx, e.bot, created[i].Trigger.ID)
			require.NoError(t, err)
			continue
		}
		require.NoError(t, errs[i], "checkpoint %d", i)
		got, err := s.GetTrigger(e.ctx, e.bot, cp.ID)
		require.NoError(t, err)
		require.Equal(t, cp.Version+1, got.Version, "checkpoint %d", i)
		require.Equal(t, store.TriggerDone, got.Status)
		require.Equal(t, cp.Cursor, got.Cursor)
		want := store.TriggerCounters{Targeted: int64(i + 1), RunsCreated: 1, Sent: 2}
		if i == reasons {
			want.Skipped, want.SkipReasons = 1, map[string]int64{"opted_out": 1}
		}
		require.Equal(t, want, got.Counters, "checkpoint %d", i)
	}

	// One id twice, both at its version: the first is written, the
	// second is stale.
	first, err := s.GetTrigger(e.ctx, e.bot, cps[0].ID)
	require.NoError(t, err)
	twice := []store.TriggerCheckpoint{
		{BotID: e.bot, ID: first.ID, Version: first.Version, Status: store.TriggerFanningOut, Cursor: `{"after":"x"}`,
			Delta: store.TriggerCounters{Targeted: 10}},
		{BotID: e.bot, ID: cps[1].ID, Version: cps[1].Version + 1, Status: store.TriggerDone, Delta: store.TriggerCounters{Sent: 1}},
		{BotID: e.bot, ID: first.ID, Version: first.Version, Status: store.TriggerDone, Cursor: `{"after":"y"}`,
			Delta: store.TriggerCounters{Targeted: 100}},
	}
	errs, err = s.CheckpointTriggers(e.ctx, twice)
	require.NoError(t, err)
	require.NoError(t, errs[0])
	require.NoError(t, errs[1])
	requireIs(t, errs[2], store.ErrVersionConflict)
	got, err := s.GetTrigger(e.ctx, e.bot, first.ID)
	require.NoError(t, err)
	require.Equal(t, first.Version+1, got.Version)
	require.Equal(t, store.TriggerFanningOut, got.Status)
	require.Equal(t, `{"after":"x"}`, got.Cursor)
	require.EqualValues(t, 1+10, got.Counters.Targeted)
	got, err = s.GetTrigger(e.ctx, e.bot, cps[1].ID)
	require.NoError(t, err)
	require.EqualValues(t, 2+1, got.Counters.Sent)
}

// testCreateTriggers: CreateTriggers creates new triggers, answers an
// existing id with the trigger stored (the same id twice in one call
// included), an id of another bot's trigger with ErrConflict at its index
// (the others created all the same), and refuses bad input whole.
func testCreateTriggers(t *testing.T, s store.Store, e env) {
	mkBot(t, s, e)
	require.NoError(t, s.CreateBot(e.ctx, store.Bot{ID: "other", Name: "Other", CreatedAt: base(), UpdatedAt: base()}))
	existing := mkTrigger(t, s, e, "tr0")
	_, _, err := s.CreateTrigger(e.ctx, store.Trigger{ID: "theirs", BotID: "other", Source: "native", FlowID: "f1",
		Channel: "sandbox", Spec: json.RawMessage(`{}`), CreatedAt: base()})
	require.NoError(t, err)
	at := base()
	mk := func(id string) store.Trigger {
		return store.Trigger{ID: id, BotID: e.bot, Source: "dispatch", Event: "welcome", FlowID: "f1", Channel: "sandbox",
			Spec: json.RawMessage(`{"id":"` + id + `"}`), Status: store.TriggerAccepted, CreatedAt: at}
	}
	got, err := s.CreateTriggers(e.ctx, []store.Trigger{mk("tr1"), mk("tr0"), mk("theirs"), mk("tr2"), mk("tr1")})
	require.NoError(t, err)
	require.Len(t, got, 5)
	for _, i := range []int{0, 3} {
		require.NoError(t, got[i].Err)
		require.True(t, got[i].Created, "index %d", i)
		require.EqualValues(t, 1, got[i].Trigger.Version)
		stored, err := s.GetTrigger(e.ctx, e.bot, got[i].Trigger.ID)
		require.NoError(t, err)
		require.Equal(t, "dispatch", stored.Source)
		require.Equal(t, store.TriggerAccepted, stored.Status)
		jsonEq(t, got[i].Trigger.Spec, stored.Spec)
		requireTime(t, e, at, stored.CreatedAt, "created_at")
	}
	require.NoError(t, got[1].Err)
	require.False(t, got[1].Created, "an existing id")
	require.Equal(t, existing.Source, got[1].Trigger.Source, "the trigger stored, not the one asked for")
	jsonEq(t, existing.Spec, got[1].Trigger.Spec)
	requireIs(t, got[2].Err, store.ErrConflict)
	require.NoError(t, got[4].Err)
	require.False(t, got[4].Created, "the same id twice in one call: the second finds the first")
	require.Equal(t, "tr1", got[4].Trigger.ID)
	theirs, err := s.GetTrigger(e.ctx, "other", "theirs")
	require.NoError(t, err)
	require.Equal(t, "native", theirs.Source, "another bot's trigger untouched")

	// Bad input anywhere: an error, nothing written.
	bad := mk("tr4")
	bad.Status = "sideways"
	_, err = s.CreateTriggers(e.ctx, []store.Trigger{mk("tr3"), bad})
	requireIs(t, err, store.ErrInvalid)
	_, err = s.GetTrigger(e.ctx, e.bot, "tr3")
	requireIs(t, err, store.ErrNotFound)
	noID := mk("")
	_, err = s.CreateTriggers(e.ctx, []store.Trigger{mk("tr3"), noID})
	requireIs(t, err, store.ErrInvalid)
	_, err = s.GetTrigger(e.ctx, e.bot, "tr3")
	requireIs(t, err, store.ErrNotFound)
	too := make([]store.Trigger, store.MaxTriggersPerCall+1)
	for i := range too {
		too[i] = mk(fmt.Sprintf("many%d", i))
	}
	_, err = s.CreateTriggers(e.ctx, too)
	requireIs(t, err, store.ErrInvalid)
	got, err = s.CreateTriggers(e.ctx, nil)
	require.NoError(t, err)
	require.Empty(t, got)

	// The most one call may carry.
	most := too[:store.MaxTriggersPerCall]
	got, err = s.CreateTriggers(e.ctx, most)
	require.NoError(t, err)
	for i, c := range got {
		require.NoError(t, c.Err)
		require.True(t, c.Created, "index %d", i)
	}
	stored, err := s.GetTrigger(e.ctx, e.bot, fmt.Sprintf("many%d", store.MaxTriggersPerCall-1))
	require.NoError(t, err)
	require.Equal(t, "dispatch", stored.Source)
}
