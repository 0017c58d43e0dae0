package app

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/flowgate/flowgate/ingress"
	"github.com/flowgate/flowgate/shared/bus"
	"github.com/flowgate/flowgate/shared/provider"
	"github.com/flowgate/flowgate/shared/store"
)

// Dev is Flowgate in one process: embedded NATS with JetStream, the store,
// the ingress, the orchestrator and every channel worker.
type Dev struct {
	cfg      Config
	Store    store.Store
	NATS     *bus.Embedded
	Bus      *bus.Bus
	AdminKey string
	// Addr is the address the ingress listens on.
	Addr string

	ln     net.Listener
	cancel context.CancelFunc
	done   chan error
}

// DevHTTPAddr is where `flowgate dev` listens unless told otherwise:
// loopback only, since it generates an admin key and a demo bot.
const DevHTTPAddr = "127.0.0.1:8080"

// StartDev starts everything and returns once the ingress is listening.
func StartDev(ctx context.Context, cfg Config) (*Dev, error) {
	if cfg.HTTPAddr == "" {
		cfg.HTTPAddr = DevHTTPAddr
	}
	cfg.setDefaults()
	log := cfg.Logger
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("data dir: %w", err)
	}
	d := &Dev{cfg: cfg, done: make(chan error, 1)}
	ok := false
	defer func() {
		if !ok {
			d.closeAll()
		}
	}()
	var err error
	if cfg.NATSURL != "" {
		if d.Bus, err = ConnectBus(ctx, cfg, "/flowgate/dev"); err != nil {
			return nil, err
		}
	} else {
		d.NATS, err = bus.StartEmbedded(bus.EmbeddedConfig{
			StoreDir: filepath.Join(cfg.DataDir, "nats"), Listen: cfg.NATSListen, SyncAlways: cfg.NATSSync,
		})
		if err != nil {
			return nil, err
		}
		if d.Bus, err = connectEmbedded(ctx, d.NATS, cfg, "/flowgate/dev"); err != nil {
			return nil, err
		}
	}
	if d.Store, err = OpenStore(ctx, cfg); err != nil {
		return nil, err
	}
	if cfg.WrapStore != nil {
		d.Store = cfg.WrapStore(d.Store)
	}
	d.Store = instrumentStore(cfg, d.Store)
	registerJetStreamCollector(d.Bus, log)
	key, generated, err := adminKey(cfg)
	if err != nil {
		return nil, err
	}
	d.AdminKey, cfg.AdminKey = key, key
	if generated {
		// The key is shown once, to a person at a terminal, and never
		// logged: logs (JSON or text) are shipped and kept elsewhere.
		path := filepath.Join(cfg.DataDir, "admin.key")
		log.Info("generated an admin key; read it from the file", "file", path)
		if w := terminal(cfg); w != nil {
			fmt.Fprintf(w, "\n  Admin key: %s\n  (saved in %s; set FLOWGATE_ADMIN_KEY to choose your own)\n\n", key, path)
		}
	}
	if !cfg.NoDemo {
		if err := ensureDemo(ctx, cfg, d.Store); err != nil {
			return nil, err
		}
	}
	ic, err := ingressConfig(cfg)
	if err != nil {
		return nil, err
	}
	h, err := ingress.NewHandler(ic,
		ingress.Deps{Store: d.Store, Bus: d.Bus, CompileFlow: CompileFlow, Logger: log.With("service", "ingress")})
	if err != nil {
		return nil, err
	}
	if d.ln, err = net.Listen("tcp", cfg.HTTPAddr); err != nil {
		return nil, fmt.Errorf("listen %s: %w", cfg.HTTPAddr, err)
	}
	d.Addr = d.ln.Addr().String()

	rctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	d.cancel = cancel
	workers := []func(context.Context) error{
		func(ctx context.Context) error { return RunOrchestrator(ctx, cfg, d.Store, d.Bus) },
	}
	for _, p := range provider.All() {
		name := p.Name
		workers = append(workers, func(ctx context.Context) error { return RunChannel(ctx, cfg, name, d.Store, d.Bus) })
	}
	go func() {
		// The ingress stops first (no new work), then the workers drain.
		ictx, stopIngress := context.WithCancel(context.Background())
		ierr := make(chan error, 1)
		go func() { ierr <- ingress.Serve(ictx, d.ln, ingress.Config{}, h, log) }()
		werr := make(chan error, 1)
		wctx, stopWorkers := context.WithCancel(context.Background())
		go func() { werr <- waitAll(wctx, workers...) }()
		var err error
		select {
		case <-rctx.Done():
		case err = <-ierr:
			ierr <- err
		case err = <-werr:
			werr <- err
		}
		stopIngress()
		if e := <-ierr; err == nil && e != nil && !errors.Is(e, http.ErrServerClosed) {
			err = e
		}
		stopWorkers()
		if e := <-werr; err == nil {
			err = e
		}
		d.done <- err
	}()
	ok = true
	log.Info("flowgate dev is running", "http", d.Addr, "data", cfg.DataDir)
	return d, nil
}

// Stop shuts everything down gracefully and returns the first error.
func (d *Dev) Stop() error {
	d.cancel()
	var err error
	select {
	case err = <-d.done:
	case <-time.After(60 * time.Second):
		err = errors.New("dev: shutdown timed out")
	}
	d.closeAll()
	return err
}

// Wait blocks until the services stop by themselves (an error) and returns it.
func (d *Dev) Wait() error {
	err := <-d.done
	d.done <- err
	return err
}

func (d *Dev) closeAll() {
	if d.Bus != nil {
		d.Bus.Conn().Close()
	}
	if d.NATS != nil {
		d.NATS.Shutdown()
	}
	if d.Store != nil {
		_ = d.Store.Close()
	}
}

// RunDev runs Flowgate in one process until ctx ends.
func RunDev(ctx context.Context, cfg Config) error {
	d, err := StartDev(ctx, cfg)
	if err != nil {
		return err
	}
	select {
	case <-ctx.Done():
		return d.Stop()
	case err := <-d.done:
		d.done <- err
		_ = d.Stop()
		return err
	}
}

// terminal is where a generated admin key is shown: cfg.Terminal, or
// standard error when it is a terminal (a character device), else nowhere.
func terminal(cfg Config) io.Writer {
	if cfg.Terminal != nil {
		return cfg.Terminal
	}
	if fi, err := os.Stderr.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
		return os.Stderr
	}
	return nil
}
