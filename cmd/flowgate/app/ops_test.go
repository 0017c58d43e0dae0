package app

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/flowgate/flowgate/shared/bus"
	"github.com/flowgate/flowgate/shared/bus/bustest"
	"github.com/flowgate/flowgate/shared/store"
	"github.com/flowgate/flowgate/shared/store/sqlite/sqlitetest"
)

// unwritable refuses writes while broken (PingWrite stands for them all).
type unwritable struct {
	store.Store
	broken atomic.Bool
}

func (u *unwritable) PingWrite(ctx context.Context) error {
	if u.broken.Load() {
		return fmt.Errorf("%w: injected: read-only file system", store.ErrUnavailable)
	}
	return u.Store.(store.WriteProber).PingWrite(ctx)
}

// The orchestrator's and channel workers' /readyz answers 503 while the
// store refuses writes, though it still answers reads and pings.
func TestOpsReadyzFollowsStoreWrites(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	_, b := bustest.Bus(t, bus.Config{Source: "/test"})
	sq := sqlitetest.Open(t)
	st := &unwritable{Store: sq}
	addr := bustest.FreeAddr(t)
	done := make(chan error, 1)
	go func() {
		done <- serveOps(ctx, addr, b, instrumentStore(Config{}, st), slog.New(slog.NewTextHandler(io.Discard, nil)))
	}()
	ready := func() (int, string) {
		resp, err := http.Get("http://" + addr + "/readyz")
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	require.Eventually(t, func() bool { code, _ := ready(); return code == 200 }, 10*time.Second, 10*time.Millisecond)
	st.broken.Store(true)
	code, body := ready()
	require.Equal(t, 503, code)
	require.JSONEq(t, `{"checks":{"nats":"ok","store":"unavailable"}}`, body)
	require.NoError(t, st.Ping(ctx), "the store still answers pings: only the write probe sees it")
	st.broken.Store(false)
	code, _ = ready()
	require.Equal(t, 200, code)
	cancel()
	require.NoError(t, <-done)
}

// The bus's retry wait per service: 2 s where a client waits for the
// answer (the ingress, dev), BackgroundRetryWait for the orchestrator and
// the channel workers, FLOWGATE_NATS_RETRY_WAIT for all when set.
func TestRetryWaitPerService(t *testing.T) {
	for cmd, want := range map[string]time.Duration{"dev": 2 * time.Second, "ingress": 2 * time.Second,
		"orchestrator": BackgroundRetryWait, "channel": BackgroundRetryWait} {
		require.Equal(t, want, retryWaitFor(Config{}, cmd), cmd)
		require.Equal(t, 40*time.Second, retryWaitFor(Config{NATSRetryWait: 40 * time.Second}, cmd), cmd)
	}
	require.Zero(t, busConfig(Config{}, "/x").RetryWait, "the bus's default")
	require.Equal(t, 3*time.Second, busConfig(Config{NATSRetryWait: 3 * time.Second}, "/x").RetryWait, "the embedded bus of dev")
}
