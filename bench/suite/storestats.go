package main

import (
	"log"
	"net/http"
	"sort"

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
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		log.Printf("%s: metrics: %v", name, err)
		return
	}
	defer resp.Body.Close()
	p := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := p.TextToMetricFamilies(resp.Body)
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
