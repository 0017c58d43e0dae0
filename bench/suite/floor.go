package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/flowgate/flowgate/bench/internal/floor"
)

// floorPhase is the pipeline floor in the deployed shape: the floor's
// three parts (bench/internal/floor), each a process of its own, on the
// same nats-server and sync setting as Flowgate's processes, the two
// consumers sharing one SQLite file as the orchestrator and the worker do,
// multi-row statements, and up to 32 runs' bundles per outbound message
// (as Flowgate's on the sandbox).
type floorPhase struct {
	accept   result
	rate     float64 // runs drained per second, first to last message stored
	note     string
	cpu      cpuUse
	accepted int
	writes   streamWrites // JetStream messages stored per run, by stream
	traffic  traffic      // the NATS server's traffic per run
}

const floorKey = "bench-floor-key-0123456789abcdef"

// floorTexts is the suite's one-message flow (setupBot) for the floor.
func floorTexts(data map[string]any) []string {
	name, _ := data["name"].(string)
	plan, _ := data["plan"].(string)
	return []string{"Welcome " + name + ", plan " + plan}
}

// runFloorPart is the suite re-executed as one part of the floor:
// floor <role> <addr> <nats urls> <data dir> <replicas>. It runs until
// SIGTERM.
func runFloorPart(args []string) {
	if len(args) != 5 {
		log.Fatalf("usage: suite floor <ingress|triggers|outbound> <addr> <nats urls> <data dir> <replicas>")
	}
	replicas, err := strconv.Atoi(args[4])
	if err != nil {
		log.Fatalf("floor: replicas: %v", err)
	}
	f, err := floor.Start(floor.Config{Dir: args[3], NATSURL: args[2], Replicas: replicas, Key: floorKey, Multi: true,
		ShareBundles: 32, Roles: []floor.Role{floor.Role(args[0])}, Addr: args[1], Texts: floorTexts})
	if err != nil {
		log.Fatalf("floor %s: %v", args[0], err)
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, os.Interrupt)
	<-sig
	f.Stop()
}

// pipelineFloor starts the floor's parts as processes (the trigger and the
// outbound consumers first, one at a time: they set up the SQLite schema),
// runs the same closed-loop dispatch load as the Flowgate pipeline phase
// against its ingress, and waits until every accepted trigger's message
// is stored. The drain rate is measured as Flowgate's is: messages over
// the time from the first stored to the last.
func pipelineFloor(ctx context.Context, o options, tmp, name, natsURL string, replicas int, monitor string,
	natsProcs []cpuProc, loadgen cpuProc, body func(int) []byte, procs *[]*proc) floorPhase {
	var res floorPhase
	self, err := os.Executable()
	if err != nil {
		res.note = err.Error()
		return res
	}
	dir := filepath.Join(tmp, "data-"+name)
	addrs := map[floor.Role]string{}
	pids := map[floor.Role]int{}
	for _, r := range []floor.Role{floor.Triggers, floor.Outbound, floor.Ingress} {
		addr, err := freeAddr()
		if err != nil {
			res.note = err.Error()
			return res
		}
		p, err := start(tmp, name+"-"+string(r), nil, self, "floor", string(r), addr, natsURL, dir, strconv.Itoa(replicas))
		if err != nil {
			res.note = err.Error()
			return res
		}
		*procs = append(*procs, p)
		defer p.stop()
		if err := waitOK(ctx, "http://"+addr+"/readyz", 30*time.Second, p); err != nil {
			res.note = err.Error()
			return res
		}
		addrs[r], pids[r] = addr, p.pid()
	}
	seqs0, seqsErr0 := streamSeqs(ctx, natsURL)
	traffic0, trafficErr0 := readTraffic(monitor)
	// The parts in the columns of the Flowgate processes doing the same work.
	meter := startCPU(append(append([]cpuProc{loadgen}, natsProcs...), cpuProc{"ingress", pids[floor.Ingress]},
		cpuProc{"orchestrator", pids[floor.Triggers]}, cpuProc{"sandbox worker", pids[floor.Outbound]})...)
	url := "http://" + addrs[floor.Ingress] + "/v1/bots/bench/dispatch/BENCH"
	res.accept = closedLoop(ctx, name+"'s ingress → 202 (no Flowgate code), sync_interval: always, its consumers draining meanwhile",
		o.concurrency, o.phase, o.maxRequests, func(i int) (time.Duration, bool) {
			lat, ok, _ := post(url, floorKey, body(i), http.StatusAccepted)
			return lat, ok
		})
	res.accepted = res.accept.okCount()
	deadline := time.Now().Add(5 * time.Minute)
	var st floor.Stats
	for {
		st, err = floorStats(addrs[floor.Outbound])
		if err != nil {
			res.note = err.Error()
			break
		}
		if st.Sent >= int64(res.accepted) {
			break
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			res.note = fmt.Sprintf("only %d of %d messages after 5m", st.Sent, res.accepted)
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	res.cpu = meter.stop(int(st.Sent), "runs")
	seqs1, seqsErr1 := streamSeqs(ctx, natsURL)
	res.writes = writesBetween(seqs0, seqs1, seqsErr0, seqsErr1, int(st.Sent))
	traffic1, trafficErr1 := readTraffic(monitor)
	res.traffic = trafficBetween(traffic0, traffic1, trafficErr0, trafficErr1, int(st.Sent))
	if st.Sent > 1 && st.Last > st.First {
		res.rate = float64(st.Sent) / time.Duration(st.Last-st.First).Seconds()
		if res.note == "" && len(res.accept.samples) > 0 {
			res.note = fmt.Sprintf("%d runs, last message at +%.1fs after the accept phase began", st.Sent,
				time.Unix(0, st.Last).Sub(res.accept.samples[0].at).Seconds())
		}
	}
	return res
}

func floorStats(addr string) (floor.Stats, error) {
	var st floor.Stats
	resp, err := httpClient.Get("http://" + addr + "/stats")
	if err != nil {
		return st, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return st, fmt.Errorf("floor stats: HTTP %d", resp.StatusCode)
	}
	return st, json.NewDecoder(resp.Body).Decode(&st)
}
