// Package storetest is the contract suite that every store adapter passes,
// in the manner of Watermill's shared Pub/Sub tests: one Run call from the
// adapter's own test, with Features declaring where adapters may differ.
//
// Data sets stay small on purpose: the MongoDB compatibility target
// (FerretDB) needs ~200 ms per update on large collections.
package storetest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/flowgate/flowgate/shared/store"
)

// Features declares the behaviour an adapter may legitimately differ in.
type Features struct {
	// TimePrecision is the finest time unit the adapter keeps (SQLite keeps
	// nanoseconds; BSON dates keep milliseconds). Times are compared to
	// within this.
	TimePrecision time.Duration
	// AtomicBulk says that CreateRuns and ImportContacts are all-or-nothing
	// when one element fails while writing (SQLite: one transaction). Without
	// it the suite only checks that the error is reported.
	AtomicBulk bool
	// Concurrency is the number of goroutines in the concurrent cases
	// (default 8).
	Concurrency int
}

// Run runs the suite. open must return a working store holding no data of
// the suite's bots; each subtest calls it once, and the store is closed at
// the end of the subtest (open may register its own cleanup as well).
func Run(t *testing.T, open func(t *testing.T) store.Store, feats Features) {
	if feats.TimePrecision <= 0 {
		feats.TimePrecision = time.Microsecond
	}
	if feats.Concurrency <= 0 {
		feats.Concurrency = 8
	}
	cases := []struct {
		name string
		fn   func(t *testing.T, s store.Store, e env)
	}{
		{"Ping", testPing},
		{"Bots", testBots},
		{"APIKeys", testAPIKeys},
		{"Flows", testFlows},
		{"FlowVersionsConcurrent", testFlowVersionsConcurrent},
		{"Events", testEvents},
		{"ContactUpsert", testContactUpsert},
		{"ImportContacts", testImportContacts},
		{"SetLastRequest", testSetLastRequest},
		{"StreamContacts", testStreamContacts},
		{"ContactReachability", testContactReachability},
		{"DeleteContact", testDeleteContact},
		{"WritesForDeletedContact", testWritesForDeletedContact},
		{"Triggers", testTriggers},
		{"TriggerConcurrentUpdate", testTriggerConcurrentUpdate},
		{"TriggerCounters", testTriggerCounters},
		{"Runs", testRuns},
		{"RunIdempotency", testRunIdempotency},
		{"RunConcurrentUpdate", testRunConcurrentUpdate},
		{"CreateRuns", testCreateRuns},
		{"ListRuns", testListRuns},
		{"DueRuns", testDueRuns},
		{"WaitingRuns", testWaitingRuns},
		{"UpdateRuns", testUpdateRuns},
		{"ExpireBefore", testExpireBefore},
		{"Messages", testMessages},
		{"MessageStatus", testMessageStatus},
		{"MarkSent", testMarkSent},
		{"Sandbox", testSandbox},
		{"TimeRoundTrip", testTimeRoundTrip},
		{"InvalidInput", testInvalidInput},
		{"NotFound", testNotFound},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := open(t)
			t.Cleanup(func() { _ = s.Close() })
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			t.Cleanup(cancel)
			c.fn(t, s, env{ctx: ctx, feats: feats, bot: botID(t)})
		})
	}
}

type env struct {
	ctx   context.Context
	feats Features
	// bot is an id unique to the subtest, so that adapters that share one
	// database between subtests see no cross-talk.
	bot string
}

var botSeq atomic.Int64

func botID(t *testing.T) string {
	name := strings.ToLower(t.Name())
	name = name[strings.LastIndex(name, "/")+1:]
	if len(name) > 40 {
		name = name[:40]
	}
	return fmt.Sprintf("t%d-%d-%s", time.Now().UnixNano()%1e6, botSeq.Add(1), name)
}

// base is a time with sub-millisecond digits stripped, so it survives every adapter.
func base() time.Time { return time.Now().UTC().Truncate(time.Millisecond) }

func requireTime(t *testing.T, e env, want, got time.Time, msg string) {
	t.Helper()
	d := want.Sub(got)
	if d < 0 {
		d = -d
	}
	require.Less(t, d, e.feats.TimePrecision, "%s: want %s, got %s", msg, want.Format(time.RFC3339Nano), got.Format(time.RFC3339Nano))
	require.Equal(t, time.UTC, got.Location(), "%s: stored times come back in UTC", msg)
}

func requireIs(t *testing.T, err, target error, msgAndArgs ...any) {
	t.Helper()
	require.Error(t, err, msgAndArgs...)
	require.ErrorIs(t, err, target, msgAndArgs...)
}

func requireInvalid(t *testing.T, err error, field string) {
	t.Helper()
	require.ErrorIs(t, err, store.ErrInvalid)
	var ie *store.InvalidError
	require.ErrorAs(t, err, &ie, "ErrInvalid must carry an *store.InvalidError")
	if field != "" {
		require.Equal(t, field, ie.Field, "field named in %v", err)
	}
}

func jsonEq(t *testing.T, want, got json.RawMessage) {
	t.Helper()
	require.JSONEq(t, string(want), string(got))
}

// mapsEq compares maps as JSON (adapters may decode numbers differently).
func mapsEq(t *testing.T, want, got map[string]any) {
	t.Helper()
	w, err := json.Marshal(want)
	require.NoError(t, err)
	g, err := json.Marshal(got)
	require.NoError(t, err)
	require.JSONEq(t, string(w), string(g))
}

func mkBot(t *testing.T, s store.Store, e env) {
	t.Helper()
	require.NoError(t, s.CreateBot(e.ctx, store.Bot{ID: e.bot, Name: "Test bot", CreatedAt: base(), UpdatedAt: base()}))
}

func mkContact(t *testing.T, s store.Store, e env, id, channel, ext string) store.Contact {
	t.Helper()
	c, created, err := s.UpsertContact(e.ctx, store.ContactUpsert{BotID: e.bot, Channel: channel, ExternalID: ext, NewID: id, Now: base()})
	require.NoError(t, err)
	require.True(t, created)
	return c
}

func mkTrigger(t *testing.T, s store.Store, e env, id string) store.Trigger {
	t.Helper()
	tr, created, err := s.CreateTrigger(e.ctx, store.Trigger{
		ID: id, BotID: e.bot, Source: "native", Event: "welcome", FlowID: "f1", Channel: "sandbox",
		Spec: json.RawMessage(`{"audience":{"users":["+15550001"]}}`), IdempotencyKey: "k-" + id,
		Status: store.TriggerAccepted, CreatedAt: base(),
	})
	require.NoError(t, err)
	require.True(t, created)
	return tr
}

func newRun(e env, id, trigger, contact string) store.Run {
	return store.Run{
		ID: id, BotID: e.bot, TriggerID: trigger, FlowID: "f1", FlowVersion: 1, ContactID: contact,
		Channel: "sandbox", Status: store.RunCreated, Data: map[string]any{"name": "Ann", "n": 1.0},
		CreatedAt: base(),
	}
}

func mkRun(t *testing.T, s store.Store, e env, id, trigger, contact string) store.Run {
	t.Helper()
	r, created, err := s.CreateRun(e.ctx, newRun(e, id, trigger, contact))
	require.NoError(t, err)
	require.True(t, created)
	return r
}

// parallel runs fn n times at once and waits.
func parallel(n int, fn func(i int)) {
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			fn(i)
		}()
	}
	close(start)
	wg.Wait()
}

func testPing(t *testing.T, s store.Store, e env) {
	require.NoError(t, s.Ping(e.ctx))
	p, ok := s.(store.WriteProber)
	require.True(t, ok, "the adapter has a write probe (readiness uses it)")
	require.NoError(t, p.PingWrite(e.ctx))
	require.NoError(t, p.PingWrite(e.ctx), "the probe rewrites its record")
	require.NoError(t, store.Writable(e.ctx, s))
}

func testBots(t *testing.T, s store.Store, e env) {
	created := base().Add(-time.Hour)
	b := store.Bot{
		ID: e.bot, Name: "Acme", CreatedAt: created, UpdatedAt: created,
		Channels: store.ChannelAccounts{
			DefaultChannel: "telegram",
			Telegram:       &store.TelegramAccount{BotToken: "123:abc", WebhookSecret: "s3cret", RatePerSecond: 25},
		},
	}
	require.NoError(t, s.CreateBot(e.ctx, b))
	requireIs(t, s.CreateBot(e.ctx, b), store.ErrConflict, "second create of the same id")

	got, err := s.GetBot(e.ctx, e.bot)
	require.NoError(t, err)
	require.Equal(t, "Acme", got.Name)
	require.Equal(t, b.Channels, got.Channels)
	requireTime(t, e, created, got.CreatedAt, "created_at")

	b.Name = "Acme Corp"
	b.Channels.WhatsApp = &store.WhatsAppAccount{PhoneNumberID: "1055", AccessToken: "tok", AppSecret: "app", VerifyToken: "v"}
	b.UpdatedAt = base()
	require.NoError(t, s.UpdateBot(e.ctx, b))
	got, err = s.GetBot(e.ctx, e.bot)
	require.NoError(t, err)
	require.Equal(t, "Acme Corp", got.Name)
	require.Equal(t, b.Channels, got.Channels)
	requireTime(t, e, created, got.CreatedAt, "created_at survives an update")

	other := e.bot[:len(e.bot)-1] + "z"
	if other == e.bot {
		other = e.bot[:len(e.bot)-1] + "y"
	}
	require.NoError(t, s.CreateBot(e.ctx, store.Bot{ID: other, Name: "Other"}))
	all, err := s.ListBots(e.ctx)
	require.NoError(t, err)
	var ids []string
	for _, x := range all {
		if x.ID == e.bot || x.ID == other {
			ids = append(ids, x.ID)
		}
	}
	require.ElementsMatch(t, []string{e.bot, other}, ids)
	for i := 1; i < len(all); i++ {
		require.Less(t, all[i-1].ID, all[i].ID, "ListBots is ordered by id")
	}

	requireIs(t, s.UpdateBot(e.ctx, store.Bot{ID: "no-such-bot-" + e.bot[:8], Name: "x"}), store.ErrNotFound)
}

func testAPIKeys(t *testing.T, s store.Store, e env) {
	mkBot(t, s, e)
	k := store.APIKey{ID: "key-" + e.bot, BotID: e.bot, Hash: strings.Repeat("ab", 32), Prefix: "fg_abc", CreatedAt: base()}
	require.NoError(t, s.CreateAPIKey(e.ctx, k))
	requireIs(t, s.CreateAPIKey(e.ctx, k), store.ErrConflict, "same id twice")
	dupHash := k
	dupHash.ID = "key2-" + e.bot
	requireIs(t, s.CreateAPIKey(e.ctx, dupHash), store.ErrConflict, "same hash twice")

	got, err := s.GetAPIKeyByHash(e.ctx, k.Hash)
	require.NoError(t, err)
	require.Equal(t, k.ID, got.ID)
	require.Equal(t, e.bot, got.BotID)
	require.Equal(t, k.Hash, got.Hash)
	require.Equal(t, "fg_abc", got.Prefix)
	require.False(t, got.Revoked)
	requireTime(t, e, k.CreatedAt, got.CreatedAt, "created_at")

	revoked := store.APIKey{ID: "key3-" + e.bot, BotID: e.bot, Hash: strings.Repeat("cd", 32), Prefix: "fg_cd", Revoked: true}
	require.NoError(t, s.CreateAPIKey(e.ctx, revoked))
	got, err = s.GetAPIKeyByHash(e.ctx, revoked.Hash)
	require.NoError(t, err)
	require.True(t, got.Revoked, "a revoked key is returned and says so")

	_, err = s.GetAPIKeyByHash(e.ctx, strings.Repeat("ef", 32))
	requireIs(t, err, store.ErrNotFound)
}

func testFlows(t *testing.T, s store.Store, e env) {
	mkBot(t, s, e)
	defs := []string{`{"steps":[{"send":"v1"}]}`, `{"steps":[{"send":"v2"}]}`, `{"steps":[{"send":"v3"}],"x":[1,2,3]}`}
	for i, d := range defs {
		f, err := s.PutFlow(e.ctx, store.Flow{BotID: e.bot, ID: "welcome", Definition: json.RawMessage(d), CreatedAt: base()})
		require.NoError(t, err)
		require.Equal(t, i+1, f.Version, "PutFlow assigns latest+1")
	}
	_, err := s.PutFlow(e.ctx, store.Flow{BotID: e.bot, ID: "other", Definition: json.RawMessage(`{}`)})
	require.NoError(t, err)

	latest, err := s.GetFlow(e.ctx, e.bot, "welcome", 0)
	require.NoError(t, err)
	require.Equal(t, 3, latest.Version)
	require.Equal(t, "welcome", latest.ID)
	require.Equal(t, e.bot, latest.BotID)
	jsonEq(t, json.RawMessage(defs[2]), latest.Definition)

	v2, err := s.GetFlow(e.ctx, e.bot, "welcome", 2)
	require.NoError(t, err)
	require.Equal(t, 2, v2.Version)
	jsonEq(t, json.RawMessage(defs[1]), v2.Definition)

	_, err = s.GetFlow(e.ctx, e.bot, "welcome", 9)
	requireIs(t, err, store.ErrNotFound)
	_, err = s.GetFlow(e.ctx, e.bot, "missing", 0)
	requireIs(t, err, store.ErrNotFound)

	all, err := s.ListFlowVersions(e.ctx, e.bot, "welcome")
	require.NoError(t, err)
	require.Len(t, all, 3)
	for i, f := range all {
		require.Equal(t, i+1, f.Version, "oldest first")
		jsonEq(t, json.RawMessage(defs[i]), f.Definition)
	}
	none, err := s.ListFlowVersions(e.ctx, e.bot, "missing")
	require.NoError(t, err)
	require.Empty(t, none)
}

func testFlowVersionsConcurrent(t *testing.T, s store.Store, e env) {
	mkBot(t, s, e)
	n := e.feats.Concurrency
	versions := make([]int, n)
	errs := make([]error, n)
	parallel(n, func(i int) {
		f, err := s.PutFlow(e.ctx, store.Flow{BotID: e.bot, ID: "race", Definition: json.RawMessage(fmt.Sprintf(`{"writer":%d}`, i))})
		versions[i], errs[i] = f.Version, err
	})
	seen := map[int]bool{}
	for i := range n {
		require.NoError(t, errs[i])
		require.False(t, seen[versions[i]], "version %d handed out twice", versions[i])
		seen[versions[i]] = true
	}
	for v := 1; v <= n; v++ {
		require.True(t, seen[v], "versions are 1..%d without gaps, missing %d", n, v)
	}
	all, err := s.ListFlowVersions(e.ctx, e.bot, "race")
	require.NoError(t, err)
	require.Len(t, all, n)
}

func testEvents(t *testing.T, s store.Store, e env) {
	mkBot(t, s, e)
	created := base().Add(-time.Minute)
	ev := store.Event{BotID: e.bot, Name: "WELCOME_NEW_USER", FlowID: "welcome", TokenHash: "hash-1", CreatedAt: created, UpdatedAt: created}
	require.NoError(t, s.PutEvent(e.ctx, ev))
	got, err := s.GetEvent(e.ctx, e.bot, ev.Name)
	require.NoError(t, err)
	require.Equal(t, "welcome", got.FlowID)
	require.Equal(t, "hash-1", got.TokenHash)

	ev.FlowID, ev.TokenHash, ev.CreatedAt, ev.UpdatedAt = "welcome2", "hash-2", base(), base()
	require.NoError(t, s.PutEvent(e.ctx, ev), "PutEvent replaces")
	got, err = s.GetEvent(e.ctx, e.bot, ev.Name)
	require.NoError(t, err)
	require.Equal(t, "welcome2", got.FlowID)
	requireTime(t, e, created, got.CreatedAt, "created_at of a replaced event is kept")

	byTok, err := s.GetEventByToken(e.ctx, e.bot, "hash-2")
	require.NoError(t, err)
	require.Equal(t, ev.Name, byTok.Name)
	_, err = s.GetEventByToken(e.ctx, e.bot, "hash-1")
	requireIs(t, err, store.ErrNotFound, "the old token no longer matches")
	_, err = s.GetEvent(e.ctx, e.bot, "NOPE")
	requireIs(t, err, store.ErrNotFound)
}

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

func testMessages(t *testing.T, s store.Store, e env) {
	mkBot(t, s, e)
	at := base()
	ms := []store.Message{
		{ID: "m2", BotID: e.bot, RunID: "r1", TriggerID: "tr1", ContactID: "c1", Channel: "whatsapp", To: "+1555", Seq: 2,
			Content: json.RawMessage(`{"text":"second"}`), CreatedAt: at},
		{ID: "m1", BotID: e.bot, RunID: "r1", TriggerID: "tr1", ContactID: "c1", Channel: "whatsapp", To: "+1555", Seq: 1,
			Content: json.RawMessage(`{"text":"first","buttons":["a","b"]}`), Lane: "bulk", CreatedAt: at},
		{ID: "m3", BotID: e.bot, RunID: "r2", ContactID: "c2", Channel: "whatsapp", To: "+1666", Seq: 1,
			Content: json.RawMessage(`{"text":"other run"}`), CreatedAt: at},
	}
	require.NoError(t, s.InsertMessages(e.ctx, ms))
	m, err := s.GetMessage(e.ctx, e.bot, "m1")
	require.NoError(t, err)
	require.Equal(t, store.MessageQueued, m.Status, "status defaults to queued")
	require.Equal(t, "r1", m.RunID)
	require.Equal(t, "tr1", m.TriggerID)
	require.Equal(t, "c1", m.ContactID)
	require.Equal(t, "whatsapp", m.Channel)
	require.Equal(t, "+1555", m.To)
	require.Equal(t, 1, m.Seq)
	require.Equal(t, "bulk", m.Lane, "the delivery lane is kept")
	jsonEq(t, ms[1].Content, m.Content)
	requireTime(t, e, at, m.CreatedAt, "created_at")

	// Redelivery: same ids, other content, plus one new message.
	again := []store.Message{ms[0], {ID: "m4", BotID: e.bot, RunID: "r1", ContactID: "c1", Channel: "whatsapp", To: "+1555", Seq: 3,
		Content: json.RawMessage(`{"text":"third"}`)}}
	again[0].Content = json.RawMessage(`{"text":"CHANGED"}`)
	require.NoError(t, s.InsertMessages(e.ctx, again))
	m, err = s.GetMessage(e.ctx, e.bot, "m2")
	require.NoError(t, err)
	require.Empty(t, m.Lane, "no lane given: none stored")
	jsonEq(t, json.RawMessage(`{"text":"second"}`), m.Content)

	list, err := s.ListRunMessages(e.ctx, e.bot, "r1")
	require.NoError(t, err)
	var ids []string
	for _, m := range list {
		ids = append(ids, m.ID)
	}
	require.Equal(t, []string{"m1", "m2", "m4"}, ids, "a run's messages in seq order")
	none, err := s.ListRunMessages(e.ctx, e.bot, "r9")
	require.NoError(t, err)
	require.Empty(t, none)

	require.NoError(t, s.UpdateMessageStatus(e.ctx, store.StatusUpdate{BotID: e.bot, MessageID: "m1", Status: store.MessageSent, ProviderMessageID: "wamid.ABC", At: base()}))
	m, err = s.FindMessageByProviderID(e.ctx, e.bot, "wamid.ABC")
	require.NoError(t, err)
	require.Equal(t, "m1", m.ID)
	require.Equal(t, store.MessageSent, m.Status)
	require.Equal(t, "wamid.ABC", m.ProviderMessageID)
	_, err = s.FindMessageByProviderID(e.ctx, e.bot, "wamid.NOPE")
	requireIs(t, err, store.ErrNotFound)
	_, err = s.FindMessageByProviderID(e.ctx, "zz"+e.bot[:min(len(e.bot), 60)], "wamid.ABC")
	requireIs(t, err, store.ErrNotFound, "provider ids are looked up per bot")

	require.NoError(t, s.InsertMessages(e.ctx, nil))
}

func testMarkSent(t *testing.T, s store.Store, e env) {
	mkBot(t, s, e)
	mkTrigger(t, s, e, "tr1")
	var ms []store.Message
	for i := range 5 {
		ms = append(ms, store.Message{ID: fmt.Sprintf("ms%d", i), BotID: e.bot, RunID: "r1", TriggerID: "tr1", ContactID: "c1",
			Channel: "whatsapp", To: "+1555", Seq: i + 1, Content: json.RawMessage(`{"text":"x"}`)})
	}
	require.NoError(t, s.InsertMessages(e.ctx, ms))
	// ms4's delivery callback came first (no provider id recorded yet).
	require.NoError(t, s.UpdateMessageStatus(e.ctx, store.StatusUpdate{BotID: e.bot, MessageID: "ms4", Status: store.MessageDelivered, At: base()}))
	sent := func() int64 {
		tr, err := s.GetTrigger(e.ctx, e.bot, "tr1")
		require.NoError(t, err)
		return tr.Counters.Sent
	}
	status := func(id string) store.Message {
		m, err := s.GetMessage(e.ctx, e.bot, id)
		require.NoError(t, err)
		return m
	}
	at := base().Add(time.Minute)
	require.NoError(t, s.MarkSent(e.ctx, e.bot, "tr1", []store.SentMessage{{ID: "ms0", ProviderMessageID: "wamid.0", At: at}, {ID: "ms1", ProviderMessageID: "wamid.1", At: at}}))
	require.EqualValues(t, 2, sent())
	m0 := status("ms0")
	require.Equal(t, store.MessageSent, m0.Status)
	require.Equal(t, "wamid.0", m0.ProviderMessageID)
	require.WithinDuration(t, at, m0.UpdatedAt, e.feats.TimePrecision)

	// Recorded again (a redelivered bundle) with one new: only the new one counts.
	require.NoError(t, s.MarkSent(e.ctx, e.bot, "tr1", []store.SentMessage{{ID: "ms0", ProviderMessageID: "wamid.0"}, {ID: "ms1", ProviderMessageID: "wamid.1"}, {ID: "ms2", ProviderMessageID: "wamid.2"}}))
	require.EqualValues(t, 3, sent(), "a message recorded twice is counted once")

	// A message whose callback overtook the worker: the id is recorded, the
	// status stays, and it counts once.
	require.NoError(t, s.MarkSent(e.ctx, e.bot, "tr1", []store.SentMessage{{ID: "ms4", ProviderMessageID: "wamid.4"}}))
	require.NoError(t, s.MarkSent(e.ctx, e.bot, "tr1", []store.SentMessage{{ID: "ms4", ProviderMessageID: "wamid.4"}}))
	m4 := status("ms4")
	require.Equal(t, store.MessageDelivered, m4.Status, "never back")
	require.Equal(t, "wamid.4", m4.ProviderMessageID)
	require.EqualValues(t, 4, sent())

	// Unknown ids are ignored; no trigger counts nothing; an unknown trigger is ignored.
	require.NoError(t, s.MarkSent(e.ctx, e.bot, "tr1", []store.SentMessage{{ID: "nope", ProviderMessageID: "x"}}))
	require.NoError(t, s.MarkSent(e.ctx, e.bot, "", []store.SentMessage{{ID: "ms3"}}))
	require.Equal(t, store.MessageSent, status("ms3").Status)
	require.EqualValues(t, 4, sent())
	require.NoError(t, s.MarkSent(e.ctx, e.bot, "no-such-trigger", []store.SentMessage{{ID: "ms3"}}))
	require.NoError(t, s.MarkSent(e.ctx, e.bot, "tr1", nil))
	require.EqualValues(t, 4, sent())
	// Another bot's messages are not touched.
	other := env{ctx: e.ctx, feats: e.feats, bot: e.bot + "-x"}
	mkBot(t, s, other)
	require.NoError(t, s.InsertMessages(e.ctx, []store.Message{{ID: "mx", BotID: other.bot, RunID: "r", ContactID: "c", Channel: "whatsapp",
		To: "1", Seq: 1, Content: json.RawMessage(`{}`)}}))
	require.NoError(t, s.MarkSent(e.ctx, e.bot, "tr1", []store.SentMessage{{ID: "mx"}}))
	mx, err := s.GetMessage(e.ctx, other.bot, "mx")
	require.NoError(t, err)
	require.Equal(t, store.MessageQueued, mx.Status)
	require.EqualValues(t, 4, sent())
}

func testMessageStatus(t *testing.T, s store.Store, e env) {
	mkBot(t, s, e)
	cases := []struct {
		name   string
		steps  []string
		want   string
		hasErr bool
	}{
		{"forward", []string{"sent", "delivered", "read"}, "read", false},
		{"skip ahead", []string{"delivered"}, "delivered", false},
		{"read before delivered", []string{"sent", "read", "delivered"}, "read", false},
		{"never back", []string{"delivered", "sent", "queued"}, "delivered", false},
		{"fail from queued", []string{"failed"}, "failed", true},
		{"fail from sent", []string{"sent", "failed"}, "failed", true},
		{"delivered never fails", []string{"sent", "delivered", "failed"}, "delivered", false},
		{"read never fails", []string{"read", "failed"}, "read", false},
		{"failed is final", []string{"failed", "sent", "delivered", "read"}, "failed", true},
		{"repeat", []string{"sent", "sent"}, "sent", false},
	}
	var ms []store.Message
	for i := range cases {
		ms = append(ms, store.Message{ID: fmt.Sprintf("m%d", i), BotID: e.bot, RunID: "r1", ContactID: "c1", Channel: "telegram",
			To: "42", Seq: i, Content: json.RawMessage(`{"text":"x"}`)})
	}
	require.NoError(t, s.InsertMessages(e.ctx, ms))
	for i, c := range cases {
		id := fmt.Sprintf("m%d", i)
		for _, st := range c.steps {
			require.NoError(t, s.UpdateMessageStatus(e.ctx, store.StatusUpdate{BotID: e.bot, MessageID: id, Status: st, Reason: "provider said no", At: base()}), "%s: %s", c.name, st)
		}
		m, err := s.GetMessage(e.ctx, e.bot, id)
		require.NoError(t, err)
		require.Equal(t, c.want, m.Status, c.name)
		if c.hasErr {
			require.Equal(t, "provider said no", m.Error, "%s: a failure keeps its reason", c.name)
		} else {
			require.Empty(t, m.Error, c.name)
		}
	}

	// Concurrent callbacks in any order end at the furthest status.
	require.NoError(t, s.InsertMessages(e.ctx, []store.Message{{ID: "race", BotID: e.bot, RunID: "r1", ContactID: "c1", Channel: "telegram", To: "42", Seq: 99}}))
	steps := []string{"sent", "delivered", "read", "sent", "delivered", "queued", "failed", "read"}
	errs := make([]error, len(steps))
	parallel(len(steps), func(i int) {
		errs[i] = s.UpdateMessageStatus(e.ctx, store.StatusUpdate{BotID: e.bot, MessageID: "race", Status: steps[i], At: base()})
	})
	for _, err := range errs {
		require.NoError(t, err)
	}
	m, err := s.GetMessage(e.ctx, e.bot, "race")
	require.NoError(t, err)
	if m.Status != store.MessageRead && m.Status != store.MessageFailed {
		t.Fatalf("after concurrent callbacks status is %q, want read (or failed if it won before sent)", m.Status)
	}
	require.NoError(t, s.UpdateMessageStatus(e.ctx, store.StatusUpdate{BotID: e.bot, MessageID: "race", Status: store.MessageRead, At: base()}))

	// A zero time means "now".
	require.NoError(t, s.InsertMessages(e.ctx, []store.Message{{ID: "zero-at", BotID: e.bot, RunID: "r1", ContactID: "c1", Channel: "telegram", To: "42", Seq: 100}}))
	require.NoError(t, s.UpdateMessageStatus(e.ctx, store.StatusUpdate{BotID: e.bot, MessageID: "zero-at", Status: store.MessageSent}))
	m, err = s.GetMessage(e.ctx, e.bot, "zero-at")
	require.NoError(t, err)
	require.Equal(t, store.MessageSent, m.Status)
	require.False(t, m.UpdatedAt.IsZero())

	requireIs(t, s.UpdateMessageStatus(e.ctx, store.StatusUpdate{BotID: e.bot, MessageID: "nope", Status: store.MessageSent, At: base()}), store.ErrNotFound)
	requireInvalid(t, s.UpdateMessageStatus(e.ctx, store.StatusUpdate{BotID: e.bot, MessageID: "m0", Status: "bounced", At: base()}), "status")
}

func testSandbox(t *testing.T, s store.Store, e env) {
	mkBot(t, s, e)
	tos := []string{"+1", "+2", "+1", "+1", "+2"}
	for i, to := range tos {
		require.NoError(t, s.AppendSandbox(e.ctx, store.SandboxMessage{
			MessageID: fmt.Sprintf("m%d", i), BotID: e.bot, RunID: "r1", To: to,
			Content: json.RawMessage(fmt.Sprintf(`{"text":"msg %d"}`, i)), CreatedAt: base(),
		}))
	}
	require.NoError(t, s.AppendSandbox(e.ctx, store.SandboxMessage{MessageID: "m1", BotID: e.bot, RunID: "r1", To: "+2",
		Content: json.RawMessage(`{"text":"duplicate"}`)}), "a redelivered message is ignored")

	all, err := s.ListSandbox(e.ctx, e.bot, "", 0, 100)
	require.NoError(t, err)
	require.Len(t, all, 5)
	for i, m := range all {
		require.Equal(t, fmt.Sprintf("m%d", i), m.MessageID, "oldest first")
		require.Equal(t, tos[i], m.To)
		require.Equal(t, e.bot, m.BotID)
		require.Equal(t, "r1", m.RunID)
		jsonEq(t, json.RawMessage(fmt.Sprintf(`{"text":"msg %d"}`, i)), m.Content)
		if i > 0 {
			require.Greater(t, m.Seq, all[i-1].Seq, "seq grows")
		}
	}
	one, err := s.ListSandbox(e.ctx, e.bot, "+1", 0, 100)
	require.NoError(t, err)
	require.Equal(t, []string{"m0", "m2", "m3"}, sandboxIDs(one))
	after, err := s.ListSandbox(e.ctx, e.bot, "+1", one[0].Seq, 1)
	require.NoError(t, err)
	require.Equal(t, []string{"m2"}, sandboxIDs(after), "after seq, limited")
	after, err = s.ListSandbox(e.ctx, e.bot, "", all[4].Seq, 100)
	require.NoError(t, err)
	require.Empty(t, after)

	// Concurrent appends get distinct, increasing seqs.
	n := e.feats.Concurrency * 2
	errs := make([]error, n)
	parallel(n, func(i int) {
		errs[i] = s.AppendSandbox(e.ctx, store.SandboxMessage{MessageID: fmt.Sprintf("p%d", i), BotID: e.bot, RunID: "r2", To: "+3",
			Content: json.RawMessage(`{}`)})
	})
	for _, err := range errs {
		require.NoError(t, err)
	}
	par, err := s.ListSandbox(e.ctx, e.bot, "+3", 0, 1000)
	require.NoError(t, err)
	require.Len(t, par, n)
	for i := 1; i < len(par); i++ {
		require.Greater(t, par[i].Seq, par[i-1].Seq)
	}
	require.Greater(t, par[0].Seq, all[4].Seq)

	// Several messages in one call: in order, a repeated one ignored.
	mk := func(id string) store.SandboxMessage {
		return store.SandboxMessage{MessageID: id, BotID: e.bot, RunID: "r3", To: "+4", Content: json.RawMessage(`{"text":"` + id + `"}`)}
	}
	require.NoError(t, s.AppendSandbox(e.ctx, mk("b1"), mk("b2"), mk("b3")))
	require.NoError(t, s.AppendSandbox(e.ctx, mk("b2"), mk("b4")), "b2 again is ignored, b4 appended")
	require.NoError(t, s.AppendSandbox(e.ctx))
	bundle, err := s.ListSandbox(e.ctx, e.bot, "+4", 0, 100)
	require.NoError(t, err)
	require.Equal(t, []string{"b1", "b2", "b3", "b4"}, sandboxIDs(bundle))
	bad := mk("b5")
	bad.MessageID = ""
	requireInvalid(t, s.AppendSandbox(e.ctx, mk("b6"), bad), "message_id")
	bundle, err = s.ListSandbox(e.ctx, e.bot, "+4", 0, 100)
	require.NoError(t, err)
	require.Len(t, bundle, 4, "an invalid message in the call writes nothing")
}

func sandboxIDs(ms []store.SandboxMessage) []string {
	var ids []string
	for _, m := range ms {
		ids = append(ids, m.MessageID)
	}
	return ids
}

func testTimeRoundTrip(t *testing.T, s store.Store, e env) {
	mkBot(t, s, e)
	// A local-zone time with sub-microsecond digits: stored as UTC, kept to
	// the adapter's precision.
	loc := time.FixedZone("UTC-5", -5*3600)
	at := time.Date(2026, 3, 1, 9, 30, 15, 123456789, loc)
	r := newRun(e, "r1", "", "c1")
	r.CreatedAt = at
	wait := at.Add(90 * time.Minute)
	r.WaitUntil = &wait
	_, _, err := s.CreateRun(e.ctx, r)
	require.NoError(t, err)
	got, err := s.GetRun(e.ctx, e.bot, "r1")
	require.NoError(t, err)
	requireTime(t, e, at, got.CreatedAt, "created_at")
	requireTime(t, e, wait, *got.WaitUntil, "wait_until")
	if e.feats.TimePrecision <= time.Microsecond {
		require.Equal(t, at.Truncate(time.Microsecond).UnixMicro(), got.CreatedAt.UnixMicro(), "microseconds are kept")
	}
}

func testInvalidInput(t *testing.T, s store.Store, e env) {
	mkBot(t, s, e)
	mkTrigger(t, s, e, "tr1")
	big := strings.Repeat("x", store.MaxFieldBytes+1)
	bigJSON := json.RawMessage(`"` + big + `"`)
	longID := strings.Repeat("a", store.MaxIDBytes+1)
	ctx := e.ctx
	run := func(mut func(*store.Run)) store.Run { r := newRun(e, "rx", "tr1", "c1"); mut(&r); return r }
	cases := []struct {
		name  string
		field string
		call  func() error
	}{
		{"bot id empty", "id", func() error { return s.CreateBot(ctx, store.Bot{ID: "", Name: "x"}) }},
		{"update runs bad status", "status", func() error {
			_, err := s.UpdateRuns(ctx, []store.Run{run(func(r *store.Run) { r.Status = "nope" })})
			return err
		}},
		{"last request bad bot", "bot_id", func() error {
			return s.SetLastRequest(ctx, "NOPE", []string{"c1"}, map[string]any{}, time.Time{})
		}},
		{"last request bad contact id", "contact_id", func() error {
			return s.SetLastRequest(ctx, e.bot, []string{longID}, map[string]any{}, time.Time{})
		}},
		{"last request oversized", "last_request", func() error {
			return s.SetLastRequest(ctx, e.bot, []string{"c1"}, map[string]any{"x": big}, time.Time{})
		}},
		{"mark sent bad bot", "bot_id", func() error {
			return s.MarkSent(ctx, "NOPE", "tr1", []store.SentMessage{{ID: "m1"}})
		}},
		{"mark sent bad trigger id", "trigger_id", func() error {
			return s.MarkSent(ctx, e.bot, longID, []store.SentMessage{{ID: "m1"}})
		}},
		{"mark sent no message id", "id", func() error { return s.MarkSent(ctx, e.bot, "tr1", []store.SentMessage{{ID: ""}}) }},
		{"mark sent oversized provider id", "provider_message_id", func() error {
			return s.MarkSent(ctx, e.bot, "tr1", []store.SentMessage{{ID: "m1", ProviderMessageID: big}})
		}},
		{"mark sent too many", "messages", func() error {
			return s.MarkSent(ctx, e.bot, "tr1", make([]store.SentMessage, store.MaxSentMessages+1))
		}},
		{"waiting runs bad bot", "bot_id", func() error { _, err := s.WaitingRuns(ctx, "NOPE", []string{"c1"}); return err }},
		{"waiting runs bad contact id", "contact_id", func() error { _, err := s.WaitingRuns(ctx, e.bot, []string{"c1", ""}); return err }},
		{"waiting runs too many ids", "contact_ids", func() error {
			_, err := s.WaitingRuns(ctx, e.bot, make([]string, store.MaxWaitingRunsContacts+1))
			return err
		}},
		{"bot id upper case", "id", func() error { return s.CreateBot(ctx, store.Bot{ID: "Acme", Name: "x"}) }},
		{"bot id with space", "id", func() error { return s.CreateBot(ctx, store.Bot{ID: "a b", Name: "x"}) }},
		{"bot id leading dash", "id", func() error { return s.CreateBot(ctx, store.Bot{ID: "-ab", Name: "x"}) }},
		{"bot id 65 chars", "id", func() error { return s.CreateBot(ctx, store.Bot{ID: strings.Repeat("a", 65), Name: "x"}) }},
		{"get bot bad id", "id", func() error { _, err := s.GetBot(ctx, "../etc"); return err }},
		{"api key no hash", "hash", func() error { return s.CreateAPIKey(ctx, store.APIKey{ID: "k", BotID: e.bot}) }},
		{"flow not JSON", "definition", func() error {
			_, err := s.PutFlow(ctx, store.Flow{BotID: e.bot, ID: "f", Definition: json.RawMessage(`{"steps":`)})
			return err
		}},
		{"flow empty", "definition", func() error { _, err := s.PutFlow(ctx, store.Flow{BotID: e.bot, ID: "f"}); return err }},
		{"flow oversized", "definition", func() error {
			_, err := s.PutFlow(ctx, store.Flow{BotID: e.bot, ID: "f", Definition: bigJSON})
			return err
		}},
		{"flow id too long", "id", func() error {
			_, err := s.PutFlow(ctx, store.Flow{BotID: e.bot, ID: longID, Definition: json.RawMessage(`{}`)})
			return err
		}},
		{"flow bad bot", "bot_id", func() error {
			_, err := s.PutFlow(ctx, store.Flow{BotID: "NOPE", ID: "f", Definition: json.RawMessage(`{}`)})
			return err
		}},
		{"event no flow", "flow_id", func() error { return s.PutEvent(ctx, store.Event{BotID: e.bot, Name: "E"}) }},
		{"contact no external id", "external_id", func() error {
			_, _, err := s.UpsertContact(ctx, store.ContactUpsert{BotID: e.bot, Channel: "sandbox", NewID: "c"})
			return err
		}},
		{"contact new without id", "id", func() error {
			_, _, err := s.UpsertContact(ctx, store.ContactUpsert{BotID: e.bot, Channel: "sandbox", ExternalID: "fresh"})
			return err
		}},
		{"contact oversized attributes", "attributes", func() error {
			_, _, err := s.UpsertContact(ctx, store.ContactUpsert{BotID: e.bot, Channel: "sandbox", ExternalID: "u", NewID: "c",
				Attributes: map[string]any{"blob": big}})
			return err
		}},
		{"contact oversized last_request", "last_request", func() error {
			_, _, err := s.UpsertContact(ctx, store.ContactUpsert{BotID: e.bot, Channel: "sandbox", ExternalID: "u", NewID: "c",
				LastRequest: map[string]any{"blob": big}})
			return err
		}},
		{"contact attribute not JSON", "attributes", func() error {
			_, _, err := s.UpsertContact(ctx, store.ContactUpsert{BotID: e.bot, Channel: "sandbox", ExternalID: "u", NewID: "c",
				Attributes: map[string]any{"f": func() {}}})
			return err
		}},
		{"trigger no id", "id", func() error { _, _, err := s.CreateTrigger(ctx, store.Trigger{BotID: e.bot}); return err }},
		{"trigger bad status", "status", func() error {
			_, _, err := s.CreateTrigger(ctx, store.Trigger{ID: "t", BotID: e.bot, Status: "exploded"})
			return err
		}},
		{"trigger oversized spec", "spec", func() error {
			_, _, err := s.CreateTrigger(ctx, store.Trigger{ID: "t", BotID: e.bot, Spec: bigJSON})
			return err
		}},
		{"run no id", "id", func() error { _, _, err := s.CreateRun(ctx, run(func(r *store.Run) { r.ID = "" })); return err }},
		{"run id too long", "id", func() error { _, _, err := s.CreateRun(ctx, run(func(r *store.Run) { r.ID = longID })); return err }},
		{"run no contact", "contact_id", func() error {
			_, _, err := s.CreateRun(ctx, run(func(r *store.Run) { r.ContactID = "" }))
			return err
		}},
		{"run bad status", "status", func() error {
			_, _, err := s.CreateRun(ctx, run(func(r *store.Run) { r.Status = "done-ish" }))
			return err
		}},
		{"run oversized state", "state", func() error {
			_, _, err := s.CreateRun(ctx, run(func(r *store.Run) { r.State = bigJSON }))
			return err
		}},
		{"run state not JSON", "state", func() error {
			_, _, err := s.CreateRun(ctx, run(func(r *store.Run) { r.State = json.RawMessage(`{`) }))
			return err
		}},
		{"run oversized data", "data", func() error {
			_, _, err := s.CreateRun(ctx, run(func(r *store.Run) { r.Data = map[string]any{"b": big} }))
			return err
		}},
		{"update run oversized state", "state", func() error {
			_, err := s.UpdateRun(ctx, run(func(r *store.Run) { r.Version = 1; r.State = bigJSON }))
			return err
		}},
		{"update run bad status", "status", func() error {
			_, err := s.UpdateRun(ctx, run(func(r *store.Run) { r.Version = 1; r.Status = "" }))
			return err
		}},
		{"list runs bad bot", "bot_id", func() error { _, _, err := s.ListRuns(ctx, store.RunFilter{BotID: ""}); return err }},
		{"list runs bad status", "status", func() error {
			_, _, err := s.ListRuns(ctx, store.RunFilter{BotID: e.bot, Status: "zzz"})
			return err
		}},
		{"message oversized content", "content", func() error {
			return s.InsertMessages(ctx, []store.Message{{ID: "m", BotID: e.bot, RunID: "r", Content: bigJSON}})
		}},
		{"message no run", "run_id", func() error { return s.InsertMessages(ctx, []store.Message{{ID: "m", BotID: e.bot}}) }},
		{"message bad status", "status", func() error {
			return s.InsertMessages(ctx, []store.Message{{ID: "m", BotID: e.bot, RunID: "r", Status: "lost"}})
		}},
		{"sandbox no message id", "message_id", func() error { return s.AppendSandbox(ctx, store.SandboxMessage{BotID: e.bot}) }},
		{"sandbox oversized", "content", func() error {
			return s.AppendSandbox(ctx, store.SandboxMessage{MessageID: "m", BotID: e.bot, Content: bigJSON})
		}},
		{"stream contacts bad bot", "bot_id", func() error { _, err := s.StreamContacts(ctx, "", store.ContactFilter{}); return err }},
		{"counters bad trigger id", "id", func() error { return s.IncrTriggerCounters(ctx, e.bot, "", store.TriggerCounters{}) }},
		{"delete contact no id", "id", func() error { return s.DeleteContact(ctx, e.bot, "") }},
		{"get run id too long", "id", func() error { _, err := s.GetRun(ctx, e.bot, longID); return err }},
		{"reachability bad bot", "bot_id", func() error { return s.SetContactReachability(ctx, "B!", "c", true, "") }},
		{"find message no provider id", "", func() error { _, err := s.FindMessageByProviderID(ctx, e.bot, ""); return err }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var err error
			require.NotPanics(t, func() { err = c.call() })
			requireInvalid(t, err, c.field)
		})
	}
	// Nothing invalid was written.
	_, err := s.GetRun(ctx, e.bot, "rx")
	requireIs(t, err, store.ErrNotFound)
	_, err = s.GetFlow(ctx, e.bot, "f", 0)
	requireIs(t, err, store.ErrNotFound)
	_, err = s.GetContactByExternalID(ctx, e.bot, "sandbox", "u")
	requireIs(t, err, store.ErrNotFound)
}

func testNotFound(t *testing.T, s store.Store, e env) {
	ctx := e.ctx
	cases := []struct {
		name string
		call func() error
	}{
		{"bot", func() error { _, err := s.GetBot(ctx, e.bot); return err }},
		{"update bot", func() error { return s.UpdateBot(ctx, store.Bot{ID: e.bot, Name: "x"}) }},
		{"api key", func() error { _, err := s.GetAPIKeyByHash(ctx, "nohash-"+e.bot); return err }},
		{"flow", func() error { _, err := s.GetFlow(ctx, e.bot, "f", 0); return err }},
		{"event", func() error { _, err := s.GetEvent(ctx, e.bot, "E"); return err }},
		{"event by token", func() error { _, err := s.GetEventByToken(ctx, e.bot, "tok"); return err }},
		{"contact", func() error { _, err := s.GetContact(ctx, e.bot, "c"); return err }},
		{"contact by external id", func() error { _, err := s.GetContactByExternalID(ctx, e.bot, "sandbox", "u"); return err }},
		{"trigger", func() error { _, err := s.GetTrigger(ctx, e.bot, "t"); return err }},
		{"run", func() error { _, err := s.GetRun(ctx, e.bot, "r"); return err }},
		{"update run", func() error {
			_, err := s.UpdateRun(ctx, store.Run{ID: "r", BotID: e.bot, Status: store.RunRunning, Version: 1})
			return err
		}},
		{"message", func() error { _, err := s.GetMessage(ctx, e.bot, "m"); return err }},
		{"message status", func() error {
			return s.UpdateMessageStatus(ctx, store.StatusUpdate{BotID: e.bot, MessageID: "m", Status: store.MessageSent, ProviderMessageID: "p", At: time.Now()})
		}},
		{"message by provider id", func() error { _, err := s.FindMessageByProviderID(ctx, e.bot, "p"); return err }},
		{"delete contact", func() error { return s.DeleteContact(ctx, e.bot, "c") }},
		{"reachability", func() error { return s.SetContactReachability(ctx, e.bot, "c", true, "x") }},
		{"counters", func() error { return s.IncrTriggerCounters(ctx, e.bot, "t", store.TriggerCounters{Sent: 1}) }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			requireIs(t, c.call(), store.ErrNotFound)
		})
	}
	empty, err := s.ListSandbox(ctx, e.bot, "", 0, 10)
	require.NoError(t, err)
	require.Empty(t, empty, "listing nothing is not an error")
	runs, next, err := s.ListRuns(ctx, store.RunFilter{BotID: e.bot})
	require.NoError(t, err)
	require.Empty(t, runs)
	require.Empty(t, next)
}
