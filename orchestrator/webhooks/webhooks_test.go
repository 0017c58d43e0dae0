package webhooks_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/flowgate/flowgate/orchestrator/webhooks"
	"github.com/flowgate/flowgate/shared/bus"
	"github.com/flowgate/flowgate/shared/bus/bustest"
	"github.com/flowgate/flowgate/shared/egress/egresstest"
	"github.com/flowgate/flowgate/shared/events"
	"github.com/flowgate/flowgate/shared/store"
	"github.com/flowgate/flowgate/shared/store/sqlite"
	"github.com/flowgate/flowgate/shared/store/sqlite/sqlitetest"
)

// env is a real embedded NATS server, the SQLite store and the delivery
// service; status changes are published as the orchestrator publishes them.
type env struct {
	t     *testing.T
	bus   *bus.Bus
	store *sqlite.Store
	reads *countingStore // what the service reads through
	stop  func()
}

// countingStore counts the service's reads of runs and triggers.
type countingStore struct {
	webhooks.Store
	runs, triggers atomic.Int64
}

func (c *countingStore) GetRun(ctx context.Context, botID, id string) (store.Run, error) {
	c.runs.Add(1)
	return c.Store.GetRun(ctx, botID, id)
}

func (c *countingStore) GetTrigger(ctx context.Context, botID, id string) (store.Trigger, error) {
	c.triggers.Add(1)
	return c.Store.GetTrigger(ctx, botID, id)
}

// newEnv runs the delivery service; res (nil: the system resolver)
// resolves subscription hosts.
func newEnv(t *testing.T, cfg webhooks.Config, res *net.Resolver) *env {
	t.Helper()
	ctx := context.Background()
	_, b := bustest.Bus(t, bus.Config{Source: "/test", Logger: quietLog()})
	st := sqlitetest.Open(t)
	require.NoError(t, st.CreateBot(ctx, store.Bot{ID: "acme", Name: "Acme"}))

	if cfg.InitialBackoff == 0 {
		cfg.InitialBackoff = 20 * time.Millisecond
	}
	if cfg.ReconcileEvery == 0 {
		cfg.ReconcileEvery = 50 * time.Millisecond
	}
	if cfg.SubscriptionTTL == 0 {
		cfg.SubscriptionTTL = -1
	}
	cfg.DrainTimeout = 2 * time.Second
	log := quietLog()
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	reads := &countingStore{Store: st}
	go func() {
		done <- webhooks.Run(rctx, cfg, webhooks.Deps{Store: reads, Bus: b, Logger: log, Resolver: res})
	}()
	en := &env{t: t, bus: b, store: st, reads: reads}
	var once sync.Once
	en.stop = func() {
		once.Do(func() {
			cancel()
			require.NoError(t, <-done)
		})
	}
	t.Cleanup(en.stop)
	return en
}

func (e *env) subscribe(id, url, secret string, types ...string) {
	e.t.Helper()
	if len(types) == 0 {
		types = []string{webhooks.EventTypeAll}
	}
	require.NoError(e.t, e.store.CreateSubscription(context.Background(), store.Subscription{
		ID: id, BotID: "acme", URL: url, Secret: secret, EventTypes: types,
	}))
}

// publish sends a run's status changes exactly as the orchestrator does.
// publish publishes a run's status changes as the orchestrator does: a
// run's "created" is not published on its own, its first change (version
// 1, from created) stands for it.
func (e *env) publish(run string, statuses ...string) {
	e.t.Helper()
	e.publishStatuses(run, true, statuses...)
}

// publishStatuses publishes the changes; with impliedCreated false a
// leading "created" is published too (as orchestrators before 2026-11 did).
func (e *env) publishStatuses(run string, impliedCreated bool, statuses ...string) {
	e.t.Helper()
	prev := ""
	for seq, st := range statuses {
		if seq == 0 && st == "created" && impliedCreated {
			prev = st
			continue
		}
		rs := events.RunStatus{BotID: "acme", RunID: run, FlowID: "f", ContactID: "c-" + run, Status: st,
			Previous: prev, Version: int64(seq), At: time.Now().UTC()}
		ev, err := bus.NewEvent(fmt.Sprintf("run:%s:%d:%s", run, seq, st), events.TypeRunStatus, run, rs)
		require.NoError(e.t, err)
		_, err = e.bus.Publish(context.Background(), events.RunStatusSubject("acme"), ev)
		require.NoError(e.t, err)
		prev = st
	}
}

func (e *env) deadLetters() []string {
	e.t.Helper()
	ctx := context.Background()
	s, err := e.bus.JetStream().Stream(ctx, bus.StreamDLQ)
	require.NoError(e.t, err)
	info, err := s.Info(ctx)
	require.NoError(e.t, err)
	var out []string
	for seq := info.State.FirstSeq; seq > 0 && seq <= info.State.LastSeq; seq++ {
		m, err := s.GetMsg(ctx, seq)
		if err == nil {
			out = append(out, m.Header.Get(bus.HeaderDLQReason))
		}
	}
	return out
}

func quietLog() *slog.Logger {
	if os.Getenv("FLOWGATE_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// delivery is what a receiver got.
type delivery struct {
	ID      string
	Type    string
	Subject string
	Data    events.RunStatus
	Attempt string
}

// receiver verifies signatures with its secret, fails the first failFirst
// requests with 503, and records what it accepted.
type receiver struct {
	t         *testing.T
	secret    string
	failFirst int

	mu       sync.Mutex
	requests int
	badSigs  int
	got      []delivery
	srv      *httptest.Server
}

func newReceiver(t *testing.T, secret string, failFirst int) *receiver {
	r := &receiver{t: t, secret: secret, failFirst: failFirst}
	r.srv = httptest.NewServer(http.HandlerFunc(r.serve))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *receiver) serve(w http.ResponseWriter, req *http.Request) {
	body, _ := io.ReadAll(req.Body)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.requests++
	err := webhooks.Verify(r.secret, req.Header, body, 5*time.Minute, time.Now())
	if err == nil {
		// Both signature schemes, always.
		err = webhooks.VerifyStandard(r.secret, req.Header, body, 5*time.Minute, time.Now())
	}
	if err != nil {
		r.badSigs++
		http.Error(w, err.Error(), http.StatusUnauthorized)
		return
	}
	if r.requests <= r.failFirst {
		http.Error(w, "not yet", http.StatusServiceUnavailable)
		return
	}
	if ct := req.Header.Get("Content-Type"); ct != webhooks.ContentType {
		http.Error(w, "content type "+ct, http.StatusUnsupportedMediaType)
		return
	}
	var ce struct {
		SpecVersion string           `json:"specversion"`
		ID          string           `json:"id"`
		Type        string           `json:"type"`
		Subject     string           `json:"subject"`
		Data        events.RunStatus `json:"data"`
	}
	if err := json.Unmarshal(body, &ce); err != nil || ce.SpecVersion != "1.0" {
		http.Error(w, "not a structured CloudEvent", http.StatusBadRequest)
		return
	}
	r.got = append(r.got, delivery{ID: ce.ID, Type: ce.Type, Subject: ce.Subject, Data: ce.Data,
		Attempt: req.Header.Get(webhooks.HeaderAttempt)})
}

func (r *receiver) deliveries() []delivery {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]delivery(nil), r.got...)
}

func (r *receiver) counts() (requests, badSigs int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.requests, r.badSigs
}

const secret = "s3cret-0123456789abcdef"

// byRun groups deliveries per run, keeping arrival order.
func byRun(ds []delivery) map[string][]delivery {
	out := map[string][]delivery{}
	for _, d := range ds {
		out[d.Data.RunID] = append(out[d.Data.RunID], d)
	}
	return out
}

func TestDeliversEveryChangeOnceInOrderDespiteFailures(t *testing.T) {
	rcv := newReceiver(t, secret, 3)
	e := newEnv(t, webhooks.Config{AllowPrivate: true}, nil)
	e.subscribe("wh_1", rcv.srv.URL, secret)
	want := map[string][]string{
		"run-ask":  {"created", "waiting", "completed"},
		"run-send": {"created", "completed"},
		"run-fail": {"created", "running", "failed"},
	}
	for run, sts := range want {
		e.publish(run, sts...)
	}
	// The orchestrator may publish a change twice (a replayed step): the
	// bus drops the copy, the receiver sees it once. The same holds for an
	// explicit "created" next to the one a first change implies.
	e.publish("run-send", "created", "completed")
	e.publishStatuses("run-send", false, "created", "completed")

	require.Eventually(t, func() bool { return len(rcv.deliveries()) >= 8 }, 20*time.Second, 10*time.Millisecond)
	time.Sleep(300 * time.Millisecond) // nothing more may arrive
	got := rcv.deliveries()
	require.Len(t, got, 8, "every change exactly once")
	requests, bad := rcv.counts()
	require.Equal(t, 11, requests, "three failed attempts, then eight deliveries")
	require.Zero(t, bad)
	for run, sts := range byRun(got) {
		require.Len(t, sts, len(want[run]), run)
		for i, d := range sts {
			require.EqualValues(t, i, d.Data.Version, "%s: in order", run)
			require.Equal(t, want[run][i], d.Data.Status)
			require.Equal(t, "dev.flowgate.run."+d.Data.Status, d.Type)
			require.Equal(t, run, d.Subject)
			require.Equal(t, fmt.Sprintf("run:%s:%d:%s:wh_1", run, i, d.Data.Status), d.ID)
		}
	}
	// The failures were retried in place: the attempt numbers of the
	// accepted deliveries account for every failed request.
	retries := 0
	for _, d := range got {
		n, err := strconv.Atoi(d.Attempt)
		require.NoError(t, err)
		retries += n - 1
	}
	require.Equal(t, 3, retries)
	require.Empty(t, e.deadLetters())
}

func TestWrongSecretIsDetectedAndDeadLettered(t *testing.T) {
	rcv := newReceiver(t, "not-the-secret-0123456789", 0)
	e := newEnv(t, webhooks.Config{AllowPrivate: true, RetryPeriod: 300 * time.Millisecond}, nil)
	e.subscribe("wh_1", rcv.srv.URL, secret)
	e.publishStatuses("run-1", false, "created") // a lone "created" (an older orchestrator)
	require.Eventually(t, func() bool { return len(e.deadLetters()) == 1 }, 10*time.Second, 10*time.Millisecond)
	requests, bad := rcv.counts()
	require.Positive(t, requests)
	require.Equal(t, requests, bad, "every attempt failed the receiver's signature check")
	require.Empty(t, rcv.deliveries())
	require.Contains(t, e.deadLetters()[0], "HTTP 401")
}

func TestVerifyRejectsTamperingAndReplay(t *testing.T) {
	body := []byte(`{"specversion":"1.0","id":"x"}`)
	now := time.Now()
	h := http.Header{}
	h.Set(webhooks.HeaderTimestamp, fmt.Sprint(now.Unix()))
	h.Set(webhooks.HeaderSignature, webhooks.Sign(secret, now.Unix(), body))
	require.NoError(t, webhooks.Verify(secret, h, body, time.Minute, now))
	require.ErrorIs(t, webhooks.Verify("wrong-secret-0123456789", h, body, time.Minute, now), webhooks.ErrBadSignature)
	require.ErrorIs(t, webhooks.Verify(secret, h, append(body, ' '), time.Minute, now), webhooks.ErrBadSignature)
	require.ErrorIs(t, webhooks.Verify(secret, h, body, time.Minute, now.Add(10*time.Minute)), webhooks.ErrStale)
	// A fresh timestamp on a captured body does not match its signature.
	h.Set(webhooks.HeaderTimestamp, fmt.Sprint(now.Add(10*time.Minute).Unix()))
	require.ErrorIs(t, webhooks.Verify(secret, h, body, time.Minute, now.Add(10*time.Minute)), webhooks.ErrBadSignature)
}

func TestRetryPeriodExpiryDeadLettersWithReason(t *testing.T) {
	rcv := newReceiver(t, secret, 1<<30) // never accepts
	e := newEnv(t, webhooks.Config{AllowPrivate: true, RetryPeriod: time.Second}, nil)
	e.subscribe("wh_1", rcv.srv.URL, secret)
	e.publish("run-1", "created", "completed")
	require.Eventually(t, func() bool { return len(e.deadLetters()) == 2 }, 10*time.Second, 10*time.Millisecond)
	total := 0
	for _, reason := range e.deadLetters() {
		var n int
		_, err := fmt.Sscanf(reason, "permanent: webhook wh_1: gave up after %d attempts", &n)
		require.NoError(t, err, reason)
		require.GreaterOrEqual(t, n, 2, "retried before giving up: %s", reason)
		total += n
		require.Contains(t, reason, "within the retry period of 1s")
		require.Contains(t, reason, "last error: HTTP 503")
		require.NotContains(t, reason, rcv.srv.URL, "dead letters carry no URL")
	}
	requests, _ := rcv.counts()
	require.Equal(t, total, requests, "every attempt is counted in the reasons")
	require.Empty(t, rcv.deliveries())
}

// TestPrivateAddressesRefusedByDefault: deliveries to non-public targets
// are refused at dial time, each dead-lettered with the reason, and the
// loopback receiver behind the literal, mapped and DNS-named targets is
// never contacted. The targets that are not loopback are never dialed by
// any test (no traffic leaves the machine): they are only shown refused.
func TestPrivateAddressesRefusedByDefault(t *testing.T) {
	rcv := newReceiver(t, secret, 0)
	_, port, _ := net.SplitHostPort(strings.TrimPrefix(rcv.srv.URL, "http://"))
	res := egresstest.Resolver(t, netip.MustParseAddr("127.0.0.1"))
	e := newEnv(t, webhooks.Config{RetryPeriod: 200 * time.Millisecond}, res) // AllowPrivate false
	targets := append(egresstest.RefusedTargets(port), rcv.srv.URL)
	for i, u := range targets {
		e.subscribe(fmt.Sprintf("wh_%d", i), u, secret)
	}
	e.publishStatuses("run-1", false, "created") // a lone "created" (an older orchestrator)
	require.Eventually(t, func() bool { return len(e.deadLetters()) == len(targets) }, 30*time.Second, 10*time.Millisecond)
	for _, reason := range e.deadLetters() {
		require.Contains(t, reason, "is not public", reason)
	}
	requests, _ := rcv.counts()
	require.Zero(t, requests, "the loopback receiver was never contacted")
}

// TestPrivateAddressesAllowedByConfig: with AllowPrivate the same resolver
// and the mapped form reach the loopback receiver, so the refusals above
// come from the policy and not from DNS or the address form.
func TestPrivateAddressesAllowedByConfig(t *testing.T) {
	rcv := newReceiver(t, secret, 0)
	_, port, _ := net.SplitHostPort(strings.TrimPrefix(rcv.srv.URL, "http://"))
	res := egresstest.Resolver(t, netip.MustParseAddr("127.0.0.1"))
	e := newEnv(t, webhooks.Config{AllowPrivate: true}, res)
	for i, u := range egresstest.LoopbackTargets(port) {
		e.subscribe(fmt.Sprintf("wh_%d", i), u, secret)
	}
	e.publishStatuses("run-1", false, "created")
	require.Eventually(t, func() bool { return len(rcv.deliveries()) == 2 }, 30*time.Second, 10*time.Millisecond)
	require.Empty(t, e.deadLetters())
}

func TestEventTypeFilter(t *testing.T) {
	all := newReceiver(t, secret, 0)
	done := newReceiver(t, secret, 0)
	e := newEnv(t, webhooks.Config{AllowPrivate: true}, nil)
	e.subscribe("wh_all", all.srv.URL, secret)
	e.subscribe("wh_done", done.srv.URL, secret, "run.completed", "run.failed")
	e.publish("run-1", "created", "waiting", "completed")
	require.Eventually(t, func() bool { return len(all.deliveries()) == 3 && len(done.deliveries()) == 1 },
		10*time.Second, 10*time.Millisecond)
	got := done.deliveries()[0]
	require.Equal(t, "completed", got.Data.Status)
	require.Equal(t, "run:run-1:2:completed:wh_done", got.ID)
}

// A failing endpoint holds back only its own subscription.
func TestFailingEndpointDoesNotStallOthers(t *testing.T) {
	down := newReceiver(t, secret, 1<<30)
	up := newReceiver(t, secret, 0)
	e := newEnv(t, webhooks.Config{AllowPrivate: true, Workers: 1}, nil)
	e.subscribe("wh_down", down.srv.URL, secret)
	e.subscribe("wh_up", up.srv.URL, secret)
	for i := range 20 {
		e.publish(fmt.Sprintf("run-%d", i), "created", "completed")
	}
	require.Eventually(t, func() bool { return len(up.deliveries()) == 40 }, 10*time.Second, 10*time.Millisecond)
	for run, ds := range byRun(up.deliveries()) {
		require.Equal(t, []string{"created", "completed"}, []string{ds[0].Data.Status, ds[1].Data.Status}, run)
	}
	n, _ := down.counts()
	require.Positive(t, n)
}

func TestDeletionStopsDeliveries(t *testing.T) {
	rcv := newReceiver(t, secret, 1<<30) // keeps failing: the delivery is being retried
	e := newEnv(t, webhooks.Config{AllowPrivate: true}, nil)
	e.subscribe("wh_1", rcv.srv.URL, secret)
	e.publish("run-1", "created", "completed")
	require.Eventually(t, func() bool { n, _ := rcv.counts(); return n >= 2 }, 10*time.Second, 10*time.Millisecond)

	require.NoError(t, e.store.DeleteSubscription(context.Background(), "acme", "wh_1"))
	// Within a reconcile pass the consumer is gone and its queue purged.
	require.Eventually(t, func() bool {
		s, err := e.bus.JetStream().Stream(context.Background(), bus.StreamWebhooks)
		require.NoError(t, err)
		_, err = s.Consumer(context.Background(), "webhook-wh_1")
		info, ierr := s.Info(context.Background())
		return err != nil && ierr == nil && info.State.Msgs == 0
	}, 10*time.Second, 10*time.Millisecond)
	time.Sleep(100 * time.Millisecond)
	before, _ := rcv.counts()
	e.publish("run-2", "created", "completed")
	time.Sleep(500 * time.Millisecond)
	after, _ := rcv.counts()
	require.Equal(t, before, after, "no attempt after the deletion")
	require.Empty(t, e.deadLetters(), "a deleted subscription's deliveries are dropped, not dead-lettered")
}

func TestRunRefusesBadConfigAndStopsWhenTheBusIsGone(t *testing.T) {
	ctx := context.Background()
	st := sqlitetest.Open(t)
	require.Error(t, webhooks.Run(ctx, webhooks.Config{}, webhooks.Deps{Store: st}), "no bus")
	e, b := bustest.Bus(t, bus.Config{Source: "/test", PublishTimeout: 200 * time.Millisecond, Logger: quietLog()})
	require.Error(t, webhooks.Run(ctx, webhooks.Config{RetryPeriod: -time.Second}, webhooks.Deps{Store: st, Bus: b}))

	// JetStream goes away before the service starts: Run reports it
	// instead of hanging.
	e.Shutdown()
	done := make(chan error, 1)
	go func() {
		done <- webhooks.Run(ctx, webhooks.Config{}, webhooks.Deps{Store: st, Bus: b, Logger: quietLog()})
	}()
	select {
	case err := <-done:
		require.ErrorIs(t, err, bus.ErrUnavailable)
	case <-time.After(20 * time.Second):
		t.Fatal("Run did not return")
	}
}

// A status change reaches its receiver once the run is stored at it (its
// RunVersion): the orchestrator publishes a change before it writes the
// run, and a receiver that reads the run on receipt must see the change.
// A change from orchestrators that did not say the version goes at once.
func TestDeliveryWaitsForTheRunToBeStoredAtTheChange(t *testing.T) {
	ctx := context.Background()
	rcv := newReceiver(t, "s3cret", 0)
	e := newEnv(t, webhooks.Config{AllowPrivate: true}, nil)
	e.subscribe("wh_1", rcv.srv.URL, "s3cret")
	now := time.Now().UTC()
	_, _, err := e.store.UpsertContact(ctx, store.ContactUpsert{BotID: "acme", Channel: "sandbox",
		ExternalID: "31612345678", NewID: "c-run-1", Now: now})
	require.NoError(t, err)
	runs, _, err := e.store.CreateRuns(ctx, []store.Run{{ID: "run-1", BotID: "acme", FlowID: "f", ContactID: "c-run-1",
		Channel: "sandbox", Status: store.RunWaiting, CreatedAt: now, UpdatedAt: now}})
	require.NoError(t, err)
	publish := func(seq int64, status, prev string, runVersion int64) {
		rs := events.RunStatus{BotID: "acme", RunID: "run-1", FlowID: "f", ContactID: "c-run-1", Status: status,
			Previous: prev, Version: seq, At: time.Now().UTC(), RunVersion: runVersion}
		ev, err := bus.NewEvent(fmt.Sprintf("run:run-1:%d:%s", seq, status), events.TypeRunStatus, "run-1", rs)
		require.NoError(t, err)
		_, err = e.bus.Publish(ctx, events.RunStatusSubject("acme"), ev)
		require.NoError(t, err)
	}

	publish(2, "completed", "waiting", 2) // the run is at version 1
	time.Sleep(400 * time.Millisecond)
	require.Empty(t, rcv.deliveries(), "nothing is sent before the run is written at the change")
	done := runs[0]
	done.Status = store.RunCompleted
	_, err = e.store.UpdateRun(ctx, done)
	require.NoError(t, err)
	require.Eventually(t, func() bool { return len(rcv.deliveries()) == 1 }, 10*time.Second, 10*time.Millisecond)
	require.Equal(t, "completed", rcv.deliveries()[0].Data.Status)
	got, err := e.store.GetRun(ctx, "acme", "run-1")
	require.NoError(t, err)
	require.Equal(t, store.RunCompleted, got.Status, "what the receiver reads on receipt")

	publish(3, "failed", "completed", 0) // no version: sent at once
	require.Eventually(t, func() bool { return len(rcv.deliveries()) == 2 }, 10*time.Second, 10*time.Millisecond)
}
