// Command ingress measures the durable accept rate and latency of the
// BuilderBot dispatch endpoint against two baselines in the same run, on
// loopback: a bare gin handler that answers 202, and a gin handler that
// does a raw JetStream publish (with a Nats-Msg-Id) before answering 202.
//
//	go -C bench run ./ingress -d 12s -rounds 6 [-c 64] [-only NAME] [-cpuprofile F] [-memprofile F]
//
// It prints requests/s, latency percentiles and the process's CPU time per
// request (load generator, handler and NATS) per variant, and the ratios
// the foundation issue sets as targets (dispatch ≥ 50% of the bare
// handler's rate, p99 under 20 ms). docs/performance.md has the figures.
package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/flowgate/flowgate/bench/internal/benchenv"
	"github.com/flowgate/flowgate/cmd/flowgate/app"
	"github.com/flowgate/flowgate/ingress"
	"github.com/flowgate/flowgate/shared/bus"
	"github.com/flowgate/flowgate/shared/events"
	"github.com/flowgate/flowgate/shared/store"
)

var (
	conc     = flag.Int("c", 64, "concurrent connections")
	duration = flag.Duration("d", 5*time.Second, "measured duration per variant")
	warmup   = flag.Duration("warmup", time.Second, "warm-up per variant and round")
	rounds   = flag.Int("rounds", 4, "the variants take turns this many times, so background load hits them alike")
	only     = flag.String("only", "", "measure only the variant whose name contains this")
	prof     = flag.String("cpuprofile", "", "write a CPU profile of the run")
	memprof  = flag.String("memprofile", "", "write an allocation profile of the run")
)

const body = `{"from":"1234567890","name":"John Doe","plan":"Premium","referralCode":"REF123"}`

type result struct {
	name          string
	rps           float64
	p50, p99, max time.Duration
	errors        int64
	cpuPerReq     time.Duration // the whole process's CPU time per request: load generator, server, NATS
}

func main() { benchenv.Main("bench", run) }

func run() error {
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "flowgate-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	env, err := benchenv.Open(ctx, dir, dir, bus.Config{Source: "/bench", Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		return err
	}
	defer env.Close()
	b, st := env.Bus, env.Store
	key, err := seed(ctx, st)
	if err != nil {
		return err
	}
	gin.SetMode(gin.ReleaseMode)

	bare := gin.New()
	bare.POST("/v1/bots/:bot/dispatch/:event", func(c *gin.Context) {
		_, _ = io.ReadAll(c.Request.Body)
		c.JSON(http.StatusAccepted, gin.H{"trigger_id": "x", "status": "accepted"})
	})

	js, err := jetstream.New(env.Conn)
	if err != nil {
		return err
	}
	raw := gin.New()
	raw.POST("/v1/bots/:bot/dispatch/:event", func(c *gin.Context) {
		data, _ := io.ReadAll(c.Request.Body)
		id := uuid.Must(uuid.NewV7()).String()
		if _, err := js.PublishMsg(c.Request.Context(), &nats.Msg{Subject: events.TriggerSubject("rawbench"), Data: data},
			jetstream.WithMsgID(id)); err != nil {
			c.JSON(http.StatusServiceUnavailable, gin.H{"error": err.Error()})
			return
		}
		c.JSON(http.StatusAccepted, gin.H{"trigger_id": id, "status": "accepted"})
	})

	full, err := ingress.NewHandler(ingress.Config{AdminKey: "bench-admin-key-0123456789"},
		ingress.Deps{Store: st, Bus: b, CompileFlow: app.CompileFlow, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		return err
	}

	fmt.Printf("Flowgate ingress benchmark: %d connections, %s per variant in %d interleaved rounds, GOMAXPROCS=%s, loopback\n\n",
		*conc, *duration, *rounds, strconv.Itoa(runtimeProcs()))
	stopProfile, err := benchenv.StartCPUProfile(*prof)
	if err != nil {
		return err
	}
	defer stopProfile()
	type variant struct {
		name string
		h    http.Handler
		key  string
		acc  sample
	}
	vs := []*variant{
		{name: "bare gin 202", h: bare},
		{name: "gin + raw JetStream publish", h: raw},
		{name: "flowgate dispatch (durable)", h: full, key: key},
	}
	for round := 0; round < *rounds; round++ {
		for _, v := range vs {
			if *only != "" && !strings.Contains(v.name, *only) {
				continue
			}
			sm, err := measure(v.name, v.h, v.key, *duration/time.Duration(*rounds))
			if err != nil {
				return err
			}
			v.acc.add(sm)
		}
	}
	if err := benchenv.WriteProfile("allocs", *memprof); err != nil {
		return err
	}
	var results []result
	for _, v := range vs {
		if len(v.acc.lats) > 0 {
			results = append(results, v.acc.result(v.name))
		}
	}
	fmt.Printf("| variant | requests/s | p50 | p99 | max | errors | CPU µs/request |\n|---|---:|---:|---:|---:|---:|---:|\n")
	for _, r := range results {
		fmt.Printf("| %s | %.0f | %s | %s | %s | %d | %.1f |\n", r.name, r.rps, ms(r.p50), ms(r.p99), ms(r.max), r.errors,
			float64(r.cpuPerReq.Nanoseconds())/1000)
	}
	if len(results) < 3 {
		return nil
	}
	bareR, rawR, disp := results[0], results[1], results[2]
	fmt.Printf("\ndispatch / bare handler: %.1f%% (target ≥ 50%%)\n", 100*disp.rps/bareR.rps)
	fmt.Printf("dispatch / raw JetStream publish: %.1f%%\n", 100*disp.rps/rawR.rps)
	fmt.Printf("dispatch p99: %s (target < 20 ms)\n", ms(disp.p99))
	ok := disp.rps >= 0.5*bareR.rps && disp.p99 < 20*time.Millisecond && disp.errors == 0
	fmt.Printf("targets met: %v\n", ok)
	return nil
}

func runtimeProcs() int {
	if v := os.Getenv("GOMAXPROCS"); v != "" {
		n, _ := strconv.Atoi(v)
		return n
	}
	return numCPU()
}

func seed(ctx context.Context, st store.Store) (string, error) {
	now := time.Now().UTC()
	if err := st.CreateBot(ctx, store.Bot{ID: "acme", Name: "Acme", CreatedAt: now, UpdatedAt: now}); err != nil {
		return "", err
	}
	def, err := app.CompileFlow([]byte(`{"steps":[{"id":"a","type":"send","text":"Welcome {{ name }}"}]}`))
	if err != nil {
		return "", err
	}
	if _, err := st.PutFlow(ctx, store.Flow{BotID: "acme", ID: "welcome", Definition: def, CreatedAt: now}); err != nil {
		return "", err
	}
	if err := st.PutEvent(ctx, store.Event{BotID: "acme", Name: "WELCOME_NEW_USER", FlowID: "welcome", CreatedAt: now, UpdatedAt: now}); err != nil {
		return "", err
	}
	key := ingress.NewAPIKey()
	return key, st.CreateAPIKey(ctx, store.APIKey{ID: "k", BotID: "acme", Hash: ingress.HashKey(key), Prefix: key[:7], CreatedAt: now})
}

// sample is what one or more measurement slices of a variant saw.
type sample struct {
	lats    []time.Duration
	elapsed time.Duration
	cpu     time.Duration // process CPU time (user+system) while measuring
	errors  int64
}

func (a *sample) add(b sample) {
	a.lats = append(a.lats, b.lats...)
	a.elapsed += b.elapsed
	a.cpu += b.cpu
	a.errors += b.errors
}

func (a *sample) result(name string) result {
	all := a.lats
	sort.Slice(all, func(x, y int) bool { return all[x] < all[y] })
	pct := func(p float64) time.Duration { return all[int(p*float64(len(all)-1))] }
	return result{name: name, rps: float64(len(all)) / a.elapsed.Seconds(), p50: pct(0.5), p99: pct(0.99), max: all[len(all)-1], errors: a.errors,
		cpuPerReq: a.cpu / time.Duration(len(all))}
}

// measure serves h on loopback and drives it with closed-loop clients for d.
func measure(name string, h http.Handler, key string, d time.Duration) (sample, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return sample{}, err
	}
	srv := &http.Server{Handler: h}
	go srv.Serve(ln)
	defer srv.Close()
	url := "http://" + ln.Addr().String() + "/v1/bots/acme/dispatch/WELCOME_NEW_USER"
	client := &http.Client{Transport: &http.Transport{MaxIdleConns: *conc, MaxIdleConnsPerHost: *conc}}

	var measuring atomic.Bool
	var stop atomic.Bool
	var errs atomic.Int64
	lats := make([][]time.Duration, *conc)
	var wg sync.WaitGroup
	payload := []byte(body)
	for i := 0; i < *conc; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			for !stop.Load() {
				req, _ := http.NewRequest("POST", url, bytes.NewReader(payload))
				req.Header.Set("Content-Type", "application/json")
				if key != "" {
					req.Header.Set("Authorization", "Bearer "+key)
				}
				t0 := time.Now()
				resp, err := client.Do(req)
				if err != nil {
					errs.Add(1)
					continue
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				d := time.Since(t0)
				if resp.StatusCode != http.StatusAccepted {
					errs.Add(1)
				}
				if measuring.Load() {
					lats[i] = append(lats[i], d)
				}
			}
		}(i)
	}
	time.Sleep(*warmup)
	errs.Store(0)
	measuring.Store(true)
	start, cpu0 := time.Now(), cpuTime()
	time.Sleep(d)
	measuring.Store(false)
	elapsed, cpu := time.Since(start), cpuTime()-cpu0
	stop.Store(true)
	wg.Wait()
	var all []time.Duration
	for _, l := range lats {
		all = append(all, l...)
	}
	if len(all) == 0 {
		return sample{}, fmt.Errorf("%s: no request completed", name)
	}
	fmt.Fprintf(os.Stderr, "%-30s %8.0f req/s\n", name, float64(len(all))/elapsed.Seconds())
	return sample{lats: all, elapsed: elapsed, cpu: cpu, errors: errs.Load()}, nil
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2f ms", float64(d.Microseconds())/1000) }

func numCPU() int { return runtime.GOMAXPROCS(0) }

// cpuTime is the process's user+system CPU time so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
