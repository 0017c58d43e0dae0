package instrumented

import (
	"context"
	"errors"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/flowgate/flowgate/shared/store"
	"github.com/flowgate/flowgate/shared/store/sqlite/sqlitetest"
)

func TestMeasuresSubscriptions(t *testing.T) {
	ctx := context.Background()
	raw := sqlitetest.Open(t)
	st := New(raw, "sqlite-subs")
	count := func(op string) uint64 {
		var m dto.Metric
		if err := opSeconds.WithLabelValues("sqlite-subs", op).(prometheus.Metric).Write(&m); err != nil {
			t.Fatal(err)
		}
		return m.GetHistogram().GetSampleCount()
	}
	sub := store.Subscription{ID: "wh_1", BotID: "b1", URL: "https://e.example/h", Secret: "0123456789abcdef", EventTypes: []string{"run.status"}}
	if err := st.CreateSubscription(ctx, sub); err != nil {
		t.Fatal(err)
	}
	if subs, err := st.ListSubscriptions(ctx, "b1"); err != nil || len(subs) != 1 {
		t.Fatalf("ListSubscriptions: %v %v", subs, err)
	}
	if err := st.DeleteSubscription(ctx, "b1", "wh_1"); err != nil {
		t.Fatal(err)
	}
	if err := st.DeleteSubscription(ctx, "b1", "wh_1"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("second delete: %v", err)
	}
	for op, want := range map[string]uint64{"CreateSubscription": 1, "ListSubscriptions": 1, "DeleteSubscription": 2} {
		if got := count(op); got != want {
			t.Errorf("%s observed %d times, want %d", op, got, want)
		}
	}
	if v := counterValue(t, opErrors.WithLabelValues("sqlite-subs", "DeleteSubscription", "not_found")); v != 1 {
		t.Errorf("DeleteSubscription not_found errors = %v, want 1", v)
	}
}
