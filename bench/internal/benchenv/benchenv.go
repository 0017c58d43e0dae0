// Package benchenv is the in-process set-up the benchmarks share: an
// embedded JetStream and the SQLite store under one directory, and the
// programs' main.
package benchenv

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"runtime/pprof"
	"slices"

	"github.com/nats-io/nats.go"
	dto "github.com/prometheus/client_model/go"

	"github.com/flowgate/flowgate/shared/bus"
	"github.com/flowgate/flowgate/shared/store/sqlite"
)

// Env is an embedded JetStream with a bus on it and a SQLite store.
type Env struct {
	Bus   *bus.Bus
	Store *sqlite.Store
	nats  *bus.Embedded
	Conn  *nats.Conn // the bus's connection
}

// Open starts JetStream in dir/nats, opens a bus with cfg on it and the
// SQLite store in storeDir. Close releases them.
func Open(ctx context.Context, dir, storeDir string, cfg bus.Config) (*Env, error) {
	e := &Env{}
	var err error
	if e.nats, err = bus.StartEmbedded(bus.EmbeddedConfig{StoreDir: filepath.Join(dir, "nats")}); err != nil {
		return nil, err
	}
	if e.Conn, err = e.nats.Connect(); err != nil {
		e.Close()
		return nil, err
	}
	if e.Bus, err = bus.New(ctx, e.Conn, cfg); err != nil {
		e.Close()
		return nil, err
	}
	if e.Store, err = sqlite.Open(ctx, storeDir); err != nil {
		e.Close()
		return nil, err
	}
	return e, nil
}

// Close closes the store, the connection and the server, in that order.
func (e *Env) Close() {
	if e.Store != nil {
		_ = e.Store.Close()
	}
	if e.Conn != nil {
		e.Conn.Close()
	}
	if e.nats != nil {
		e.nats.Shutdown()
	}
}

// Main parses the flags and runs run; an error is printed as "name: err"
// and exits 1.
func Main(name string, run func() error) {
	flag.Parse()
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, name+":", err)
		os.Exit(1)
	}
}

// StartCPUProfile starts a CPU profile written to path; "" profiles
// nothing. Call stop when the measured part ends.
func StartCPUProfile(path string) (stop func(), err error) {
	if path == "" {
		return func() {}, nil
	}
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, err
	}
	return func() { pprof.StopCPUProfile(); f.Close() }, nil
}

// WriteProfile writes the named runtime profile ("heap", "allocs") to
// path; "" writes nothing.
func WriteProfile(name, path string) error {
	if path == "" {
		return nil
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	return pprof.Lookup(name).WriteTo(f, 0)
}

// HistogramMeans describes each series of the named histogram families:
// its labels' values, its count and its mean in milliseconds, one line
// each, for series with samples.
func HistogramMeans(mfs []*dto.MetricFamily, names ...string) []string {
	var lines []string
	for _, mf := range mfs {
		if !slices.Contains(names, mf.GetName()) {
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
			lines = append(lines, fmt.Sprintf("%s %v: n=%d mean=%.2fms", mf.GetName(), labels, h.GetSampleCount(),
				1000*h.GetSampleSum()/float64(h.GetSampleCount())))
		}
	}
	return lines
}

// Post sends a JSON body with a bearer key and wants 202 Accepted.
func Post(c *http.Client, url, key, body string) error {
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader([]byte(body)))
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+key)
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		return fmt.Errorf("status %d", resp.StatusCode)
	}
	return nil
}
