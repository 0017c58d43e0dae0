package main

import (
	"bufio"
	"fmt"
	"image/color"
	"log"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"time"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
)

const (
	reportBegin = "<!-- BEGIN BENCH REPORT: written by `go -C bench run ./suite`; do not edit by hand -->"
	reportEnd   = "<!-- END BENCH REPORT -->"
	chartFile   = "performance-latency.png"
)

// describeMachine says what the figures were measured on.
func describeMachine() []string {
	out := []string{fmt.Sprintf("%d logical CPUs (GOMAXPROCS %d), %s/%s, %s", runtime.NumCPU(), runtime.GOMAXPROCS(0), runtime.GOOS, runtime.GOARCH, runtime.Version())}
	if f, err := os.Open("/proc/cpuinfo"); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
				out = append(out, "CPU: "+strings.TrimSpace(v))
				break
			}
		}
		f.Close()
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		line, _, _ := strings.Cut(string(b), "\n")
		out = append(out, "memory: "+strings.Join(strings.Fields(line)[1:], " "))
	}
	if b, err := exec.Command("uname", "-sr").Output(); err == nil {
		out = append(out, "kernel: "+strings.TrimSpace(string(b)))
	}
	if b, err := exec.Command("sh", "-c", "df -h /tmp | tail -1").Output(); err == nil {
		f := strings.Fields(string(b))
		if len(f) > 0 {
			out = append(out, "JetStream and SQLite files on "+f[0]+" (temporary directory)")
		}
	}
	return out
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2f", float64(d)/float64(time.Millisecond)) }

func row(r result) string {
	errs := ""
	if r.errors > 0 {
		errs = fmt.Sprintf(" (%d failed)", r.errors)
	}
	return fmt.Sprintf("| %s | %d%s | %.0f/s | %s | %s | %s | %s |", r.name, r.okCount(), errs, r.rate(), ms(r.pct(0.5)), ms(r.pct(0.9)), ms(r.pct(0.99)), ms(r.pct(1)))
}

func writeReport(rep *report, o options) error {
	var b strings.Builder
	fmt.Fprintln(&b, reportBegin)
	fmt.Fprintf(&b, "Measured %s by `go -C bench run ./suite` (%s phases, %d concurrent clients in the closed-loop phases).\n\n",
		rep.started.Format("2006-01-02 15:04 UTC"), o.phase, o.concurrency)
	fmt.Fprintln(&b, "Machine:")
	for _, m := range rep.machine {
		fmt.Fprintf(&b, "- %s\n", m)
	}
	fmt.Fprintln(&b, "- load generator, NATS, the three Flowgate processes and the baselines share these cores")
	fmt.Fprintln(&b)
	fmt.Fprintln(&b, "### Ingress durable accept, with baselines")
	fmt.Fprintln(&b)
	fmt.Fprintln(&b, "| what | accepted | rate | p50 ms | p90 ms | p99 ms | max ms |")
	fmt.Fprintln(&b, "|---|---|---|---|---|---|---|")
	for _, r := range []result{rep.gin, rep.rawDefault, rep.rawAlways, rep.rawAfterDrain, rep.ingressDefault, rep.ingressAlone, rep.ingressBots, rep.ingress} {
		fmt.Fprintln(&b, row(r))
	}
	fmt.Fprintln(&b)
	fmt.Fprintf(&b, "The Flowgate row is `POST /v1/bots/{bot}/dispatch/{event}` answered 202 only after JetStream stored the trigger (NATS with `sync_interval: %s`, as deployed), while the orchestrator and the sandbox worker consume the same triggers on the same cores. Its ratio to the bare gin handler is %.2f, to the raw publish on the same NATS setting %.2f.\n",
		rep.syncSetting, rep.ingress.rate()/rep.gin.rate(), rep.ingress.rate()/rep.rawAlways.rate())
	if rep.ingress.note != "" {
		fmt.Fprintf(&b, "\nIngress errors: %s\n", rep.ingress.note)
	}
	fmt.Fprintf(&b, "\nThe ingress alone (its own NATS with `sync_interval: %s`, nothing consuming, nothing else running) accepted %.2f of the raw publish above.",
		rep.syncSetting, rep.ingressAlone.rate()/rep.rawAlways.rate())
	if turns, median, ok := roundsText(rep.aloneRounds); ok {
		fmt.Fprintf(&b, " It also took turns with the raw publish to its own NATS, %d rounds of %s each, the page cache flushed (`sync`) before each turn and the raw publish first in every other round; raw publish and ingress alone: %s. **Median of the rounds: %.2f of the raw publish** (issue #16's target: 2.0).",
			len(rep.aloneRounds), o.phase/2, turns, median)
	}
	fmt.Fprintln(&b)
	if turns, median, ok := roundsText(rep.botsRounds); ok {
		fmt.Fprintf(&b, "\nThe same with the requests spread over %d bots (request i to bot i mod %d, as on a service many bots share), same NATS, same turns: %s. **Median of the rounds: %.2f of the raw publish.**\n",
			manyBots, manyBots, turns, median)
	}
	spread := ""
	if rep.pipelineBots > 1 {
		spread = fmt.Sprintf(", the requests spread over %d bots (`-pipeline-bots`)", rep.pipelineBots)
	}
	fmt.Fprintf(&b, "\nPipeline drain against the same raw publish: %.2f (the orchestrator and the sandbox worker, %.0f runs/s%s).",
		rep.pipelineRate/rep.rawAlways.rate(), rep.pipelineRate, spread)
	if raw := rep.rawAfterDrain.rate(); raw > 0 {
		fmt.Fprintf(&b, " Against the raw publish to the same NATS right after the drain (%s, `sync` first: %.0f/s): **%.2f**.",
			rep.rawAfterDrain.duration.Round(time.Second), raw, rep.pipelineRate/raw)
	}
	fmt.Fprintln(&b)
	fmt.Fprintf(&b, "\n%s\n", relayLine(rep.relay, rep.rawAlways, rep.pipelineRate, "raw publish"))
	fmt.Fprintf(&b, "\n%s\n", floorLine(rep.floor, rep.rawAlways, rep.pipelineRate, "raw publish"))
	fmt.Fprintf(&b, "\nJetStream messages stored per run over the accept and drain, by stream (each stream's last sequence before and after): Flowgate %s; the pipeline floor %s.\n",
		rep.drainWrites, rep.floor.writes)
	fmt.Fprintf(&b, "\nThe NATS server's traffic per run over the same (its monitoring endpoint, `/varz` and `/jsz`): Flowgate %s; the pipeline floor %s.\n",
		rep.drainTraffic, rep.floor.traffic)
	if s := rep.drainLock.sentence("the accept and the drain", rep.pipelineRate, rep.rawAlways.rate(), "raw publish"); s != "" {
		fmt.Fprintf(&b, "\n%s\n", s)
	}
	writeCPU(&b, rep)
	fmt.Fprintln(&b)
	fmt.Fprintln(&b, "### Three-node NATS cluster, R3 streams")
	fmt.Fprintln(&b)
	if c := rep.cluster; c.skipped != "" {
		fmt.Fprintf(&b, "%s\n", c.skipped)
	} else {
		fmt.Fprintln(&b, "Three nats-server processes on this machine, routes between them, `sync_interval: always` on each (`deploy/nats/cluster.conf`); the ingress, orchestrator and sandbox worker given all three URLs and `FLOWGATE_NATS_REPLICAS=3`.")
		fmt.Fprintln(&b)
		fmt.Fprintln(&b, "| what | accepted | rate | p50 ms | p90 ms | p99 ms | max ms |")
		fmt.Fprintln(&b, "|---|---|---|---|---|---|---|")
		fmt.Fprintln(&b, row(c.raw))
		fmt.Fprintln(&b, row(c.ingress))
		fmt.Fprintln(&b)
		fmt.Fprintf(&b, "Ingress against the raw R3 publish: %.2f. Pipeline drain: %.0f runs/s (%s), %.2f of the raw R3 publish.\n",
			c.ingress.rate()/c.raw.rate(), c.pipelineRate, c.pipelineNote, c.pipelineRate/c.raw.rate())
		fmt.Fprintf(&b, "\n%s\n", relayLine(c.relay, c.raw, c.pipelineRate, "raw R3 publish"))
		fmt.Fprintf(&b, "\n%s\n", floorLine(c.floor, c.raw, c.pipelineRate, "raw R3 publish"))
		if s := c.drainLock.sentence("the cluster's accept and drain", c.pipelineRate, c.raw.rate(), "raw R3 publish"); s != "" {
			fmt.Fprintf(&b, "\n%s\n", s)
		}
		if u := c.drainCPU; u.n > 0 && c.raw.rate() > 0 {
			fmt.Fprintf(&b, "\nThe cluster's pipeline, accept to message stored, costs %.0f µs of CPU per run, the three nodes' %.0f µs of it (the table \"CPU per unit of work, by process\" above): the cores allow at most %.0f runs/s, %.2f of the raw R3 publish.\n",
				float64(u.total())/float64(time.Microsecond), float64(u.sum("nats-server"))/float64(time.Microsecond), u.bound(), u.bound()/c.raw.rate())
		}
	}
	fmt.Fprintln(&b)
	fmt.Fprintln(&b, "### Pipeline and end to end")
	fmt.Fprintln(&b)
	fmt.Fprintln(&b, "| what | result |")
	fmt.Fprintln(&b, "|---|---|")
	fmt.Fprintf(&b, "| pipeline drain (orchestrator + sandbox worker: trigger → run → message stored) | %.0f messages/s; %s |\n", rep.pipelineRate, rep.pipelineNote)
	e := rep.e2e
	note := ""
	if e.note != "" {
		note = "; " + e.note
	}
	fmt.Fprintf(&b, "| %s | %d measured, p50 %s ms, p90 %s ms, p99 %s ms, max %s ms%s |\n", e.name, e.okCount(), ms(e.pct(0.5)), ms(e.pct(0.9)), ms(e.pct(0.99)), ms(e.pct(1)), note)
	fmt.Fprintf(&b, "| broadcast fan-out (native trigger API, one audience) | %s |\n", rep.broadcast)
	w := rep.whatsapp
	if w.note != "" {
		fmt.Fprintf(&b, "| WhatsApp worker against the Cloud API double | %s |\n", w.note)
	}
	if w.fastRate > 0 {
		fmt.Fprintf(&b, "| WhatsApp worker drain, one account with no effective limit (%d messages queued before the worker started) | %.0f messages/s accepted by the double |\n", w.fastN, w.fastRate)
	}
	if w.pacedRate > 0 {
		fmt.Fprintf(&b, "| WhatsApp pacing in the worker, one account configured at %.0f/s (%d messages, same time) | %.1f/s achieved (%.3f of configured), at most %d in any one second |\n",
			w.pacedConfigured, w.pacedN, w.pacedRate, w.pacedRate/w.pacedConfigured, w.pacedMaxWindow)
	}
	fmt.Fprintln(&b, "| Telegram and RCS workers | not measured by this suite |")
	fmt.Fprintln(&b)
	fmt.Fprintln(&b, "### Pacer accuracy (two replicas, one account, 8 senders each, shared state in NATS KV, the pacer's default headroom and burst)")
	fmt.Fprintln(&b)
	fmt.Fprintln(&b, "| configured | sends | achieved | achieved / configured | most sends in any 1 s |")
	fmt.Fprintln(&b, "|---|---|---|---|---|")
	for _, p := range rep.pacers {
		if p.err != "" {
			fmt.Fprintf(&b, "| %.0f/s | not measured: %s | | | |\n", p.rate, p.err)
			continue
		}
		fmt.Fprintf(&b, "| %.0f/s | %d in %.1fs | %.1f/s | %.3f | %d |\n", p.rate, p.sends, p.durationSec, p.achieved, p.achieved/p.rate, p.maxWindow)
	}
	fmt.Fprintln(&b)
	fmt.Fprintf(&b, "![latency over time](%s)\n", chartFile)
	fmt.Fprintln(&b, reportEnd)
	text := b.String()
	fmt.Println(text)
	if o.noDoc {
		return nil
	}
	if err := chart(rep, filepath.Join(o.docs, chartFile)); err != nil {
		return err
	}
	path := filepath.Join(o.docs, "performance.md")
	doc, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	i, j := strings.Index(string(doc), reportBegin), strings.Index(string(doc), reportEnd)
	if i < 0 || j < i {
		return fmt.Errorf("%s has no report markers", path)
	}
	out := string(doc[:i]) + text + string(doc[j+len(reportEnd)+1:])
	if err := os.WriteFile(path, []byte(out), 0o644); err != nil {
		return err
	}
	log.Printf("wrote %s and %s", path, filepath.Join(o.docs, chartFile))
	return nil
}

// series buckets a phase's latencies per interval and returns the q-quantile
// of each bucket, in ms, against seconds since the phase began.
func series(r result, bucket time.Duration, q float64) plotter.XYs {
	if len(r.samples) == 0 {
		return nil
	}
	t0 := r.samples[0].at
	groups := map[int][]time.Duration{}
	for _, s := range r.samples {
		if s.ok {
			k := int(s.at.Sub(t0) / bucket)
			groups[k] = append(groups[k], s.latency)
		}
	}
	keys := make([]int, 0, len(groups))
	for k := range groups {
		keys = append(keys, k)
	}
	sort.Ints(keys)
	var xy plotter.XYs
	for _, k := range keys {
		ls := groups[k]
		sort.Slice(ls, func(i, j int) bool { return ls[i] < ls[j] })
		v := ls[int(q*float64(len(ls)-1))]
		xy = append(xy, plotter.XY{X: (time.Duration(k) * bucket).Seconds(), Y: float64(v) / float64(time.Millisecond)})
	}
	return xy
}

func chart(rep *report, path string) error {
	p := plot.New()
	p.Title.Text = "Flowgate latency over time (per 250 ms)"
	p.X.Label.Text = "seconds since the phase began"
	p.Y.Label.Text = "latency, ms (log scale)"
	p.Y.Scale = plot.LogScale{}
	p.Y.Tick.Marker = plot.LogTicks{Prec: -1}
	p.Legend.Top = true
	lines := []struct {
		name string
		r    result
		q    float64
		c    color.RGBA
		dash bool
	}{
		{"ingress accept p50", rep.ingress, 0.5, color.RGBA{R: 31, G: 119, B: 180, A: 255}, false},
		{"ingress accept p99", rep.ingress, 0.99, color.RGBA{R: 31, G: 119, B: 180, A: 255}, true},
		{"trigger → sandbox p50", rep.e2e, 0.5, color.RGBA{R: 214, G: 39, B: 40, A: 255}, false},
		{"trigger → sandbox p99", rep.e2e, 0.99, color.RGBA{R: 214, G: 39, B: 40, A: 255}, true},
		{"raw JetStream publish p50 (sync always)", rep.rawAlways, 0.5, color.RGBA{R: 44, G: 160, B: 44, A: 255}, false},
	}
	for _, l := range lines {
		xy := series(l.r, 250*time.Millisecond, l.q)
		for i := range xy {
			if xy[i].Y <= 0 {
				xy[i].Y = 0.001
			}
		}
		if len(xy) == 0 {
			continue
		}
		ln, err := plotter.NewLine(xy)
		if err != nil {
			return err
		}
		ln.Color = l.c
		ln.Width = vg.Points(1.2)
		if l.dash {
			ln.Dashes = []vg.Length{vg.Points(4), vg.Points(3)}
		}
		p.Add(ln)
		p.Legend.Add(l.name, ln)
	}
	p.Add(plotter.NewGrid())
	return p.Save(10*vg.Inch, 5*vg.Inch, path)
}

// relayLine reports the JetStream relay floor of the pipeline drain.
func relayLine(r relayResult, raw result, pipeline float64, rawName string) string {
	if r.err != "" {
		return "JetStream relay floor: not measured (" + r.err + ")."
	}
	return fmt.Sprintf("JetStream relay floor (no Flowgate code: %d queued trigger-sized messages, each consumed, "+
		"one bundle-sized message published to a second work-queue stream, both double-acked, %d at a time on each side; "+
		"`relayFloor` in `bench/suite/relay.go`): %.0f runs/s, %.2f of the %s. "+
		"The pipeline drain is %.2f of this floor.", r.n, r.workers, r.rate, r.rate/raw.rate(), rawName, pipeline/r.rate)
}

// floorLine reports the pipeline floor, processes apart.
func floorLine(f floorPhase, raw result, pipeline float64, rawName string) string {
	what := "Pipeline floor, processes apart (`bench/internal/floor`, run by `bench/suite/floor.go`: the same work " +
		"as the pipeline with no Flowgate code; an HTTP ingress with a group commit, a trigger consumer storing each " +
		"batch's triggers, contacts, runs and messages in one transaction of multi-row statements and publishing its " +
		"runs' bundles up to 32 per message, an outbound consumer storing each batch's transcript, sent marks and counts in one transaction; " +
		"each a process, on the same nats-server and SQLite file layout as Flowgate's processes)"
	if f.rate <= 0 {
		return what + ": not measured (" + f.note + ")."
	}
	s := fmt.Sprintf("%s: accepted %.0f/s (%.2f of the %s, p99 %s ms) while its consumers drained, and drained %.0f runs/s, "+
		"**%.2f of the %s**; %s. Flowgate's pipeline drain is %.2f of this floor.",
		what, f.accept.rate(), f.accept.rate()/raw.rate(), rawName, ms(f.accept.pct(0.99)), f.rate, f.rate/raw.rate(), rawName, f.note, pipeline/f.rate)
	if u := f.cpu; u.n > 0 {
		s += fmt.Sprintf(" The floor costs %.0f µs of CPU per run over all its processes: the cores allow it at most %.0f runs/s, %.2f of the %s.",
			float64(u.total())/float64(time.Microsecond), u.bound(), u.bound()/raw.rate(), rawName)
	}
	return s
}

// writeCPU writes the CPU each phase cost per unit of work, by process
// (/proc/PID/stat before and after the phase), and what the machine's
// cores would allow at that cost.
func writeCPU(b *strings.Builder, rep *report) {
	cols := []string{"load generator", "gin", "nats-server", "ingress", "orchestrator", "sandbox worker"}
	fmt.Fprintln(b)
	fmt.Fprintln(b, "#### CPU per unit of work, by process")
	fmt.Fprintln(b)
	fmt.Fprintln(b, "User and system CPU time of each process over the phase (`/proc/PID/stat`, 10 ms ticks), divided by the work done; µs per unit. \"Busy\" is the share of all cores in use on the machine over the phase (`/proc/stat`). The last column is the rate the cores would allow if these processes had all of them at the same cost per unit: cores ÷ total.")
	fmt.Fprintln(b)
	fmt.Fprintf(b, "| phase | work | %s | total µs | busy | cores ÷ total |\n", strings.Join(cols, " | "))
	fmt.Fprintf(b, "|---|---|%s---|---|---|\n", strings.Repeat("---|", len(cols)))
	for _, p := range []struct {
		what string
		u    cpuUse
	}{
		{"bare gin handler → 202", rep.ginCPU},
		{"raw JetStream publish, sync_interval: always", rep.rawCPU},
		{"ingress alone, NATS default sync", rep.defaultCPU},
		{"ingress alone, sync_interval: always", rep.aloneCPU},
		{fmt.Sprintf("ingress alone, sync_interval: always, %d bots", manyBots), rep.botsCPU},
		{"pipeline: accept phase (orchestrator and worker draining meanwhile)", rep.ingressCPU},
		{"pipeline: accept and drain, trigger → message stored", rep.drainCPU},
		{"pipeline floor (no Flowgate code, processes apart): accept and drain; its trigger consumer under orchestrator, its outbound consumer under sandbox worker", rep.floor.cpu},
		{"three-node cluster: raw publish to an R3 stream (three nodes together)", rep.cluster.rawCPU},
		{"three-node cluster: accept phase", rep.cluster.ingressCPU},
		{"three-node cluster: accept and drain", rep.cluster.drainCPU},
		{"three-node cluster: pipeline floor, accept and drain", rep.cluster.floor.cpu},
	} {
		if p.u.n > 0 {
			fmt.Fprintln(b, cpuLine(p.what, p.u, cols))
		}
	}
	if raw := rep.rawAlways.rate(); raw > 0 && rep.aloneCPU.n > 0 && rep.drainCPU.n > 0 {
		fmt.Fprintf(b, "\nAt the ingress alone's cost per trigger (fsynced NATS), the cores allow at most %.0f triggers/s, %.2f of the raw fsynced publish (issue #16's target: 2.0). The whole pipeline, accept to message stored, costs %.0f µs per run: the cores allow at most %.0f runs/s, %.2f of the raw publish (the drain target: 1.0).\n",
			rep.aloneCPU.bound(), rep.aloneCPU.bound()/raw, float64(rep.drainCPU.total())/float64(time.Microsecond), rep.drainCPU.bound(), rep.drainCPU.bound()/raw)
	}
}

// roundsText is the rounds as "raw/s and ingress/s (ratio)", each round
// with its own ratio, and the median of the ratios; ok is false when no
// round had a raw publish to compare with.
func roundsText(rs []aloneRound) (text string, median float64, ok bool) {
	ratios, median := aloneRatios(rs)
	if len(ratios) == 0 {
		return "", 0, false
	}
	var turns []string
	for _, r := range rs {
		if r.raw > 0 {
			turns = append(turns, fmt.Sprintf("%.0f/s and %.0f/s (%.2f)", r.raw, r.alone, r.alone/r.raw))
		}
	}
	return strings.Join(turns, "; "), median, true
}
