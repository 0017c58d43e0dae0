// Command e2e measures runs per second end to end in `flowgate dev` (one
// process: embedded NATS JetStream, embedded SQLite store, sandbox
// channel) for the BuilderBot seed's three-message flow: from the first
// request until the last run completed and every message was stored by the
// sandbox channel.
//
//	go -C bench run ./e2e [-n 20000] [-c 64] [-mode dispatch|list]
//
// mode dispatch: one BuilderBot dispatch request per run (n requests, c at a time).
// mode list: native triggers of 1,000 users each (the fan-out path).
// As a baseline it first measures the pure interpreter on the same flow
// (runs/s with no I/O), so the cost of durability is visible.
package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/flowgate/flowgate/bench/internal/benchenv"
	"github.com/flowgate/flowgate/cmd/flowgate/app"
	"github.com/flowgate/flowgate/orchestrator/flow"
	"github.com/flowgate/flowgate/shared/apitest"
)

var (
	n    = flag.Int("n", 20000, "runs")
	conc = flag.Int("c", 64, "concurrent requests")
	mode = flag.String("mode", "dispatch", "dispatch or list")
	prof = flag.String("cpuprofile", "", "write a CPU profile of the measured part")
)

const welcome = `{"steps":[
 {"id":"welcome","type":"send","text":"Welcome {{ name }}! 🎉"},
 {"id":"plan","type":"send","text":"You've signed up for the {{ plan }} plan."},
 {"id":"referral","type":"send","text":"Referral code: {{ referralCode }}","skip_if_empty":true}]}`

func main() { benchenv.Main("bench", run) }

func run() error {
	base, err := interpreterBaseline()
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "flowgate-e2e-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	d, err := app.StartDev(context.Background(), app.Config{
		HTTPAddr: "127.0.0.1:0", DataDir: dir, AdminKey: "bench-admin-key-0123456789", NoDemo: true,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		return err
	}
	defer d.Stop()
	url := "http://" + d.Addr
	key, err := setup(url)
	if err != nil {
		return err
	}
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: *conc}}
	startCompleted := counter("flowgate_run_transitions_total", "completed")
	startSent := counter("flowgate_channel_messages_sent_total", "sandbox")

	stopProfile, err := benchenv.StartCPUProfile(*prof)
	if err != nil {
		return err
	}
	defer stopProfile()
	start := time.Now()
	var reqErr atomic.Int64
	var wg sync.WaitGroup
	jobs := make(chan int)
	for w := 0; w < *conc; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range jobs {
				var path, body string
				if *mode == "list" {
					users := make([]string, 0, 1000)
					for j := i; j < i+1000 && j < *n; j++ {
						users = append(users, fmt.Sprintf(`"u%d"`, j))
					}
					path = "/v1/bots/bench/triggers"
					body = `{"event":"WELCOME_NEW_USER","audience":{"users":[` + strings.Join(users, ",") + `]},"data":{"name":"John","plan":"Premium","referralCode":"REF123"}}`
				} else {
					path = "/v1/bots/bench/dispatch/WELCOME_NEW_USER"
					body = fmt.Sprintf(`{"from":"u%d","name":"John","plan":"Premium","referralCode":"REF123"}`, i)
				}
				if err := post(client, url+path, key, body); err != nil {
					reqErr.Add(1)
				}
			}
		}()
	}
	step := 1
	if *mode == "list" {
		step = 1000
	}
	for i := 0; i < *n; i += step {
		jobs <- i
	}
	close(jobs)
	wg.Wait()
	accepted := time.Since(start)
	deadline := time.Now().Add(10 * time.Minute)
	for {
		done := counter("flowgate_run_transitions_total", "completed") - startCompleted
		sent := counter("flowgate_channel_messages_sent_total", "sandbox") - startSent
		if int(done) >= *n && int(sent) >= 3**n {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("timed out: %v runs completed, %v messages sent", done, sent)
		}
		time.Sleep(50 * time.Millisecond)
	}
	total := time.Since(start)
	rate := float64(*n) / total.Seconds()
	fmt.Printf("| measure | value |\n|---|---:|\n")
	fmt.Printf("| pure interpreter, same flow (baseline, no I/O) | %.0f runs/s |\n", base)
	fmt.Printf("| mode | %s, %d runs, %d concurrent requests |\n", *mode, *n, *conc)
	fmt.Printf("| all requests accepted (durable) after | %.2f s |\n", accepted.Seconds())
	fmt.Printf("| all runs completed and %d messages stored after | %.2f s |\n", 3**n, total.Seconds())
	fmt.Printf("| end-to-end rate | **%.0f runs/s** (%.0f messages/s) |\n", rate, 3*rate)
	fmt.Printf("| request errors | %d |\n", reqErr.Load())
	handlerStats()
	fmt.Printf("\ntarget ≥ 5000 runs/s: %v\n", rate >= 5000)
	return nil
}

func interpreterBaseline() (float64, error) {
	def, err := flow.Parse([]byte(welcome))
	if err != nil {
		return 0, err
	}
	const runs = 50000
	start := time.Now()
	for i := 0; i < runs; i++ {
		_, _, err := flow.Apply(def, flow.State{}, flow.Start{Now: time.Now(), RunID: "r",
			Data: map[string]any{"name": "John", "plan": "Premium", "referralCode": "REF123"}})
		if err != nil {
			return 0, err
		}
	}
	return runs / time.Since(start).Seconds(), nil
}

func setup(url string) (string, error) {
	api := apitest.Client{Base: url}
	key, err := api.CreateBot("bench-admin-key-0123456789", `{"id":"bench"}`)
	if err != nil {
		return "", err
	}
	if _, err := api.Expect("PUT", "/v1/bots/bench/flows/welcome", key, welcome, nil); err != nil {
		return "", err
	}
	if _, err := api.Expect("PUT", "/v1/bots/bench/events/WELCOME_NEW_USER", key, `{"flow":"welcome"}`, nil); err != nil {
		return "", err
	}
	return key, nil
}

func post(c *http.Client, url, key, body string) error {
	req, _ := http.NewRequest("POST", url, bytes.NewReader([]byte(body)))
	req.Header.Set("Authorization", "Bearer "+key)
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		return fmt.Errorf("status %d", resp.StatusCode)
	}
	return nil
}

// counter reads a counter of this process's registry, summed over series
// whose label values include want.
func counter(name, want string) float64 {
	mfs, err := prometheus.DefaultGatherer.Gather()
	if err != nil {
		return 0
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetValue() == want {
					sum += m.GetCounter().GetValue()
				}
			}
		}
	}
	return sum
}

// handlerStats prints, per consumer, messages handled and mean handler time.
func handlerStats() {
	mfs, _ := prometheus.DefaultGatherer.Gather()
	for _, mf := range mfs {
		if mf.GetName() != "flowgate_bus_handle_duration_seconds" && mf.GetName() != "flowgate_store_operation_duration_seconds" {
			continue
		}
		for _, m := range mf.GetMetric() {
			h := m.GetHistogram()
			if h.GetSampleCount() == 0 {
				continue
			}
			var labels []string
			for _, l := range m.GetLabel() {
				labels = append(labels, l.GetValue())
			}
			fmt.Fprintf(os.Stderr, "%s %v: n=%d mean=%.2fms\n", mf.GetName(), labels, h.GetSampleCount(), 1000*h.GetSampleSum()/float64(h.GetSampleCount()))
		}
	}
}
