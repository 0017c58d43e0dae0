package mongo

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/flowgate/flowgate/shared/store"
	"github.com/flowgate/flowgate/shared/store/mongo/ferret"
)

// Adapter tests: what the contract suite cannot see (batching, write marks,
// FerretDB fallbacks, retention mechanics, unavailability).

const bot = "acme"

func setup(t *testing.T, s *Store) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	require.NoError(t, s.CreateBot(ctx, store.Bot{ID: bot, Name: "Acme"}))
	return ctx
}

func newRun(id, trigger, contact string) store.Run {
	return store.Run{ID: id, BotID: bot, TriggerID: trigger, FlowID: "f1", FlowVersion: 1, ContactID: contact,
		Channel: "sandbox", Status: store.RunQueued}
}

// TestGroupCommitTellsEachCallerItsResult sends, in one batch, updates that
// succeed, conflict and miss, for runs, messages and counters alike.
func TestGroupCommitTellsEachCallerItsResult(t *testing.T) {
	s := openTest(t, sharedFerret(t), WithGroupCommit(time.Second, 1000))
	ctx := setup(t, s)
	for _, id := range []string{"r-ok", "r-stale", "r-race"} {
		_, created, err := s.CreateRun(ctx, newRun(id, "tr", "c-"+id))
		require.NoError(t, err)
		require.True(t, created)
	}
	_, _, err := s.CreateTrigger(ctx, store.Trigger{ID: "tr", BotID: bot, Source: "native", FlowID: "f1"})
	require.NoError(t, err)
	require.NoError(t, s.InsertMessages(ctx, []store.Message{{ID: "m1", BotID: bot, RunID: "r-ok", ContactID: "c-r-ok", Seq: 1}}))

	type outcome struct {
		name string
		err  error
	}
	var mu sync.Mutex
	var got []outcome
	var wg sync.WaitGroup
	do := func(name string, fn func() error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := fn()
			mu.Lock()
			got = append(got, outcome{name, err})
			mu.Unlock()
		}()
	}
	update := func(id string, version int64) func() error {
		return func() error {
			r := newRun(id, "tr", "c-"+id)
			r.Status, r.Version = store.RunRunning, version
			_, err := s.UpdateRun(ctx, r)
			return err
		}
	}
	batchesBefore := s.runWriter.batches.Load()
	do("ok", update("r-ok", 1))
	do("stale", update("r-stale", 7))
	do("missing", update("r-missing", 1))
	do("race-a", update("r-race", 1))
	do("race-b", update("r-race", 1))
	do("msg-ok", func() error {
		return s.UpdateMessageStatus(ctx, store.StatusUpdate{BotID: bot, MessageID: "m1", Status: store.MessageSent, ProviderMessageID: "wamid.1", At: time.Now()})
	})
	do("msg-missing", func() error {
		return s.UpdateMessageStatus(ctx, store.StatusUpdate{BotID: bot, MessageID: "m-none", Status: store.MessageSent, At: time.Now()})
	})
	for i := range 5 {
		do(fmt.Sprintf("count-%d", i), func() error {
			return s.IncrTriggerCounters(ctx, bot, "tr", store.TriggerCounters{Sent: 1, SkipReasons: map[string]int64{"opted.out": 1}})
		})
	}
	do("count-missing", func() error { return s.IncrTriggerCounters(ctx, bot, "tr-none", store.TriggerCounters{Sent: 1}) })
	wg.Wait()

	res := map[string]error{}
	for _, o := range got {
		res[o.name] = o.err
	}
	require.NoError(t, res["ok"])
	require.ErrorIs(t, res["stale"], store.ErrVersionConflict)
	require.ErrorIs(t, res["missing"], store.ErrNotFound)
	require.True(t, (res["race-a"] == nil) != (res["race-b"] == nil), "exactly one of two updates from version 1 wins: %v / %v", res["race-a"], res["race-b"])
	loser := res["race-a"]
	if loser == nil {
		loser = res["race-b"]
	}
	require.ErrorIs(t, loser, store.ErrVersionConflict)
	require.NoError(t, res["msg-ok"])
	require.ErrorIs(t, res["msg-missing"], store.ErrNotFound)
	for i := range 5 {
		require.NoError(t, res[fmt.Sprintf("count-%d", i)])
	}
	require.ErrorIs(t, res["count-missing"], store.ErrNotFound)
	require.Equal(t, batchesBefore+1, s.runWriter.batches.Load(), "the five run updates went out as one batch")

	r, err := s.GetRun(ctx, bot, "r-race")
	require.NoError(t, err)
	require.Equal(t, int64(2), r.Version)
	tr, err := s.GetTrigger(ctx, bot, "tr")
	require.NoError(t, err)
	require.Equal(t, int64(5), tr.Counters.Sent)
	require.Equal(t, map[string]int64{"opted.out": 5}, tr.Counters.SkipReasons)
	m, err := s.GetMessage(ctx, bot, "m1")
	require.NoError(t, err)
	require.Equal(t, store.MessageSent, m.Status)
	require.Equal(t, "wamid.1", m.ProviderMessageID)
}

// TestRunRoundRecoversFromAbortedBulk feeds a round whose first write fails
// on the server: FerretDB v1 then stops the whole bulk and reports the error
// at index 0, MongoDB goes on. Either way every other op must get its true
// result.
func TestRunRoundRecoversFromAbortedBulk(t *testing.T) {
	s := openTest(t, sharedFerret(t))
	ctx := setup(t, s)
	for _, id := range []string{"a", "b", "c"} {
		_, _, err := s.CreateRun(ctx, newRun(id, "", "c-"+id))
		require.NoError(t, err)
	}
	mkOp := func(id string, version int64) *runOp {
		mark := fmt.Sprintf("%d/%s", version+1, nextToken())
		raw, err := bson.Marshal(bson.D{{Key: "$set", Value: bson.D{
			{Key: "status", Value: store.RunRunning}, {Key: "version", Value: version + 1},
			{Key: "writes." + writeSlot(version+1), Value: mark},
		}}})
		require.NoError(t, err)
		return &runOp{result: newResult(), run: store.Run{ID: id, BotID: bot, Version: version}, update: raw, mark: mark}
	}
	bad := mkOp("a", 1)
	// Setting a field and its parent at once is refused by every server.
	bad.update, _ = bson.Marshal(bson.D{{Key: "$set", Value: bson.D{{Key: "writes", Value: 1}, {Key: "writes.x", Value: 2}}}})
	ok, stale := mkOp("b", 1), mkOp("c", 9)
	s.writeRunRound(ctx, []*runOp{bad, ok, stale})
	require.Error(t, bad.err)
	require.NotErrorIs(t, bad.err, store.ErrVersionConflict)
	require.NoError(t, ok.err)
	require.ErrorIs(t, stale.err, store.ErrVersionConflict)
	r, err := s.GetRun(ctx, bot, "b")
	require.NoError(t, err)
	require.Equal(t, int64(2), r.Version)
	require.Equal(t, store.RunRunning, r.Status)
}

// TestMessageRoundsKeepOrder: two updates of one message in one batch are
// applied in their callers' order (failed after delivered is refused).
func TestMessageRoundsKeepOrder(t *testing.T) {
	s := openTest(t, sharedFerret(t))
	ctx := setup(t, s)
	require.NoError(t, s.InsertMessages(ctx, []store.Message{{ID: "m", BotID: bot, RunID: "r", Seq: 1}}))
	at := time.Now()
	ops := []*messageOp{
		{result: newResult(), botID: bot, id: "m", status: store.MessageDelivered, providerID: "p1", at: ms(at)},
		{result: newResult(), botID: bot, id: "m", status: store.MessageFailed, reason: "late", at: ms(at)},
	}
	s.flushMessages(ctx, ops)
	for _, op := range ops {
		require.NoError(t, <-op.done)
	}
	m, err := s.GetMessage(ctx, bot, "m")
	require.NoError(t, err)
	require.Equal(t, store.MessageDelivered, m.Status)
	require.Equal(t, "p1", m.ProviderMessageID)
	require.Empty(t, m.Error)
}

func TestRounds(t *testing.T) {
	got := rounds([]string{"a1", "b1", "a2", "c1", "a3", "b2"}, func(s string) string { return s[:1] })
	require.Equal(t, [][]string{{"a1", "b1", "c1"}, {"a2", "b2"}, {"a3"}}, got)
	require.Empty(t, rounds([]string{}, func(s string) string { return s }))
}

// TestRetention: with WithRetention, a final run gets expire_at (for the
// TTL index) and the sweeper deletes it with its messages; other runs stay.
func TestRetention(t *testing.T) {
	s := openTest(t, sharedFerret(t), WithRetention(100*time.Millisecond))
	ctx := setup(t, s)
	done, _, err := s.CreateRun(ctx, newRun("done", "", "c1"))
	require.NoError(t, err)
	_, _, err = s.CreateRun(ctx, newRun("live", "", "c1"))
	require.NoError(t, err)
	require.NoError(t, s.InsertMessages(ctx, []store.Message{
		{ID: "m-done", BotID: bot, RunID: "done", ContactID: "c1"},
		{ID: "m-live", BotID: bot, RunID: "live", ContactID: "c1"},
	}))
	done.Status = store.RunCompleted
	_, err = s.UpdateRun(ctx, done)
	require.NoError(t, err)

	var raw struct {
		ExpireAt *time.Time `bson:"expire_at"`
	}
	require.NoError(t, s.runs.FindOne(ctx, bson.D{{Key: "_id", Value: "done"}}).Decode(&raw))
	require.NotNil(t, raw.ExpireAt, "a final run carries expire_at")
	require.WithinDuration(t, time.Now().Add(100*time.Millisecond), *raw.ExpireAt, 5*time.Second)

	require.Eventually(t, func() bool {
		_, err := s.GetRun(ctx, bot, "done")
		return errors.Is(err, store.ErrNotFound)
	}, 20*time.Second, 50*time.Millisecond, "the sweeper deletes the expired run")
	_, err = s.GetMessage(ctx, bot, "m-done")
	require.ErrorIs(t, err, store.ErrNotFound)
	_, err = s.GetRun(ctx, bot, "live")
	require.NoError(t, err)
	_, err = s.GetMessage(ctx, bot, "m-live")
	require.NoError(t, err)
}

// TestDocumentSizeLimit: a record over the document limit is refused before
// it is sent, naming its largest field.
func TestDocumentSizeLimit(t *testing.T) {
	s := openTest(t, sharedFerret(t), WithMaxDocumentSize(64<<10))
	ctx := setup(t, s)
	r := newRun("big", "", "c1")
	r.Data = map[string]any{"blob": strings.Repeat("x", 100<<10)}
	_, _, err := s.CreateRun(ctx, r)
	var ie *store.InvalidError
	require.ErrorAs(t, err, &ie)
	require.Equal(t, "data", ie.Field)
	_, err = s.GetRun(ctx, bot, "big")
	require.ErrorIs(t, err, store.ErrNotFound)

	r = newRun("small", "", "c1")
	_, _, err = s.CreateRun(ctx, r)
	require.NoError(t, err)
	r.Version = 1
	r.State = json.RawMessage(`"` + strings.Repeat("y", 100<<10) + `"`)
	_, err = s.UpdateRun(ctx, r)
	require.ErrorAs(t, err, &ie)
	require.ErrorIs(t, err, store.ErrInvalid)
}

func TestAttributeKeysRoundTrip(t *testing.T) {
	s := openTest(t, sharedFerret(t))
	ctx := setup(t, s)
	attrs := map[string]any{"a.b": 1.0, "$x": "y", "": true, "100%": "full", "%2E": "literal", "nul\x00": "z", "nested": map[string]any{"k.j": []any{1.0, "two"}}}
	c, created, err := s.UpsertContact(ctx, store.ContactUpsert{BotID: bot, Channel: "sandbox", ExternalID: "u1", NewID: "c1", Attributes: attrs})
	require.NoError(t, err)
	require.True(t, created)
	require.Equal(t, attrs, c.Attributes)
	got, err := s.GetContact(ctx, bot, "c1")
	require.NoError(t, err)
	require.Equal(t, attrs, got.Attributes)
}

func TestEscapeKey(t *testing.T) {
	for _, k := range []string{"", "%", "%%", "a.b", "$a", "a$", "%2E", "%zz", "é.ü", "\x00", "plain"} {
		e := escapeKey(k)
		require.NotContains(t, e, ".", k)
		require.NotContains(t, e, "$", k)
		require.NotContains(t, e, "\x00", k)
		require.NotEmpty(t, e, k)
		require.Equal(t, k, unescapeKey(e), "round trip of %q via %q", k, e)
	}
}

func FuzzEscapeKey(f *testing.F) {
	for _, k := range []string{"", "%", "a.b", "$a", "%2E"} {
		f.Add(k)
	}
	f.Fuzz(func(t *testing.T, k string) {
		e := escapeKey(k)
		if strings.ContainsAny(e, ".$\x00") || e == "" {
			t.Fatalf("escapeKey(%q) = %q", k, e)
		}
		if got := unescapeKey(e); got != k {
			t.Fatalf("unescapeKey(escapeKey(%q)) = %q", k, got)
		}
	})
}

// TestUnavailable: a server that cannot be reached is store.ErrUnavailable,
// at Open and for operations once the server is gone; after Close, writes
// are refused the same way.
func TestUnavailable(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_, err := Open(ctx, "mongodb://127.0.0.1:1/?connectTimeoutMS=200", "x", WithConnectTimeout(300*time.Millisecond), WithLogger(quiet))
	require.ErrorIs(t, err, store.ErrUnavailable)

	uri, stop, err := ferret.Start(ctx, t.TempDir())
	require.NoError(t, err)
	// 3 s, not less: FerretDB has just started, and on a loaded CI machine
	// Open's first ping needs more than a few hundred milliseconds. After
	// stop() each failing call waits at most this long for a server.
	s, err := Open(ctx, uri, "gone", WithLogger(quiet), WithConnectTimeout(3*time.Second), WithTimeout(2*time.Second))
	require.NoError(t, err)
	require.NoError(t, s.CreateBot(ctx, store.Bot{ID: bot, Name: "Acme"}))
	r, _, err := s.CreateRun(ctx, newRun("r1", "", "c1"))
	require.NoError(t, err)
	stop()
	_, err = s.GetRun(ctx, bot, "r1")
	require.ErrorIs(t, err, store.ErrUnavailable)
	_, err = s.UpdateRun(ctx, r)
	require.ErrorIs(t, err, store.ErrUnavailable)
	require.ErrorIs(t, s.Ping(ctx), store.ErrUnavailable)
	require.NoError(t, s.Close())
	_, err = s.UpdateRun(ctx, r)
	require.ErrorIs(t, err, store.ErrUnavailable)
	require.ErrorIs(t, s.IncrTriggerCounters(ctx, bot, "t", store.TriggerCounters{Sent: 1}), store.ErrUnavailable)
}

// TestSandboxSeqUnderConcurrency: concurrent appends of one bot get distinct,
// increasing seqs and list in seq order; a repeated message id is ignored.
func TestSandboxSeqUnderConcurrency(t *testing.T) {
	s := openTest(t, sharedFerret(t))
	ctx := setup(t, s)
	var wg sync.WaitGroup
	for i := range 12 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			id := fmt.Sprintf("m%d", i%8) // ids m0..m3 are appended twice
			require.NoError(t, s.AppendSandbox(ctx, store.SandboxMessage{MessageID: id, BotID: bot, RunID: "r", To: "u", Content: json.RawMessage(`{"text":"hi"}`)}))
		}()
	}
	wg.Wait()
	got, err := s.ListSandbox(ctx, bot, "", 0, 100)
	require.NoError(t, err)
	require.Len(t, got, 8)
	for i := 1; i < len(got); i++ {
		require.Greater(t, got[i].Seq, got[i-1].Seq)
	}
	after, err := s.ListSandbox(ctx, bot, "u", got[3].Seq, 100)
	require.NoError(t, err)
	require.Equal(t, got[4:], after)
}

// TestIndexesIdempotent: opening a store twice on one database is harmless.
func TestIndexesIdempotent(t *testing.T) {
	s := openTest(t, sharedFerret(t))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s2, err := Open(ctx, sharedFerret(t), s.Database(), WithLogger(quiet))
	require.NoError(t, err)
	require.NoError(t, s2.Close())
	cur, err := s.runs.Indexes().List(ctx)
	require.NoError(t, err)
	var idx []bson.M
	require.NoError(t, cur.All(ctx, &idx))
	names := map[string]bool{}
	for _, ix := range idx {
		names[ix["name"].(string)] = true
	}
	require.True(t, names["contact_key_unique"], "indexes: %v", names)
	require.True(t, names["due"])
	require.Equal(t, s.TTL(), names["expire_at_ttl"])
	require.NotEmpty(t, s.FerretDB(), "the test server is FerretDB")
	require.False(t, s.TTL(), "FerretDB v1 has no TTL indexes")
}

// TestLargeBatch: a batch of more updates than FerretDB v1 can take in one
// command (its limit deadlocks the server at 100) is cut into commands and
// every caller still gets its result.
func TestLargeBatch(t *testing.T) {
	s := openTest(t, sharedFerret(t), WithGroupCommit(2*time.Second, 1000))
	ctx := setup(t, s)
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	const n = 120
	rs := make([]store.Run, n)
	for i := range rs {
		rs[i] = newRun(fmt.Sprintf("r%03d", i), "tr", fmt.Sprintf("c%03d", i))
	}
	created, _, err := s.CreateRuns(ctx, rs)
	require.NoError(t, err)
	batches := s.runWriter.batches.Load()
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range created {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := created[i]
			r.Status = store.RunRunning
			if i%3 == 0 {
				r.Version = 5 // stale
			}
			_, errs[i] = s.UpdateRun(ctx, r)
		}()
	}
	wg.Wait()
	require.Equal(t, batches+1, s.runWriter.batches.Load(), "one batch")
	for i, err := range errs {
		if i%3 == 0 {
			require.ErrorIs(t, err, store.ErrVersionConflict, "run %d", i)
		} else {
			require.NoError(t, err, "run %d", i)
		}
	}
}
