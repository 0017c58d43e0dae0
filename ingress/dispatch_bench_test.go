package ingress_test

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/flowgate/flowgate/cmd/flowgate/app"
	"github.com/flowgate/flowgate/ingress"
	"github.com/flowgate/flowgate/shared/bus"
	"github.com/flowgate/flowgate/shared/bus/bustest"
	"github.com/flowgate/flowgate/shared/store"
	"github.com/flowgate/flowgate/shared/store/sqlite"
	"github.com/flowgate/flowgate/shared/store/sqlite/sqlitetest"
)

// BenchmarkDispatch measures the dispatch handler with the real embedded
// JetStream (202 after the ack) but without HTTP: its allocations per
// request are deterministic, unlike rates on a shared machine. The
// end-to-end comparison with baselines is go -C bench run ./ingress.
func BenchmarkDispatch(b *testing.B) {
	ctx := context.Background()
	st, h := benchHandler(b, "acme", `{"steps":[{"id":"a","type":"send","text":"Welcome {{ name }}"}]}`,
		store.Event{Name: "WELCOME_NEW_USER"})
	key := ingress.NewAPIKey()
	if err := st.CreateAPIKey(ctx, store.APIKey{ID: "k", BotID: "acme", Hash: ingress.HashKey(key), Prefix: key[:7], CreatedAt: time.Now().UTC()}); err != nil {
		b.Fatal(err)
	}
	benchDispatch(b, h, "/v1/bots/acme/dispatch/WELCOME_NEW_USER",
		`{"from":"1234567890","name":"John Doe","plan":"Premium","referralCode":"REF123"}`,
		"Authorization", "Bearer "+key)
}

// benchHandler is the dispatch benchmarks' set-up: embedded JetStream, a
// SQLite store holding bot with the flow "f" (def) and ev (bound to "f"),
// and the ingress handler on them.
func benchHandler(b *testing.B, bot, def string, ev store.Event) (*sqlite.Store, http.Handler) {
	b.Helper()
	ctx := context.Background()
	quiet := slog.New(slog.DiscardHandler)
	_, bb := bustest.Bus(b, bus.Config{Source: "/bench", Logger: quiet})
	st := sqlitetest.Open(b)
	now := time.Now().UTC()
	if err := st.CreateBot(ctx, store.Bot{ID: bot, Name: bot, CreatedAt: now, UpdatedAt: now}); err != nil {
		b.Fatal(err)
	}
	compiled, err := app.CompileFlow([]byte(def))
	if err != nil {
		b.Fatal(err)
	}
	if _, err := st.PutFlow(ctx, store.Flow{BotID: bot, ID: "f", Definition: compiled, CreatedAt: now}); err != nil {
		b.Fatal(err)
	}
	ev.BotID, ev.FlowID, ev.CreatedAt, ev.UpdatedAt = bot, "f", now, now
	if err := st.PutEvent(ctx, ev); err != nil {
		b.Fatal(err)
	}
	h, err := ingress.NewHandler(ingress.Config{AdminKey: "bench-admin-key-0123456789"},
		ingress.Deps{Store: st, Bus: bb, CompileFlow: app.CompileFlow, Logger: quiet})
	if err != nil {
		b.Fatal(err)
	}
	return st, h
}

// benchDispatch posts body to path with the header pairs hdr, 16
// goroutines per CPU, each answer a 202.
func benchDispatch(b *testing.B, h http.Handler, path, body string, hdr ...string) {
	b.ReportAllocs()
	b.SetParallelism(16)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			req := httptest.NewRequest("POST", path, strings.NewReader(body))
			req.Header.Set("Content-Type", "application/json")
			for i := 0; i+1 < len(hdr); i += 2 {
				req.Header.Set(hdr[i], hdr[i+1])
			}
			w := httptest.NewRecorder()
			h.ServeHTTP(w, req)
			if w.Code != http.StatusAccepted {
				b.Errorf("status %d: %s", w.Code, w.Body)
				return
			}
		}
	})
}
