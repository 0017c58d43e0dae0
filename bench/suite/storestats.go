package main

import (
	"context"
	"fmt"
	"log"
	"net/http"
	"sort"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/flowgate/flowgate/bench/internal/benchenv"
)

// logStoreTimes logs, for one process, its store operations and its
// handlers so far: count and mean time each (from its /metrics). The
// pipeline's drain is not bound by CPU (the machine idles part of it); these
// show where its time goes.
func logStoreTimes(name, addr string) {
	mfs, err := scrape(addr)
	if err != nil {
		log.Printf("%s: metrics: %v", name, err)
		return
	}
	var fams []*dto.MetricFamily
	for _, mf := range mfs {
		fams = append(fams, mf)
	}
	lines := benchenv.HistogramMeans(fams, "flowgate_store_operation_duration_seconds", "flowgate_bus_handle_duration_seconds")
	sort.Strings(lines)
	for _, l := range lines {
		log.Printf("%s: %s", name, l)
	}
}

// scrape reads a process's /metrics.
func scrape(addr string) (map[string]*dto.MetricFamily, error) {
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	return parser.TextToMetricFamilies(resp.Body)
}

// readCounter is the sum of a counter's series on a process's /metrics.
func readCounter(addr, name string) (float64, error) {
	mfs, err := scrape(addr)
	if err != nil {
		return 0, err
	}
	var sum float64
	for _, m := range mfs[name].GetMetric() {
		sum += m.GetCounter().GetValue()
	}
	return sum, nil
}

// waitCounter polls a process's counter every 200 ms until it reaches
// want (or the timeout) and returns its last value. A drain waits on the
// worker's sent counter rather than reading the transcript as it grows, so
// that the observer does not load the processes it measures.
func waitCounter(ctx context.Context, addr, name string, want float64, timeout time.Duration) (float64, error) {
	deadline := time.Now().Add(timeout)
	for {
		v, err := readCounter(addr, name)
		if err != nil {
			return v, err
		}
		if v >= want {
			return v, nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return v, fmt.Errorf("%s reached %.0f of %.0f after %s", name, v, want, timeout)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
