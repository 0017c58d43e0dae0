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
// (runs/s with no I/O), so the cost of durability is visible. In dispatch
// mode it then sends the same requests to the floor (bench/internal/floor): the
// cheapest pipeline we know with the same components and guarantees and
// no Flowgate code, and prints Flowgate's rate and CPU against it
// (-floor=false skips it); then the multi-row floor (floor/multi.go: the
// same work with one statement per table and batch; -floor-multi=false
// skips it).
//
// CPU per run: the process's CPU time (getrusage) over the measured part,
// minus what the load generator alone costs per request, measured in the
// same run by sending the same requests to a bare HTTP server answering 202
// in a child process (so only the generator's CPU is in this process).
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/flowgate/flowgate/bench/internal/benchenv"
	"github.com/flowgate/flowgate/bench/internal/floor"
	"github.com/flowgate/flowgate/cmd/flowgate/app"
	"github.com/flowgate/flowgate/orchestrator/flow"
	"github.com/flowgate/flowgate/shared/apitest"
)

var (
	n         = flag.Int("n", 20000, "runs")
	conc      = flag.Int("c", 64, "concurrent requests")
	mode      = flag.String("mode", "dispatch", "dispatch or list")
	prof      = flag.String("cpuprofile", "", "write a CPU profile of the measured part")
	memProf   = flag.String("memprofile", "", "write an allocation profile (allocs, since the process started) after Flowgate's part")
	floorProf = flag.String("floor-cpuprofile", "", "write a CPU profile of the floor's measured part")
	withFloor = flag.Bool("floor", true, "also measure the floor (bench/internal/floor) in the same run, after Flowgate (dispatch mode)")
	withMulti = flag.Bool("floor-multi", true, "with -floor, also measure the multi-row floor (floor/multi.go) after it")
	multiProf = flag.String("floor-multi-cpuprofile", "", "write a CPU profile of the multi-row floor's measured part")
)

const welcome = `{"steps":[
 {"id":"welcome","type":"send","text":"Welcome {{ name }}! 🎉"},
 {"id":"plan","type":"send","text":"You've signed up for the {{ plan }} plan."},
 {"id":"referral","type":"send","text":"Referral code: {{ referralCode }}","skip_if_empty":true}]}`

func main() {
	if len(os.Args) == 3 && os.Args[1] == "bare-202" {
		bare202(os.Args[2])
		return
	}
	benchenv.Main("bench", run)
}

// bare202 serves 202 to every request after reading its body (the load
// generator's baseline, in a process of its own) until stdin closes.
func bare202(addr string) {
	srv := &http.Server{Addr: addr, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.WriteHeader(http.StatusAccepted)
	})}
	go func() { _, _ = io.Copy(io.Discard, os.Stdin); _ = srv.Close() }()
	_ = srv.ListenAndServe()
}

// processCPU is this process's user + system CPU time so far.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// generate sends the mode's n requests, conc at a time, and returns how
// many failed.
func generate(client *http.Client, url, key string) int64 {
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
				if err := benchenv.Post(client, url+path, key, body); err != nil {
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
	return reqErr.Load()
}

// generatorCPU measures the CPU this process spends generating the same
// requests against a bare 202 server in a child process.
func generatorCPU() (time.Duration, error) {
	exe, err := os.Executable()
	if err != nil {
		return 0, err
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	addr := l.Addr().String()
	l.Close()
	cmd := exec.Command(exe, "bare-202", addr)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return 0, err
	}
	if err := cmd.Start(); err != nil {
		return 0, err
	}
	defer func() { stdin.Close(); _ = cmd.Wait() }()
	for i := 0; ; i++ {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
			break
		}
		if i > 100 {
			return 0, fmt.Errorf("bare server: %w", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: *conc}}
	cpu0 := processCPU()
	if failed := generate(client, "http://"+addr, "k"); failed > 0 {
		return 0, fmt.Errorf("bare server: %d requests failed", failed)
	}
	return processCPU() - cpu0, nil
}

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
	stopDev := sync.OnceFunc(func() { _ = d.Stop() })
	defer stopDev()
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
	stopProfile = sync.OnceFunc(stopProfile)
	defer stopProfile()
	cpu0 := processCPU()
	start := time.Now()
	reqErr := generate(client, url, key)
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
	cpu := processCPU() - cpu0
	stopProfile()
	if err := benchenv.WriteProfile("allocs", *memProf); err != nil {
		return err
	}
	stopDev()
	gen, err := generatorCPU()
	if err != nil {
		return err
	}
	var fl, flm floorResult
	if *withFloor && *mode == "dispatch" {
		if fl, err = measureFloor(client, dir, false, *floorProf); err != nil {
			return fmt.Errorf("floor: %w", err)
		}
		if *withMulti {
			if flm, err = measureFloor(client, dir, true, *multiProf); err != nil {
				return fmt.Errorf("multi-row floor: %w", err)
			}
		}
	}
	rate := float64(*n) / total.Seconds()
	perRun := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) / float64(*n) }
	fmt.Printf("| measure | value |\n|---|---:|\n")
	fmt.Printf("| pure interpreter, same flow (baseline, no I/O) | %.0f runs/s |\n", base)
	fmt.Printf("| mode | %s, %d runs, %d concurrent requests |\n", *mode, *n, *conc)
	fmt.Printf("| all requests accepted (durable) after | %.2f s |\n", accepted.Seconds())
	fmt.Printf("| all runs completed and %d messages stored after | %.2f s |\n", 3**n, total.Seconds())
	fmt.Printf("| end-to-end rate | **%.0f runs/s** (%.0f messages/s) |\n", rate, 3*rate)
	fmt.Printf("| request errors | %d |\n", reqErr)
	fmt.Printf("| CPU of this process (Flowgate + load generator) | %.3f ms per run (%.1f s in all) |\n", perRun(cpu), cpu.Seconds())
	fmt.Printf("| CPU of the load generator alone (same requests, bare 202 server in a child process) | %.3f ms per run |\n", perRun(gen))
	fmt.Printf("| **CPU of Flowgate per run** (the difference) | **%.3f ms** |\n", perRun(cpu-gen))
	if fl.total > 0 {
		floorRate := float64(*n) / fl.total.Seconds()
		fmt.Printf("| floor (bench/internal/floor: same components, no Flowgate code), same requests | %.0f runs/s, %.3f ms CPU per run (load generator excluded) |\n", floorRate, perRun(fl.cpu-gen))
		fmt.Printf("| pure interpreter CPU per run (from the baseline above) | %.3f ms |\n", 1000/base)
		fmt.Printf("| **Flowgate / floor** | rate %.2f, CPU per run %.2f |\n", rate/floorRate, float64(cpu-gen)/float64(fl.cpu-gen))
	}
	if flm.total > 0 {
		multiRate := float64(*n) / flm.total.Seconds()
		fmt.Printf("| multi-row floor (floor/multi.go: the floor with one statement per table and batch), same requests | %.0f runs/s, %.3f ms CPU per run (load generator excluded) |\n", multiRate, perRun(flm.cpu-gen))
		fmt.Printf("| **Flowgate / multi-row floor** | rate %.2f, CPU per run %.2f |\n", rate/multiRate, float64(cpu-gen)/float64(flm.cpu-gen))
	}
	handlerStats()
	fmt.Printf("\ntarget ≥ 5000 runs/s: %v; target ≤ 0.3 ms CPU per run: %v\n", rate >= 5000, perRun(cpu-gen) <= 0.3)
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

// handlerStats prints, per consumer, messages handled and mean handler time,
// and the trigger messages the ingress published (single or batch).
func handlerStats() {
	mfs, _ := prometheus.DefaultGatherer.Gather()
	for _, mf := range mfs {
		switch mf.GetName() {
		case "flowgate_bus_published_total", "flowgate_bus_consumed_total",
			"flowgate_ingress_trigger_messages_total", "flowgate_ingress_batched_triggers_total",
			"flowgate_sqlite_write_transactions_total", "flowgate_sqlite_write_lock_held_seconds_total",
			"flowgate_sqlite_write_lock_idle_seconds_total":
			for _, m := range mf.GetMetric() {
				var labels []string
				for _, l := range m.GetLabel() {
					labels = append(labels, l.GetValue())
				}
				fmt.Fprintf(os.Stderr, "%s %v: %s\n", mf.GetName(), labels, strconv.FormatFloat(m.GetCounter().GetValue(), 'f', 3, 64))
			}
		}
	}
	for _, l := range benchenv.HistogramMeans(mfs, "flowgate_bus_handle_duration_seconds", "flowgate_store_operation_duration_seconds") {
		fmt.Fprintln(os.Stderr, l)
	}
	var launches, launched float64
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			switch mf.GetName() {
			case "flowgate_orchestrator_launches_total":
				launches += m.GetCounter().GetValue()
			case "flowgate_orchestrator_launched_triggers_total":
				launched += m.GetCounter().GetValue()
			}
		}
	}
	if launches > 0 {
		fmt.Fprintf(os.Stderr, "launches of one-user triggers: %.0f, %.1f triggers each\n", launches, launched/launches)
	}
}

type floorResult struct {
	total, cpu time.Duration
}

// measureFloor sends the run's requests to the floor, all its parts in this
// process on an embedded NATS server, and returns the time until every
// message was stored as sent, and this process's CPU meanwhile.
func measureFloor(client *http.Client, dir string, multi bool, profile string) (floorResult, error) {
	const key = "floor-key"
	name := "floor"
	if multi {
		name = "floor-multi"
	}
	f, err := floor.Start(floor.Config{Dir: filepath.Join(dir, name), Key: key, Multi: multi})
	if err != nil {
		return floorResult{}, err
	}
	defer f.Stop()
	stopProfile, err := benchenv.StartCPUProfile(profile)
	if err != nil {
		return floorResult{}, err
	}
	defer stopProfile()
	cpu0, start := processCPU(), time.Now()
	if failed := generate(client, "http://"+f.Addr(), key); failed > 0 {
		return floorResult{}, fmt.Errorf("%d requests failed", failed)
	}
	deadline := time.Now().Add(5 * time.Minute)
	for f.Stats().Sent < int64(3**n) {
		if time.Now().After(deadline) {
			return floorResult{}, fmt.Errorf("timed out: %d of %d messages sent", f.Stats().Sent, 3**n)
		}
		time.Sleep(5 * time.Millisecond)
	}
	return floorResult{total: time.Since(start), cpu: processCPU() - cpu0}, nil
}
