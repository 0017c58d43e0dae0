package app_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/flowgate/flowgate/cmd/flowgate/app"
	"github.com/flowgate/flowgate/shared/bus"
	"github.com/flowgate/flowgate/shared/store"
)

// TestStoreUnwritableForThreeMinutes: the outage at its real length
// and with the production retry settings (backoff capped at 1 min, the
// trigger consumer's MaxDeliver 10, which used to dead-letter accepted
// triggers after about two minutes): every store write fails for three
// minutes while a 3,000-contact broadcast fans out and dispatches keep
// arriving. /readyz answers 503 throughout; every dispatch is answered 202
// (JetStream holds it); nothing is dead-lettered; once the store is back
// every accepted trigger runs exactly once and the broadcast finishes with
// one run per contact.
//
// It takes about four and a half minutes: the outage is the point.
func TestStoreUnwritableForThreeMinutes(t *testing.T) {
	const outage = 3 * time.Minute
	faulty := newFaultyStore()
	d, c := startDevWith(t, app.Config{DataDir: t.TempDir(), NoDemo: true,
		WrapStore: func(st store.Store) store.Store { faulty.Store = st; return faulty }})
	defer func() { require.NoError(t, d.Stop()) }()
	key := setupAcme(c)
	ready := func() int { code, _ := c.call("GET", "/readyz", "", ""); return code }

	const contacts = 3000
	var csv strings.Builder
	csv.WriteString("channel,external_id,name,plan\n")
	for i := range contacts {
		fmt.Fprintf(&csv, "sandbox,long%05d,L %d,Basic\n", i, i)
	}
	importCSV(c, "acme", key, csv.String())

	ctx := context.Background()
	acc := c.must("POST", "/v1/bots/acme/triggers", key, `{"flow":"welcome","channel":"sandbox","audience":{"everyone":true}}`, 202)
	broadcast := acc["trigger_id"].(string)
	require.Eventually(t, func() bool {
		tr, err := d.Store.GetTrigger(ctx, "acme", broadcast)
		return err == nil && tr.Counters.RunsCreated >= 500
	}, 60*time.Second, 5*time.Millisecond, "the fan-out started")

	faulty.broken.Store(true)
	broke := time.Now()
	tr, err := d.Store.GetTrigger(ctx, "acme", broadcast)
	require.NoError(t, err)
	require.NotEqual(t, store.TriggerDone, tr.Status, "the fan-out finished before the outage: nothing was tested")

	// Dispatches keep coming through the outage, a few every 10 s.
	var dispatched []string
	notReady := 0
	for i := 0; time.Since(broke) < outage; i++ {
		for j := range 3 {
			out := c.must("POST", "/v1/bots/acme/dispatch/WELCOME_NEW_USER", key,
				fmt.Sprintf(`{"from":"+1666%04d%03d","name":"U","plan":"Basic"}`, i, j), 202)
			dispatched = append(dispatched, out["trigger_id"].(string))
		}
		if i > 0 && ready() == 503 { // the first probe may still be in flight
			notReady++
		}
		time.Sleep(min(10*time.Second, outage-time.Since(broke)))
	}
	require.GreaterOrEqual(t, notReady, len(dispatched)/3-2, "/readyz answered 503 during the outage")
	faulty.broken.Store(false)
	t.Logf("store unwritable for %s: %d writes refused, %d dispatches accepted meanwhile",
		time.Since(broke).Round(time.Second), faulty.refused.Load(), len(dispatched))

	// Back: within the backoff cap (1 min) and a re-publication, all runs.
	fixed := time.Now()
	require.Eventually(t, func() bool { return ready() == 200 }, 30*time.Second, 100*time.Millisecond, "ready again")
	require.Eventually(t, func() bool {
		for _, id := range append([]string{broadcast}, dispatched...) {
			tr, err := d.Store.GetTrigger(ctx, "acme", id)
			if err != nil || tr.Status != store.TriggerDone {
				return false
			}
		}
		return true
	}, 4*time.Minute, 200*time.Millisecond, "every accepted trigger ran after the outage")
	t.Logf("everything done %s after the store came back", time.Since(fixed).Round(time.Second))

	tr, err = d.Store.GetTrigger(ctx, "acme", broadcast)
	require.NoError(t, err)
	// `everyone` also reaches the contacts the dispatches created once the
	// store was back, if the fan-out had not passed them yet.
	require.GreaterOrEqual(t, tr.Counters.RunsCreated, int64(contacts), "a run per contact")
	require.LessOrEqual(t, tr.Counters.RunsCreated, int64(contacts+len(dispatched)), "no contact twice")
	require.Equal(t, tr.Counters.Targeted, tr.Counters.RunsCreated+tr.Counters.Skipped)
	for _, id := range dispatched {
		runs, _, err := d.Store.ListRuns(ctx, store.RunFilter{BotID: "acme", TriggerID: id, Limit: 10})
		require.NoError(t, err)
		require.Len(t, runs, 1, "trigger %s: exactly one run", id)
	}
	dlq, err := d.Bus.JetStream().Stream(ctx, bus.StreamDLQ)
	require.NoError(t, err)
	require.Zero(t, dlq.CachedInfo().State.Msgs, "nothing was dead-lettered")
}
