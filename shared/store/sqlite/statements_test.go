package sqlite

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/flowgate/flowgate/shared/events"
	"github.com/flowgate/flowgate/shared/store"
	"github.com/flowgate/flowgate/shared/testclock"
)

// Multi-row inserts of every batch size from 1 to 100 keep one compiled
// statement per power of two (inPieces): seven per kind, where one per
// size seen were 100. Every row is stored, once.
func TestMultiRowInsertsKeepFewStatements(t *testing.T) {
	ctx := context.Background()
	s, err := Open(ctx, t.TempDir())
	require.NoError(t, err)
	defer s.Close()
	now := testclock.Date(2026, 3, 1, 12, 0, 0)
	require.NoError(t, s.CreateBot(ctx, store.Bot{ID: "b", Name: "b", CreatedAt: now, UpdatedAt: now}))
	const sizes = 100
	total := 0
	for n := 1; n <= sizes; n++ {
		var ts []store.Trigger
		var rs []store.Run
		var ms []store.Message
		var sb []store.SandboxMessage
		for i := range n {
			id := fmt.Sprintf("%03d-%03d", n, i)
			ts = append(ts, store.Trigger{ID: "t" + id, BotID: "b", Source: "native", Event: "e", FlowID: "f",
				Channel: events.ChannelSandbox, Spec: []byte(`{}`), Status: store.TriggerAccepted, CreatedAt: now})
			rs = append(rs, store.Run{ID: "r" + id, BotID: "b", TriggerID: "t" + id, FlowID: "f", ContactID: "c" + id,
				Channel: events.ChannelSandbox, Status: store.RunCompleted, CreatedAt: now, UpdatedAt: now})
			ms = append(ms, store.Message{ID: "m" + id, BotID: "b", RunID: "r" + id, TriggerID: "t" + id, ContactID: "c" + id,
				Channel: events.ChannelSandbox, To: "+1555" + id[:3] + id[4:], Seq: 1, Content: []byte(`{"type":"text","text":"hi"}`),
				Status: events.StatusQueued, CreatedAt: now})
			sb = append(sb, store.SandboxMessage{MessageID: "m" + id, BotID: "b", RunID: "r" + id, To: "+1555" + id[:3] + id[4:],
				Content: []byte(`{"type":"text","text":"hi"}`), CreatedAt: now})
		}
		created, err := s.CreateTriggers(ctx, ts)
		require.NoError(t, err)
		for _, c := range created {
			require.NoError(t, c.Err)
			require.True(t, c.Created, c.Trigger.ID)
		}
		_, fresh, err := s.CreateRuns(ctx, rs)
		require.NoError(t, err)
		for i, f := range fresh {
			require.True(t, f, "run %d of %d", i, n)
		}
		require.NoError(t, s.InsertMessages(ctx, ms))
		require.NoError(t, s.AppendSandbox(ctx, sb...))
		total += n
	}
	for table, want := range map[string]int{"triggers": total, "runs": total, "messages": total, "sandbox": total} {
		var got int
		require.NoError(t, s.rdb.QueryRowContext(ctx, "SELECT count(*) FROM "+table).Scan(&got))
		require.Equal(t, want, got, table)
	}
	// The sandbox's seqs follow the order given, across pieces.
	got, err := s.ListSandbox(ctx, "b", "", 0, 1000)
	require.NoError(t, err)
	for i := 1; i < len(got); i++ {
		require.Less(t, got[i-1].MessageID, got[i].MessageID, "seq %d", got[i].Seq)
	}

	kinds := map[string]int{}
	for q := range s.w.stmts {
		for _, table := range []string{"triggers", "runs", "messages", "sandbox"} {
			if strings.HasPrefix(q, "INSERT INTO "+table+" ") {
				kinds[table]++
			}
		}
	}
	t.Logf("compiled multi-row inserts after batches of 1 to %d rows: %v", sizes, kinds)
	for _, table := range []string{"triggers", "runs", "messages", "sandbox"} {
		require.Equal(t, 7, kinds[table], "%s: one statement per power of two up to 64", table)
	}
}
