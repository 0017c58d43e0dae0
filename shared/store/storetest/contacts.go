package storetest

import (
	"encoding/json"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/flowgate/flowgate/shared/store"
	"github.com/stretchr/testify/require"
)

func testContactUpsert(t *testing.T, s store.Store, e env) {
	mkBot(t, s, e)
	t0 := base().Add(-time.Hour)
	c, created, err := s.UpsertContact(e.ctx, store.ContactUpsert{
		BotID: e.bot, Channel: "whatsapp", ExternalID: "+15550001", Name: "Ann", NewID: "c1",
		Attributes: map[string]any{"plan": "free", "age": 30.0}, LastRequest: map[string]any{"ref": "a"}, Now: t0,
	})
	require.NoError(t, err)
	require.True(t, created)
	require.Equal(t, "c1", c.ID, "a new contact gets NewID")
	require.Equal(t, "Ann", c.Name)

	t1 := base()
	inbound := t1.Add(-time.Second)
	c, created, err = s.UpsertContact(e.ctx, store.ContactUpsert{
		BotID: e.bot, Channel: "whatsapp", ExternalID: "+15550001", NewID: "c-other",
		Attributes: map[string]any{"plan": "pro", "city": "Lima"}, LastInboundAt: &inbound, Now: t1,
	})
	require.NoError(t, err)
	require.False(t, created)
	require.Equal(t, "c1", c.ID, "an existing contact keeps its id")
	require.Equal(t, "Ann", c.Name, "an empty name leaves the name")
	mapsEq(t, map[string]any{"plan": "pro", "age": 30.0, "city": "Lima"}, c.Attributes)
	mapsEq(t, map[string]any{"ref": "a"}, c.LastRequest)

	got, err := s.GetContact(e.ctx, e.bot, "c1")
	require.NoError(t, err)
	mapsEq(t, map[string]any{"plan": "pro", "age": 30.0, "city": "Lima"}, got.Attributes)
	mapsEq(t, map[string]any{"ref": "a"}, got.LastRequest)
	require.NotNil(t, got.LastInboundAt)
	requireTime(t, e, inbound, *got.LastInboundAt, "last_inbound_at")
	requireTime(t, e, t0, got.CreatedAt, "created_at")
	requireTime(t, e, t1, got.UpdatedAt, "updated_at")
	require.Equal(t, "whatsapp", got.Channel)
	require.Equal(t, "+15550001", got.ExternalID)
	require.False(t, got.OptedOut)

	yes := true
	c, _, err = s.UpsertContact(e.ctx, store.ContactUpsert{
		BotID: e.bot, Channel: "whatsapp", ExternalID: "+15550001", Name: "Ann B", NewID: "c-x",
		LastRequest: map[string]any{"ref": "b", "n": 2.0}, OptedOut: &yes,
	})
	require.NoError(t, err)
	require.Equal(t, "Ann B", c.Name)
	got, err = s.GetContactByExternalID(e.ctx, e.bot, "whatsapp", "+15550001")
	require.NoError(t, err)
	require.Equal(t, "c1", got.ID)
	require.Equal(t, "Ann B", got.Name)
	require.True(t, got.OptedOut)
	mapsEq(t, map[string]any{"ref": "b", "n": 2.0}, got.LastRequest)
	mapsEq(t, map[string]any{"plan": "pro", "age": 30.0, "city": "Lima"}, got.Attributes)

	// Same external id on another channel is another contact.
	c2, created, err := s.UpsertContact(e.ctx, store.ContactUpsert{BotID: e.bot, Channel: "telegram", ExternalID: "+15550001", NewID: "c2"})
	require.NoError(t, err)
	require.True(t, created)
	require.Equal(t, "c2", c2.ID)

	// A new contact whose NewID is taken by another contact.
	_, _, err = s.UpsertContact(e.ctx, store.ContactUpsert{BotID: e.bot, Channel: "telegram", ExternalID: "999", NewID: "c1"})
	requireIs(t, err, store.ErrConflict)
	_, err = s.GetContactByExternalID(e.ctx, e.bot, "telegram", "999")
	requireIs(t, err, store.ErrNotFound, "a failed upsert leaves nothing")

	// Concurrent first contact: one creates, the rest find it.
	n := e.feats.Concurrency
	ids := make([]string, n)
	createdN := atomic.Int32{}
	errs := make([]error, n)
	parallel(n, func(i int) {
		c, created, err := s.UpsertContact(e.ctx, store.ContactUpsert{
			BotID: e.bot, Channel: "sandbox", ExternalID: "race", NewID: fmt.Sprintf("race-%d", i),
			Attributes: map[string]any{fmt.Sprintf("k%d", i): true},
		})
		ids[i], errs[i] = c.ID, err
		if created {
			createdN.Add(1)
		}
	})
	for i := range n {
		require.NoError(t, errs[i])
		require.Equal(t, ids[0], ids[i], "all upserts of one key see one contact")
	}
	require.EqualValues(t, 1, createdN.Load(), "exactly one upsert creates")
	got, err = s.GetContactByExternalID(e.ctx, e.bot, "sandbox", "race")
	require.NoError(t, err)
	require.Len(t, got.Attributes, n, "every concurrent attribute merge is kept")
}

func testSetLastRequest(t *testing.T, s store.Store, e env) {
	mkBot(t, s, e)
	mkContact(t, s, e, "c-1", "sandbox", "u1")
	mkContact(t, s, e, "c-2", "sandbox", "u2")
	mkContact(t, s, e, "c-3", "sandbox", "u3")
	_, _, err := s.UpsertContact(e.ctx, store.ContactUpsert{BotID: e.bot, Channel: "sandbox", ExternalID: "u1",
		Attributes: map[string]any{"tier": "gold"}, LastRequest: map[string]any{"old": true}})
	require.NoError(t, err)
	other := env{ctx: e.ctx, feats: e.feats, bot: e.bot + "-x"}
	mkBot(t, s, other)
	mkContact(t, s, other, "c-other", "sandbox", "u1")

	at := base().Add(time.Hour)
	data := map[string]any{"plan": "pro", "n": 2.0}
	require.NoError(t, s.SetLastRequest(e.ctx, e.bot, []string{"c-1", "c-2", "missing", "c-other"}, data, at))
	for _, id := range []string{"c-1", "c-2"} {
		c, err := s.GetContact(e.ctx, e.bot, id)
		require.NoError(t, err)
		require.Equal(t, data, c.LastRequest, id)
		require.WithinDuration(t, at, c.UpdatedAt, e.feats.TimePrecision, id)
	}
	c1, err := s.GetContact(e.ctx, e.bot, "c-1")
	require.NoError(t, err)
	require.Equal(t, map[string]any{"tier": "gold"}, c1.Attributes, "attributes are left as they are")
	c3, err := s.GetContact(e.ctx, e.bot, "c-3")
	require.NoError(t, err)
	require.Empty(t, c3.LastRequest, "a contact not named is left as it is")
	oc, err := s.GetContact(e.ctx, other.bot, "c-other")
	require.NoError(t, err)
	require.Empty(t, oc.LastRequest, "another bot's contact is left as it is")
	_, err = s.GetContact(e.ctx, e.bot, "missing")
	require.ErrorIs(t, err, store.ErrNotFound, "an unknown id creates nothing")
	require.NoError(t, s.SetLastRequest(e.ctx, e.bot, nil, data, at))
}

func testImportContacts(t *testing.T, s store.Store, e env) {
	mkBot(t, s, e)
	mkContact(t, s, e, "c-0", "sandbox", "u0")
	var us []store.ContactUpsert
	for i := range 6 {
		us = append(us, store.ContactUpsert{
			BotID: e.bot, Channel: "sandbox", ExternalID: fmt.Sprintf("u%d", i), NewID: fmt.Sprintf("c-%d", i),
			Name: fmt.Sprintf("User %d", i), Attributes: map[string]any{"i": float64(i)},
		})
	}
	created, updated, err := s.ImportContacts(e.ctx, us)
	require.NoError(t, err)
	require.Equal(t, 5, created)
	require.Equal(t, 1, updated)
	for i := range 6 {
		c, err := s.GetContactByExternalID(e.ctx, e.bot, "sandbox", fmt.Sprintf("u%d", i))
		require.NoError(t, err)
		require.Equal(t, fmt.Sprintf("c-%d", i), c.ID)
		require.Equal(t, fmt.Sprintf("User %d", i), c.Name)
	}
	created, updated, err = s.ImportContacts(e.ctx, us)
	require.NoError(t, err)
	require.Equal(t, 0, created, "a second import creates nothing")
	require.Equal(t, 6, updated)

	// UpsertContacts: the same, returning the contacts as stored, in order.
	us2 := []store.ContactUpsert{
		{BotID: e.bot, Channel: "sandbox", ExternalID: "u3", NewID: "unused", LastRequest: map[string]any{"k": "v"}},
		{BotID: e.bot, Channel: "sandbox", ExternalID: "w9", NewID: "c-w9", Name: "New"},
		{BotID: e.bot, Channel: "sandbox", ExternalID: "u1", Attributes: map[string]any{"extra": true}},
	}
	got, err := s.UpsertContacts(e.ctx, us2)
	require.NoError(t, err)
	require.Len(t, got, 3)
	require.Equal(t, "c-3", got[0].ID, "an existing contact keeps its id")
	require.Equal(t, map[string]any{"k": "v"}, got[0].LastRequest)
	require.Equal(t, "User 3", got[0].Name)
	require.Equal(t, "c-w9", got[1].ID)
	require.Equal(t, "New", got[1].Name)
	require.Equal(t, map[string]any{"i": 1.0, "extra": true}, got[2].Attributes, "attributes merge")
	stored, err := s.GetContact(e.ctx, e.bot, "c-w9")
	require.NoError(t, err)
	require.Equal(t, "w9", stored.ExternalID)
	_, err = s.UpsertContacts(e.ctx, []store.ContactUpsert{{BotID: e.bot, Channel: "sandbox", ExternalID: "", NewID: "z"}})
	requireInvalid(t, err, "external_id")
	got, err = s.UpsertContacts(e.ctx, nil)
	require.NoError(t, err)
	require.Empty(t, got)

	bad := []store.ContactUpsert{
		{BotID: e.bot, Channel: "sandbox", ExternalID: "v1", NewID: "d-1"},
		{BotID: e.bot, Channel: "sandbox", ExternalID: "", NewID: "d-2"},
	}
	_, _, err = s.ImportContacts(e.ctx, bad)
	requireInvalid(t, err, "external_id")
	_, err = s.GetContactByExternalID(e.ctx, e.bot, "sandbox", "v1")
	requireIs(t, err, store.ErrNotFound, "an invalid import writes nothing")

	clash := []store.ContactUpsert{
		{BotID: e.bot, Channel: "sandbox", ExternalID: "w1", NewID: "e-1"},
		{BotID: e.bot, Channel: "sandbox", ExternalID: "w2", NewID: "c-3"}, // id taken by u3
	}
	_, _, err = s.ImportContacts(e.ctx, clash)
	requireIs(t, err, store.ErrConflict)
	if e.feats.AtomicBulk {
		_, err = s.GetContactByExternalID(e.ctx, e.bot, "sandbox", "w1")
		requireIs(t, err, store.ErrNotFound, "an atomic import that failed writes nothing")
	}
}

// testUpsertContactsInBulk: many contacts in one call, new and existing
// ones mixed over two channels, are each upserted as UpsertContact would,
// in order; a call naming one contact twice applies both upserts in
// order; an id taken in the middle of a bulk call fails it, naming the
// contact, and (atomic stores) writes nothing. With the default chunk
// (128) that is 300 contacts, and 150 with the id of the 98th taken.
func testUpsertContactsInBulk(t *testing.T, s store.Store, e env) {
	mkBot(t, s, e)
	bulk := 2*e.feats.BulkChunk + 44  // three chunks, the last one short
	clashes := e.feats.BulkChunk + 22 // two chunks
	taken := e.feats.BulkChunk - 31   // in the first one, not at its start
	at := base()
	yes := true
	channels := []string{"whatsapp", "telegram"}
	// Every third contact exists already, with attributes and a name.
	for i := 0; i < bulk; i += 3 {
		_, created, err := s.UpsertContact(e.ctx, store.ContactUpsert{
			BotID: e.bot, Channel: channels[i%2], ExternalID: fmt.Sprintf("b%d", i), NewID: fmt.Sprintf("old-%d", i),
			Name: "Old", Attributes: map[string]any{"keep": "yes", "n": 0.0}, Now: at,
		})
		require.NoError(t, err)
		require.True(t, created)
	}
	later := at.Add(time.Minute)
	inbound := at.Add(30 * time.Second)
	var us []store.ContactUpsert
	for i := range bulk {
		u := store.ContactUpsert{
			BotID: e.bot, Channel: channels[i%2], ExternalID: fmt.Sprintf("b%d", i), NewID: fmt.Sprintf("new-%d", i),
			Attributes: map[string]any{"n": float64(i)}, LastRequest: map[string]any{"i": float64(i)}, Now: later,
		}
		if i%5 == 0 {
			u.Name = fmt.Sprintf("Name %d", i)
		}
		if i%7 == 0 {
			u.OptedOut, u.LastInboundAt = &yes, &inbound
		}
		us = append(us, u)
	}
	got, err := s.UpsertContacts(e.ctx, us)
	require.NoError(t, err)
	require.Len(t, got, len(us))
	for i, c := range got {
		existed := i%3 == 0
		id, name := fmt.Sprintf("new-%d", i), ""
		attrs := map[string]any{"n": float64(i)}
		if existed {
			id, name = fmt.Sprintf("old-%d", i), "Old"
			attrs["keep"] = "yes"
		}
		if i%5 == 0 {
			name = fmt.Sprintf("Name %d", i)
		}
		stored, err := s.GetContactByExternalID(e.ctx, e.bot, channels[i%2], fmt.Sprintf("b%d", i))
		require.NoError(t, err, i)
		for what, c := range map[string]store.Contact{"returned": c, "stored": stored} {
			require.Equal(t, id, c.ID, "%s %d", what, i)
			require.Equal(t, name, c.Name, "%s %d", what, i)
			require.Equal(t, attrs, c.Attributes, "%s %d: attributes merge", what, i)
			require.Equal(t, map[string]any{"i": float64(i)}, c.LastRequest, "%s %d", what, i)
			require.Equal(t, i%7 == 0, c.OptedOut, "%s %d", what, i)
			if i%7 == 0 {
				require.NotNil(t, c.LastInboundAt, "%s %d", what, i)
				require.WithinDuration(t, inbound, *c.LastInboundAt, e.feats.TimePrecision, "%s %d", what, i)
			} else {
				require.Nil(t, c.LastInboundAt, "%s %d", what, i)
			}
			require.WithinDuration(t, later, c.UpdatedAt, e.feats.TimePrecision, "%s %d", what, i)
			created := later
			if existed {
				created = at
			}
			require.WithinDuration(t, created, c.CreatedAt, e.feats.TimePrecision, "%s %d", what, i)
		}
	}

	// One contact named twice (and a new one twice): the second upsert
	// sees the first.
	twice := []store.ContactUpsert{
		{BotID: e.bot, Channel: "whatsapp", ExternalID: "b0", Attributes: map[string]any{"a": 1.0}, Now: later},
		{BotID: e.bot, Channel: "whatsapp", ExternalID: "t1", NewID: "twice-1", Name: "First", Now: later},
		{BotID: e.bot, Channel: "whatsapp", ExternalID: "b0", Attributes: map[string]any{"b": 2.0}, Now: later},
		{BotID: e.bot, Channel: "whatsapp", ExternalID: "t1", NewID: "twice-2", Attributes: map[string]any{"c": 3.0}, Now: later},
	}
	got, err = s.UpsertContacts(e.ctx, twice)
	require.NoError(t, err)
	require.Equal(t, map[string]any{"keep": "yes", "n": 0.0, "a": 1.0, "b": 2.0}, got[2].Attributes)
	require.Equal(t, "twice-1", got[3].ID, "the contact created by the first upsert")
	require.Equal(t, "First", got[3].Name)
	_, err = s.GetContact(e.ctx, e.bot, "twice-2")
	requireIs(t, err, store.ErrNotFound, "one contact created, not two")

	// An id taken, in the middle of a bulk call.
	var clash []store.ContactUpsert
	for i := range clashes {
		clash = append(clash, store.ContactUpsert{
			BotID: e.bot, Channel: "telegram", ExternalID: fmt.Sprintf("clash%d", i), NewID: fmt.Sprintf("clash-%d", i), Now: later,
		})
	}
	clash[taken].NewID = "old-3" // taken by b3
	_, err = s.UpsertContacts(e.ctx, clash)
	requireIs(t, err, store.ErrConflict)
	require.Contains(t, err.Error(), "old-3")
	_, _, err = s.ImportContacts(e.ctx, clash)
	requireIs(t, err, store.ErrConflict)
	if e.feats.AtomicBulk {
		for _, i := range []int{0, taken - 1, taken + 1, clashes - 1} {
			_, err = s.GetContactByExternalID(e.ctx, e.bot, "telegram", fmt.Sprintf("clash%d", i))
			requireIs(t, err, store.ErrNotFound, "a bulk upsert that failed writes nothing (contact %d)", i)
		}
	}
}

func testStreamContacts(t *testing.T, s store.Store, e env) {
	mkBot(t, s, e)
	type want struct {
		id, channel           string
		optedOut, unreachable bool
	}
	var all []want
	var us []store.ContactUpsert
	yes := true
	for i := range 23 {
		w := want{id: fmt.Sprintf("c%03d", i), channel: []string{"whatsapp", "telegram"}[i%2], optedOut: i%5 == 0, unreachable: i%7 == 3}
		all = append(all, w)
		u := store.ContactUpsert{BotID: e.bot, Channel: w.channel, ExternalID: fmt.Sprintf("x%d", i), NewID: w.id}
		if w.optedOut {
			u.OptedOut = &yes
		}
		us = append(us, u)
	}
	_, _, err := s.ImportContacts(e.ctx, us)
	require.NoError(t, err)
	for _, w := range all {
		if w.unreachable {
			require.NoError(t, s.SetContactReachability(e.ctx, e.bot, w.id, true, "blocked"))
		}
	}
	// Contacts of another bot never appear.
	other := store.ContactUpsert{BotID: "zz" + e.bot[:min(len(e.bot), 60)], Channel: "whatsapp", ExternalID: "x1", NewID: "zz-other-" + e.bot}
	_, _, err = s.UpsertContact(e.ctx, other)
	require.NoError(t, err)

	stream := func(f store.ContactFilter) []string {
		var ids []string
		for batches := 0; ; batches++ {
			require.Less(t, batches, 100, "stream does not end")
			page, err := s.StreamContacts(e.ctx, e.bot, f)
			require.NoError(t, err)
			require.LessOrEqual(t, len(page), f.Limit)
			for _, c := range page {
				require.Equal(t, e.bot, c.BotID)
				ids = append(ids, c.ID)
			}
			if len(page) < f.Limit {
				return ids
			}
			f.After = page[len(page)-1].ID
		}
	}
	expect := func(keep func(w want) bool) []string {
		var ids []string
		for _, w := range all {
			if keep(w) {
				ids = append(ids, w.id)
			}
		}
		return ids
	}
	require.Equal(t, expect(func(want) bool { return true }), stream(store.ContactFilter{Limit: 5}), "every contact once, in id order")
	require.Equal(t, expect(func(want) bool { return true }), stream(store.ContactFilter{Channel: "any", Limit: 23}))
	require.Equal(t, expect(func(w want) bool { return w.channel == "telegram" }), stream(store.ContactFilter{Channel: "telegram", Limit: 4}))
	require.Equal(t, expect(func(w want) bool { return !w.optedOut && !w.unreachable }),
		stream(store.ContactFilter{Limit: 6, SkipOptedOut: true, SkipUnreachable: true}))
	require.Equal(t, expect(func(w want) bool { return w.channel == "whatsapp" && !w.optedOut }),
		stream(store.ContactFilter{Channel: "whatsapp", Limit: 3, SkipOptedOut: true}))

	// Resuming from a checkpoint continues exactly after it.
	page, err := s.StreamContacts(e.ctx, e.bot, store.ContactFilter{After: "c010", Limit: 3})
	require.NoError(t, err)
	require.Len(t, page, 3)
	require.Equal(t, []string{"c011", "c012", "c013"}, []string{page[0].ID, page[1].ID, page[2].ID})
	page, err = s.StreamContacts(e.ctx, e.bot, store.ContactFilter{After: "c022", Limit: 3})
	require.NoError(t, err)
	require.Empty(t, page)
}

func testContactReachability(t *testing.T, s store.Store, e env) {
	mkBot(t, s, e)
	mkContact(t, s, e, "c1", "telegram", "42")
	require.NoError(t, s.SetContactReachability(e.ctx, e.bot, "c1", true, "bot blocked by user"))
	c, err := s.GetContact(e.ctx, e.bot, "c1")
	require.NoError(t, err)
	require.True(t, c.Unreachable)
	require.Equal(t, "bot blocked by user", c.UnreachableReason)
	require.NoError(t, s.SetContactReachability(e.ctx, e.bot, "c1", false, ""))
	c, err = s.GetContact(e.ctx, e.bot, "c1")
	require.NoError(t, err)
	require.False(t, c.Unreachable)
	require.Empty(t, c.UnreachableReason)
	requireIs(t, s.SetContactReachability(e.ctx, e.bot, "nope", true, "x"), store.ErrNotFound)
}

func testDeleteContact(t *testing.T, s store.Store, e env) {
	mkBot(t, s, e)
	mkContact(t, s, e, "c1", "sandbox", "a")
	mkContact(t, s, e, "c2", "sandbox", "b")
	mkTrigger(t, s, e, "tr1")
	mkRun(t, s, e, "r1", "tr1", "c1")
	mkRun(t, s, e, "r2", "", "c1")
	mkRun(t, s, e, "r3", "tr1", "c2")
	require.NoError(t, s.InsertMessages(e.ctx, []store.Message{
		{ID: "m1", BotID: e.bot, RunID: "r1", ContactID: "c1", Channel: "sandbox", To: "a", Seq: 1, Content: json.RawMessage(`{"text":"hi"}`)},
		{ID: "m2", BotID: e.bot, RunID: "r2", ContactID: "c1", Channel: "sandbox", To: "a", Seq: 1, Content: json.RawMessage(`{"text":"hi"}`)},
		{ID: "m3", BotID: e.bot, RunID: "r3", ContactID: "c2", Channel: "sandbox", To: "b", Seq: 1, Content: json.RawMessage(`{"text":"hi"}`)},
	}))
	require.NoError(t, s.DeleteContact(e.ctx, e.bot, "c1"))
	_, err := s.GetContact(e.ctx, e.bot, "c1")
	requireIs(t, err, store.ErrNotFound)
	_, err = s.GetContactByExternalID(e.ctx, e.bot, "sandbox", "a")
	requireIs(t, err, store.ErrNotFound)
	for _, id := range []string{"r1", "r2"} {
		_, err = s.GetRun(e.ctx, e.bot, id)
		requireIs(t, err, store.ErrNotFound, "run %s of the deleted contact", id)
	}
	for _, id := range []string{"m1", "m2"} {
		_, err = s.GetMessage(e.ctx, e.bot, id)
		requireIs(t, err, store.ErrNotFound, "message %s of the deleted contact", id)
	}
	_, err = s.GetRun(e.ctx, e.bot, "r3")
	require.NoError(t, err, "another contact's run stays")
	_, err = s.GetMessage(e.ctx, e.bot, "m3")
	require.NoError(t, err, "another contact's message stays")
	_, err = s.GetContact(e.ctx, e.bot, "c2")
	require.NoError(t, err)
	requireIs(t, s.DeleteContact(e.ctx, e.bot, "c1"), store.ErrNotFound, "deleting twice")

	// The contact can come back (a new first message) as a new record.
	c, created, err := s.UpsertContact(e.ctx, store.ContactUpsert{BotID: e.bot, Channel: "sandbox", ExternalID: "a", NewID: "c1b"})
	require.NoError(t, err)
	require.True(t, created)
	require.Equal(t, "c1b", c.ID)
}
