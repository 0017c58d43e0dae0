package store_test

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/flowgate/flowgate/shared/store"
)

// The contract suite checks the record checks through both adapters; these
// cover what it cannot tell apart: the Text hook, defaults and limits.

func field(t *testing.T, err error) string {
	t.Helper()
	if err == nil {
		return ""
	}
	var ie *store.InvalidError
	if !errors.As(err, &ie) || !errors.Is(err, store.ErrInvalid) {
		t.Fatalf("%v: not an *store.InvalidError", err)
	}
	return ie.Field
}

func TestCheckerTextHook(t *testing.T) {
	strict := store.Checker{Text: func(f, s string) error {
		if s == "bad" {
			return &store.InvalidError{Field: f, Reason: "bad"}
		}
		return store.CheckText(f, s)
	}}
	b := store.Bot{ID: "acme", Name: "bad"}
	if got := field(t, store.Checker{}.Bot(b)); got != "" {
		t.Errorf("zero Checker: name refused (%s)", got)
	}
	if got := field(t, strict.Bot(b)); got != "name" {
		t.Errorf("strict Checker: got field %q, want name", got)
	}
	b.Name = strings.Repeat("x", store.MaxFieldBytes+1)
	if got := field(t, store.Checker{}.Bot(b)); got != "name" {
		t.Errorf("zero Checker: oversized name: got field %q", got)
	}
}

func TestCheckerDefaultsAndOrder(t *testing.T) {
	var c store.Checker
	r := store.Run{ID: "r1", BotID: "acme", FlowID: "f", ContactID: "c"}
	if err := c.RunIDs(&r, true); err != nil {
		t.Fatal(err)
	}
	if err := c.RunFields(&r, true); err != nil || r.Status != store.RunCreated {
		t.Fatalf("create: %v, status %q", err, r.Status)
	}
	u := store.Run{ID: "r1", BotID: "acme"}
	if got := field(t, c.RunFields(&u, false)); got != "status" {
		t.Errorf("update without status: got field %q", got)
	}
	m := store.Message{ID: "m1", BotID: "acme", RunID: "r1"}
	if err := c.Message(&m); err != nil || m.Status != store.MessageQueued {
		t.Fatalf("message: %v, status %q", err, m.Status)
	}
	tr := store.Trigger{ID: "t1", BotID: "acme"}
	if err := c.Trigger(&tr); err != nil || tr.Status != store.TriggerAccepted {
		t.Fatalf("trigger: %v, status %q", err, tr.Status)
	}
	// The first bad field in check order is named.
	late := time.Date(3000, 1, 1, 0, 0, 0, 0, time.UTC) // testclock: data, not a clock
	bad := store.Message{ID: "m1", BotID: "Acme", Status: "bogus", CreatedAt: late}
	if got := field(t, c.Message(&bad)); got != "bot_id" {
		t.Errorf("message with many bad fields: got field %q, want bot_id", got)
	}
	if got := field(t, c.Subscription(store.Subscription{ID: "s", BotID: "acme", Secret: "x", CreatedAt: late})); got != "created_at" {
		t.Errorf("subscription: got field %q, want created_at", got)
	}
	if got := field(t, c.Subscription(store.Subscription{ID: "s", BotID: "acme", Secret: "x"})); got != "url" {
		t.Errorf("subscription without url: got field %q", got)
	}
}

func TestCheckLimit(t *testing.T) {
	for _, tc := range []struct{ in, want int }{{0, 100}, {7, 7}, {1000, 1000}, {1001, 1000}} {
		if got, err := store.CheckLimit(tc.in, 100, 1000); err != nil || got != tc.want {
			t.Errorf("CheckLimit(%d) = %d, %v; want %d", tc.in, got, err, tc.want)
		}
	}
	if _, err := store.CheckLimit(-1, 100, 1000); field(t, err) != "limit" {
		t.Errorf("negative limit: %v", err)
	}
}

func TestCheckJSONAndTime(t *testing.T) {
	if err := store.CheckJSON("spec", nil, false); err != nil {
		t.Errorf("empty optional: %v", err)
	}
	for _, raw := range []json.RawMessage{nil, json.RawMessage(`{`)} {
		if field(t, store.CheckJSON("definition", raw, true)) != "definition" {
			t.Errorf("%q accepted", raw)
		}
	}
	if err := store.CheckTime("at", time.Time{}); err != nil {
		t.Errorf("zero time: %v", err)
	}
	if field(t, store.CheckTime("at", time.Date(1600, 1, 1, 0, 0, 0, 0, time.UTC))) != "at" { // testclock: data, not a clock
		t.Error("1600 accepted")
	}
	if field(t, store.CheckRunStatus("bogus")) != "status" || store.CheckRunStatus(store.RunWaiting) != nil {
		t.Error("CheckRunStatus")
	}
}
