package bustest

import (
	"context"
	"testing"

	"github.com/nats-io/nats.go"

	"github.com/flowgate/flowgate/shared/bus"
)

// Embedded starts an in-process NATS server with JetStream in a temporary
// directory (bus.StartEmbedded), shut down when the test ends. opts adjust
// the configuration (e.g. Listen) before it starts.
func Embedded(t testing.TB, opts ...func(*bus.EmbeddedConfig)) *bus.Embedded {
	t.Helper()
	cfg := bus.EmbeddedConfig{StoreDir: t.TempDir()}
	for _, o := range opts {
		o(&cfg)
	}
	e, err := bus.StartEmbedded(cfg)
	if err != nil {
		t.Fatalf("bustest: embedded nats: %v", err)
	}
	t.Cleanup(e.Shutdown)
	return e
}

// Listening makes Embedded also accept network clients on a free loopback
// port (for child processes and ClientURL).
func Listening(cfg *bus.EmbeddedConfig) { cfg.Listen = "127.0.0.1:-1" }

// Connect opens an in-process client connection to e, closed when the test
// ends (before e shuts down).
func Connect(t testing.TB, e *bus.Embedded, opts ...nats.Option) *nats.Conn {
	t.Helper()
	nc, err := e.Connect(opts...)
	if err != nil {
		t.Fatalf("bustest: connect: %v", err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// NewBus opens a bus with cfg over a new connection to e.
func NewBus(t testing.TB, e *bus.Embedded, cfg bus.Config) *bus.Bus {
	t.Helper()
	b, err := bus.New(context.Background(), Connect(t, e), cfg)
	if err != nil {
		t.Fatalf("bustest: bus: %v", err)
	}
	return b
}

// Bus is the common set-up: an Embedded server and a bus with cfg on it.
func Bus(t testing.TB, cfg bus.Config) (*bus.Embedded, *bus.Bus) {
	t.Helper()
	e := Embedded(t)
	return e, NewBus(t, e, cfg)
}
