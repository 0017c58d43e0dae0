package main

import (
	"fmt"
	"log"
	"net/http"
	"sort"
	"strings"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
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
	var lines []string
	for _, fam := range []string{"flowgate_store_operation_duration_seconds", "flowgate_bus_handle_duration_seconds"} {
		mf, ok := mfs[fam]
		if !ok {
			continue
		}
		for _, m := range mf.GetMetric() {
			h := m.GetHistogram()
			if h.GetSampleCount() == 0 {
				continue
			}
			var labels []string
			for _, l := range m.GetLabel() {
				labels = append(labels, l.GetValue())
			}
			lines = append(lines, fmt.Sprintf("%s{%s}: n=%d mean=%.2f ms", strings.TrimPrefix(fam, "flowgate_"), strings.Join(labels, ","),
				h.GetSampleCount(), 1000*h.GetSampleSum()/float64(h.GetSampleCount())))
		}
	}
	sort.Strings(lines)
	for _, l := range lines {
		log.Printf("%s: %s", name, l)
	}
}
