package deploytest

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/flowgate/flowgate/shared/bus"
)

// TestStorageFillsUp: what an operator meets when JetStream runs out of
// room, on the single-node deployment (nats.conf with max_file_store
// lowered to 64 MB, FLOWGATE_STREAM_MAX_BYTES=1 MiB, the exporter with
// docker-compose.single.yml's arguments, Prometheus with both rule files).
//
//   - With the ingress alone (nobody consuming), dispatches fill
//     FLOWGATE_TRIGGERS. The stream refuses the next one (discard new) and
//     the ingress answers it 503 "unavailable" with Retry-After: nothing
//     dropped, nothing half stored. FlowgateStreamNearlyFull goes pending.
//   - A stream of the test's own filling the server's storage past 80 % of
//     max_file_store puts NATSJetStreamStorageHigh in motion.
//   - Once the orchestrator and the workers start, the stream drains, the
//     refused dispatches retried with their Idempotency-Key are accepted,
//     and every accepted dispatch, first try or retry, got exactly one
//     message.
func TestStorageFillsUp(t *testing.T) {
	requireTools(t, "prometheus", "promtool")
	root := repoRoot(t)
	const streamMax = 1 << 20
	c := startDeployedOpts(t, deployOpts{nodes: 1, orchestrators: 1, ingressOnly: true,
		conf: replaceAll(t, [2]string{"max_file_store: 20GB", "max_file_store: 64MB"}),
		env:  []string{fmt.Sprintf("FLOWGATE_STREAM_MAX_BYTES=%d", streamMax)}})
	ingressAddr := strings.TrimPrefix(c.api.base, "http://")

	exporterAddr, promAddr := freePort(t), freePort(t)
	exporter := startNATSExporter(t, root, c.tmp, exporterAddr, "http://"+c.monitors[0])
	prom := startPrometheus(t, root, c.tmp, promAddr, map[string][]string{"nats": {exporterAddr}, "flowgate": {ingressAddr}})
	procs := []*proc{exporter, prom, c.services[0]}
	waitHTTP(t, "http://"+promAddr+"/-/ready", 30*time.Second, procs...)
	p := promClient{base: "http://" + promAddr}

	// Fill FLOWGATE_TRIGGERS: one dispatch at a time (each its own
	// JetStream message), each with its own Idempotency-Key, until three
	// were refused.
	client := &http.Client{Timeout: 30 * time.Second}
	dispatch := func(i int) (int, string, string) {
		a, err := c.postDispatch(client, fmt.Sprintf("+1556%07d", i), "Full", fmt.Sprintf("fill-%d", i))
		if err != nil {
			t.Fatalf("dispatch %d: %v", i, err)
		}
		return a.code, a.errCode, a.retryAfter
	}
	accepted := map[string]bool{}
	var refused []int
	for i := 0; len(refused) < 3; i++ {
		if i == 20_000 {
			t.Fatalf("%d dispatches accepted into a stream of %d bytes: it never filled", len(accepted), streamMax)
		}
		code, errCode, retryAfter := dispatch(i)
		switch {
		case code == http.StatusAccepted:
			// Also after a refusal: a trigger a few bytes shorter (its
			// acceptance time has fewer digits) may still fit.
			accepted[fmt.Sprintf("+1556%07d", i)] = true
		case code == http.StatusServiceUnavailable && errCode == "unavailable" && retryAfter != "":
			refused = append(refused, i)
		default:
			t.Fatalf("dispatch %d (%d accepted, %d refused before): %d %q Retry-After %q", i, len(accepted), len(refused), code, errCode, retryAfter)
		}
	}
	t.Logf("FLOWGATE_TRIGGERS (max_bytes %d) took %d dispatches and refused %v with 503", streamMax, len(accepted), refused)
	ctx := context.Background()
	if got := c.streamMessages(bus.StreamTriggers); got != uint64(len(accepted)) {
		t.Errorf("FLOWGATE_TRIGGERS holds %d messages for %d accepted dispatches", got, len(accepted))
	}
	if n := c.streamMessages(bus.StreamTriggersStandby); n != 0 {
		t.Errorf("a full stream's refusals went to %s: %d messages", bus.StreamTriggersStandby, n)
	}
	p.waitFor(t, fmt.Sprintf(`flowgate:stream_fill_ratio{stream=%q} > 0.8`, bus.StreamTriggers), 30*time.Second, procs...)
	waitAlert(t, p, "FlowgateStreamNearlyFull", 20*time.Second)

	// The server's storage past 80 %: a stream of the test's own, with no
	// limit of its own (nothing reserved), takes 1 MiB messages.
	if _, err := c.js.CreateStream(ctx, jetstream.StreamConfig{Name: "FILL_PROBE", Subjects: []string{"fillprobe.>"}, Storage: jetstream.FileStorage}); err != nil {
		t.Fatal(err)
	}
	chunk := bytes.Repeat([]byte("x"), 1<<20)
	for i := range 54 {
		if _, err := c.js.Publish(ctx, "fillprobe.x", chunk); err != nil {
			t.Fatalf("fill probe message %d: %v", i, err)
		}
	}
	p.waitFor(t, `nats:jetstream_storage_ratio > 0.8`, 30*time.Second, procs...)
	waitAlert(t, p, "NATSJetStreamStorageHigh", 20*time.Second)
	if err := c.js.DeleteStream(ctx, "FILL_PROBE"); err != nil {
		t.Fatal(err)
	}

	// Consumers start: the stream drains, and the refused dispatches go
	// through when tried again with their keys.
	c.startConsumers()
	deadline := time.Now().Add(2 * time.Minute)
	for _, i := range refused {
		for {
			code, errCode, _ := dispatch(i)
			if code == http.StatusAccepted {
				accepted[fmt.Sprintf("+1556%07d", i)] = true
				break
			}
			if code != http.StatusServiceUnavailable || errCode != "unavailable" || time.Now().After(deadline) {
				t.Fatalf("refused dispatch %d tried again: %d %q", i, code, errCode)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	counts := waitForMessages(t, c, accepted)
	for u, n := range counts {
		if n != 1 || !accepted[u] {
			t.Errorf("%s got %d messages (accepted: %v)", u, n, accepted[u])
		}
	}
	p.waitFor(t, fmt.Sprintf(`flowgate:stream_fill_ratio{stream=%q} < 0.1`, bus.StreamTriggers), 60*time.Second, procs...)
	c.checkServices()
}

// streamMessages is how many messages stream holds.
func (c *deployedCluster) streamMessages(stream string) uint64 {
	c.t.Helper()
	s, err := c.js.Stream(context.Background(), stream)
	if err != nil {
		c.t.Fatal(err)
	}
	return s.CachedInfo().State.Msgs
}
