package main

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// TestFloorStoresEveryRunOnce checks that both floors (one statement per
// row, and multi-row) do the work they are the baseline of: every
// accepted dispatch has its trigger, run and three messages stored, sent
// once and counted, a redelivered trigger changes nothing, and bad
// requests are refused.
func TestFloorStoresEveryRunOnce(t *testing.T) {
	for _, multi := range []bool{false, true} {
		t.Run(fmt.Sprintf("multi=%v", multi), func(t *testing.T) { testFloorStoresEveryRunOnce(t, multi) })
	}
}

func testFloorStoresEveryRunOnce(t *testing.T, multi bool) {
	const key, runs = "floor-test-key", 20
	f, err := startFloor(t.TempDir(), key, multi)
	if err != nil {
		t.Fatal(err)
	}
	defer f.stop()
	base := "http://" + f.addr + "/v1/bots/bench/dispatch/WELCOME_NEW_USER"
	client := &http.Client{Timeout: 10 * time.Second}
	for i := range runs {
		if err := post(client, base, key, fmt.Sprintf(`{"from":"u%d","name":"Ann","plan":"Pro","referralCode":"R%d"}`, i, i)); err != nil {
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
		if got := f.sent.Load(); got != 3*runs {
			t.Errorf("%s: %d messages counted sent, want %d", when, got, 3*runs)
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
