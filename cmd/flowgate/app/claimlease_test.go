package app_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/flowgate/flowgate/cmd/flowgate/app"
	"github.com/flowgate/flowgate/shared/store"
)

// leaseSpy records how long the orchestrator's claims last.
type leaseSpy struct {
	store.Store
	mu     sync.Mutex
	leases []time.Duration
}

func (s *leaseSpy) ClaimRuns(ctx context.Context, claims []store.RunClaim, by string, now, until time.Time) ([]store.ClaimRefusal, error) {
	s.mu.Lock()
	s.leases = append(s.leases, until.Sub(now))
	s.mu.Unlock()
	return s.Store.ClaimRuns(ctx, claims, by, now, until)
}

func (s *leaseSpy) seen() []time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]time.Duration(nil), s.leases...)
}

// TestClaimLeaseReachesTheOrchestrator: FLOWGATE_CLAIM_LEASE (Config.ClaimLease)
// is the lease of the claim a step takes on its run (here a cancel's).
func TestClaimLeaseReachesTheOrchestrator(t *testing.T) {
	spy := &leaseSpy{}
	d, c := startDevWith(t, app.Config{DataDir: t.TempDir(), ClaimLease: 45 * time.Second,
		WrapStore: func(st store.Store) store.Store { spy.Store = st; return spy }})
	defer func() { require.NoError(t, d.Stop()) }()
	key := createBot(c, "lease", nil)
	c.must("PUT", "/v1/bots/lease/flows/q", key, `{"steps":[{"id":"q","type":"ask","text":"Still there?","attribute":"a"}]}`, 200)
	trig := c.must("POST", "/v1/bots/lease/triggers", key, `{"flow":"q","audience":{"users":["u"]}}`, 202)["trigger_id"].(string)
	cancelWaitingRun(t, c, "lease", key, trig)
	leases := spy.seen()
	require.NotEmpty(t, leases, "the cancel took no claim")
	for _, l := range leases {
		require.Equal(t, 45*time.Second, l)
	}
}
