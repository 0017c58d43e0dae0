package instrumented

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/flowgate/flowgate/shared/store"
	"github.com/flowgate/flowgate/shared/store/sqlite/sqlitetest"
)

// fullDisk refuses bot writes while full; reads and the (small) write
// probe still work, as on a full disk whose WAL has room for one page.
type fullDisk struct {
	store.Store
	full atomic.Bool
}

func (f *fullDisk) CreateBot(ctx context.Context, b store.Bot) error {
	if f.full.Load() {
		return fmt.Errorf("%w: sqlite: commit: database or disk is full", store.ErrUnavailable)
	}
	return f.Store.CreateBot(ctx, b)
}

// A store whose real writes fail is not writable, even when its probe and
// reads succeed; a real write succeeding ends that.
func TestWritableSeesFailedWritesThroughTheProbe(t *testing.T) {
	ctx := context.Background()
	raw := sqlitetest.Open(t)
	fd := &fullDisk{Store: raw}
	st := New(fd, "sqlite-test")
	now := time.Now().UTC()
	require.NoError(t, store.Writable(ctx, st))

	fd.full.Store(true)
	require.ErrorIs(t, st.CreateBot(ctx, store.Bot{ID: "b1", Name: "B", CreatedAt: now, UpdatedAt: now}), store.ErrUnavailable)
	require.ErrorIs(t, store.Writable(ctx, st), store.ErrUnavailable, "a write failed just now")
	_, err := st.GetBot(ctx, "nobody")
	require.ErrorIs(t, err, store.ErrNotFound)
	require.NoError(t, st.PingWrite(ctx), "the probe slips through")
	require.ErrorIs(t, store.Writable(ctx, st), store.ErrUnavailable, "neither a read nor the probe ends the outage")

	fd.full.Store(false)
	require.NoError(t, st.CreateBot(ctx, store.Bot{ID: "b1", Name: "B", CreatedAt: now, UpdatedAt: now}))
	require.NoError(t, store.Writable(ctx, st), "a real write succeeded")
}
