package bus

import "time"

// SetAfterBind makes Consume call f between binding its consumer and its
// first pull, for the duration of a test.
func SetAfterBind(f func(durable string)) (restore func()) {
	old := afterBind
	afterBind = f
	return func() { afterBind = old }
}

// ForceStandby switches the standby triggers stream on (after > 0) or off
// whatever the stream's replicas, for the duration of a test.
func ForceStandby(b *Bus, after time.Duration) { b.standbyAfter.Store(int64(after)) }
