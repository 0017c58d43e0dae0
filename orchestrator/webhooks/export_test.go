package webhooks

import "time"

// SetMaxRunWait sets how long a Recrubo payload waits for its run to be
// stored, for the duration of a test (call it before the service starts).
func SetMaxRunWait(d time.Duration) (restore func()) {
	old := maxRunWait
	maxRunWait = d
	return func() { maxRunWait = old }
}
