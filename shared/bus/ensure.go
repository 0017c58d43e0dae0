package bus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// ErrReplicas means the configured replica count cannot be placed: the NATS
// server is not clustered, or the cluster has fewer servers than replicas.
// It is a configuration error; retrying does not help.
var ErrReplicas = errors.New("bus: replica count cannot be placed")

// JetStream API error codes the ensure logic tells apart.
const (
	codeReplicasNotSupported = 10074 // replicas > 1 in non-clustered mode
	codeNoPeers              = 10005 // no suitable peers for placement
	codeInsufficientRes      = 10023 // insufficient resources
)

// ensureTimeout bounds how long a start waits for a stream that cannot be
// created or updated yet (no JetStream leader, a scale-up in progress).
const ensureTimeout = 30 * time.Second

func (b *Bus) ensure(ctx context.Context, l Limits) error {
	for _, sc := range Streams(l) {
		if err := EnsureStream(ctx, b.js, sc, b.log); err != nil {
			return err
		}
	}
	return nil
}

// EnsureStream creates the stream want, or brings an existing one to it
// without undoing what an operator raised: the replica count, MaxBytes and
// MaxAge are raised to want's when lower and kept (with a warning) when
// higher; the fields Flowgate's topology depends on (subjects, retention,
// discard policy, duplicate window, description) are set to want's; fields
// Flowgate does not set (placement, compression, …) are kept. Nothing is
// written when nothing changes, so a service starting while an operator
// scales a stream does not race the operator. Transient failures are
// retried for up to 30 s; a replica count the cluster cannot hold fails at
// once with ErrReplicas.
func EnsureStream(ctx context.Context, js jetstream.JetStream, want jetstream.StreamConfig, log *slog.Logger) error {
	if log == nil {
		log = slog.Default()
	}
	return retryEnsure(ctx, "stream "+want.Name, want.Replicas, func(ctx context.Context) error {
		s, err := js.Stream(ctx, want.Name)
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			_, err = js.CreateStream(ctx, want)
			if !errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
				return err
			}
			// Another service created it meanwhile: bring it to want.
			s, err = js.Stream(ctx, want.Name)
		}
		if err != nil {
			return err
		}
		cur := s.CachedInfo().Config
		next := mergeStream(cur, want, log)
		if reflect.DeepEqual(next, cur) {
			return nil
		}
		_, err = js.UpdateStream(ctx, next)
		return err
	})
}

// mergeStream is the rule of EnsureStream.
func mergeStream(cur, want jetstream.StreamConfig, log *slog.Logger) jetstream.StreamConfig {
	next := cur
	next.Description = want.Description
	next.Subjects = want.Subjects
	next.Retention = want.Retention
	next.Discard = want.Discard
	next.Duplicates = want.Duplicates
	next.Replicas = int(keepHigher(log, cur.Name, "replicas", int64(cur.Replicas), int64(max(want.Replicas, 1)), false))
	next.MaxBytes = keepHigher(log, cur.Name, "max_bytes", cur.MaxBytes, want.MaxBytes, true)
	next.MaxAge = time.Duration(keepHigher(log, cur.Name, "max_age", int64(cur.MaxAge), int64(want.MaxAge), true))
	return next
}

// keepHigher returns the higher of an existing and a configured limit and
// warns when the existing one wins. With unlimitedAtZero, 0 or a negative
// existing value means unlimited (JetStream's MaxBytes -1, MaxAge 0), which
// is higher than any configured value.
func keepHigher(log *slog.Logger, stream, field string, cur, want int64, unlimitedAtZero bool) int64 {
	curUnlimited := unlimitedAtZero && cur <= 0
	switch {
	case curUnlimited && want > 0, cur > want:
		log.Warn("JetStream stream has a higher limit than configured; keeping it (Flowgate never lowers an operator's setting)",
			"stream", stream, "setting", field, "current", cur, "configured", want)
		return cur
	default:
		return want
	}
}

// EnsureKeyValue creates the KV bucket want, or binds to the existing one
// and raises its replica count to want's when lower (never lowering it).
func EnsureKeyValue(ctx context.Context, js jetstream.JetStream, want jetstream.KeyValueConfig, log *slog.Logger) (jetstream.KeyValue, error) {
	if log == nil {
		log = slog.Default()
	}
	var kv jetstream.KeyValue
	err := retryEnsure(ctx, "key-value bucket "+want.Bucket, want.Replicas, func(ctx context.Context) error {
		s, err := js.Stream(ctx, "KV_"+want.Bucket)
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			kv, err = js.CreateKeyValue(ctx, want)
			if errors.Is(err, jetstream.ErrBucketExists) {
				kv, err = js.KeyValue(ctx, want.Bucket)
			}
			return err
		}
		if err != nil {
			return err
		}
		cur := s.CachedInfo().Config.Replicas
		if cur >= max(want.Replicas, 1) {
			if cur > want.Replicas {
				keepHigher(log, "KV_"+want.Bucket, "replicas", int64(cur), int64(want.Replicas), false)
			}
			kv, err = js.KeyValue(ctx, want.Bucket)
			return err
		}
		kv, err = js.UpdateKeyValue(ctx, want)
		return err
	})
	return kv, err
}

// retryEnsure runs op until it succeeds, fails permanently, or 30 s (or
// ctx) pass.
func retryEnsure(ctx context.Context, what string, replicas int, op func(context.Context) error) error {
	deadline := time.Now().Add(ensureTimeout)
	wait := 100 * time.Millisecond
	for {
		err := op(ctx)
		if err == nil {
			return nil
		}
		if errors.Is(err, jetstream.ErrJetStreamNotEnabled) || errors.Is(err, jetstream.ErrJetStreamNotEnabledForAccount) {
			return fmt.Errorf("%w: %s: %v", ErrUnavailable, what, err)
		}
		var apiErr *jetstream.APIError
		if errors.As(err, &apiErr) {
			switch apiErr.ErrorCode {
			case codeReplicasNotSupported:
				return fmt.Errorf("%w: %s: %d replicas configured (FLOWGATE_NATS_REPLICAS) but the NATS server is not part of a cluster: %v",
					ErrReplicas, what, replicas, err)
			case codeNoPeers, codeInsufficientRes:
				return fmt.Errorf("%w: %s: %d replicas configured (FLOWGATE_NATS_REPLICAS) but the NATS cluster cannot place them (fewer servers with JetStream than replicas, or no room): %v",
					ErrReplicas, what, replicas, err)
			}
			if apiErr.Code >= 400 && apiErr.Code < 500 {
				return fmt.Errorf("bus: %s: %w", what, err) // a configuration JetStream refuses
			}
		}
		if ctx.Err() != nil || time.Now().Add(wait).After(deadline) {
			return fmt.Errorf("%w: %s: %v", ErrUnavailable, what, err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w: %s: %v", ErrUnavailable, what, ctx.Err())
		case <-time.After(wait):
		}
		wait = min(wait*2, 2*time.Second)
	}
}
