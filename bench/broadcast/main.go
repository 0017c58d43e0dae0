// Command broadcast measures the two bulk paths of Flowgate on the embedded
// store and an embedded NATS server, in one process:
//
//   - import: N contacts (WhatsApp numbers) from a CSV file through the
//     real HTTP endpoint POST /v1/bots/{bot}/contacts/import, against the
//     baseline of raw store.ImportContacts batches (no HTTP, no parsing,
//     no phone-number validation);
//
//   - fan-out: a trigger with "everyone" over those N contacts, until every
//     run is created and its first message is queued on the outbound
//     stream (no channel worker consumes it).
//
//     go -C bench run ./broadcast [-n 1000000] [-batch 1000] [-parallel 64]
//
// It prints durations, rates and the peak resident memory of each phase
// (VmHWM, reset between phases through /proc/self/clear_refs).
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/flowgate/flowgate/bench/internal/benchenv"
	"github.com/flowgate/flowgate/cmd/flowgate/app"
	"github.com/flowgate/flowgate/ingress"
	"github.com/flowgate/flowgate/orchestrator"
	"github.com/flowgate/flowgate/shared/apitest"
	"github.com/flowgate/flowgate/shared/bus"
	"github.com/flowgate/flowgate/shared/events"
	"github.com/flowgate/flowgate/shared/store"
)

var (
	n        = flag.Int("n", 1_000_000, "contacts")
	batch    = flag.Int("batch", 1000, "fan-out batch size")
	parallel = flag.Int("parallel", 256, "runs of a batch started at once")
	keep     = flag.String("dir", "", "data directory (default: a temporary one, removed at the end)")
	prof     = flag.String("cpuprofile", "", "write a CPU profile of the fan-out phase")
	memProf  = flag.String("memprofile", "", "write a heap profile at the end of the fan-out")
	phase    = flag.String("only", "", "run only this phase's measurement: import or fanout (fanout still imports, unmeasured)")
)

const adminKey = "bench-admin-key-0123456789"

func main() { benchenv.Main("broadcast", run) }

func run() error {
	ctx := context.Background()
	dir := *keep
	if dir == "" {
		d, err := os.MkdirTemp("", "flowgate-bench-broadcast-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(d)
		dir = d
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	// A 1M broadcast puts 1M bundles on the outbound stream and 2M status
	// changes on the runs stream: give them room.
	env, err := benchenv.Open(ctx, dir, filepath.Join(dir, "store"),
		bus.Config{Source: "/bench", Logger: log, Limits: bus.Limits{MaxBytes: 4 << 30}})
	if err != nil {
		return err
	}
	defer env.Close()
	b, st := env.Bus, env.Store

	fmt.Printf("broadcast benchmark: %d contacts, GOMAXPROCS=%d, %s/%s\n\n", *n, runtime.GOMAXPROCS(0), runtime.GOOS, runtime.GOARCH)

	// Baseline: raw bulk upserts into another bot, with ascending ids (the
	// store's best case; the import's ids ascend with time too).
	if *phase == "" || *phase == "import" {
		if err := st.CreateBot(ctx, store.Bot{ID: "baseline", Name: "Baseline"}); err != nil {
			return err
		}
		resetPeak()
		start := time.Now()
		ups := make([]store.ContactUpsert, 0, ingress.ImportBatch)
		for i := range *n {
			ups = append(ups, store.ContactUpsert{BotID: "baseline", Channel: events.ChannelWhatsApp,
				ExternalID: phoneOf(i), Name: fmt.Sprintf("User %d", i),
				Attributes: map[string]any{"plan": plans[i%2], "city": "Lima"}, NewID: fmt.Sprintf("b%023x", i)})
			if len(ups) == cap(ups) || i == *n-1 {
				if _, _, err := st.ImportContacts(ctx, ups); err != nil {
					return err
				}
				ups = ups[:0]
			}
		}
		report("baseline: store.ImportContacts, batches of 1000", *n, time.Since(start))
	}

	// Import through HTTP from a CSV file.
	h, err := ingress.NewHandler(ingress.Config{AdminKey: adminKey}, ingress.Deps{Store: st, Bus: b, CompileFlow: app.CompileFlow, Logger: log})
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: h}
	go func() { _ = srv.Serve(ln) }()
	defer srv.Close()
	base := "http://" + ln.Addr().String()
	key, err := setupBot(base)
	if err != nil {
		return err
	}
	csvPath := filepath.Join(dir, "contacts.csv")
	size, err := writeCSV(csvPath, *n)
	if err != nil {
		return err
	}
	resetPeak()
	start := time.Now()
	sum, err := app.ImportContactsFile(ctx, csvPath, app.ImportOptions{URL: base, Bot: "mass", Key: key})
	if err != nil {
		return err
	}
	took := time.Since(start)
	if sum.Created != *n {
		return fmt.Errorf("import created %d contacts, want %d (%d rejected: %+v)", sum.Created, *n, sum.RejectedCount, sum.Rejected)
	}
	if *phase == "" || *phase == "import" {
		report(fmt.Sprintf("import: %.0f MiB CSV over HTTP (parse, E.164, upsert)", float64(size)/(1<<20)), *n, took)
	}
	if *phase == "import" {
		return nil
	}

	// Fan-out.
	runtime.GC()
	resetPeak()
	stopProfile, err := benchenv.StartCPUProfile(*prof)
	if err != nil {
		return err
	}
	defer stopProfile()
	octx, stop := context.WithCancel(ctx)
	defer stop()
	done := make(chan error, 1)
	go func() {
		// No back-pressure: nothing drains the outbound lane here (the
		// fan-out is what is measured); with the default bound the fan-out
		// holds at two minutes of the sandbox's rate (9,000 bundles).
		done <- orchestrator.Run(octx, orchestrator.Config{FanOutBatch: *batch, FanOutParallelism: *parallel, QueueSeconds: -1},
			orchestrator.Deps{Store: st, Bus: b, Logger: log})
	}()
	start = time.Now()
	trigger := events.Trigger{ID: "bench-broadcast", BotID: "mass", Source: "native", FlowID: "hello",
		Channel: events.ChannelWhatsApp, Audience: events.Audience{Everyone: true, Platform: events.ChannelWhatsApp},
		Data: map[string]any{"campaign": "bench"}, AcceptedAt: time.Now().UTC()}
	ev, err := bus.NewEvent(trigger.ID, events.TypeTriggerAccepted, "mass", trigger)
	if err != nil {
		return err
	}
	if _, err := b.Publish(ctx, events.TriggerSubject("mass"), ev); err != nil {
		return err
	}
	var tr store.Trigger
	last := time.Now()
	for {
		tr, err = st.GetTrigger(ctx, "mass", trigger.ID)
		if err == nil && tr.Status == store.TriggerDone {
			break
		}
		if time.Since(last) >= 10*time.Second {
			last = time.Now()
			fmt.Printf("  … %d runs after %s\n", tr.Counters.RunsCreated, time.Since(start).Round(time.Second))
		}
		select {
		case err := <-done:
			return fmt.Errorf("orchestrator stopped: %v", err)
		case <-time.After(50 * time.Millisecond):
		}
	}
	took = time.Since(start)
	if err := benchenv.WriteProfile("heap", *memProf); err != nil {
		return err
	}
	stream, err := b.JetStream().Stream(ctx, bus.StreamOutbound)
	if err != nil {
		return err
	}
	info, err := stream.Info(ctx)
	if err != nil {
		return err
	}
	report("fan-out: runs created and first messages queued", int(tr.Counters.RunsCreated), took)
	fmt.Printf("  runs created %d, outbound bundles on the stream %d, skipped %d\n",
		tr.Counters.RunsCreated, info.State.Msgs, tr.Counters.Skipped)
	stop()
	<-done
	if tr.Counters.RunsCreated != int64(*n) || info.State.Msgs != uint64(*n) {
		return fmt.Errorf("expected %d runs and bundles", *n)
	}
	return nil
}

var plans = []string{"Basic", "Premium"}

// phoneOf returns a distinct valid Dutch mobile number for i < 10M.
func phoneOf(i int) string { return fmt.Sprintf("+3161%07d", i) }

func writeCSV(path string, n int) (int64, error) {
	f, err := os.Create(path)
	if err != nil {
		return 0, err
	}
	w := bufio.NewWriterSize(f, 1<<20)
	fmt.Fprintln(w, "channel,external_id,name,plan,city")
	for i := range n {
		// Numbers as people type them: spaces, no "+", the country code.
		p := phoneOf(i)
		fmt.Fprintf(w, "whatsapp,%s %s %s,User %d,%s,Lima\n", p[1:3], p[3:4], p[4:], i, plans[i%2])
	}
	if err := w.Flush(); err != nil {
		return 0, err
	}
	st, err := f.Stat()
	if err != nil {
		return 0, err
	}
	return st.Size(), f.Close()
}

func setupBot(base string) (string, error) {
	api := apitest.Client{Base: base}
	key, err := api.CreateBot(adminKey, `{"id":"mass","name":"Mass"}`)
	if err != nil {
		return "", err
	}
	_, err = api.Expect("PUT", "/v1/bots/mass/flows/hello", key, `{"steps":[{"id":"hi","type":"send","text":"Hello {{ name }}, the {{ plan }} offer is here"}]}`, nil)
	return key, err
}

// resetPeak starts a new peak-RSS measurement (Linux: writing 5 to
// clear_refs resets VmHWM to the current RSS).
func resetPeak() { _ = os.WriteFile("/proc/self/clear_refs", []byte("5"), 0) }

// peakRSS is VmHWM from /proc/self/status, in MiB.
func peakRSS() float64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "VmHWM:") {
			var kb float64
			fmt.Sscanf(strings.TrimSpace(strings.TrimPrefix(line, "VmHWM:")), "%f", &kb)
			return kb / 1024
		}
	}
	return 0
}

func report(name string, count int, took time.Duration) {
	fmt.Printf("%-62s %9d in %8s  %9.0f/s  peak RSS %6.0f MiB\n", name, count, took.Round(time.Millisecond),
		float64(count)/took.Seconds(), peakRSS())
}
