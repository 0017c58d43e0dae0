package instrumented

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/flowgate/flowgate/shared/store"
	"github.com/flowgate/flowgate/shared/store/sqlite/sqlitetest"
)

func TestMeasuresOperationsAndErrors(t *testing.T) {
	ctx := context.Background()
	raw := sqlitetest.Open(t)
	st := New(raw, "sqlite-test")
	var _ store.Store = st

	count := func(op string) uint64 {
		var m dto.Metric
		if err := opSeconds.WithLabelValues("sqlite-test", op).(prometheus.Metric).Write(&m); err != nil {
			t.Fatal(err)
		}
		return m.GetHistogram().GetSampleCount()
	}
	now := time.Now().UTC()
	if err := st.CreateBot(ctx, store.Bot{ID: "b1", Name: "B", CreatedAt: now, UpdatedAt: now}); err != nil {
		t.Fatal(err)
	}
	if _, err := st.GetBot(ctx, "b1"); err != nil {
		t.Fatal(err)
	}
	if _, err := st.GetBot(ctx, "nope"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("GetBot(nope): %v", err)
	}
	if err := st.CreateBot(ctx, store.Bot{ID: "b1", Name: "B", CreatedAt: now, UpdatedAt: now}); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("second CreateBot: %v", err)
	}
	if got := count("GetBot"); got != 2 {
		t.Errorf("GetBot observed %d times, want 2", got)
	}
	if got := count("CreateBot"); got != 2 {
		t.Errorf("CreateBot observed %d times, want 2", got)
	}
	if v := counterValue(t, opErrors.WithLabelValues("sqlite-test", "GetBot", "not_found")); v != 1 {
		t.Errorf("GetBot not_found errors = %v, want 1", v)
	}
	if v := counterValue(t, opErrors.WithLabelValues("sqlite-test", "CreateBot", "conflict")); v != 1 {
		t.Errorf("CreateBot conflict errors = %v, want 1", v)
	}
	// Methods not overridden still reach the adapter.
	if bots, err := st.ListBots(ctx); err != nil || len(bots) != 1 {
		t.Errorf("ListBots through the wrapper: %v %v", bots, err)
	}
	if st.Unwrap() != store.Store(raw) {
		t.Error("Unwrap does not return the adapter")
	}
}

func TestErrorKind(t *testing.T) {
	for err, want := range map[error]string{
		fmt.Errorf("x: %w", store.ErrNotFound):        "not_found",
		fmt.Errorf("x: %w", store.ErrVersionConflict): "version_conflict",
		store.ErrConflict:                             "conflict",
		&store.InvalidError{Field: "id", Reason: "x"}: "invalid",
		store.ErrUnavailable:                          "unavailable",
		context.DeadlineExceeded:                      "canceled",
		errors.New("disk on fire"):                    "other",
	} {
		if got := ErrorKind(err); got != want {
			t.Errorf("ErrorKind(%v) = %s, want %s", err, got, want)
		}
	}
}

func counterValue(t *testing.T, c prometheus.Counter) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}
