package deploytest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/flowgate/flowgate/shared/bus"
)

// TestTwoOrchestratorsStepARunOnce: two `flowgate orchestrator` processes
// share the consumers, so a user's reply and a cancel of the same run,
// sent at the same moment, are often taken by different processes. Of the
// two steps exactly one goes out: a run that ends cancelled never sent its
// "thanks", a run that completed sent it once. (Before the runs' claims,
// the loser of the store's version check had already published its step.)
func TestTwoOrchestratorsStepARunOnce(t *testing.T) {
	c := startDeployedWith(t, 1, 2)
	const n = 80
	completed, cancelled := replyAndCancelRace(t, c, n, 2*time.Minute, nil)
	busy := 0.0
	for _, p := range c.services {
		if !strings.HasPrefix(p.name, "orchestrator") {
			continue
		}
		s, b := counter(t, p.metrics, "flowgate_run_transitions_total"), counter(t, p.metrics, "flowgate_run_claims_busy_total")
		t.Logf("%s: %v run transitions, %v steps retried for a claim", p.name, s, b)
		if s == 0 {
			t.Errorf("%s stepped no run: the test did not exercise two processes", p.name)
		}
		busy += b
	}
	t.Logf("%d runs: %d completed (then the cancel found them final), %d cancelled (then the reply found no waiting run); %v steps waited for another's claim",
		n, completed, cancelled, busy)
}

// TestAnOrchestratorKilledDuringTheRace: the same race, and one of the two
// orchestrators is SIGKILLed while it handles it — some of its steps die
// between their claim and their write, their effects out. The survivor
// takes the dead one's messages once their ack wait ends (bus.StepAckWait,
// 5 s); each such event takes its run back under the same claim and
// replays its step, while the run's other step waits for the claim. Every
// run ends, and the same holds: a cancelled run sent no "thanks", a
// completed one sent it once. And every run ends within seconds of the
// kill, not after the 30 s ack wait the step consumers had before.
func TestAnOrchestratorKilledDuringTheRace(t *testing.T) {
	c := startDeployedWith(t, 1, 2)
	var victim, survivor *proc
	for _, p := range c.services {
		switch p.name {
		case "orchestrator":
			victim = p
		case "orchestrator-2":
			survivor = p
		}
	}
	// Enough runs that the race takes a while to handle: the kill lands
	// while steps are under way.
	const n = 400
	var start, killed time.Time
	delivered := func() uint64 { // replies and cancels handed to the orchestrators so far
		var sum uint64
		for _, ci := range orchestratorIntake(t, c) {
			sum += ci.Delivered.Consumer
		}
		return sum
	}
	base := delivered()
	completed, cancelled := replyAndCancelRace(t, c, n, 3*time.Minute, func() {
		// Killed once a quarter of the race is handed out: steps are under
		// way in both processes.
		start = time.Now()
		for delivered() < base+n/2 && time.Since(start) < 30*time.Second {
			time.Sleep(time.Millisecond)
		}
		_ = victim.cmd.Process.Kill() // SIGKILL: no drain, no ack
		killed = time.Now()
	})
	// Whether the kill caught steps under way shows in the time: a dead
	// process's messages come back after their ack wait (5 s).
	handled := time.Since(killed)
	t.Logf("killed %s into the race; all handled %s after the kill (held steps redelivered: %v): %d completed, %d cancelled; the survivor retried %v steps for a claim",
		killed.Sub(start).Round(time.Millisecond), handled.Round(time.Second), handled >= bus.StepAckWait, completed, cancelled,
		counter(t, survivor.metrics, "flowgate_run_claims_busy_total"))
	// The ack wait, the heartbeat's quarter of it, the claim retries' 2 s
	// cap and a loaded machine's slack. With the 30 s ack wait of before,
	// a kill that caught steps took 33–50 s.
	if handled > 25*time.Second {
		t.Errorf("the race ended %s after the kill: the dead orchestrator's steps came back late", handled.Round(time.Second))
	}
	if exited, _ := victim.exited(); !exited {
		t.Fatal("the killed orchestrator is still running")
	}
}

// replyAndCancelRace dispatches the ask flow to n new users, waits for
// their runs to wait for the reply, then sends each run's reply and its
// cancel through the API at the same moment (during runs meanwhile), and
// checks what every run sent once all ended (within finishWithin): a
// cancelled run no "Thanks", a completed one exactly one.
func replyAndCancelRace(t *testing.T, c *deployedCluster, n int, finishWithin time.Duration, during func()) (completed, cancelled int) {
	t.Helper()
	for _, put := range []struct {
		path string
		body any
	}{
		{"/v1/bots/ops/flows/ask", map[string]any{"steps": []any{
			map[string]any{"id": "ask_name", "type": "ask", "text": "What is your name?", "attribute": "name"},
			map[string]any{"id": "thanks", "type": "send", "text": "Thanks {{ name }}"},
		}}},
		{"/v1/bots/ops/events/ASK", map[string]any{"flow": "ask"}},
	} {
		if code, out := c.api.do(http.MethodPut, put.path, c.key, put.body); code != http.StatusOK && code != http.StatusCreated {
			t.Fatalf("PUT %s: %d %s", put.path, code, out)
		}
	}

	users := make([]string, n)
	triggers := make([]string, n)
	for i := range users {
		users[i] = fmt.Sprintf("+1557%07d", i)
		var out struct {
			TriggerID string `json:"trigger_id"`
		}
		body := c.api.must(http.StatusAccepted, http.MethodPost, "/v1/bots/ops/dispatch/ASK", c.key, map[string]any{"from": users[i]})
		if err := json.Unmarshal(body, &out); err != nil || out.TriggerID == "" {
			t.Fatalf("dispatch: %s (%v)", body, err)
		}
		triggers[i] = out.TriggerID
	}
	runs := make([]string, n)
	deadline := time.Now().Add(2 * time.Minute)
	for i, trig := range triggers {
		for {
			var page struct {
				Runs []struct {
					ID     string `json:"id"`
					Status string `json:"status"`
				} `json:"runs"`
			}
			body := c.api.must(http.StatusOK, http.MethodGet, "/v1/bots/ops/runs?trigger="+url.QueryEscape(trig), c.key, nil)
			if err := json.Unmarshal(body, &page); err != nil {
				t.Fatal(err)
			}
			if len(page.Runs) == 1 && page.Runs[0].Status == "waiting" {
				runs[i] = page.Runs[0].ID
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("trigger %s: no waiting run after 2 minutes: %s", trig, body)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}

	// Each run's reply and cancel leave at the same moment.
	// A cancel that finds the run completed already is a 409.
	start := make(chan struct{})
	var wg sync.WaitGroup
	errs := make(chan error, 2*n)
	for i := range users {
		wg.Add(2)
		go func() {
			defer wg.Done()
			<-start
			if code, out := c.api.do(http.MethodPost, "/v1/bots/ops/sandbox/messages", c.key, map[string]any{"from": users[i], "text": "Ann"}); code != http.StatusAccepted {
				errs <- fmt.Errorf("reply of %s: %d %s", users[i], code, out)
			}
		}()
		go func() {
			defer wg.Done()
			<-start
			code, out := c.api.do(http.MethodPost, "/v1/bots/ops/runs/"+runs[i]+"/cancel", c.key, nil)
			if code != http.StatusAccepted && !(code == http.StatusConflict && bytes.Contains(out, []byte("run_ended"))) {
				errs <- fmt.Errorf("cancel of %s: %d %s", runs[i], code, out)
			}
		}()
	}
	close(start)
	if during != nil {
		during()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}

	status := map[string]string{}
	deadline = time.Now().Add(finishWithin)
	for i, id := range runs {
		for {
			var got struct {
				Run struct {
					Status string `json:"status"`
				} `json:"run"`
			}
			if err := json.Unmarshal(c.api.must(http.StatusOK, http.MethodGet, "/v1/bots/ops/runs/"+id, c.key, nil), &got); err != nil {
				t.Fatal(err)
			}
			if st := got.Run.Status; st == "completed" || st == "cancelled" {
				status[users[i]] = st
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("run %s still %s after %s", id, got.Run.Status, finishWithin)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	// Every reply and cancel handled (a killed process's are redelivered
	// after their ack wait, and may find their run ended), and what went out
	// delivered by the sandbox worker, before counting.
	for {
		pending := uint64(0)
		for _, ci := range orchestratorIntake(t, c) {
			pending += ci.NumPending + uint64(ci.NumAckPending)
		}
		if pending == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d replies and cancels still not handled after %s", pending, finishWithin)
		}
		time.Sleep(200 * time.Millisecond)
	}
	time.Sleep(3 * time.Second)
	thanks := map[string]int{}
	if err := eachSandboxMessage(c, func(to, text string) {
		if strings.HasPrefix(text, "Thanks") {
			thanks[to]++
		}
	}); err != nil {
		t.Fatal(err)
	}
	for _, u := range users {
		switch status[u] {
		case "completed":
			completed++
			if thanks[u] != 1 {
				t.Errorf("%s: completed with %d thanks messages", u, thanks[u])
			}
		case "cancelled":
			cancelled++
			if thanks[u] != 0 {
				t.Errorf("%s: cancelled, yet sent %d thanks messages", u, thanks[u])
			}
		}
	}
	return completed, cancelled
}

// orchestratorIntake is the state of the orchestrators' consumers of
// replies and of run commands.
func orchestratorIntake(t *testing.T, c *deployedCluster) []*jetstream.ConsumerInfo {
	t.Helper()
	var out []*jetstream.ConsumerInfo
	for _, spec := range []bus.ConsumerSpec{bus.InboundConsumer, bus.ControlConsumer} {
		cons, err := c.js.Consumer(context.Background(), spec.Stream, spec.Durable)
		if err != nil {
			t.Fatal(err)
		}
		ci, err := cons.Info(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, ci)
	}
	return out
}

// counter is the sum of a counter family's series at a /metrics URL.
func counter(t *testing.T, metricsURL, name string) float64 {
	t.Helper()
	sum := 0.0
	for _, v := range countersBy(t, get(t, metricsURL), name, "") {
		sum += v
	}
	return sum
}

// countersBy is a counter family's values in a /metrics page, by the value
// of label (series without it, or all of them when label is "", add up
// under "").
func countersBy(t *testing.T, page []byte, name, label string) map[string]float64 {
	t.Helper()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(bytes.NewReader(page))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	if f, ok := fams[name]; ok {
		for _, m := range f.GetMetric() {
			key := ""
			for _, l := range m.GetLabel() {
				if l.GetName() == label {
					key = l.GetValue()
				}
			}
			out[key] += m.GetCounter().GetValue()
		}
	}
	return out
}
