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
	"fmt"
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
	// BulkChunk is the most records the adapter writes with one statement
	// or command (default 128: the SQLite adapter's contacts per upsert
	// statement). The bulk cases write a little over two of them, and fail
	// one in the middle of the first, so that they cross the adapter's own
	// boundaries; a larger count adds no case and, on a server that scans
	// per update (FerretDB v1), costs time by the square.
	BulkChunk int
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
	if feats.BulkChunk <= 0 {
		feats.BulkChunk = 128
	}
	if feats.BulkChunk < 32 {
		t.Fatalf("storetest: BulkChunk %d: the bulk cases need at least 32", feats.BulkChunk)
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
		{"UpsertContactsInBulk", testUpsertContactsInBulk},
		{"SetLastRequest", testSetLastRequest},
		{"StreamContacts", testStreamContacts},
		{"ContactReachability", testContactReachability},
		{"DeleteContact", testDeleteContact},
		{"WritesForDeletedContact", testWritesForDeletedContact},
		{"Triggers", testTriggers},
		{"CreateTriggers", testCreateTriggers},
		{"TriggerConcurrentUpdate", testTriggerConcurrentUpdate},
		{"TriggerCheckpoint", testTriggerCheckpoint},
		{"TriggerCheckpoints", testTriggerCheckpoints},
		{"TriggerCheckpointsInBulk", testTriggerCheckpointsInBulk},
		{"TriggerCounters", testTriggerCounters},
		{"Runs", testRuns},
		{"RunIdempotency", testRunIdempotency},
		{"RunConcurrentUpdate", testRunConcurrentUpdate},
		{"CreateRuns", testCreateRuns},
		{"ListRuns", testListRuns},
		{"DueRuns", testDueRuns},
		{"WaitingRuns", testWaitingRuns},
		{"UpdateRuns", testUpdateRuns},
		{"ClaimRuns", testClaimRuns},
		{"ExpireBefore", testExpireBefore},
		{"Messages", testMessages},
		{"MessageStatus", testMessageStatus},
		{"MarkSent", testMarkSent},
		{"Sandbox", testSandbox},
		{"DeliverSandbox", testDeliverSandbox},
		{"DeliverSandboxMany", testDeliverSandboxMany},
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
