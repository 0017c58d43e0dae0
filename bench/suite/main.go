// Command suite is Flowgate's benchmark suite: it builds the flowgate binary
// and nats-server, starts them as separate processes on loopback, and
// measures, with baselines taken in the same run:
//
//   - the ingress's durable accept rate and latency (POST dispatch → 202
//     after JetStream acknowledged), against a bare gin handler answering
//     202 (a separate process) and a raw JetStream publish;
//   - the same ingress alone, on a NATS of its own with nothing consuming;
//   - end-to-end latency from the trigger to the message stored by the
//     sandbox channel, at a fixed arrival rate;
//   - the pipeline's (orchestrator + channel worker) drain throughput,
//     against the pipeline floor: the same work with no Flowgate code, its
//     parts in processes of their own on the same NATS (floor.go);
//   - broadcast fan-out, when the native trigger API is there;
//   - the pacer's accuracy, two replicas sharing one account;
//   - the CPU time each process spent per request, publish or run in those
//     phases (cpu.go), and what the machine's cores allow at that cost.
//
// It writes a Markdown report and a PNG chart of latency over time, and
// replaces the report section of docs/performance.md.
//
//	go -C bench run ./suite            # from the repository root, ~3 minutes
//	go -C bench run ./suite -quick     # shorter phases, for a smoke run
//
// Every loop is bounded in count and time, and only loopback addresses are
// used.
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

func main() {
	if len(os.Args) > 2 && os.Args[1] == "gin-baseline" {
		// Re-executed: the bare gin handler, in its own process like the ingress.
		runGinBaseline(os.Args[2])
		return
	}
	if len(os.Args) > 1 && os.Args[1] == "floor" {
		// Re-executed: one part of the pipeline floor (floor.go).
		runFloorPart(os.Args[2:])
		return
	}
	var o options
	flag.StringVar(&o.docs, "docs", "docs", "folder of performance.md and the chart")
	flag.IntVar(&o.concurrency, "c", 32, "concurrent clients of the accept-rate phases")
	flag.DurationVar(&o.phase, "phase", 10*time.Second, "duration of each load phase")
	flag.IntVar(&o.maxRequests, "max", 100000, "request cap of each load phase")
	flag.Float64Var(&o.e2eRate, "e2e-rate", 100, "arrival rate (per second) of the end-to-end latency phase")
	flag.IntVar(&o.broadcast, "broadcast", 5000, "audience size of the broadcast phase")
	flag.IntVar(&o.relay, "relay", 20000, "messages of the JetStream relay floor (the pipeline drain's baseline)")
	flag.IntVar(&o.waFast, "wa-fast", 3000, "WhatsApp messages of the unpaced account (worker throughput)")
	flag.IntVar(&o.waPaced, "wa-paced", 1000, "WhatsApp messages of the account paced at 200/s")
	quick := flag.Bool("quick", false, "short phases (a smoke run; not for the report)")
	flag.BoolVar(&o.noDoc, "no-doc", false, "print the report; do not touch docs/")
	flag.BoolVar(&o.keep, "keep", false, "keep the temporary directory (process logs, data) for a look afterwards")
	flag.IntVar(&o.pipelineBots, "pipeline-bots", 1, "bots the single node's pipeline phase spreads its requests over (request i to bot i mod N)")
	flag.BoolVar(&o.cluster, "cluster", true, "also measure on a three-node NATS cluster with R3 streams")
	flag.Parse()
	if *quick {
		o.phase, o.maxRequests, o.broadcast, o.waFast, o.waPaced, o.relay = 3*time.Second, 20000, 500, 500, 400, 3000
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, 15*time.Minute)
	defer cancel()
	root, err := moduleRoot()
	if err != nil {
		log.Fatal(err)
	}
	o.root = root
	if !filepath.IsAbs(o.docs) {
		o.docs = filepath.Join(root, o.docs)
	}
	if err := run(ctx, o); err != nil {
		log.Fatalf("bench: %v", err)
	}
}

type options struct {
	root, docs  string
	concurrency int
	phase       time.Duration
	maxRequests int
	e2eRate     float64
	broadcast   int
	relay       int
	waFast      int
	waPaced     int
	noDoc       bool
	cluster     bool
	keep        bool
	// pipelineBots: bots of the single node's pipeline phase.
	pipelineBots int
}

// moduleRoot is the Flowgate repository root: the nearest directory at or
// above the working directory whose go.mod is the product module (the
// bench module in bench/ has its own go.mod).
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if mod, err := os.ReadFile(filepath.Join(dir, "go.mod")); err == nil &&
			strings.HasPrefix(string(mod), "module github.com/flowgate/flowgate\n") {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("run from inside the flowgate repository")
		}
		dir = parent
	}
}
