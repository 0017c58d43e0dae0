package bus

// SetAfterBind makes Consume call f between binding its consumer and its
// first pull, for the duration of a test.
func SetAfterBind(f func(durable string)) (restore func()) {
	old := afterBind
	afterBind = f
	return func() { afterBind = old }
}
