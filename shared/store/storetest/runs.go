package storetest

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/flowgate/flowgate/shared/store"
	"github.com/flowgate/flowgate/shared/testclock"
	"github.com/stretchr/testify/require"
)

func testRuns(t *testing.T, s store.Store, e env) {
	mkBot(t, s, e)
	mkContact(t, s, e, "c1", "sandbox", "a")
	in := newRun(e, "r1", "tr1", "c1")
	in.State = json.RawMessage(`{"pc":0,"vars":{"x":"y"}}`)
	r, created, err := s.CreateRun(e.ctx, in)
	require.NoError(t, err)
	require.True(t, created)
	require.EqualValues(t, 1, r.Version, "a created run has version 1")

	got, err := s.GetRun(e.ctx, e.bot, "r1")
	require.NoError(t, err)
	require.Equal(t, "tr1", got.TriggerID)
	require.Equal(t, "f1", got.FlowID)
	require.Equal(t, 1, got.FlowVersion)
	require.Equal(t, "c1", got.ContactID)
	require.Equal(t, "sandbox", got.Channel)
	require.Equal(t, store.RunCreated, got.Status)
	require.EqualValues(t, 1, got.Version)
	jsonEq(t, in.State, got.State)
	mapsEq(t, in.Data, got.Data)
	require.Nil(t, got.WaitUntil)
	requireTime(t, e, in.CreatedAt, got.CreatedAt, "created_at")

	wait := base().Add(time.Hour)
	got.Status, got.WaitUntil, got.State = store.RunWaiting, &wait, json.RawMessage(`{"pc":3}`)
	got.Data = map[string]any{"name": "Ann", "answer": "yes"}
	upd, err := s.UpdateRun(e.ctx, got)
	require.NoError(t, err)
	require.EqualValues(t, 2, upd.Version)
	require.False(t, upd.UpdatedAt.Before(got.CreatedAt), "updated_at is set by the update")

	again, err := s.GetRun(e.ctx, e.bot, "r1")
	require.NoError(t, err)
	require.Equal(t, store.RunWaiting, again.Status)
	require.EqualValues(t, 2, again.Version)
	jsonEq(t, json.RawMessage(`{"pc":3}`), again.State)
	mapsEq(t, got.Data, again.Data)
	require.NotNil(t, again.WaitUntil)
	requireTime(t, e, wait, *again.WaitUntil, "wait_until")
	requireTime(t, e, upd.UpdatedAt, again.UpdatedAt, "returned updated_at is the stored one")

	_, err = s.UpdateRun(e.ctx, got) // Version 1: stale
	requireIs(t, err, store.ErrVersionConflict)

	again.Status, again.WaitUntil, again.Error = store.RunFailed, nil, "template rejected"
	upd, err = s.UpdateRun(e.ctx, again)
	require.NoError(t, err)
	require.EqualValues(t, 3, upd.Version)
	final, err := s.GetRun(e.ctx, e.bot, "r1")
	require.NoError(t, err)
	require.Equal(t, store.RunFailed, final.Status)
	require.Equal(t, "template rejected", final.Error)
	require.Nil(t, final.WaitUntil, "wait_until can be cleared")

	_, err = s.UpdateRun(e.ctx, store.Run{ID: "nope", BotID: e.bot, Status: store.RunRunning, Version: 1})
	requireIs(t, err, store.ErrNotFound)
	_, err = s.GetRun(e.ctx, "zz"+e.bot[:min(len(e.bot), 60)], "r1")
	requireIs(t, err, store.ErrNotFound, "a run is only visible to its bot")
}

func testRunIdempotency(t *testing.T, s store.Store, e env) {
	mkBot(t, s, e)
	first := mkRun(t, s, e, "r1", "tr1", "c1")

	dupID := newRun(e, "r1", "tr2", "c9")
	r, created, err := s.CreateRun(e.ctx, dupID)
	require.NoError(t, err)
	require.False(t, created, "same id")
	require.Equal(t, "tr1", r.TriggerID, "the existing run is returned")
	require.Equal(t, "c1", r.ContactID)

	dupKey := newRun(e, "r2", "tr1", "c1")
	r, created, err = s.CreateRun(e.ctx, dupKey)
	require.NoError(t, err)
	require.False(t, created, "same trigger + contact")
	require.Equal(t, first.ID, r.ID, "the existing run is returned")
	_, err = s.GetRun(e.ctx, e.bot, "r2")
	requireIs(t, err, store.ErrNotFound, "no second run was written")

	// Runs without a trigger (started by an inbound message) are not unique per contact.
	mkRun(t, s, e, "r3", "", "c1")
	mkRun(t, s, e, "r4", "", "c1")
	// The same contact under another trigger is another run.
	mkRun(t, s, e, "r5", "tr2", "c1")

	// Concurrent creates of one trigger + contact: one run.
	n := e.feats.Concurrency
	ids := make([]string, n)
	var createdN atomic.Int32
	errs := make([]error, n)
	parallel(n, func(i int) {
		r, created, err := s.CreateRun(e.ctx, newRun(e, fmt.Sprintf("race-%d", i), "tr3", "c1"))
		ids[i], errs[i] = r.ID, err
		if created {
			createdN.Add(1)
		}
	})
	for i := range n {
		require.NoError(t, errs[i])
		require.Equal(t, ids[0], ids[i])
	}
	require.EqualValues(t, 1, createdN.Load())
}

func testRunConcurrentUpdate(t *testing.T, s store.Store, e env) {
	mkBot(t, s, e)
	r := mkRun(t, s, e, "r1", "tr1", "c1")
	n := e.feats.Concurrency
	var wins, conflicts atomic.Int32
	errs := make([]error, n)
	parallel(n, func(i int) {
		x := r
		x.Status = store.RunRunning
		x.State = json.RawMessage(fmt.Sprintf(`{"writer":%d}`, i))
		_, err := s.UpdateRun(e.ctx, x)
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
	got, err := s.GetRun(e.ctx, e.bot, "r1")
	require.NoError(t, err)
	require.EqualValues(t, 2, got.Version)

	// Many runs updated at once (the group-commit path) all land.
	var rs []store.Run
	for i := range 40 {
		rs = append(rs, newRun(e, fmt.Sprintf("m%02d", i), "tr2", fmt.Sprintf("c%02d", i)))
	}
	rs, _, err = s.CreateRuns(e.ctx, rs)
	require.NoError(t, err)
	errs = make([]error, len(rs))
	parallel(len(rs), func(i int) {
		x := rs[i]
		for step := range 3 {
			x.Status = []string{store.RunQueued, store.RunRunning, store.RunCompleted}[step]
			x, errs[i] = s.UpdateRun(e.ctx, x)
			if errs[i] != nil {
				return
			}
		}
	})
	for _, err := range errs {
		require.NoError(t, err)
	}
	for _, x := range rs {
		got, err := s.GetRun(e.ctx, e.bot, x.ID)
		require.NoError(t, err)
		require.Equal(t, store.RunCompleted, got.Status)
		require.EqualValues(t, 4, got.Version)
	}
}

func testCreateRuns(t *testing.T, s store.Store, e env) {
	mkBot(t, s, e)
	mkRun(t, s, e, "pre", "tr1", "c05")
	var rs []store.Run
	for i := range 20 {
		rs = append(rs, newRun(e, fmt.Sprintf("r%02d", i), "tr1", fmt.Sprintf("c%02d", i)))
	}
	out, created, err := s.CreateRuns(e.ctx, rs)
	require.NoError(t, err)
	require.Len(t, out, 20)
	require.Len(t, created, 20)
	for i := range rs {
		if i == 5 {
			require.False(t, created[i], "c05 already had a run of tr1")
			require.Equal(t, "pre", out[i].ID)
			continue
		}
		require.True(t, created[i], "run %d", i)
		require.Equal(t, rs[i].ID, out[i].ID)
		require.EqualValues(t, 1, out[i].Version)
	}
	_, err = s.GetRun(e.ctx, e.bot, "r05")
	requireIs(t, err, store.ErrNotFound)

	out, created, err = s.CreateRuns(e.ctx, rs)
	require.NoError(t, err, "a retried batch is harmless")
	for i := range rs {
		require.False(t, created[i])
		if i != 5 {
			require.Equal(t, rs[i].ID, out[i].ID)
		}
	}
	page, _, err := s.ListRuns(e.ctx, store.RunFilter{BotID: e.bot, TriggerID: "tr1", Limit: 100})
	require.NoError(t, err)
	require.Len(t, page, 20, "19 new runs + the one that existed")

	bad := []store.Run{newRun(e, "ok1", "tr2", "c1"), newRun(e, "", "tr2", "c2")}
	_, _, err = s.CreateRuns(e.ctx, bad)
	requireInvalid(t, err, "id")
	_, err = s.GetRun(e.ctx, e.bot, "ok1")
	requireIs(t, err, store.ErrNotFound, "an invalid batch writes nothing")

	out, created, err = s.CreateRuns(e.ctx, nil)
	require.NoError(t, err)
	require.Empty(t, out)
	require.Empty(t, created)
}

func testListRuns(t *testing.T, s store.Store, e env) {
	mkBot(t, s, e)
	t0 := base().Add(-time.Hour)
	statuses := []string{store.RunCompleted, store.RunRunning, store.RunWaiting}
	var rs []store.Run
	for i := range 30 {
		// (trigger, contact) is unique per run: i%2 and i%15 repeat together only after 30.
		r := newRun(e, fmt.Sprintf("r%02d", i), fmt.Sprintf("tr%d", i%2), fmt.Sprintf("c%d", i%15))
		r.Status = statuses[i%3]
		r.FlowID = []string{"f1", "f2"}[i%4/3]
		r.CreatedAt = t0.Add(time.Duration(i/2) * time.Second) // pairs share a time: the id breaks the tie
		rs = append(rs, r)
	}
	_, _, err := s.CreateRuns(e.ctx, rs)
	require.NoError(t, err)
	otherBot := "zz" + e.bot[:min(len(e.bot), 60)]
	_, _, err = s.CreateRun(e.ctx, store.Run{ID: "foreign-" + e.bot, BotID: otherBot, FlowID: "f1", ContactID: "c0", CreatedAt: t0})
	require.NoError(t, err)

	// newest first: created_at desc, then id desc
	order := func(keep func(r store.Run) bool) []string {
		var ids []string
		for i := len(rs) - 1; i >= 0; i-- {
			if keep(rs[i]) {
				ids = append(ids, rs[i].ID)
			}
		}
		return ids
	}
	list := func(f store.RunFilter) []string {
		f.BotID = e.bot
		var ids []string
		seen := map[string]bool{}
		for pages := 0; ; pages++ {
			require.Less(t, pages, 50)
			page, next, err := s.ListRuns(e.ctx, f)
			require.NoError(t, err)
			require.LessOrEqual(t, len(page), f.Limit)
			for _, r := range page {
				require.False(t, seen[r.ID], "run %s on two pages", r.ID)
				seen[r.ID] = true
				ids = append(ids, r.ID)
			}
			if next == "" {
				return ids
			}
			f.Cursor = next
		}
	}
	all := func(store.Run) bool { return true }
	require.Equal(t, order(all), list(store.RunFilter{Limit: 7}), "pages cover every run once, newest first")
	require.Equal(t, order(all), list(store.RunFilter{Limit: 1000}))
	require.Equal(t, order(func(r store.Run) bool { return r.Status == store.RunWaiting }), list(store.RunFilter{Status: store.RunWaiting, Limit: 4}))
	require.Equal(t, order(func(r store.Run) bool { return r.ContactID == "c1" }), list(store.RunFilter{ContactID: "c1", Limit: 1}))
	require.Equal(t, order(func(r store.Run) bool { return r.TriggerID == "tr1" }), list(store.RunFilter{TriggerID: "tr1", Limit: 5}))
	require.Equal(t, order(func(r store.Run) bool { return r.FlowID == "f2" }), list(store.RunFilter{FlowID: "f2", Limit: 5}))
	since, until := t0.Add(5*time.Second), t0.Add(10*time.Second)
	require.Equal(t, order(func(r store.Run) bool { return !r.CreatedAt.Before(since) && r.CreatedAt.Before(until) }),
		list(store.RunFilter{Since: since, Until: until, Limit: 4}), "since inclusive, until exclusive")
	require.Equal(t, order(func(r store.Run) bool {
		return r.Status == store.RunCompleted && r.TriggerID == "tr0" && !r.CreatedAt.Before(since)
	}), list(store.RunFilter{Status: store.RunCompleted, TriggerID: "tr0", Since: since, Limit: 2}))
	require.Empty(t, list(store.RunFilter{ContactID: "nobody", Limit: 10}))

	page, next, err := s.ListRuns(e.ctx, store.RunFilter{BotID: e.bot})
	require.NoError(t, err)
	require.Len(t, page, 30, "default limit holds 30")
	require.Empty(t, next)

	_, _, err = s.ListRuns(e.ctx, store.RunFilter{BotID: e.bot, Cursor: "not a cursor!"})
	requireInvalid(t, err, "cursor")
}

func testDueRuns(t *testing.T, s store.Store, e env) {
	mkBot(t, s, e)
	now := base()
	mk := func(id, status string, wait time.Duration) {
		r := newRun(e, id, "", "c1")
		r.Status = status
		w := now.Add(wait)
		r.WaitUntil = &w
		_, created, err := s.CreateRun(e.ctx, r)
		require.NoError(t, err)
		require.True(t, created)
	}
	mk("due-2", store.RunWaiting, -time.Minute)
	mk("due-1", store.RunWaiting, -time.Hour)
	mk("due-3", store.RunWaiting, 0)
	mk("later", store.RunWaiting, time.Minute)
	mk("running", store.RunRunning, -time.Hour)
	mk("done", store.RunCompleted, -time.Hour)

	mine := func(rs []store.Run) []string {
		var ids []string
		for _, r := range rs {
			if r.BotID == e.bot {
				ids = append(ids, r.ID)
			}
		}
		return ids
	}
	due, err := s.DueRuns(e.ctx, now, 1000)
	require.NoError(t, err)
	require.Equal(t, []string{"due-1", "due-2", "due-3"}, mine(due), "waiting runs at or before now, earliest first")
	for i := 1; i < len(due); i++ {
		require.False(t, due[i].WaitUntil.Before(*due[i-1].WaitUntil), "earliest first across bots")
	}

	// Firing a timer (moving the run on) removes it from the due set.
	r, err := s.GetRun(e.ctx, e.bot, "due-1")
	require.NoError(t, err)
	r.Status, r.WaitUntil = store.RunRunning, nil
	_, err = s.UpdateRun(e.ctx, r)
	require.NoError(t, err)
	due, err = s.DueRuns(e.ctx, now, 1000)
	require.NoError(t, err)
	require.Equal(t, []string{"due-2", "due-3"}, mine(due))

	due, err = s.DueRuns(e.ctx, now.Add(2*time.Minute), 1000)
	require.NoError(t, err)
	require.Equal(t, []string{"due-2", "due-3", "later"}, mine(due))

	due, err = s.DueRuns(e.ctx, now.Add(-30*time.Hour), 1000)
	require.NoError(t, err)
	require.Empty(t, mine(due))

	due, err = s.DueRuns(e.ctx, now.Add(2*time.Minute), 1)
	require.NoError(t, err)
	require.Len(t, due, 1, "limit")
}

func testUpdateRuns(t *testing.T, s store.Store, e env) {
	mkBot(t, s, e)
	var rs []store.Run
	for i := range 5 {
		rs = append(rs, mkRun(t, s, e, fmt.Sprintf("u%d", i), "", fmt.Sprintf("c%d", i)))
	}
	// u1 moves on before the bulk write: its copy below is stale.
	moved := rs[1]
	moved.Status = store.RunCancelled
	_, err := s.UpdateRun(e.ctx, moved)
	require.NoError(t, err)
	gone := newRun(e, "never-created", "", "cx")

	batch := make([]store.Run, 0, 6)
	for i, r := range rs {
		r.Status = store.RunCompleted
		r.State = json.RawMessage(fmt.Sprintf(`{"i":%d}`, i))
		batch = append(batch, r)
	}
	batch = append(batch, gone)
	conflicts, err := s.UpdateRuns(e.ctx, batch)
	require.NoError(t, err)
	require.Equal(t, []int{1, 5}, conflicts, "the stale run and the missing one")
	for i, r := range rs {
		got, err := s.GetRun(e.ctx, e.bot, r.ID)
		require.NoError(t, err)
		if i == 1 {
			require.Equal(t, store.RunCancelled, got.Status, "a conflicting run is left as it is")
			continue
		}
		require.Equal(t, store.RunCompleted, got.Status)
		require.Equal(t, r.Version+1, got.Version)
		require.JSONEq(t, fmt.Sprintf(`{"i":%d}`, i), string(got.State))
	}
	// The same batch again: every run has moved on.
	conflicts, err = s.UpdateRuns(e.ctx, batch[:5])
	require.NoError(t, err)
	require.Equal(t, []int{0, 1, 2, 3, 4}, conflicts)

	conflicts, err = s.UpdateRuns(e.ctx, nil)
	require.NoError(t, err)
	require.Empty(t, conflicts)

	// An invalid run writes nothing.
	r0, err := s.GetRun(e.ctx, e.bot, "u0")
	require.NoError(t, err)
	good, bad := r0, r0
	good.Status = store.RunFailed
	bad.Status = "nope"
	_, err = s.UpdateRuns(e.ctx, []store.Run{good, bad})
	require.ErrorIs(t, err, store.ErrInvalid)
	after, err := s.GetRun(e.ctx, e.bot, "u0")
	require.NoError(t, err)
	require.Equal(t, r0.Version, after.Version, "nothing written")
}

func testWaitingRuns(t *testing.T, s store.Store, e env) {
	mkBot(t, s, e)
	mk := func(id, contact, status string) {
		r := newRun(e, id, "", contact)
		r.Status = status
		_, created, err := s.CreateRun(e.ctx, r)
		require.NoError(t, err)
		require.True(t, created)
	}
	mk("w-a1", "ca", store.RunWaiting)
	mk("w-a2", "ca", store.RunWaiting)
	mk("r-a3", "ca", store.RunRunning)
	mk("w-b1", "cb", store.RunWaiting)
	mk("d-b2", "cb", store.RunCompleted)
	mk("w-c1", "cc", store.RunWaiting)

	other := env{ctx: e.ctx, feats: e.feats, bot: e.bot + "-x"}
	mkBot(t, s, other)
	r := newRun(other, "w-other", "", "ca")
	r.Status = store.RunWaiting
	_, _, err := s.CreateRun(e.ctx, r)
	require.NoError(t, err)

	ids := func(rs []store.Run) []string {
		var out []string
		for _, r := range rs {
			require.Equal(t, e.bot, r.BotID, "another bot's run")
			require.Equal(t, store.RunWaiting, r.Status)
			out = append(out, r.ID)
		}
		slices.Sort(out)
		return out
	}
	got, err := s.WaitingRuns(e.ctx, e.bot, []string{"ca", "cb", "nobody"})
	require.NoError(t, err)
	require.Equal(t, []string{"w-a1", "w-a2", "w-b1"}, ids(got), "waiting runs of the contacts asked, of this bot only")

	got, err = s.WaitingRuns(e.ctx, e.bot, []string{"cc"})
	require.NoError(t, err)
	require.Equal(t, []string{"w-c1"}, ids(got))

	got, err = s.WaitingRuns(e.ctx, e.bot, nil)
	require.NoError(t, err)
	require.Empty(t, got)

	// A run that stops waiting is no longer found.
	run, err := s.GetRun(e.ctx, e.bot, "w-c1")
	require.NoError(t, err)
	run.Status = store.RunCancelled
	_, err = s.UpdateRun(e.ctx, run)
	require.NoError(t, err)
	got, err = s.WaitingRuns(e.ctx, e.bot, []string{"cc"})
	require.NoError(t, err)
	require.Empty(t, got)
}

func testExpireBefore(t *testing.T, s store.Store, e env) {
	mkBot(t, s, e)
	old := base().Add(-48 * time.Hour)
	mk := func(id, status string, at time.Time) {
		r := newRun(e, id, "", "c1")
		r.Status, r.CreatedAt, r.UpdatedAt = status, at, at
		_, created, err := s.CreateRun(e.ctx, r)
		require.NoError(t, err)
		require.True(t, created)
		require.NoError(t, s.InsertMessages(e.ctx, []store.Message{{ID: "m-" + id, BotID: e.bot, RunID: id, ContactID: "c1",
			Channel: "sandbox", To: "a", Seq: 1, Content: json.RawMessage(`{"text":"x"}`), CreatedAt: at}}))
	}
	mk("old-completed", store.RunCompleted, old)
	mk("old-failed", store.RunFailed, old)
	mk("old-cancelled", store.RunCancelled, old)
	mk("old-expired", store.RunExpired, old)
	mk("old-waiting", store.RunWaiting, old)
	mk("old-running", store.RunRunning, old)
	mk("new-completed", store.RunCompleted, base())

	n, err := s.ExpireBefore(e.ctx, base().Add(-24*time.Hour))
	require.NoError(t, err)
	require.GreaterOrEqual(t, n, int64(4))
	for _, id := range []string{"old-completed", "old-failed", "old-cancelled", "old-expired"} {
		_, err := s.GetRun(e.ctx, e.bot, id)
		requireIs(t, err, store.ErrNotFound, "final run %s expired", id)
		_, err = s.GetMessage(e.ctx, e.bot, "m-"+id)
		requireIs(t, err, store.ErrNotFound, "message of expired run %s", id)
	}
	for _, id := range []string{"old-waiting", "old-running", "new-completed"} {
		_, err := s.GetRun(e.ctx, e.bot, id)
		require.NoError(t, err, "run %s stays", id)
		_, err = s.GetMessage(e.ctx, e.bot, "m-"+id)
		require.NoError(t, err, "message of run %s stays", id)
	}
	n, err = s.ExpireBefore(e.ctx, base().Add(-24*time.Hour))
	require.NoError(t, err)
	require.Zero(t, n, "nothing left to expire")
}

func testClaimRuns(t *testing.T, s store.Store, e env) {
	mkBot(t, s, e)
	r1, r2, r3 := mkRun(t, s, e, "k1", "", "c1"), mkRun(t, s, e, "k2", "", "c2"), mkRun(t, s, e, "k3", "", "c3")
	claims := func(rs ...store.Run) []store.RunClaim {
		out := make([]store.RunClaim, len(rs))
		for i, r := range rs {
			out[i] = store.RunClaim{BotID: r.BotID, RunID: r.ID, Version: r.Version}
		}
		return out
	}
	// The claims' times are the caller's, never the store's clock.
	t0 := testclock.Date(2031, 3, 1, 12, 0, 0)
	at := func(d time.Duration) time.Time { return t0.Add(d) }

	refused, err := s.ClaimRuns(e.ctx, claims(r1, r2), "step-a", t0, at(time.Minute))
	require.NoError(t, err)
	require.Empty(t, refused)

	// Another step is refused while the claims are live, and told until
	// when; a free run of the same call is taken.
	refused, err = s.ClaimRuns(e.ctx, claims(r1, r2, r3), "step-b", at(time.Second), at(time.Minute+time.Second))
	require.NoError(t, err)
	require.Len(t, refused, 2)
	for i, r := range refused {
		require.Equal(t, i, r.Index)
		require.False(t, r.Gone)
		requireTime(t, e, at(time.Minute), r.HeldUntil, "held until")
	}
	refused, err = s.ClaimRuns(e.ctx, claims(r3), "step-a", at(2*time.Second), at(time.Minute))
	require.NoError(t, err)
	require.Len(t, refused, 1, "step-b took k3")

	// A step renews its own claim (the same event redelivered).
	refused, err = s.ClaimRuns(e.ctx, claims(r1), "step-a", at(3*time.Second), at(2*time.Minute))
	require.NoError(t, err)
	require.Empty(t, refused)

	// A run that moved on, and one that does not exist.
	moved := r1
	moved.Version++
	refused, err = s.ClaimRuns(e.ctx, append(claims(moved), store.RunClaim{BotID: e.bot, RunID: "never", Version: 1}), "step-c", at(4*time.Second), at(time.Minute))
	require.NoError(t, err)
	require.Equal(t, []store.ClaimRefusal{{Index: 0}, {Index: 1, Gone: true}}, refused)

	// A claim lapses at its until: k2's (step-a's, not renewed) at t0+1m.
	refused, err = s.ClaimRuns(e.ctx, claims(r2), "step-c", at(time.Minute), at(2*time.Minute))
	require.NoError(t, err)
	require.Empty(t, refused, "a lapsed claim is no claim")

	// The run's write ends the claim: k1, claimed by step-a until t0+2m, is
	// written (by step-a) and its next version is free at once.
	w := r1
	w.Status = store.RunWaiting
	w, err = s.UpdateRun(e.ctx, w)
	require.NoError(t, err)
	refused, err = s.ClaimRuns(e.ctx, claims(w), "step-d", at(5*time.Second), at(time.Minute))
	require.NoError(t, err)
	require.Empty(t, refused)
	// … and so does UpdateRuns'.
	w.Status = store.RunCompleted
	conflicts, err := s.UpdateRuns(e.ctx, []store.Run{w})
	require.NoError(t, err)
	require.Empty(t, conflicts)
	w.Version++
	refused, err = s.ClaimRuns(e.ctx, claims(w), "step-e", at(6*time.Second), at(time.Minute))
	require.NoError(t, err)
	require.Empty(t, refused)

	// Of many steps claiming one run at once, one takes it.
	r4 := mkRun(t, s, e, "k4", "", "c4")
	var won atomic.Int32
	parallel(16, func(i int) {
		refused, err := s.ClaimRuns(e.ctx, claims(r4), fmt.Sprintf("racer-%d", i), t0, at(time.Minute))
		if err == nil && len(refused) == 0 {
			won.Add(1)
		}
	})
	require.EqualValues(t, 1, won.Load())

	refused, err = s.ClaimRuns(e.ctx, nil, "step-f", t0, at(time.Minute))
	require.NoError(t, err)
	require.Empty(t, refused)

	// Bad input claims nothing: k5 stays free.
	r5 := mkRun(t, s, e, "k5", "", "c5")
	for name, call := range map[string]func() error{
		"no claimant": func() error { _, err := s.ClaimRuns(e.ctx, claims(r5), "", t0, at(time.Minute)); return err },
		"claimant too long": func() error {
			_, err := s.ClaimRuns(e.ctx, claims(r5), strings.Repeat("x", store.MaxClaimBy+1), t0, at(time.Minute))
			return err
		},
		"no now":              func() error { _, err := s.ClaimRuns(e.ctx, claims(r5), "x", time.Time{}, at(time.Minute)); return err },
		"until not after now": func() error { _, err := s.ClaimRuns(e.ctx, claims(r5), "x", t0, t0); return err },
		"bad run id": func() error {
			_, err := s.ClaimRuns(e.ctx, append(claims(r5), store.RunClaim{BotID: e.bot, RunID: "", Version: 1}), "x", t0, at(time.Minute))
			return err
		},
		"version 0": func() error {
			_, err := s.ClaimRuns(e.ctx, append(claims(r5), store.RunClaim{BotID: e.bot, RunID: "k1", Version: 0}), "x", t0, at(time.Minute))
			return err
		},
	} {
		require.ErrorIs(t, call(), store.ErrInvalid, name)
	}
	refused, err = s.ClaimRuns(e.ctx, claims(r5), "step-g", t0, at(time.Minute))
	require.NoError(t, err)
	require.Empty(t, refused, "nothing was claimed by the bad calls")
}
