package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/flowgate/flowgate/shared/bus"
	"github.com/flowgate/flowgate/shared/store"
	"github.com/flowgate/flowgate/shared/store/instrumented"
)

// DefaultMetricsAddr is where services without an HTTP API of their own
// (orchestrator, channel workers) serve /metrics, /healthz and /readyz.
const DefaultMetricsAddr = ":9090"

// metricsAddr is the operations listener of a command: the ingress and dev
// serve /metrics on their HTTP address already; "off" disables it.
func metricsAddr(cfg Config, cmd string) string {
	if cmd == "ingress" || cmd == "dev" || cfg.MetricsAddr == "off" {
		return ""
	}
	if cfg.MetricsAddr == "" {
		return DefaultMetricsAddr
	}
	return cfg.MetricsAddr
}

// instrumentStore measures every store operation (flowgate_store_* metrics).
func instrumentStore(cfg Config, st store.Store) store.Store {
	adapter := "sqlite"
	if cfg.MongoURI != "" {
		adapter = "mongo"
	}
	return instrumented.New(st, adapter)
}

// registerJetStreamCollector reports stream sizes and the backlog of every
// consumer at scrape time. Every process reports the same cluster-wide
// numbers; dashboards aggregate them with max.
func registerJetStreamCollector(b *bus.Bus, log *slog.Logger) {
	err := b.RegisterCollector(bus.CollectorOptions{Streams: bus.AllStreams(), AllConsumers: true})
	if err != nil {
		log.Warn("JetStream metrics not registered", "err", err)
	}
}

// serveOps serves /metrics, /healthz (the process is up) and /readyz (NATS
// answers and the store accepts writes) on addr until ctx ends.
func serveOps(ctx context.Context, addr string, b *bus.Bus, st store.Store, log *slog.Logger) error {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.Handler())
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintln(w, `{"status":"ok"}`)
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		rctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		natsStatus, storeStatus, code := "ok", "ok", http.StatusOK
		if err := b.Ping(rctx); err != nil {
			natsStatus, code = "unavailable", http.StatusServiceUnavailable
		}
		if err := store.Writable(rctx, st); err != nil {
			storeStatus, code = "unavailable", http.StatusServiceUnavailable
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		fmt.Fprintf(w, `{"checks":{"nats":%q,"store":%q}}`+"\n", natsStatus, storeStatus)
	})
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("metrics listener %s: %w", addr, err)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	log.Info("serving /metrics, /healthz and /readyz", "addr", ln.Addr().String())
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
		if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
			return err
		}
		return nil
	}
}
