package bus_test

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/flowgate/flowgate/shared/bus"
	"github.com/flowgate/flowgate/shared/bus/bustest"
	"github.com/flowgate/flowgate/shared/testlog"
)

func newBus(t *testing.T, nc *nats.Conn, l bus.Limits, log *slog.Logger) (*bus.Bus, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	return bus.New(ctx, nc, bus.Config{Source: "/test", Limits: l, Logger: log})
}

func streamConfigs(t *testing.T, js jetstream.JetStream) map[string]jetstream.StreamConfig {
	t.Helper()
	out := map[string]jetstream.StreamConfig{}
	for _, sc := range bus.Streams(bus.Limits{}) {
		s, err := js.Stream(context.Background(), sc.Name)
		require.NoError(t, err, sc.Name)
		out[sc.Name] = s.CachedInfo().Config
	}
	return out
}

// TestReplicasRaisedNeverLowered: on a three-node cluster, a service
// configured for 3 replicas raises R1 streams (the dead-letter stream
// included) to R3; one configured for 1 keeps the operator's R3 and the
// max bytes and age an operator raised, and says so in the log.
func TestReplicasRaisedNeverLowered(t *testing.T) {
	c := bustest.StartCluster(t, 3)
	nc := c.Connect(t)
	ctx := context.Background()

	_, err := newBus(t, nc, bus.Limits{}, nil)
	require.NoError(t, err)
	for name, sc := range streamConfigs(t, jetstreamOf(t, nc)) {
		require.Equal(t, 1, sc.Replicas, name)
	}

	b, err := newBus(t, nc, bus.Limits{Replicas: 3}, nil)
	require.NoError(t, err)
	js := b.JetStream()
	for name, sc := range streamConfigs(t, js) {
		require.Equal(t, 3, sc.Replicas, "%s raised to the configured count", name)
	}
	require.Contains(t, streamConfigs(t, js), bus.StreamDLQ)

	// The operator raises the triggers stream's limits beyond Flowgate's.
	s, err := js.Stream(ctx, bus.StreamTriggers)
	require.NoError(t, err)
	op := s.CachedInfo().Config
	op.MaxBytes = 3 << 30
	op.MaxAge = 30 * 24 * time.Hour
	_, err = js.UpdateStream(ctx, op)
	require.NoError(t, err)

	var logs testlog.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	_, err = newBus(t, nc, bus.Limits{Replicas: 1, MaxBytes: 1 << 30, MaxAge: 7 * 24 * time.Hour}, log)
	require.NoError(t, err)
	got := streamConfigs(t, js)
	for name, sc := range got {
		require.Equal(t, 3, sc.Replicas, "%s: an operator's higher count is never lowered", name)
	}
	require.EqualValues(t, 3<<30, got[bus.StreamTriggers].MaxBytes)
	require.Equal(t, 30*24*time.Hour, got[bus.StreamTriggers].MaxAge)
	require.EqualValues(t, 1<<30, got[bus.StreamOutbound].MaxBytes, "other streams keep Flowgate's limit")
	out := logs.String()
	require.Contains(t, out, "never lowers")
	require.Contains(t, out, "stream="+bus.StreamTriggers+" setting=replicas current=3 configured=1")
	require.Contains(t, out, "setting=max_bytes current=3221225472 configured=1073741824")
	require.Contains(t, out, "setting=max_age")

	// A higher configured limit is raised again.
	_, err = newBus(t, nc, bus.Limits{Replicas: 3, MaxBytes: 4 << 30}, nil)
	require.NoError(t, err)
	require.EqualValues(t, 4<<30, streamConfigs(t, js)[bus.StreamTriggers].MaxBytes)
}

func jetstreamOf(t *testing.T, nc *nats.Conn) jetstream.JetStream {
	t.Helper()
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	return js
}

// TestReplicasMoreThanTheClusterFailClearly: a count the servers cannot
// hold is a configuration error at start, not a retry loop.
func TestReplicasMoreThanTheClusterFailClearly(t *testing.T) {
	t.Run("single server", func(t *testing.T) {
		nc := bustest.Connect(t, bustest.Embedded(t))
		start := time.Now()
		_, err := newBus(t, nc, bus.Limits{Replicas: 3}, nil)
		require.ErrorIs(t, err, bus.ErrReplicas)
		require.ErrorContains(t, err, "3 replicas configured (FLOWGATE_NATS_REPLICAS) but the NATS server is not part of a cluster")
		require.Less(t, time.Since(start), 20*time.Second, "not retried as if transient")
	})
	t.Run("three-node cluster, five replicas", func(t *testing.T) {
		c := bustest.StartCluster(t, 3)
		_, err := newBus(t, c.Connect(t), bus.Limits{Replicas: 5}, nil)
		require.ErrorIs(t, err, bus.ErrReplicas)
		require.ErrorContains(t, err, "5 replicas configured (FLOWGATE_NATS_REPLICAS) but the NATS cluster cannot place them")
	})
}

// TestStartWhileOperatorScales: a service that starts while an operator
// scales every stream from R1 to R3 starts, and the streams end at R3.
func TestStartWhileOperatorScales(t *testing.T) {
	c := bustest.StartCluster(t, 3)
	nc := c.Connect(t)
	ctx := context.Background()
	_, err := newBus(t, nc, bus.Limits{}, nil)
	require.NoError(t, err)
	js := jetstreamOf(t, nc)

	// The services start once the first stream is scaled, while the
	// others are being scaled.
	scaled := make(chan error, 1)
	first := make(chan struct{})
	configs := streamConfigs(t, js)
	go func() {
		defer func() {
			select {
			case <-first:
			default:
				close(first)
			}
		}()
		for _, sc := range configs {
			sc.Replicas = 3
			if _, err := js.UpdateStream(ctx, sc); err != nil {
				scaled <- err
				return
			}
			select {
			case <-first:
			default:
				close(first)
			}
		}
		scaled <- nil
	}()
	<-first
	var wg sync.WaitGroup
	errs := make(chan error, 3)
	for range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := newBus(t, c.Connect(t), bus.Limits{}, nil)
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err, "a service starting during the scale-up")
	}
	require.NoError(t, <-scaled)
	for name, sc := range streamConfigs(t, js) {
		require.Equal(t, 3, sc.Replicas, name)
	}
}

func TestKeyValueReplicasRaisedNeverLowered(t *testing.T) {
	c := bustest.StartCluster(t, 3)
	nc := c.Connect(t)
	ctx := context.Background()
	js := jetstreamOf(t, nc)
	cfg := jetstream.KeyValueConfig{Bucket: "pacing_test", History: 1, TTL: time.Hour, Storage: jetstream.MemoryStorage, Replicas: 1}
	replicas := func() int {
		s, err := js.Stream(ctx, "KV_pacing_test")
		require.NoError(t, err)
		return s.CachedInfo().Config.Replicas
	}
	kv, err := bus.EnsureKeyValue(ctx, js, cfg, nil)
	require.NoError(t, err)
	_, err = kv.Put(ctx, "k", []byte("v"))
	require.NoError(t, err)
	require.Equal(t, 1, replicas())

	cfg.Replicas = 3
	_, err = bus.EnsureKeyValue(ctx, js, cfg, nil)
	require.NoError(t, err)
	require.Equal(t, 3, replicas())

	var logs testlog.Buffer
	cfg.Replicas = 1
	kv, err = bus.EnsureKeyValue(ctx, js, cfg, slog.New(slog.NewTextHandler(&logs, nil)))
	require.NoError(t, err)
	require.Equal(t, 3, replicas(), "never lowered")
	require.Contains(t, logs.String(), "never lowers")
	e, err := kv.Get(ctx, "k")
	require.NoError(t, err)
	require.Equal(t, "v", string(e.Value()), "the bucket's state survived")

	cfg.Replicas = 5
	_, err = bus.EnsureKeyValue(ctx, js, jetstream.KeyValueConfig{Bucket: "other", Replicas: 5}, nil)
	require.True(t, errors.Is(err, bus.ErrReplicas), "%v", err)
}

// TestConcurrentFirstStarts: services starting at once on an empty server
// all start (one creates each stream, the others find it).
func TestConcurrentFirstStarts(t *testing.T) {
	e := bustest.Embedded(t)
	var wg sync.WaitGroup
	errs := make(chan error, 6)
	for range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			nc, err := e.Connect()
			if err != nil {
				errs <- err
				return
			}
			defer nc.Close()
			_, err = newBus(t, nc, bus.Limits{}, nil)
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
}
