package orchestrator

import (
	"fmt"
	"testing"
)

// BenchmarkReply is the step a user's reply takes: the contact's waiting
// run read, the reply applied under the run's lock (the run read again),
// the commit (the "thanks" message stored, its bundle and the status
// change published, the run written), with the real SQLite store and an
// embedded NATS server. BenchmarkReplyBaselineGetRun is the run's read
// alone, in the same setting: what reading the run again under the lock
// adds.
func BenchmarkReply(b *testing.B) {
	u := newUnit(b)
	users := dispatchAll(u, b.N)
	b.ResetTimer()
	for i, user := range users {
		if err := u.o.handleInbound(u.ctx, u.reply(user, fmt.Sprintf("in-%d", i), "Ann")); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkReplyBaselineGetRun(b *testing.B) {
	u := newUnit(b)
	users := dispatchAll(u, b.N)
	ids := make([]string, len(users))
	for i, user := range users {
		ids[i] = RunID("t-"+user, u.contact(user).ID)
	}
	b.ResetTimer()
	for _, id := range ids {
		if _, err := u.o.store.GetRun(u.ctx, unitBot, id); err != nil {
			b.Fatal(err)
		}
	}
}

// dispatchAll starts the ask flow for n users, each waiting for a reply.
func dispatchAll(u *unit, n int) []string {
	users := make([]string, n)
	for i := range users {
		users[i] = fmt.Sprintf("user-%d", i)
		u.dispatch(users[i], nil)
	}
	return users
}
