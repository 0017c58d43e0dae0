package app_test

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/flowgate/flowgate/shared/bus"
	"github.com/flowgate/flowgate/shared/store"
	"github.com/flowgate/flowgate/shared/store/instrumented"
)

// Durable writes of one dispatched run, as docs/architecture.md states
// them: a one-message flow dispatched to one user on the sandbox, from the
// ingress's accept to the run completed and its message sent.
// JetStream publishes are counted from the streams' sequence numbers (every
// message on a work-queue stream is also acked once); store writes from the
// instrumented store's operation counts. The test fails when a change adds
// writes, and shows the breakdown to whoever cuts them.
const (
	// trigger, outbound bundle; no run status: the bot has no webhook
	// subscription (a subscribed bot's runs add one per status change)
	documentedPublishesPerRun   = 2
	documentedStoreWritesPerRun = 6
)

func TestDurableWritesPerDispatchedRun(t *testing.T) {
	d, c := startDev(t, t.TempDir())
	defer func() { require.NoError(t, d.Stop()) }()
	resp := c.must("POST", "/v1/bots", admin, `{"id":"cost","name":"Cost"}`, 201)
	key := resp["api_key"].(string)
	c.must("PUT", "/v1/bots/cost/flows/one", key, `{"steps":[{"id":"hi","type":"send","text":"Hi {{ name }}"}]}`, 200)
	c.must("PUT", "/v1/bots/cost/events/ONE", key, `{"flow":"one"}`, 201)
	ctx := context.Background()

	dispatch := func(from string) string {
		out := c.must("POST", "/v1/bots/cost/dispatch/ONE", key, fmt.Sprintf(`{"from":%q,"name":"N"}`, from), 202)
		return out["trigger_id"].(string)
	}
	settled := func(ids []string) {
		require.Eventually(t, func() bool {
			for _, id := range ids {
				runs, _, err := d.Store.ListRuns(ctx, store.RunFilter{BotID: "cost", TriggerID: id, Limit: 2})
				if err != nil || len(runs) != 1 || runs[0].Status != store.RunCompleted {
					return false
				}
				ms, err := d.Store.ListRunMessages(ctx, "cost", runs[0].ID)
				if err != nil || len(ms) != 1 || ms[0].Status == store.MessageQueued {
					return false
				}
			}
			return true
		}, 60*time.Second, 20*time.Millisecond)
		time.Sleep(time.Second) // status events and counter flushes after the last change
	}
	// Warm up (the bot's first contact, caches), then measure n runs, one
	// request after the other: no trigger shares a message.
	settled([]string{dispatch("+15550000000")})
	seq0, ops0 := streamSeqs(t, d.Bus), storeWrites(t)
	const n = 40
	ids := make([]string, n)
	for i := range ids {
		ids[i] = dispatch(fmt.Sprintf("+1555%07d", i+1))
	}
	settled(ids)
	seq1, ops1 := streamSeqs(t, d.Bus), storeWrites(t)
	defer func() {
		// The same, n requests at once: triggers that queue behind a
		// publish share a message (the ingress's group commit). How many do
		// depends on timing: shown, and bounded by the sequential figure.
		var wg sync.WaitGroup
		for i := range ids {
			wg.Add(1)
			go func() { defer wg.Done(); ids[i] = dispatch(fmt.Sprintf("+1556%07d", i+1)) }()
		}
		wg.Wait()
		settled(ids)
		seq2, ops2 := streamSeqs(t, d.Bus), storeWrites(t)
		trig := float64(seq2[bus.StreamTriggers]-seq1[bus.StreamTriggers]) / n
		out := float64(seq2[bus.StreamOutbound]-seq1[bus.StreamOutbound]) / n
		var writes float64
		for op, v := range ops2 {
			writes += (v - ops1[op]) / n
		}
		// Triggers that share a message also share their store writes
		// (orchestrator/together.go) and, on the sandbox, their bundles'
		// outbound messages (orchestrator/outbatch.go).
		t.Logf("%d concurrent dispatches: %.2f trigger messages, %.2f outbound messages and %.2f store writes per run", n, trig, out, writes)
		require.LessOrEqual(t, trig, 1.0)
		require.LessOrEqual(t, out, 1.0)
		require.LessOrEqual(t, writes, float64(documentedStoreWritesPerRun)+0.05)
	}()

	var pubs, writes float64
	var lines []string
	for s, v := range seq1 {
		if dv := float64(v-seq0[s]) / n; dv > 0 {
			pubs += dv
			lines = append(lines, fmt.Sprintf("publish %s %.2f", s, dv))
		}
	}
	for op, v := range ops1 {
		if dv := (v - ops0[op]) / n; dv > 0 {
			writes += dv
			lines = append(lines, fmt.Sprintf("store %s %.2f", op, dv))
		}
	}
	sort.Strings(lines)
	t.Logf("per dispatched run: %.2f JetStream publishes, %.2f store writes:\n  %s", pubs, writes, strings.Join(lines, "\n  "))
	require.LessOrEqual(t, pubs, float64(documentedPublishesPerRun)+0.05, "more JetStream publishes per run than docs/architecture.md says")
	require.LessOrEqual(t, writes, float64(documentedStoreWritesPerRun)+0.05, "more store writes per run than docs/architecture.md says")
}

// streamSeqs is every stream's last sequence number.
func streamSeqs(t *testing.T, b *bus.Bus) map[string]uint64 {
	t.Helper()
	out := map[string]uint64{}
	names := b.JetStream().StreamNames(context.Background())
	for name := range names.Name() {
		s, err := b.JetStream().Stream(context.Background(), name)
		require.NoError(t, err)
		out[name] = s.CachedInfo().State.LastSeq
	}
	return out
}

// storeWrites is how many times each writing store operation ran.
func storeWrites(t *testing.T) map[string]float64 {
	t.Helper()
	mfs, err := prometheus.DefaultGatherer.Gather()
	require.NoError(t, err)
	out := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() != "flowgate_store_operation_duration_seconds" {
			continue
		}
		for _, m := range mf.GetMetric() {
			op := ""
			for _, l := range m.GetLabel() {
				if l.GetName() == "operation" {
					op = l.GetValue()
				}
			}
			if instrumented.IsWrite(op) && op != "PingWrite" {
				out[op] += float64(m.GetHistogram().GetSampleCount())
			}
		}
	}
	return out
}
