package orchestrator

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/flowgate/flowgate/shared/store"
	"github.com/flowgate/flowgate/shared/store/sqlite/sqlitetest"
)

// Concurrent increments are merged into fewer writes, every one counted
// exactly once, and each caller returns only after its increment is stored.
func TestCounterBatcherMergesConcurrentIncrements(t *testing.T) {
	var (
		mu     sync.Mutex
		stored = map[string]store.TriggerCounters{}
		writes atomic.Int64
	)
	b := newCounterBatcher(func(_ context.Context, bot, trig string, d store.TriggerCounters) error {
		writes.Add(1)
		time.Sleep(2 * time.Millisecond) // a store round trip
		mu.Lock()
		c := stored[bot+"/"+trig]
		addCounters(&c, d)
		stored[bot+"/"+trig] = c
		mu.Unlock()
		return nil
	})
	const callers, each = 64, 20
	var wg sync.WaitGroup
	for i := range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			trig := fmt.Sprintf("t%d", i%3)
			for range each {
				require.NoError(t, b.add(context.Background(), "bot", trig, store.TriggerCounters{Sent: 1, Delivered: 2}))
				mu.Lock()
				got := stored["bot/"+trig].Sent
				mu.Unlock()
				require.Positive(t, got, "returned before its increment was stored")
			}
		}()
	}
	wg.Wait()
	var sent, delivered int64
	for _, c := range stored {
		sent += c.Sent
		delivered += c.Delivered
	}
	require.EqualValues(t, callers*each, sent)
	require.EqualValues(t, 2*callers*each, delivered)
	require.Less(t, writes.Load(), int64(callers*each/2), "concurrent increments share writes")
	t.Logf("%d increments in %d writes", callers*each, writes.Load())
}

// A failed write fails every increment it carried, and only those.
func TestCounterBatcherReportsTheWriteError(t *testing.T) {
	boom := errors.New("store down")
	b := newCounterBatcher(func(_ context.Context, _, trig string, _ store.TriggerCounters) error {
		if trig == "bad" {
			return boom
		}
		return nil
	})
	require.ErrorIs(t, b.add(context.Background(), "bot", "bad", store.TriggerCounters{Sent: 1}), boom)
	require.NoError(t, b.add(context.Background(), "bot", "good", store.TriggerCounters{Sent: 1}))
}

// Against the real SQLite store: counts are exact, and a caller whose
// context is cancelled while its increment waits still has it written.
func TestCounterBatcherOnSQLite(t *testing.T) {
	ctx := context.Background()
	st := sqlitetest.Open(t)
	require.NoError(t, st.CreateBot(ctx, store.Bot{ID: "acme", Name: "Acme"}))
	now := time.Now().UTC()
	_, _, err := st.CreateTrigger(ctx, store.Trigger{ID: "tr1", BotID: "acme", Source: "native", FlowID: "f",
		Spec: []byte(`{}`), Status: store.TriggerAccepted, CreatedAt: now, UpdatedAt: now})
	require.NoError(t, err)
	b := newCounterBatcher(st.IncrTriggerCounters)
	var wg sync.WaitGroup
	for i := range 500 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cctx, cancel := context.WithCancel(ctx)
			if i%7 == 0 {
				cancel()
			}
			defer cancel()
			require.NoError(t, b.add(cctx, "acme", "tr1", store.TriggerCounters{Sent: 1}))
		}()
	}
	wg.Wait()
	tr, err := st.GetTrigger(ctx, "acme", "tr1")
	require.NoError(t, err)
	require.EqualValues(t, 500, tr.Counters.Sent)
	require.ErrorIs(t, b.add(ctx, "acme", "nope", store.TriggerCounters{Sent: 1}), store.ErrNotFound)
}
