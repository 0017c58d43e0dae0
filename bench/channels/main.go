// Command channels measures the channel worker: how many messages per
// second one WhatsApp worker (the production runner, pacer and sender, on
// embedded NATS and the SQLite store) pushes into an unlimited WhatsApp
// double, and how accurately the pacer holds a configured rate against a
// rate-limited double.
//
//	go -C bench run ./channels                 # throughput, then accuracy at 80/s and 1,000/s
//	go -C bench run ./channels -n 100000 -accuracy=false
//	go -C bench run ./channels -n 200 -accuracy=false -latency 100ms -inflight 1
//
// The double runs in the same process and takes part of the CPU. The
// throughput run is bracketed by a baseline taken in the same run: the
// same double, driven by a plain HTTP loop (as many concurrent clients as
// the runner has workers, the sender's payload and a pooled client),
// before and after the worker; the ratio worker / baseline is printed, so
// that figures from a loaded machine can be compared. BENCH_CPUPROFILE=file
// and BENCH_MEMPROFILE=file write profiles of the throughput run.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net/http"
	"os"
	"runtime"
	"runtime/pprof"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/flowgate/flowgate/bench/internal/benchenv"
	whatsapp "github.com/flowgate/flowgate/channel-whatsapp"
	"github.com/flowgate/flowgate/shared/bus"
	"github.com/flowgate/flowgate/shared/channel"
	"github.com/flowgate/flowgate/shared/channel/pacer"
	"github.com/flowgate/flowgate/shared/events"
	whatsappdouble "github.com/flowgate/flowgate/shared/providerdouble/whatsapp"
	"github.com/flowgate/flowgate/shared/store"
)

func main() {
	n := flag.Int("n", 50000, "messages for the throughput run")
	workers := flag.Int("workers", 0, "runner workers (0 = the runner's default)")
	prefetch := flag.Int("prefetch", 0, "bundles fetched ahead (0 = the runner's default)")
	accuracy := flag.Bool("accuracy", true, "also measure pacer accuracy at 80/s and 1,000/s")
	seconds := flag.Float64("seconds", 10, "length of each accuracy run")
	inflight := flag.Int("inflight", 0, "RunnerConfig.MaxInFlightPerAccount (0 = the runner's default, <0 = no limit)")
	latency := flag.Duration("latency", 0, "the double's answer latency (a provider round trip)")
	baseline := flag.Bool("baseline", true, "bracket the throughput run with the bare-double baseline")
	flag.Parse()
	ctx := context.Background()
	cfg := channel.RunnerConfig{Workers: *workers, Prefetch: *prefetch, MaxInFlightPerAccount: *inflight}
	if *workers == 0 {
		cfg.Workers = 64 // the runner's default, also the baseline's concurrency
	}
	fmt.Printf("load average at start: %s\n", loadAvg())

	var base []result
	if *baseline {
		b, err := runBaseline(*n, cfg.Workers, *latency)
		if err != nil {
			log.Fatal(err)
		}
		base = append(base, b)
		printBaseline("before", *n, cfg.Workers, b)
	}
	res, err := run(ctx, *n, 1e6, cfg, *latency, false)
	if err != nil {
		log.Fatal(err)
	}
	perMsg := res.cpu / time.Duration(*n)
	fmt.Printf("throughput: %d messages, 1 worker process (%d workers, max in flight per account %d), unlimited double: %.0f msg/s (%s); CPU %s = %s per message (worker, in-process NATS and double together: %.0f msg/s per fully available core)\n",
		*n, cfg.Workers, res.inflight, res.rate, res.took.Round(time.Millisecond), res.cpu.Round(time.Millisecond), perMsg.Round(time.Microsecond), float64(time.Second)/float64(perMsg))
	if *baseline {
		b, err := runBaseline(*n, cfg.Workers, *latency)
		if err != nil {
			log.Fatal(err)
		}
		base = append(base, b)
		printBaseline("after", *n, cfg.Workers, b)
		mean := (base[0].rate + base[1].rate) / 2
		bcpu := (base[0].cpu + base[1].cpu) / 2 / time.Duration(*n)
		fmt.Printf("ratio: worker / bare-double baseline = %.3f (%.0f / %.0f msg/s); worker's own CPU per message beyond the baseline's HTTP + double: %s\n",
			res.rate/mean, res.rate, mean, (perMsg - bcpu).Round(time.Microsecond))
	}
	fmt.Printf("load average at end: %s\n", loadAvg())
	if !*accuracy {
		return
	}
	for _, rate := range []float64{80, 1000} {
		m := int(rate * *seconds)
		res, err := run(ctx, m, rate, cfg, 0, true)
		if err != nil {
			log.Fatal(err)
		}
		fmt.Printf("accuracy at %v/s: %d messages, achieved %.1f/s (%.1f%%), max in any 1 s window %d, 130429 answers %d\n",
			rate, m, res.rate, 100*res.rate/rate, res.maxPerSecond, res.throttled)
	}
}

type result struct {
	inflight     int
	rate         float64
	took         time.Duration
	cpu          time.Duration // user + system CPU of the whole process
	maxPerSecond int
	throttled    int64
}

// run sends n single-message bundles through one WhatsApp worker paced at
// rate; limited makes the double enforce rate (burst: a quarter second).
func run(ctx context.Context, n int, rate float64, cfg channel.RunnerConfig, latency time.Duration, limited bool) (result, error) {
	dir, err := os.MkdirTemp("", "flowgate-bench-channels")
	if err != nil {
		return result{}, err
	}
	defer os.RemoveAll(dir)
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	env, err := benchenv.Open(ctx, dir, dir+"/store", bus.Config{Source: "/bench", Logger: quiet})
	if err != nil {
		return result{}, err
	}
	defer env.Close()
	b, st := env.Bus, env.Store
	opts := []whatsappdouble.Option{}
	if limited {
		opts = append(opts, whatsappdouble.WithRate(rate, max(8, int(rate/4))))
	} else {
		opts = append(opts, whatsappdouble.WithoutLog())
	}
	if latency > 0 {
		opts = append(opts, whatsappdouble.WithLatency(latency))
	}
	d := whatsappdouble.New(opts...)
	defer d.Close()
	now := time.Now().UTC()
	if err := st.CreateBot(ctx, store.Bot{ID: "bench", Name: "bench", CreatedAt: now, Channels: store.ChannelAccounts{
		WhatsApp: &store.WhatsAppAccount{PhoneNumberID: "106540352242922", AccessToken: whatsappdouble.DefaultToken,
			APIBase: d.APIBase(), RatePerSecond: rate}}}); err != nil {
		return result{}, err
	}
	if err := enqueue(ctx, b, st, n, now); err != nil {
		return result{}, err
	}
	pcfg := whatsapp.Provider.PacerConfig() // the bot's rate applies
	pcfg.Logger = quiet
	p, err := pacer.New(ctx, b.JetStream(), pcfg)
	if err != nil {
		return result{}, err
	}
	s, err := whatsapp.NewSender()
	if err != nil {
		return result{}, err
	}
	var cp channel.Pacer = p
	if os.Getenv("BENCH_NO_PACER") != "" {
		cp = nil
	}
	r, err := channel.NewRunner(cfg, channel.RunnerDeps{Sender: s, Bus: b, Store: st, Pacer: cp, Logger: quiet})
	if err != nil {
		return result{}, err
	}
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	if os.Getenv("BENCH_MEMPROFILE") != "" {
		runtime.MemProfileRate = 4096
	}
	cpu0 := cpuTime()
	start := time.Now()
	go func() { done <- r.Run(rctx) }()
	if f := os.Getenv("BENCH_CPUPROFILE"); f != "" && !limited {
		if out, err := os.Create(f); err == nil {
			_ = pprof.StartCPUProfile(out)
			defer pprof.StopCPUProfile()
		}
	}
	if os.Getenv("BENCH_STACKS") != "" {
		go func() {
			time.Sleep(4 * time.Second)
			_ = pprof.Lookup("goroutine").WriteTo(os.Stderr, 1)
		}()
	}
	for d.Stats().Accepted < int64(n) {
		select {
		case err := <-done:
			cancel()
			return result{}, fmt.Errorf("runner stopped: %v", err)
		case <-time.After(5 * time.Millisecond):
		}
	}
	took := time.Since(start)
	cpu := cpuTime() - cpu0
	if f := os.Getenv("BENCH_MEMPROFILE"); f != "" && !limited {
		if out, err := os.Create(f); err == nil {
			_ = pprof.Lookup("allocs").WriteTo(out, 0)
			out.Close()
		}
	}
	cancel()
	<-done
	res := result{inflight: r.Config().MaxInFlightPerAccount, rate: float64(n) / took.Seconds(), took: took, cpu: cpu, throttled: d.Stats().Rejected[130429]}
	if limited {
		acc := d.Accepted()
		ts := make([]time.Time, len(acc))
		for i, a := range acc {
			ts[i] = a.At
		}
		sort.Slice(ts, func(i, j int) bool { return ts[i].Before(ts[j]) })
		res.rate = float64(len(ts)-1) / ts[len(ts)-1].Sub(ts[0]).Seconds()
		lo := 0
		for hi := range ts {
			for ts[hi].Sub(ts[lo]) >= time.Second {
				lo++
			}
			res.maxPerSecond = max(res.maxPerSecond, hi-lo+1)
		}
	}
	return res, nil
}

// enqueue records n messages and publishes one bundle for each, as the
// orchestrator would, before the worker starts.
func enqueue(ctx context.Context, b *bus.Bus, st store.Store, n int, now time.Time) error {
	recs := make([]store.Message, 0, 500)
	for i := 0; i < n; i++ {
		c := events.Content{Type: events.ContentText, Text: fmt.Sprintf("message %d", i)}
		raw, _ := json.Marshal(c)
		recs = append(recs, store.Message{ID: fmt.Sprintf("run-%07d:1", i), BotID: "bench", RunID: fmt.Sprintf("run-%07d", i),
			ContactID: fmt.Sprintf("c%07d", i), Channel: events.ChannelWhatsApp, To: fmt.Sprintf("+3460%07d", i), Seq: 1,
			Content: raw, Status: events.StatusQueued, CreatedAt: now})
		if len(recs) == cap(recs) || i == n-1 {
			if err := st.InsertMessages(ctx, recs); err != nil {
				return err
			}
			recs = recs[:0]
		}
	}
	var wg sync.WaitGroup
	errc := make(chan error, 16)
	for w := 0; w < 16; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < n; i += 16 {
				last := now
				c := events.Content{Type: events.ContentText, Text: fmt.Sprintf("message %d", i)}
				out := events.Outbound{BotID: "bench", RunID: fmt.Sprintf("run-%07d", i), ContactID: fmt.Sprintf("c%07d", i),
					Channel: events.ChannelWhatsApp, To: fmt.Sprintf("+3460%07d", i), LastInboundAt: &last,
					Messages: []events.OutboundMessage{{ID: fmt.Sprintf("run-%07d:1", i), Seq: 1, Content: c}}}
				ev, err := bus.OutboundEvent(out)
				if err == nil {
					_, err = b.Publish(ctx, events.OutboundSubject(events.ChannelWhatsApp, "bench", events.LaneBulk), ev)
				}
				if err != nil {
					errc <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	select {
	case err := <-errc:
		return err
	default:
		return nil
	}
}

// runBaseline sends n valid text messages (the sender's payload, built
// once per message as the sender does) to a fresh unlimited double from
// `clients` goroutines over one pooled HTTP client: what the double and
// HTTP cost without the worker.
func runBaseline(n, clients int, latency time.Duration) (result, error) {
	opts := []whatsappdouble.Option{whatsappdouble.WithoutLog()}
	if latency > 0 {
		opts = append(opts, whatsappdouble.WithLatency(latency))
	}
	d := whatsappdouble.New(opts...)
	defer d.Close()
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConns, t.MaxIdleConnsPerHost = 512, 256
	client := &http.Client{Transport: t, Timeout: 30 * time.Second}
	defer t.CloseIdleConnections()
	endpoint := d.APIBase() + "/106540352242922/messages"
	var next atomic.Int64
	var failed atomic.Int64
	var wg sync.WaitGroup
	cpu0 := cpuTime()
	start := time.Now()
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1) - 1
				if i >= int64(n) {
					return
				}
				body, err := whatsapp.BuildPayload(fmt.Sprintf("+3460%07d", i), events.Content{Type: events.ContentText, Text: fmt.Sprintf("message %d", i)})
				if err != nil {
					failed.Add(1)
					continue
				}
				req, _ := http.NewRequest(http.MethodPost, endpoint, bytes.NewReader(body))
				req.Header.Set("Authorization", "Bearer "+whatsappdouble.DefaultToken)
				req.Header.Set("Content-Type", "application/json")
				resp, err := client.Do(req)
				if err != nil {
					failed.Add(1)
					continue
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					failed.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	took := time.Since(start)
	cpu := cpuTime() - cpu0
	if f := failed.Load(); f > 0 || d.Stats().Accepted != int64(n) {
		return result{}, fmt.Errorf("baseline: %d failed, %d of %d accepted", f, d.Stats().Accepted, n)
	}
	return result{rate: float64(n) / took.Seconds(), took: took, cpu: cpu}, nil
}

func printBaseline(when string, n, clients int, b result) {
	perMsg := b.cpu / time.Duration(n)
	fmt.Printf("baseline (%s): bare double, plain HTTP loop, %d clients: %.0f msg/s (%s); CPU %s per message\n",
		when, clients, b.rate, b.took.Round(time.Millisecond), perMsg.Round(time.Microsecond))
}

// loadAvg is /proc/loadavg's first three fields.
func loadAvg() string {
	raw, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(raw))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}

// cpuTime is the process's user + system CPU time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
