package sandbox_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/flowgate/flowgate/shared/channel/sandbox"
	"github.com/flowgate/flowgate/shared/events"
	"github.com/flowgate/flowgate/shared/store"
	"github.com/flowgate/flowgate/shared/store/sqlite"
	"github.com/flowgate/flowgate/shared/testclock"
)

// countingStore counts the writes that reach the real store.
type countingStore struct {
	*sqlite.Store
	one, many atomic.Int64
	inMany    atomic.Int64  // bundles written by DeliverSandboxMany
	gate      chan struct{} // when set, the first write waits for it
	once      sync.Once
	failMany  error // when set, DeliverSandboxMany fails with it
}

func (c *countingStore) wait() {
	if c.gate != nil {
		c.once.Do(func() { <-c.gate })
	}
}

func (c *countingStore) DeliverSandbox(ctx context.Context, triggerID string, ms []store.SandboxMessage) error {
	c.wait()
	c.one.Add(1)
	return c.Store.DeliverSandbox(ctx, triggerID, ms)
}

func (c *countingStore) DeliverSandboxMany(ctx context.Context, ds []store.SandboxDelivery) error {
	c.wait()
	c.many.Add(1)
	c.inMany.Add(int64(len(ds)))
	if c.failMany != nil {
		return c.failMany
	}
	return c.Store.DeliverSandboxMany(ctx, ds)
}

// setup opens a real SQLite store with a bot and n single-message runs of
// one trigger each, queued, and returns it with their bundles.
func setup(t *testing.T, n int) (*sqlite.Store, store.Bot, []events.Outbound) {
	t.Helper()
	ctx := context.Background()
	st, err := sqlite.Open(ctx, t.TempDir())
	require.NoError(t, err)
	t.Cleanup(func() { st.Close() })
	now := testclock.Date(2026, 1, 2, 3, 4, 5)
	bot := store.Bot{ID: "sb", Name: "sb", CreatedAt: now, UpdatedAt: now}
	require.NoError(t, st.CreateBot(ctx, bot))
	outs := make([]events.Outbound, n)
	for i := range outs {
		tr := fmt.Sprintf("t%03d", i)
		_, _, err := st.CreateTrigger(ctx, store.Trigger{ID: tr, BotID: bot.ID, Source: "native", Event: "e", FlowID: "f",
			Channel: events.ChannelSandbox, Spec: []byte(`{}`), Status: store.TriggerAccepted, CreatedAt: now})
		require.NoError(t, err)
		run, id := "r"+tr, "m"+tr
		require.NoError(t, st.InsertMessages(ctx, []store.Message{{ID: id, BotID: bot.ID, RunID: run, TriggerID: tr, ContactID: "c" + tr,
			Channel: events.ChannelSandbox, To: fmt.Sprintf("+1555%04d", i), Seq: 1, Content: []byte(`{"type":"text","text":"hi"}`),
			Status: events.StatusQueued, CreatedAt: now}}))
		outs[i] = events.Outbound{BotID: bot.ID, RunID: run, TriggerID: tr, ContactID: "c" + tr, Channel: events.ChannelSandbox,
			To: fmt.Sprintf("+1555%04d", i), Messages: []events.OutboundMessage{{ID: id, Seq: 1, Content: events.Content{Type: events.ContentText, Text: "hi"}}}}
	}
	return st, bot, outs
}

// sendTogether sends every bundle at once, the first a moment ahead so
// that it holds the store's first write (gated by cs.gate) while the
// others queue behind it, then opens the gate and returns each send's
// error.
func sendTogether(s *sandbox.Sender, cs *countingStore, bot store.Bot, outs []events.Outbound) []error {
	var wg sync.WaitGroup
	errs := make([]error, len(outs))
	for i := range outs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = s.SendBundle(context.Background(), bot, outs[i], outs[i].Messages)
		}()
		if i == 0 {
			time.Sleep(20 * time.Millisecond) // the first holds the write (any one would)
		}
	}
	time.Sleep(100 * time.Millisecond) // let them queue behind the first write
	close(cs.gate)
	wg.Wait()
	return errs
}

// Bundles sent at once are written together (the first alone, the ones
// that arrived while it was written in one DeliverSandboxMany), and each
// is appended, recorded as sent and counted once.
func TestConcurrentBundlesShareOneWrite(t *testing.T) {
	const n = 40
	st, bot, outs := setup(t, n)
	cs := &countingStore{Store: st, gate: make(chan struct{})}
	s := sandbox.NewSender(cs)
	ctx := context.Background()
	errs := sendTogether(s, cs, bot, outs)
	for i, err := range errs {
		require.NoError(t, err, "bundle %d", i)
	}
	require.Greater(t, cs.inMany.Load(), int64(1), "bundles that waited were written together")
	require.Less(t, cs.one.Load()+cs.many.Load(), int64(n), "fewer writes than bundles")
	got, err := st.ListSandbox(ctx, bot.ID, "", 0, 1000)
	require.NoError(t, err)
	require.Len(t, got, n, "each bundle appended once")
	for _, out := range outs {
		m, err := st.GetMessage(ctx, bot.ID, out.Messages[0].ID)
		require.NoError(t, err)
		require.Equal(t, store.MessageSent, m.Status)
		tr, err := st.GetTrigger(ctx, bot.ID, out.TriggerID)
		require.NoError(t, err)
		require.EqualValues(t, 1, tr.Counters.Sent, out.TriggerID)
	}
}

// A bad bundle among others fails alone: the group's write is refused,
// each bundle is then written on its own, and only the bad one's sender
// gets the error.
func TestABadBundleFailsOnlyItsSender(t *testing.T) {
	const n = 10
	st, bot, outs := setup(t, n)
	cs := &countingStore{Store: st, gate: make(chan struct{})}
	s := sandbox.NewSender(cs)
	ctx := context.Background()
	outs[5].Messages[0].ID = "" // invalid: a message needs an id
	errs := sendTogether(s, cs, bot, outs)
	for i, err := range errs {
		if i == 5 {
			require.ErrorIs(t, err, store.ErrInvalid)
			continue
		}
		require.NoError(t, err, "bundle %d", i)
	}
	got, err := st.ListSandbox(ctx, bot.ID, "", 0, 1000)
	require.NoError(t, err)
	require.Len(t, got, n-1)
}

// A sender whose context ends while its bundle waits gets ctx's error at
// once; the bundle may still be written (delivering it again is harmless).
func TestACancelledSenderDoesNotWait(t *testing.T) {
	st, bot, outs := setup(t, 2)
	cs := &countingStore{Store: st, gate: make(chan struct{})}
	s := sandbox.NewSender(cs)
	go func() { _, _ = s.SendBundle(context.Background(), bot, outs[0], outs[0].Messages) }()
	time.Sleep(20 * time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, err := s.SendBundle(ctx, bot, outs[1], outs[1].Messages)
	require.ErrorIs(t, err, context.DeadlineExceeded)
	close(cs.gate)
	require.Eventually(t, func() bool {
		got, err := st.ListSandbox(context.Background(), bot.ID, "", 0, 10)
		return err == nil && len(got) == 2
	}, 5*time.Second, 10*time.Millisecond)
}

// A group that fails for another reason than bad input (the store
// unavailable) fails every bundle of it, once: they are not retried one
// by one against a store that is down (the runner retries each bundle as
// it would any failed send).
func TestAnUnavailableStoreFailsTheGroupOnce(t *testing.T) {
	const n = 8
	st, bot, outs := setup(t, n)
	cs := &countingStore{Store: st, gate: make(chan struct{}), failMany: fmt.Errorf("%w: disk full", store.ErrUnavailable)}
	s := sandbox.NewSender(cs)
	errs := sendTogether(s, cs, bot, outs)
	failed := 0
	for _, err := range errs {
		if err != nil {
			require.ErrorIs(t, err, store.ErrUnavailable)
			failed++
		}
	}
	require.Positive(t, cs.many.Load(), "the waiting bundles went as a group")
	require.EqualValues(t, cs.inMany.Load(), failed, "every bundle of a failed group fails")
	require.EqualValues(t, n-failed, cs.one.Load(), "no bundle of a failed group is written alone")
}
