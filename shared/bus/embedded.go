package bus

import (
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// EmbeddedConfig configures an in-process NATS server with JetStream.
type EmbeddedConfig struct {
	// StoreDir is where JetStream keeps its data.
	StoreDir string
	// Listen, when set (e.g. "127.0.0.1:4222"), also accepts network
	// clients; otherwise the server is reachable only in-process.
	Listen string
	// SyncAlways fsyncs every write (strict durability against OS crashes,
	// at a throughput cost); otherwise JetStream's default sync interval.
	SyncAlways bool
	// MaxStore bounds JetStream's disk use (0 = server default).
	MaxStore int64
}

// Embedded is a running in-process NATS server.
type Embedded struct {
	srv *server.Server
}

// StartEmbedded starts a NATS server with JetStream in this process.
func StartEmbedded(cfg EmbeddedConfig) (*Embedded, error) {
	opts := &server.Options{
		ServerName:        "flowgate-embedded",
		JetStream:         true,
		StoreDir:          cfg.StoreDir,
		SyncAlways:        cfg.SyncAlways,
		JetStreamMaxStore: cfg.MaxStore,
		NoSigs:            true,
		NoLog:             true,
		MaxPayload:        8 << 20,
	}
	if cfg.Listen == "" {
		opts.DontListen = true
	} else {
		host, port, err := splitHostPort(cfg.Listen)
		if err != nil {
			return nil, err
		}
		opts.Host, opts.Port = host, port
	}
	srv, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("bus: embedded nats: %w", err)
	}
	go srv.Start()
	if !srv.ReadyForConnections(15 * time.Second) {
		srv.Shutdown()
		return nil, fmt.Errorf("bus: embedded nats did not start")
	}
	return &Embedded{srv: srv}, nil
}

// Connect opens an in-process client connection.
func (e *Embedded) Connect(opts ...nats.Option) (*nats.Conn, error) {
	opts = append([]nats.Option{nats.InProcessServer(e.srv), nats.MaxReconnects(-1), nats.ReconnectBufSize(-1)}, opts...)
	return nats.Connect("", opts...)
}

// ClientURL is the network address clients can dial ("" when not listening).
func (e *Embedded) ClientURL() string {
	if e.srv.Addr() == nil {
		return ""
	}
	return e.srv.ClientURL()
}

// Server exposes the server (tests stop it to simulate an outage).
func (e *Embedded) Server() *server.Server { return e.srv }

// Shutdown stops the server and waits for it.
func (e *Embedded) Shutdown() {
	e.srv.Shutdown()
	e.srv.WaitForShutdown()
}

func splitHostPort(addr string) (string, int, error) {
	host, p, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, fmt.Errorf("bus: bad listen address %q: %w", addr, err)
	}
	port, err := strconv.Atoi(p)
	if err != nil {
		return "", 0, fmt.Errorf("bus: bad listen port %q", addr)
	}
	return host, port, nil
}
