package bus

import (
	"context"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"
)

// SubjectCounts returns how many messages each subject matching filter
// holds in stream (subjects without messages are absent). On a work-queue
// stream that is what is queued or being handled: a message leaves the
// stream when its consumer acks it.
func (b *Bus) SubjectCounts(ctx context.Context, stream, filter string) (map[string]uint64, error) {
	s, err := b.js.Stream(ctx, stream)
	if err != nil {
		return nil, fmt.Errorf("%w: stream %s: %v", ErrUnavailable, stream, err)
	}
	info, err := s.Info(ctx, jetstream.WithSubjectFilter(filter))
	if err != nil {
		return nil, fmt.Errorf("%w: stream %s: %v", ErrUnavailable, stream, err)
	}
	if info.State.Subjects == nil {
		return map[string]uint64{}, nil
	}
	return info.State.Subjects, nil
}

// Queued returns how many messages stream holds on subject (a subject
// without wildcards, or a filter: the sum).
func (b *Bus) Queued(ctx context.Context, stream, subject string) (uint64, error) {
	counts, err := b.SubjectCounts(ctx, stream, subject)
	if err != nil {
		return 0, err
	}
	var n uint64
	for _, c := range counts {
		n += c
	}
	return n, nil
}

// DeleteConsumer deletes a durable consumer; a consumer that does not
// exist is not an error.
func (b *Bus) DeleteConsumer(ctx context.Context, stream, durable string) error {
	err := b.js.DeleteConsumer(ctx, stream, durable)
	if err == nil || errors.Is(err, jetstream.ErrConsumerNotFound) {
		return nil
	}
	return fmt.Errorf("%w: delete consumer %s: %v", ErrUnavailable, durable, err)
}
