package orchestrator

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/flowgate/flowgate/orchestrator/flow"
	"github.com/flowgate/flowgate/shared/egress/egresstest"
)

// httpStepOrchestrator is an orchestrator (not running) on a rig's store
// and bus whose flow `http` steps resolve every name to 127.0.0.1.
func httpStepOrchestrator(t *testing.T, allowPrivate bool) *Orchestrator {
	t.Helper()
	r := newRig(t, Config{}, nil)
	o, err := New(Config{HTTPAllowPrivate: allowPrivate}, Deps{Store: r.store, Bus: r.bus,
		Logger:   slog.New(slog.NewTextHandler(io.Discard, nil)),
		Resolver: egresstest.Resolver(t, netip.MustParseAddr("127.0.0.1"))})
	require.NoError(t, err)
	return o
}

// TestHTTPStepRefusesPrivateTargets: a flow `http` step reaches none of
// the non-public targets, including a name that resolves to loopback at
// dial time (redirects are re-checked by the same policy: see
// shared/egress TestRedirectsAreRechecked). The
// targets that are not loopback are never dialed by any test (no traffic
// leaves the machine).
func TestHTTPStepRefusesPrivateTargets(t *testing.T) {
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		hits.Add(1)
		_, _ = io.WriteString(w, `{"ok":true}`)
	}))
	defer srv.Close()
	_, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
	targets := egresstest.RefusedTargets(port)
	o := httpStepOrchestrator(t, false)
	for _, u := range targets {
		res := o.callHTTP(context.Background(), flow.CallHTTP{URL: u})
		require.Contains(t, res.Err, "not public", u)
		require.Zero(t, res.StatusCode, u)
	}
	// The dial-time check alone, with the URL check out of the way: the
	// name passes CheckURL and is refused once resolved.
	_, err := o.http.Get("http://" + egresstest.InternalName + ":" + port + "/")
	require.ErrorContains(t, err, "is not public")
	require.Zero(t, hits.Load(), "the loopback server was never contacted")

	allowed := httpStepOrchestrator(t, true)
	for _, u := range egresstest.LoopbackTargets(port) {
		res := allowed.callHTTP(context.Background(), flow.CallHTTP{URL: u})
		require.Empty(t, res.Err, u)
		require.Equal(t, 200, res.StatusCode, u)
	}
	require.EqualValues(t, 2, hits.Load())
}
