package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log"
	"math"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/flowgate/flowgate/shared/apitest"
	"github.com/flowgate/flowgate/shared/channel/pacer"
)

const adminKey = "bench-admin-key-0123456789abcdef"

// report is everything measured.
type report struct {
	started                    time.Time
	gin, rawAlways, rawDefault result
	ingress, ingressDefault    result
	e2e                        result
	pipelineRate               float64
	pipelineNote               string
	// pipelineBots: the bots the pipeline's requests were spread over.
	pipelineBots int
	// rawAfterDrain: the raw publish to the pipeline's NATS right after
	// the drain, the drain's neighbour (the one at the start ran minutes
	// before, and an fsynced publish's rate moves between runs).
	rawAfterDrain result
	relay         relayResult
	// floor: the pipeline floor, processes apart (floor.go).
	floor floorPhase
	// JetStream messages stored per run by each stream, over the
	// pipeline's accept and drain (streams.go).
	drainWrites streamWrites
	// The NATS server's traffic per run over the same (streams.go).
	drainTraffic traffic
	broadcast    string
	whatsapp     channelResult
	pacers       []pacerResult
	machine      []string
	syncSetting  string
	// ingressAlone: the ingress on its own fsynced NATS, nothing consuming
	// (its rounds together); aloneRounds: each round's rate and that of
	// the raw publish to the same NATS just before or after it.
	ingressAlone result
	aloneRounds  []aloneRound
	// ingressBots, botsRounds: the same with the requests spread over
	// manyBots bots.
	ingressBots result
	botsRounds  []aloneRound
	botsCPU     cpuUse
	// CPU per unit of work, by process, of the phases above and of the
	// pipeline's drain (cpu.go).
	ginCPU, rawCPU, aloneCPU, defaultCPU, ingressCPU, drainCPU cpuUse
	// The SQLite write lock over the pipeline's accept and drain (lock.go).
	drainLock lockUse
	// The three-node cluster (R3 streams, sync_interval: always on each
	// node, as deploy/nats/cluster.conf).
	cluster cluster
}

type cluster struct {
	skipped             string
	raw, ingress        result
	relay               relayResult
	pipelineRate        float64
	pipelineNote, setup string
	// CPU per unit of work, by process (the three nats-server nodes
	// together), as on the single node.
	rawCPU, ingressCPU, drainCPU cpuUse
	drainLock                    lockUse
	// floor: the pipeline floor on the cluster, R3 streams.
	floor floorPhase
}

func run(ctx context.Context, o options) error {
	rep := &report{started: time.Now().UTC(), machine: describeMachine()}
	tmp, err := os.MkdirTemp("", "flowgate-bench-")
	if err != nil {
		return err
	}
	if o.keep {
		log.Printf("keeping %s (process logs, data)", tmp)
	} else {
		defer os.RemoveAll(tmp)
	}
	flowgate, natsServer := filepath.Join(tmp, "flowgate"), filepath.Join(tmp, "nats-server")
	log.Printf("building flowgate and nats-server")
	if err := build(ctx, o.root, flowgate, "./cmd/flowgate"); err != nil {
		return err
	}
	if err := build(ctx, o.root, natsServer, "github.com/nats-io/nats-server/v2"); err != nil {
		return err
	}
	var procs []*proc
	defer func() {
		for i := len(procs) - 1; i >= 0; i-- {
			procs[i].stop()
		}
	}()
	monitors := map[string]string{} // NATS URL → its monitoring endpoint
	startNATS := func(name, syncInterval string) (string, *proc, error) {
		addr, err := freeAddr()
		if err != nil {
			return "", nil, err
		}
		mon, err := freeAddr()
		if err != nil {
			return "", nil, err
		}
		host, port, _ := strings.Cut(addr, ":")
		conf := fmt.Sprintf("server_name: %s\nlisten: %s:%s\nhttp: %s\nmax_payload: 8MB\njetstream {\n  store_dir: %q\n  sync_interval: %s\n}\n",
			name, host, port, mon, filepath.Join(tmp, name), syncInterval)
		monitors["nats://"+addr] = "http://" + mon
		path := filepath.Join(tmp, name+".conf")
		if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
			return "", nil, err
		}
		p, err := start(tmp, name, nil, natsServer, "-c", path)
		if err != nil {
			return "", nil, err
		}
		procs = append(procs, p)
		u := "nats://" + addr
		for i := 0; i < 100; i++ {
			if nc, err := nats.Connect(u); err == nil {
				nc.Close()
				return u, p, nil
			}
			time.Sleep(100 * time.Millisecond)
		}
		return "", nil, fmt.Errorf("%s did not start", name)
	}
	// The deployment's setting (deploy/nats/nats.conf) and NATS's default.
	rep.syncSetting = "always"
	natsURL, natsProc, err := startNATS("nats-always", "always")
	if err != nil {
		return err
	}
	natsDefaultURL, natsDefProc, err := startNATS("nats-default", "2m")
	if err != nil {
		return err
	}
	loadgen := cpuProc{name: "load generator"}

	// Baseline 1: a bare gin handler answering 202, in its own process.
	ginAddr, _ := freeAddr()
	self, _ := os.Executable()
	gp, err := start(tmp, "gin-baseline", nil, self, "gin-baseline", ginAddr)
	if err != nil {
		return err
	}
	procs = append(procs, gp)
	if err := waitOK(ctx, "http://"+ginAddr+"/healthz", 20*time.Second, gp); err != nil {
		return err
	}
	body := func(i int) []byte {
		return []byte(fmt.Sprintf(`{"from":"+1555%07d","name":"User %d","plan":"pro"}`, i, i))
	}
	log.Printf("baseline: bare gin 202")
	meter := startCPU(loadgen, cpuProc{"gin", gp.pid()})
	rep.gin = closedLoop(ctx, "bare gin handler → 202", o.concurrency, o.phase, o.maxRequests, func(i int) (time.Duration, bool) {
		lat, ok, _ := post("http://"+ginAddr+"/v1/bots/bench/dispatch/BENCH", "", body(i), http.StatusAccepted)
		return lat, ok
	})
	rep.ginCPU = meter.stop(rep.gin.okCount(), "requests")
	gp.stop()

	// Baseline 2: raw JetStream publishes of a trigger-sized message with a
	// dedup id, one in flight per client, on each sync setting.
	payload := make([]byte, 420)
	for i := range payload {
		payload[i] = 'x'
	}
	rawPublish := func(u, name string, replicas int, idPrefix string, d time.Duration) (result, error) {
		nc, err := nats.Connect(u)
		if err != nil {
			return result{}, err
		}
		defer nc.Close()
		js, err := jetstream.New(nc)
		if err != nil {
			return result{}, err
		}
		if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "BENCH_RAW", Subjects: []string{"bench.raw.>"},
			Storage: jetstream.FileStorage, Retention: jetstream.LimitsPolicy, Discard: jetstream.DiscardNew,
			MaxBytes: 1 << 30, Duplicates: 10 * time.Minute, Replicas: replicas}); err != nil {
			return result{}, err
		}
		return closedLoop(ctx, name, o.concurrency, d, o.maxRequests, func(i int) (time.Duration, bool) {
			start := time.Now()
			pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			defer cancel()
			_, err := js.Publish(pctx, fmt.Sprintf("bench.raw.%d", i%16), payload, jetstream.WithMsgID(fmt.Sprintf("%s-%d", idPrefix, i)))
			return time.Since(start), err == nil
		}), nil
	}
	log.Printf("baseline: raw JetStream publish")
	meter = startCPU(loadgen, cpuProc{"nats-server", natsProc.pid()})
	if rep.rawAlways, err = rawPublish(natsURL, "raw JetStream publish, sync_interval: always", 1, "raw", o.phase); err != nil {
		return err
	}
	rep.rawCPU = meter.stop(rep.rawAlways.okCount(), "publishes")
	if rep.rawDefault, err = rawPublish(natsDefaultURL, "raw JetStream publish, default sync (2 min)", 1, "raw", o.phase); err != nil {
		return err
	}
	log.Printf("baseline: JetStream relay floor")
	rep.relay = relayFloor(ctx, natsURL, 1, o.relay, o.concurrency)

	baseEnv := []string{"FLOWGATE_ADMIN_KEY=" + adminKey, "FLOWGATE_LOG_LEVEL=warn"}

	// The ingress alone: a process of its own, with its own data directory
	// and NATS, nothing consuming (triggers only accumulate), and nothing
	// else running, so that its rate and CPU compare with the raw publish's
	// on the same sync setting. With rounds > 1 it takes turns with the
	// raw publish to the same NATS, each for half a phase, the raw publish
	// first in one round and second in the next: an fsynced publish's
	// rate moves by a factor of two between runs and even within one (the
	// disk is shared), and the turns let each ratio compare neighbours
	// (aloneRound).
	//
	// With bots > 1 the requests go to that many bots in turn (bench,
	// bench-1, …), as on a service shared by many bots, where few
	// requests of one bot arrive together.
	ingressAlone := func(name, label, natsURL string, np *proc, rounds, bots int) (result, cpuUse, []aloneRound, error) {
		data := filepath.Join(tmp, "data-"+name)
		if err := os.MkdirAll(data, 0o700); err != nil {
			return result{}, cpuUse{}, nil, err
		}
		addr, _ := freeAddr()
		p, err := start(tmp, name, append(append([]string{}, baseEnv...), "FLOWGATE_NATS_URL="+natsURL, "FLOWGATE_HTTP_ADDR="+addr, "FLOWGATE_DATA_DIR="+data), flowgate, "ingress")
		if err != nil {
			return result{}, cpuUse{}, nil, err
		}
		procs = append(procs, p)
		defer p.stop()
		if err := waitOK(ctx, "http://"+addr+"/readyz", 30*time.Second, p); err != nil {
			return result{}, cpuUse{}, nil, err
		}
		ids, keys := make([]string, bots), make([]string, bots)
		for b := range bots {
			ids[b] = "bench"
			if b > 0 {
				ids[b] = fmt.Sprintf("bench-%d", b)
			}
			if keys[b], err = setupBotID("http://"+addr, ids[b]); err != nil {
				return result{}, cpuUse{}, nil, err
			}
		}
		d := o.phase
		if rounds > 1 {
			d = o.phase / 2
		}
		var all []result
		var uses []cpuUse
		var pairs []aloneRound
		for r := range rounds {
			var raw, x result
			turn := func() {
				// The disk writes back what the turn before left in the
				// page cache (the ingress's publishes, say) while this
				// turn fsyncs: flush it first, so that neither turn
				// pays for the other's writes.
				syscall.Sync()
				m := startCPU(loadgen, cpuProc{"nats-server", np.pid()}, cpuProc{"ingress", p.pid()})
				x = closedLoop(ctx, label, o.concurrency, d, o.maxRequests, func(i int) (time.Duration, bool) {
					b := i % bots
					lat, ok, _ := post("http://"+addr+"/v1/bots/"+ids[b]+"/dispatch/BENCH", keys[b], body(r*o.maxRequests+i), http.StatusAccepted)
					return lat, ok
				})
				uses = append(uses, m.stop(x.okCount(), "triggers"))
			}
			rawTurn := func() error {
				syscall.Sync()
				raw, err = rawPublish(natsURL, "raw publish, same NATS", 1, fmt.Sprintf("%s-%d", name, r), d)
				return err
			}
			switch {
			case rounds == 1:
				turn()
			case r%2 == 1: // the ingress first in every other round
				turn()
				if err := rawTurn(); err != nil {
					return result{}, cpuUse{}, nil, err
				}
			default:
				if err := rawTurn(); err != nil {
					return result{}, cpuUse{}, nil, err
				}
				turn()
			}
			all = append(all, x)
			pairs = append(pairs, aloneRound{raw: raw.rate(), alone: x.rate()})
		}
		return mergeResults(all), mergeCPU(uses), pairs, nil
	}
	log.Printf("ingress alone: durable accept, sync_interval: always, %d rounds with the raw publish", aloneRounds)
	natsAloneURL, natsAloneProc, err := startNATS("nats-always-alone", "always")
	if err != nil {
		return err
	}
	if rep.ingressAlone, rep.aloneCPU, rep.aloneRounds, err = ingressAlone("ingress-alone", "flowgate ingress dispatch → 202, sync_interval: always, no consumers", natsAloneURL, natsAloneProc, aloneRounds, 1); err != nil {
		return err
	}
	log.Printf("ingress alone: durable accept, sync_interval: always, %d bots, %d rounds with the raw publish", manyBots, aloneRounds)
	if rep.ingressBots, rep.botsCPU, rep.botsRounds, err = ingressAlone("ingress-bots", fmt.Sprintf("flowgate ingress dispatch → 202, sync_interval: always, no consumers, %d bots", manyBots), natsAloneURL, natsAloneProc, aloneRounds, manyBots); err != nil {
		return err
	}
	natsAloneProc.stop()
	log.Printf("ingress alone: durable accept, NATS default sync")
	if rep.ingressDefault, rep.defaultCPU, _, err = ingressAlone("ingress-default-sync", "flowgate ingress dispatch → 202, NATS default sync, no consumers", natsDefaultURL, natsDefProc, 1, 1); err != nil {
		return err
	}

	// The pipeline floor: the same work with no Flowgate code, its parts
	// processes of their own on the same NATS, before Flowgate's processes
	// start (so that neither has the other on its cores).
	log.Printf("pipeline floor: processes apart, sync_interval: always")
	rep.floor = pipelineFloor(ctx, o, tmp, "floor", natsURL, 1, monitors[natsURL], []cpuProc{{"nats-server", natsProc.pid()}}, loadgen, body, &procs)

	// Flowgate: ingress, orchestrator and the sandbox worker, each a process.
	dataDir := filepath.Join(tmp, "data")
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return err
	}
	ingressAddr, _ := freeAddr()
	orchAddr, _ := freeAddr()
	chanAddr, _ := freeAddr()
	env := append(append([]string{}, baseEnv...), "FLOWGATE_NATS_URL="+natsURL, "FLOWGATE_DATA_DIR="+dataDir)
	ing, err := start(tmp, "ingress", append(env, "FLOWGATE_HTTP_ADDR="+ingressAddr), flowgate, "ingress")
	if err != nil {
		return err
	}
	procs = append(procs, ing)
	if err := waitOK(ctx, "http://"+ingressAddr+"/readyz", 30*time.Second, ing); err != nil {
		return err
	}
	// One at a time: the processes share the SQLite data directory, and
	// concurrent schema set-up at start can meet SQLITE_BUSY.
	orch, err := start(tmp, "orchestrator", append(env, "FLOWGATE_METRICS_ADDR="+orchAddr), flowgate, "orchestrator")
	if err != nil {
		return err
	}
	procs = append(procs, orch)
	if err := waitOK(ctx, "http://"+orchAddr+"/readyz", 30*time.Second, orch); err != nil {
		return err
	}
	ch, err := start(tmp, "channel-sandbox", append(env, "FLOWGATE_METRICS_ADDR="+chanAddr), flowgate, "channel", "sandbox")
	if err != nil {
		return err
	}
	procs = append(procs, ch)
	if err := waitOK(ctx, "http://"+chanAddr+"/readyz", 30*time.Second, ch); err != nil {
		return err
	}
	api := "http://" + ingressAddr
	key, err := setupBot(api)
	if err != nil {
		return err
	}

	// With pipelineBots > 1 the requests go to that many bots in turn
	// (bench, bench-1, …), as on a service many bots share.
	pipeBots := []botKey{{"bench", key}}
	for b := 1; b < o.pipelineBots; b++ {
		id := fmt.Sprintf("bench-%d", b)
		k, err := setupBotID(api, id)
		if err != nil {
			return err
		}
		pipeBots = append(pipeBots, botKey{id, k})
	}
	rep.pipelineBots = len(pipeBots)

	// Ingress durable accept rate: every 202 means JetStream stored the trigger.
	log.Printf("ingress: durable accept, %d bot(s)", len(pipeBots))
	var firstErr error
	var errOnce sync.Once
	pipelineProcs := []cpuProc{loadgen, {"nats-server", natsProc.pid()}, {"ingress", ing.pid()}, {"orchestrator", orch.pid()}, {"sandbox worker", ch.pid()}}
	locks := startLocks(lockProc{"orchestrator", orchAddr}, lockProc{"sandbox worker", chanAddr})
	seqs0, seqsErr0 := streamSeqs(ctx, natsURL)
	traffic0, trafficErr0 := readTraffic(monitors[natsURL])
	sent0, err := readCounter(chanAddr, "flowgate_channel_messages_sent_total")
	if err != nil {
		return err
	}
	meter = startCPU(pipelineProcs...)
	rep.ingress = closedLoop(ctx, "flowgate ingress dispatch → 202", o.concurrency, o.phase, o.maxRequests, func(i int) (time.Duration, bool) {
		b := pipeBots[i%len(pipeBots)]
		lat, ok, err := post(api+"/v1/bots/"+b.id+"/dispatch/BENCH", b.key, body(i), http.StatusAccepted)
		if err != nil {
			errOnce.Do(func() { firstErr = err })
		}
		return lat, ok
	})
	if firstErr != nil {
		rep.ingress.note = "first error: " + firstErr.Error()
	}
	accepted := rep.ingress.okCount()
	rep.ingressCPU = meter.stop(accepted, "triggers")

	// Pipeline drain: the orchestrator and the sandbox worker catch up with
	// everything accepted (one run and one message per trigger). Wait on
	// the worker's sent counter; read the transcript's timestamps after.
	log.Printf("pipeline: waiting for %d messages", accepted)
	sent, err := waitCounter(ctx, chanAddr, "flowgate_channel_messages_sent_total", sent0+float64(accepted), 5*time.Minute)
	if err != nil {
		rep.pipelineNote = err.Error()
	}
	seen := int(sent - sent0)
	rep.drainCPU = meter.stop(seen, "runs")
	seqs1, seqsErr1 := streamSeqs(ctx, natsURL)
	rep.drainWrites = writesBetween(seqs0, seqs1, seqsErr0, seqsErr1, seen)
	traffic1, trafficErr1 := readTraffic(monitors[natsURL])
	rep.drainTraffic = trafficBetween(traffic0, traffic1, trafficErr0, trafficErr1, seen)
	msgs, err := waitSandbox(ctx, api, pipeBots, seen, time.Minute)
	if err != nil && rep.pipelineNote == "" {
		rep.pipelineNote = err.Error()
	}
	if len(msgs) > 1 {
		first, last := msgs[0].SentAt, msgs[len(msgs)-1].SentAt
		rep.pipelineRate = float64(len(msgs)) / last.Sub(first).Seconds()
		rep.pipelineNote = fmt.Sprintf("%d runs, first message at +%.1fs, last at +%.1fs after the accept phase began",
			len(msgs), first.Sub(rep.ingress.samples[0].at).Seconds(), last.Sub(rep.ingress.samples[0].at).Seconds())
	}
	rep.drainLock = locks.stop(seen)
	logStoreTimes("orchestrator", orchAddr)
	logStoreTimes("channel-sandbox", chanAddr)
	log.Printf("baseline: raw JetStream publish after the drain")
	syscall.Sync()
	if rep.rawAfterDrain, err = rawPublish(natsURL, "raw JetStream publish after the drain, sync_interval: always", 1, "raw-after-drain", o.phase/2); err != nil {
		return err
	}

	// End-to-end latency at a fixed arrival rate, below saturation.
	log.Printf("end to end at %.0f/s", o.e2eRate)
	benchSeen := seen // the end-to-end phase goes to bot "bench" alone
	if len(pipeBots) > 1 {
		benchSeen = 0
		for _, m := range msgs {
			if m.bot == "bench" {
				benchSeen++
			}
		}
	}
	rep.e2e, err = endToEnd(ctx, api, key, o, benchSeen)
	if err != nil {
		return err
	}

	rep.broadcast = broadcast(ctx, api, key, o.broadcast)

	log.Printf("whatsapp worker against the Cloud API double")
	waAddr, _ := freeAddr()
	rep.whatsapp = whatsappPhase(ctx, api, natsURL, func() (*proc, error) {
		p, err := start(tmp, "channel-whatsapp", append(env, "FLOWGATE_METRICS_ADDR="+waAddr), flowgate, "channel", "whatsapp")
		if err != nil {
			return nil, err
		}
		return p, waitOK(ctx, "http://"+waAddr+"/readyz", 30*time.Second, p)
	}, o.waFast, o.waPaced, 200)

	log.Printf("pacer accuracy")
	for _, rate := range []float64{80, 1000} {
		pr, err := pacerAccuracy(ctx, natsURL, rate, time.Duration(math.Max(3, 480/rate))*time.Second)
		if err != nil {
			pr = pacerResult{rate: rate, err: err.Error()}
		}
		rep.pacers = append(rep.pacers, pr)
	}
	if o.cluster {
		// The single-node services are done: stop them, so the cluster
		// phase has the cores to itself (as the single-node phases had).
		for _, p := range []*proc{ch, orch, ing} {
			p.stop()
		}
		rep.cluster = clusterPhase(ctx, o, tmp, natsServer, flowgate, rawPublish, body, &procs)
	} else {
		rep.cluster.skipped = "not run (-cluster=false)"
	}
	return writeReport(rep, o)
}

// clusterPhase starts three nats-server processes as one cluster
// (sync_interval: always on each, as deploy/nats/cluster.conf), measures a
// raw publish to an R3 stream, then the ingress, orchestrator and sandbox
// worker on the cluster with FLOWGATE_NATS_REPLICAS=3: durable accept and
// pipeline drain, as on the single node.
func clusterPhase(ctx context.Context, o options, tmp, natsServer, flowgate string,
	rawPublish func(u, name string, replicas int, idPrefix string, d time.Duration) (result, error), body func(int) []byte, procs *[]*proc) cluster {
	var c cluster
	fail := func(err error) cluster {
		c.skipped = "failed: " + err.Error()
		log.Printf("cluster phase: %v", err)
		return c
	}
	log.Printf("cluster: three nats-server nodes, R3")
	var clientAddrs, routeAddrs []string
	for range 3 {
		a, err := freeAddr()
		if err != nil {
			return fail(err)
		}
		r, err := freeAddr()
		if err != nil {
			return fail(err)
		}
		clientAddrs, routeAddrs = append(clientAddrs, a), append(routeAddrs, r)
	}
	var routes []string
	for _, r := range routeAddrs {
		routes = append(routes, "nats-route://"+r)
	}
	var urls []string
	loadgen := cpuProc{name: "load generator"}
	meterProcs := []cpuProc{loadgen}
	for i := range 3 {
		name := fmt.Sprintf("cluster-n%d", i+1)
		host, port, _ := strings.Cut(clientAddrs[i], ":")
		conf := fmt.Sprintf("server_name: %s\nlisten: %s:%s\nmax_payload: 8MB\ncluster {\n  name: bench\n  listen: %s\n  routes: [%s]\n}\njetstream {\n  store_dir: %q\n  sync_interval: always\n}\n",
			name, host, port, routeAddrs[i], strings.Join(routes, ", "), filepath.Join(tmp, name))
		path := filepath.Join(tmp, name+".conf")
		if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
			return fail(err)
		}
		p, err := start(tmp, name, nil, natsServer, "-c", path)
		if err != nil {
			return fail(err)
		}
		*procs = append(*procs, p)
		meterProcs = append(meterProcs, cpuProc{"nats-server", p.pid()})
		urls = append(urls, "nats://"+clientAddrs[i])
	}
	all := strings.Join(urls, ",")
	// Up when JetStream answers with a meta leader elected.
	ready := false
	for i := 0; i < 300 && !ready; i++ {
		if nc, err := nats.Connect(all); err == nil {
			if js, err := jetstream.New(nc); err == nil {
				actx, cancel := context.WithTimeout(ctx, time.Second)
				_, err = js.AccountInfo(actx)
				cancel()
				ready = err == nil
			}
			nc.Close()
		}
		if !ready {
			time.Sleep(100 * time.Millisecond)
		}
	}
	if !ready {
		return fail(fmt.Errorf("the cluster's JetStream did not come up"))
	}
	var err error
	meter := startCPU(meterProcs...)
	if c.raw, err = rawPublish(all, "raw JetStream publish, R3 stream on the three-node cluster", 3, "raw", o.phase); err != nil {
		return fail(err)
	}
	c.rawCPU = meter.stop(c.raw.okCount(), "publishes")
	log.Printf("cluster: pipeline floor, processes apart")
	c.floor = pipelineFloor(ctx, o, tmp, "cluster-floor", all, 3, "", meterProcs[1:], loadgen, body, procs)
	log.Printf("cluster: JetStream relay floor")
	c.relay = relayFloor(ctx, all, 3, o.relay, o.concurrency)
	dataDir := filepath.Join(tmp, "data-cluster")
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return fail(err)
	}
	env := []string{"FLOWGATE_NATS_URL=" + all, "FLOWGATE_NATS_REPLICAS=3", "FLOWGATE_DATA_DIR=" + dataDir,
		"FLOWGATE_ADMIN_KEY=" + adminKey, "FLOWGATE_LOG_LEVEL=warn"}
	ingressAddr, _ := freeAddr()
	ing, err := start(tmp, "cluster-ingress", append(env, "FLOWGATE_HTTP_ADDR="+ingressAddr), flowgate, "ingress")
	if err != nil {
		return fail(err)
	}
	*procs = append(*procs, ing)
	if err := waitOK(ctx, "http://"+ingressAddr+"/readyz", 60*time.Second, ing); err != nil {
		return fail(err)
	}
	meterProcs = append(meterProcs, cpuProc{"ingress", ing.pid()})
	var lockProcs []lockProc
	for _, svc := range [][]string{{"orchestrator"}, {"channel", "sandbox"}} {
		addr, _ := freeAddr()
		p, err := start(tmp, "cluster-"+svc[0], append(env, "FLOWGATE_METRICS_ADDR="+addr), flowgate, svc...)
		if err != nil {
			return fail(err)
		}
		*procs = append(*procs, p)
		if err := waitOK(ctx, "http://"+addr+"/readyz", 60*time.Second, p); err != nil {
			return fail(err)
		}
		name := "orchestrator"
		if svc[0] == "channel" {
			name = "sandbox worker"
		}
		meterProcs = append(meterProcs, cpuProc{name, p.pid()})
		lockProcs = append(lockProcs, lockProc{name, addr})
	}
	api := "http://" + ingressAddr
	key, err := setupBot(api)
	if err != nil {
		return fail(err)
	}
	log.Printf("cluster: ingress durable accept")
	sent0, err := readCounter(lockProcs[1].addr, "flowgate_channel_messages_sent_total")
	if err != nil {
		return fail(err)
	}
	locks := startLocks(lockProcs...)
	meter = startCPU(meterProcs...)
	c.ingress = closedLoop(ctx, "flowgate ingress dispatch → 202, three-node cluster, R3", o.concurrency, o.phase, o.maxRequests, func(i int) (time.Duration, bool) {
		lat, ok, _ := post(api+"/v1/bots/bench/dispatch/BENCH", key, body(2*o.maxRequests+i), http.StatusAccepted)
		return lat, ok
	})
	accepted := c.ingress.okCount()
	c.ingressCPU = meter.stop(accepted, "triggers")
	log.Printf("cluster: pipeline, waiting for %d messages", accepted)
	sent, err := waitCounter(ctx, lockProcs[1].addr, "flowgate_channel_messages_sent_total", sent0+float64(accepted), 5*time.Minute)
	if err != nil {
		c.pipelineNote = err.Error()
	}
	seen := int(sent - sent0)
	c.drainCPU = meter.stop(seen, "runs")
	c.drainLock = locks.stop(seen)
	msgs, err := waitSandbox(ctx, api, []botKey{{"bench", key}}, seen, time.Minute)
	if err != nil && c.pipelineNote == "" {
		c.pipelineNote = err.Error()
	}
	if len(msgs) > 1 {
		first, last := msgs[0].SentAt, msgs[len(msgs)-1].SentAt
		c.pipelineRate = float64(len(msgs)) / last.Sub(first).Seconds()
		c.pipelineNote = fmt.Sprintf("%d runs, first message at +%.1fs, last at +%.1fs after the accept phase began",
			len(msgs), first.Sub(c.ingress.samples[0].at).Seconds(), last.Sub(c.ingress.samples[0].at).Seconds())
	}
	return c
}

// setupBot creates the bench bot with a one-message flow bound to BENCH.
func setupBot(api string) (string, error) { return setupBotID(api, "bench") }

// setupBotID creates bot id with the bench's flow and event and returns
// its key.
func setupBotID(api, id string) (string, error) {
	c := apitest.Client{Base: api, HTTP: httpClient}
	key, err := c.CreateBot(adminKey, fmt.Sprintf(`{"id":%q,"name":"Bench"}`, id))
	if err != nil {
		return "", err
	}
	if _, err := c.Expect(http.MethodPut, "/v1/bots/"+id+"/flows/welcome", key, `{"steps":[{"id":"hi","type":"send","text":"Welcome {{ name }}, plan {{ plan }}"}]}`, nil, 200, 201); err != nil {
		return "", err
	}
	if _, err := c.Expect(http.MethodPut, "/v1/bots/"+id+"/events/BENCH", key, `{"flow":"welcome"}`, nil, 200, 201); err != nil {
		return "", err
	}
	return key, nil
}

type sandboxMsg struct {
	Seq    int64     `json:"seq"`
	To     string    `json:"to"`
	SentAt time.Time `json:"sent_at"`
	// bot is the bot whose sandbox holds it.
	bot string
}

// botKey is a bot of the suite's and its API key.
type botKey struct{ id, key string }

// readSandbox reads every sandbox message of bot b after seq.
func readSandbox(api string, b botKey, after int64) ([]sandboxMsg, error) {
	var out []sandboxMsg
	for {
		var page struct {
			Messages []sandboxMsg `json:"messages"`
		}
		path := fmt.Sprintf("/v1/bots/%s/sandbox/messages?limit=10000&after=%d", b.id, after)
		if _, err := (apitest.Client{Base: api, HTTP: httpClient}).Expect(http.MethodGet, path, b.key, nil, &page, http.StatusOK); err != nil {
			return out, err
		}
		for i := range page.Messages {
			page.Messages[i].bot = b.id
		}
		out = append(out, page.Messages...)
		if len(page.Messages) < 10000 {
			return out, nil
		}
		after = page.Messages[len(page.Messages)-1].Seq
	}
}

// waitSandbox waits until the sandboxes of bots hold n messages together
// (or the timeout), and returns them in the order they were sent.
func waitSandbox(ctx context.Context, api string, bots []botKey, n int, timeout time.Duration) ([]sandboxMsg, error) {
	deadline := time.Now().Add(timeout)
	var msgs []sandboxMsg
	after := make([]int64, len(bots))
	for {
		for i, b := range bots {
			more, err := readSandbox(api, b, after[i])
			if err != nil {
				return msgs, err
			}
			msgs = append(msgs, more...)
			if len(more) > 0 {
				after[i] = more[len(more)-1].Seq
			}
		}
		if len(msgs) >= n {
			sort.Slice(msgs, func(i, j int) bool { return msgs[i].SentAt.Before(msgs[j].SentAt) })
			return msgs, nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return msgs, fmt.Errorf("only %d of %d messages after %s", len(msgs), n, timeout)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// endToEnd dispatches at a fixed rate to fresh users and measures the time
// from sending the request to the sandbox storing the message.
func endToEnd(ctx context.Context, api, key string, o options, already int) (result, error) {
	n := int(o.e2eRate * o.phase.Seconds())
	sent := make([]time.Time, n)
	users := make(map[string]int, n)
	interval := time.Duration(float64(time.Second) / o.e2eRate)
	var wg sync.WaitGroup
	begin := time.Now()
	failed := 0
	var mu sync.Mutex
	for i := 0; i < n && ctx.Err() == nil; i++ {
		at := begin.Add(time.Duration(i) * interval)
		time.Sleep(time.Until(at))
		to := fmt.Sprintf("+1666%07d", i)
		users[to] = i
		sent[i] = time.Now()
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, ok, _ := post(api+"/v1/bots/bench/dispatch/BENCH", key, []byte(fmt.Sprintf(`{"from":%q,"name":"E2E","plan":"pro"}`, to)), http.StatusAccepted); !ok {
				mu.Lock()
				failed++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	msgs, err := waitSandbox(ctx, api, []botKey{{"bench", key}}, already+n-failed, 2*time.Minute)
	res := result{name: fmt.Sprintf("trigger → sandbox message, %.0f/s open loop", o.e2eRate), duration: time.Since(begin), errors: failed}
	if err != nil {
		res.note = err.Error()
	}
	for _, m := range msgs {
		if i, ok := users[m.To]; ok {
			res.samples = append(res.samples, sample{at: sent[i], latency: m.SentAt.Sub(sent[i]), ok: true})
		}
	}
	sort.Slice(res.samples, func(i, j int) bool { return res.samples[i].at.Before(res.samples[j].at) })
	res.duration = time.Duration(float64(n) / o.e2eRate * float64(time.Second))
	return res, nil
}

// broadcast triggers one audience of n users through the native trigger
// API and measures the fan-out rate, when that API exists.
func broadcast(ctx context.Context, api, key string, n int) string {
	users := make([]string, n)
	for i := range users {
		users[i] = fmt.Sprintf("+1777%07d", i)
	}
	audience := make(map[string]bool, n)
	for _, u := range users {
		audience[u] = true
	}
	before, err := readSandbox(api, botKey{"bench", key}, 0)
	if err != nil {
		return "not measured: " + err.Error()
	}
	after := int64(0)
	if len(before) > 0 {
		after = before[len(before)-1].Seq
	}
	body, _ := json.Marshal(map[string]any{"event": "BENCH", "channel": "sandbox", "audience": map[string]any{"users": users, "platform": "any"},
		"data": map[string]any{"name": "Broadcast", "plan": "pro"}})
	start := time.Now()
	_, ok, err := post(api+"/v1/bots/bench/triggers", key, body, http.StatusAccepted)
	if !ok {
		return fmt.Sprintf("not measured: the native trigger API answered %v", err)
	}
	deadline := time.Now().Add(3 * time.Minute)
	got := map[string]time.Time{}
	for len(got) < n && time.Now().Before(deadline) && ctx.Err() == nil {
		more, err := readSandbox(api, botKey{"bench", key}, after)
		if err != nil {
			return "incomplete: " + err.Error()
		}
		for _, m := range more {
			after = m.Seq
			if audience[m.To] {
				if _, dup := got[m.To]; !dup {
					got[m.To] = m.SentAt
				}
			}
		}
		time.Sleep(250 * time.Millisecond)
	}
	var last time.Time
	for _, at := range got {
		if at.After(last) {
			last = at
		}
	}
	if len(got) < n {
		return fmt.Sprintf("incomplete: %d of %d audience members had a message after 3 minutes", len(got), n)
	}
	took := last.Sub(start).Seconds()
	return fmt.Sprintf("%d-user list audience: every first message stored %.2fs after the request: %.0f contacts/s end to end", n, took, float64(n)/took)
}

type pacerResult struct {
	rate        float64
	sends       int
	achieved    float64
	maxWindow   int
	err         string
	replicas    int
	durationSec float64
}

// pacerAccuracy runs two pacer replicas (as two worker processes would)
// sharing one account, each with 8 concurrent senders, and measures the
// achieved rate and the largest number of sends in any one-second window.
func pacerAccuracy(ctx context.Context, natsURL string, rate float64, d time.Duration) (pacerResult, error) {
	pr := pacerResult{rate: rate, replicas: 2}
	var mu sync.Mutex
	var times []time.Time
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	var wg sync.WaitGroup
	account := fmt.Sprintf("bench-account-%d", time.Now().UnixNano())
	for r := 0; r < pr.replicas; r++ {
		nc, err := nats.Connect(natsURL)
		if err != nil {
			return pr, err
		}
		defer nc.Close()
		js, err := jetstream.New(nc)
		if err != nil {
			return pr, err
		}
		p, err := pacer.New(context.Background(), js, pacer.Config{Channel: "whatsapp", Rate: rate})
		if err != nil {
			return pr, err
		}
		for w := 0; w < 8; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for ctx.Err() == nil {
					if err := p.Wait(ctx, account); err != nil {
						return
					}
					mu.Lock()
					times = append(times, time.Now())
					mu.Unlock()
				}
			}()
		}
	}
	wg.Wait()
	sort.Slice(times, func(i, j int) bool { return times[i].Before(times[j]) })
	pr.sends = len(times)
	if len(times) < 2 {
		return pr, fmt.Errorf("only %d sends", len(times))
	}
	span := times[len(times)-1].Sub(times[0]).Seconds()
	pr.durationSec = span
	pr.achieved = float64(len(times)-1) / span
	j := 0
	for i := range times {
		for times[i].Sub(times[j]) >= time.Second {
			j++
		}
		pr.maxWindow = max(pr.maxWindow, i-j+1)
	}
	return pr, nil
}

var _ = url.QueryEscape

// aloneRounds is how many turns the ingress alone takes with the raw
// publish to its NATS (half a phase each).
const aloneRounds = 3

// manyBots is how many bots the ingress alone's requests are spread over
// in its second measure: as many as the closed loop's clients by default,
// so that few requests of one bot arrive together.
const manyBots = 32

// aloneRound is one turn: the raw publish's rate, then the ingress
// alone's, on the same NATS.
type aloneRound struct{ raw, alone float64 }

// aloneRatios are the rounds' ratios (ingress alone / raw publish) and
// their median.
func aloneRatios(rs []aloneRound) (ratios []float64, median float64) {
	for _, r := range rs {
		if r.raw > 0 {
			ratios = append(ratios, r.alone/r.raw)
		}
	}
	if len(ratios) == 0 {
		return nil, 0
	}
	s := append([]float64(nil), ratios...)
	sort.Float64s(s)
	if len(s)%2 == 1 {
		return ratios, s[len(s)/2]
	}
	return ratios, (s[len(s)/2-1] + s[len(s)/2]) / 2
}
