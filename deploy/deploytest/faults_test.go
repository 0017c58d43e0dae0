package deploytest

import (
	"net/http"
	"sort"
	"testing"
	"time"
)

// TestSingleNodeNATSKilledUnderKeylessLoad: the small install's shape — one
// nats-server from deploy/nats/nats.conf (fsync on every write) and the
// ingress, orchestrator and sandbox worker as processes — under steady
// dispatch load from clients that send no Idempotency-Key. The server is
// SIGKILLed twice, for 5 s and for 20 s, and restarted on its own store.
// What a client is told must be true: every 202 runs exactly once; a 503
// "unavailable" (nothing was queued) never runs, so a client that retries
// it does not get the flow twice; a 503 "outcome_unknown" runs at most
// once (the client checks the trigger or retries with the key it was
// given), and is counted.
func TestSingleNodeNATSKilledUnderKeylessLoad(t *testing.T) {
	c := startDeployedSingle(t)
	stop := make(chan struct{})
	results := dispatchLoad(c, 8, stop)
	time.Sleep(4 * time.Second)
	for _, down := range []time.Duration{5 * time.Second, 20 * time.Second} {
		c.nats[0].kill() // SIGKILL: no shutdown, no flush
		time.Sleep(down)
		c.startNATS(0)
		waitHTTP(t, "http://"+c.monitors[0]+"/healthz", 60*time.Second, c.nats[0])
		t.Logf("NATS was down %s", down)
		time.Sleep(6 * time.Second)
	}
	close(stop)
	all := <-results
	sort.Slice(all, func(i, j int) bool { return all[i].at.Before(all[j].at) })

	byCode := map[string]int{}
	accepted := map[string]bool{}
	nothingQueued := map[string]bool{}
	unknown := map[string]bool{}
	for _, r := range all {
		switch {
		case r.code == http.StatusAccepted:
			accepted[r.user] = true
			byCode["202"]++
		case r.code == http.StatusServiceUnavailable && r.errCode == "unavailable":
			nothingQueued[r.user] = true
			byCode["503 unavailable"]++
		case r.code == http.StatusServiceUnavailable && r.errCode == "outcome_unknown":
			unknown[r.user] = true
			byCode["503 outcome_unknown"]++
		default:
			byCode[http.StatusText(r.code)+" "+r.errCode]++
			t.Errorf("dispatch %s answered %d %q; want 202 or 503", r.user, r.code, r.errCode)
		}
	}
	t.Logf("answers: %v", byCode)
	if len(accepted) == 0 || len(nothingQueued) == 0 {
		t.Fatalf("the load saw no 202 or no refusal: %v", byCode)
	}

	// Wait until every accepted dispatch has its message, then a little
	// longer for anything that should not come.
	counts := waitForMessages(t, c, accepted)
	time.Sleep(5 * time.Second)
	if counts, _ = sandboxCounts(c); counts == nil {
		t.Fatal("no sandbox transcript")
	}
	ranUnknown := 0
	for u, n := range counts {
		switch {
		case n > 1:
			t.Errorf("%s received %d messages, want at most 1", u, n)
		case nothingQueued[u]:
			t.Errorf("%s was answered 503 \"nothing was queued\", and its flow ran", u)
		case unknown[u]:
			ranUnknown++
		}
	}
	t.Logf("%d accepted, each once; %d answered \"nothing queued\", none ran; %d answered outcome_unknown, %d of them ran",
		len(accepted), len(nothingQueued), len(unknown), ranUnknown)
	c.checkServices()
}
