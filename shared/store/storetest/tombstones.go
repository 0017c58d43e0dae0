package storetest

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/flowgate/flowgate/shared/store"
)

// testWritesForDeletedContact: a write that was under way for a contact
// when it was deleted (a broadcast's batch read it before the delete)
// brings nothing back: runs and messages written for it after the delete
// are not kept, and messages recorded before the delete for a run stored
// after it go with that run.
func testWritesForDeletedContact(t *testing.T, s store.Store, e env) {
	mkBot(t, s, e)
	mkContact(t, s, e, "c1", "sandbox", "a")
	mkContact(t, s, e, "c2", "sandbox", "b")
	mkContact(t, s, e, "c3", "sandbox", "c")
	mkTrigger(t, s, e, "tr1")
	msg := func(id, run, contact, to string) store.Message {
		return store.Message{ID: id, BotID: e.bot, RunID: run, ContactID: contact, Channel: "sandbox", To: to, Seq: 1,
			Content: json.RawMessage(`{"text":"hi"}`)}
	}
	// A fan-out's fresh path: the message first, the run last; the contact
	// is deleted in between.
	require.NoError(t, s.InsertMessages(e.ctx, []store.Message{msg("m3", "tr1.c3", "c3", "c")}))
	require.NoError(t, s.DeleteContact(e.ctx, e.bot, "c3"))
	require.NoError(t, s.DeleteContact(e.ctx, e.bot, "c1"))

	r, created, err := s.CreateRun(e.ctx, newRun(e, "r1", "", "c1"))
	require.NoError(t, err)
	require.False(t, created, "a run for a deleted contact is not created")
	require.Equal(t, store.RunCancelled, r.Status)
	_, err = s.GetRun(e.ctx, e.bot, "r1")
	requireIs(t, err, store.ErrNotFound)

	runs, made, err := s.CreateRuns(e.ctx, []store.Run{newRun(e, "tr1.c1", "tr1", "c1"), newRun(e, "tr1.c2", "tr1", "c2"), newRun(e, "tr1.c3", "tr1", "c3")})
	require.NoError(t, err)
	require.Equal(t, []bool{false, true, false}, made)
	require.Equal(t, store.RunCancelled, runs[0].Status)
	require.Equal(t, store.RunCancelled, runs[2].Status)
	for _, id := range []string{"tr1.c1", "tr1.c3"} {
		_, err = s.GetRun(e.ctx, e.bot, id)
		requireIs(t, err, store.ErrNotFound, "run %s of a deleted contact", id)
	}
	_, err = s.GetRun(e.ctx, e.bot, "tr1.c2")
	require.NoError(t, err, "the other contact's run is stored")
	_, err = s.GetMessage(e.ctx, e.bot, "m3")
	requireIs(t, err, store.ErrNotFound, "the message recorded before the delete goes with its run")

	require.NoError(t, s.InsertMessages(e.ctx, []store.Message{msg("m1", "tr1.c1", "c1", "a"), msg("m2", "tr1.c2", "c2", "b")}))
	_, err = s.GetMessage(e.ctx, e.bot, "m1")
	requireIs(t, err, store.ErrNotFound, "a message for a deleted contact is not kept")
	_, err = s.GetMessage(e.ctx, e.bot, "m2")
	require.NoError(t, err)
}
