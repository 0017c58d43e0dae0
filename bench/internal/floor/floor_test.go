package floor

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/flowgate/flowgate/bench/internal/benchenv"
	"github.com/flowgate/flowgate/shared/bus"
)

// TestFloorStoresEveryRunOnce checks that both floors (one statement per
// row, and multi-row), in both shapes (every part in one process on an
// embedded NATS server, one bundle per outbound message, as bench/e2e runs
// it; each part started on its own against a NATS server on the network,
// bundles sharing messages, as bench/suite runs them in processes of their
// own), do the work they are the baseline of: every accepted dispatch has
// its trigger, run and three messages stored, sent once and counted, a
// redelivered trigger changes nothing, and bad requests are refused.
func TestFloorStoresEveryRunOnce(t *testing.T) {
	for _, apart := range []bool{false, true} {
		for _, multi := range []bool{false, true} {
			t.Run(fmt.Sprintf("apart=%v/multi=%v", apart, multi), func(t *testing.T) { testFloorStoresEveryRunOnce(t, apart, multi) })
		}
	}
}

func TestFloorRefusesAnUnknownRole(t *testing.T) {
	if _, err := Start(Config{Dir: t.TempDir(), Roles: []Role{"orchestrator"}}); err == nil {
		t.Fatal("Start accepted the role orchestrator")
	}
}

// startParts starts the floor: one Floor with every part, or (apart) one
// Floor per part on a NATS server listening on loopback. It returns the
// ingress's address, the floor whose database and stream the test reads,
// and the one that sends.
func startParts(t *testing.T, key string, apart, multi bool) (ingress string, db, out *Floor) {
	dir := t.TempDir()
	if !apart {
		f, err := Start(Config{Dir: dir, Key: key, Multi: multi})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(f.Stop)
		return f.Addr(), f, f
	}
	emb, err := bus.StartEmbedded(bus.EmbeddedConfig{StoreDir: filepath.Join(dir, "nats"), Listen: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(emb.Shutdown)
	parts := map[Role]*Floor{}
	for _, r := range []Role{Ingress, Triggers, Outbound} {
		f, err := Start(Config{Dir: filepath.Join(dir, "db"), NATSURL: emb.ClientURL(), Key: key, Multi: multi,
			ShareBundles: 32, Roles: []Role{r}})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(f.Stop)
		parts[r] = f
	}
	// The ingress alone has no database; its stats stay at zero.
	if parts[Ingress].db != nil {
		t.Error("the ingress part opened the database")
	}
	if resp, err := http.Get("http://" + parts[Triggers].Addr() + "/v1/bots/bench/dispatch/X"); err != nil {
		t.Fatal(err)
	} else if resp.Body.Close(); resp.StatusCode != http.StatusNotFound {
		t.Errorf("the trigger part answered a dispatch with %d, want 404", resp.StatusCode)
	}
	return parts[Ingress].Addr(), parts[Triggers], parts[Outbound]
}

func testFloorStoresEveryRunOnce(t *testing.T, apart, multi bool) {
	const key, runs = "floor-test-key", 20
	addr, f, out := startParts(t, key, apart, multi)
	base := "http://" + addr + "/v1/bots/bench/dispatch/WELCOME_NEW_USER"
	client := &http.Client{Timeout: 10 * time.Second}
	for i := range runs {
		if err := benchenv.Post(client, base, key, fmt.Sprintf(`{"from":"u%d","name":"Ann","plan":"Pro","referralCode":"R%d"}`, i, i)); err != nil {
			t.Fatalf("dispatch %d: %v", i, err)
		}
	}
	for _, c := range []struct {
		key, body string
		want      int
	}{
		{"wrong", `{"from":"u1"}`, http.StatusUnauthorized},
		{key, `{"name":"no from"}`, http.StatusBadRequest},
		{key, `{"from":`, http.StatusBadRequest},
	} {
		req, _ := http.NewRequest("POST", base, bytes.NewReader([]byte(c.body)))
		req.Header.Set("Authorization", "Bearer "+c.key)
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != c.want {
			t.Errorf("%s with key %q: status %d, want %d", c.body, c.key, resp.StatusCode, c.want)
		}
	}
	drained := func() {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for {
			empty := true
			for _, name := range []string{"FLOOR_TRIGGERS", "FLOOR_OUTBOUND"} {
				s, err := f.js.Stream(context.Background(), name)
				if err != nil {
					t.Fatal(err)
				}
				info, err := s.Info(context.Background())
				if err != nil {
					t.Fatal(err)
				}
				empty = empty && info.State.Msgs == 0
			}
			if empty {
				return
			}
			if time.Now().After(deadline) {
				t.Fatal("the floor's streams were not drained in 30 s")
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	drained()
	check := func(when string) {
		t.Helper()
		for q, want := range map[string]int{
			`SELECT count(*) FROM triggers WHERE status = 'done'`:                                            runs,
			`SELECT count(*) FROM runs WHERE status = 'completed'`:                                           runs,
			`SELECT count(*) FROM messages WHERE status = 'sent'`:                                            3 * runs,
			`SELECT count(*) FROM messages`:                                                                  3 * runs,
			`SELECT count(*) FROM sandbox`:                                                                   3 * runs,
			`SELECT sum(sent) FROM triggers`:                                                                 3 * runs,
			`SELECT count(*) FROM contacts`:                                                                  runs,
			`SELECT count(*) FROM sandbox WHERE json_extract(content, '$.text') = 'Welcome Ann! 🎉'`:          runs,
			`SELECT count(*) FROM messages WHERE json_extract(content, '$.type') = 'text' AND seq = 3`:       runs,
			`SELECT count(*) FROM messages WHERE provider_message_id = 'sandbox-' || id`:                     3 * runs,
			`SELECT count(*) FROM runs r JOIN contacts c ON c.id = r.contact_id AND c.external_id LIKE 'u%'`: runs,
		} {
			var got int
			if err := f.db.QueryRow(q).Scan(&got); err != nil {
				t.Fatal(err)
			}
			if got != want {
				t.Errorf("%s: %s = %d, want %d", when, q, got, want)
			}
		}
		var st Stats
		if resp, err := http.Get("http://" + out.Addr() + "/stats"); err != nil {
			t.Fatal(err)
		} else {
			err := json.NewDecoder(resp.Body).Decode(&st)
			resp.Body.Close()
			if err != nil {
				t.Fatal(err)
			}
		}
		if st.Sent != 3*runs || st.First == 0 || st.Last < st.First {
			t.Errorf("%s: /stats %+v, want %d messages sent, first <= last", when, st, 3*runs)
		}
	}
	check("after the dispatches")

	// A trigger delivered again (as after a crash before its ack).
	var spec string
	if err := f.db.QueryRow(`SELECT spec FROM triggers LIMIT 1`).Scan(&spec); err != nil {
		t.Fatal(err)
	}
	if _, err := f.js.Publish(context.Background(), "floor.triggers", []byte("["+spec+"]"), jetstream.WithMsgID("again")); err != nil {
		t.Fatal(err)
	}
	drained()
	check("after a redelivered trigger")
}

// TestBundlesShareMessages checks ShareBundles: 40 runs' bundles go out as
// two messages at 32 per message, as 40 at the default, and a group
// published again is dropped as a duplicate.
func TestBundlesShareMessages(t *testing.T) {
	for _, c := range []struct{ share, want int }{{0, 40}, {32, 2}} {
		f, err := Start(Config{Dir: t.TempDir(), Key: "k", ShareBundles: c.share, Roles: []Role{Ingress}})
		if err != nil {
			t.Fatal(err)
		}
		bs := make([]floorBundle, 40)
		for i := range bs {
			bs[i] = floorBundle{BotID: "b", TriggerID: fmt.Sprintf("t%d", i), RunID: fmt.Sprintf("r%d", i), To: "u", IDs: []string{"m"}, Texts: []string{"hi"}}
		}
		for range 2 {
			if err := f.publishBundles(bs); err != nil {
				t.Fatal(err)
			}
		}
		s, err := f.js.Stream(context.Background(), "FLOOR_OUTBOUND")
		if err != nil {
			t.Fatal(err)
		}
		info, err := s.Info(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if got := int(info.State.Msgs); got != c.want {
			t.Errorf("ShareBundles %d: %d messages for 40 bundles published twice, want %d", c.share, got, c.want)
		}
		f.Stop()
	}
}
