package ingress_test

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/flowgate/flowgate/cmd/flowgate/app"
	"github.com/flowgate/flowgate/ingress"
	"github.com/flowgate/flowgate/shared/bus"
	"github.com/flowgate/flowgate/shared/store"
	"github.com/flowgate/flowgate/shared/store/sqlite"
)

// benchEnv is a real embedded JetStream with a bus on it and a real SQLite
// store holding bot botID with flow flowID, all gone when the benchmark
// ends, a quiet logger and the time the records were written.
func benchEnv(b *testing.B, botID, flowID, flow string) (*bus.Bus, *sqlite.Store, *slog.Logger, time.Time) {
	b.Helper()
	ctx := context.Background()
	e, err := bus.StartEmbedded(bus.EmbeddedConfig{StoreDir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(e.Shutdown)
	nc, err := e.Connect()
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(nc.Close)
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	bb, err := bus.New(ctx, nc, bus.Config{Source: "/bench", Logger: quiet})
	if err != nil {
		b.Fatal(err)
	}
	st, err := sqlite.Open(ctx, b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = st.Close() })
	now := time.Now().UTC()
	if err := st.CreateBot(ctx, store.Bot{ID: botID, Name: botID, CreatedAt: now, UpdatedAt: now}); err != nil {
		b.Fatal(err)
	}
	def, err := app.CompileFlow([]byte(flow))
	if err != nil {
		b.Fatal(err)
	}
	if _, err := st.PutFlow(ctx, store.Flow{BotID: botID, ID: flowID, Definition: def, CreatedAt: now}); err != nil {
		b.Fatal(err)
	}
	return bb, st, quiet, now
}

// BenchmarkDispatch measures the dispatch handler with the real embedded
// JetStream (202 after the ack) but without HTTP: its allocations per
// request are deterministic, unlike rates on a shared machine. The
// end-to-end comparison with baselines is go run ./bench/ingress.
func BenchmarkDispatch(b *testing.B) {
	ctx := context.Background()
	bb, st, quiet, now := benchEnv(b, "acme", "welcome", `{"steps":[{"id":"a","type":"send","text":"Welcome {{ name }}"}]}`)
	var err error
	if err := st.PutEvent(ctx, store.Event{BotID: "acme", Name: "WELCOME_NEW_USER", FlowID: "welcome", CreatedAt: now, UpdatedAt: now}); err != nil {
		b.Fatal(err)
	}
	key := ingress.NewAPIKey()
	if err := st.CreateAPIKey(ctx, store.APIKey{ID: "k", BotID: "acme", Hash: ingress.HashKey(key), Prefix: key[:7], CreatedAt: now}); err != nil {
		b.Fatal(err)
	}
	h, err := ingress.NewHandler(ingress.Config{AdminKey: "bench-admin-key-0123456789"},
		ingress.Deps{Store: st, Bus: bb, CompileFlow: app.CompileFlow, Logger: quiet})
	if err != nil {
		b.Fatal(err)
	}
	const body = `{"from":"1234567890","name":"John Doe","plan":"Premium","referralCode":"REF123"}`
	b.ReportAllocs()
	b.SetParallelism(16)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			req := httptest.NewRequest("POST", "/v1/bots/acme/dispatch/WELCOME_NEW_USER", strings.NewReader(body))
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Authorization", "Bearer "+key)
			w := httptest.NewRecorder()
			h.ServeHTTP(w, req)
			if w.Code != http.StatusAccepted {
				b.Errorf("status %d: %s", w.Code, w.Body)
				return
			}
		}
	})
}
