package app_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/flowgate/flowgate/shared/events"
	wadouble "github.com/flowgate/flowgate/shared/providerdouble/whatsapp"
	"github.com/flowgate/flowgate/shared/store"
)

// TestRotatedWhatsAppTokenUsedWithoutRestart: Meta rotates the business
// number's token (the double refuses the old one with 190); the operator
// PATCHes the bot; the running WhatsApp worker sends with the new token
// once its bot cache entry ends (FLOWGATE_BOT_CACHE_TTL, 10 s), with no
// restart. (A template: the contacts never wrote, so free-form text would
// wait for the 24-hour window.)
func TestRotatedWhatsAppTokenUsedWithoutRestart(t *testing.T) {
	wa := wadouble.New()
	defer wa.Close()
	d, c := startDev(t, t.TempDir())
	defer func() { require.NoError(t, d.Stop()) }()
	key := waBot(c, wa, "shop")
	c.must("PUT", "/v1/bots/shop/flows/hi", key, `{"steps":[{"id":"t","type":"template","template":"hello","language":"en"}]}`, 200)
	c.must("PUT", "/v1/bots/shop/events/HI", key, `{"flow":"hi"}`, 201)
	// msgOf is the message sent to ext (the flow is one template; the run
	// completes when it is queued, its message carries the outcome).
	msgOf := func(ext string) store.Message {
		ct, err := d.Store.GetContactByExternalID(context.Background(), "shop", events.ChannelWhatsApp, ext)
		if err != nil {
			return store.Message{}
		}
		ms, err := d.Store.ListContactMessages(context.Background(), "shop", ct.ID, 0)
		if err != nil || len(ms) == 0 {
			return store.Message{}
		}
		return ms[0]
	}

	const before = "+4915100000010"
	c.must("POST", "/v1/bots/shop/dispatch/HI", key, `{"from":"`+before+`"}`, 202)
	require.Eventually(t, func() bool { return len(waAccepted(wa, before)) == 1 }, 30*time.Second, 20*time.Millisecond)

	// Meta rotates the token: the worker's cached (old) token is refused.
	const rotated = "rotated-access-token"
	wa.SetAccountToken(waPhoneID, rotated)
	const refused = "+4915100000011"
	c.must("POST", "/v1/bots/shop/dispatch/HI", key, `{"from":"`+refused+`"}`, 202)
	require.Eventually(t, func() bool { return msgOf(refused).Status == store.MessageFailed }, 30*time.Second, 20*time.Millisecond)
	require.Contains(t, msgOf(refused).Error, "access token invalid")

	// The operator rotates it in Flowgate: only the token is sent.
	b := c.must("PATCH", "/v1/bots/shop", key, `{"channels":{"whatsapp":{"access_token":"`+rotated+`"}}}`, 200)
	require.NotContains(t, fmt.Sprint(b), rotated, "the token is write-only")
	patched := time.Now()
	var sentTo string
	for i := 0; sentTo == "" && time.Since(patched) < 60*time.Second; i++ {
		to := fmt.Sprintf("+4915120%06d", i)
		next := time.Now().Add(time.Second) // one attempt a second
		c.must("POST", "/v1/bots/shop/dispatch/HI", key, `{"from":"`+to+`"}`, 202)
		deadline := time.Now().Add(2 * time.Second)
		for time.Now().Before(deadline) {
			if len(waAccepted(wa, to)) == 1 {
				sentTo = to
				break
			}
			if m := msgOf(to); m.Status == store.MessageFailed {
				require.True(t, strings.Contains(m.Error, "access token invalid"), m.Error)
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		time.Sleep(time.Until(next))
	}
	require.NotEmpty(t, sentTo, "the worker never used the rotated token")
	t.Logf("the worker sent with the rotated token %v after the PATCH", time.Since(patched).Round(100*time.Millisecond))
	bot, err := d.Store.GetBot(context.Background(), "shop")
	require.NoError(t, err)
	require.Equal(t, rotated, bot.Channels.WhatsApp.AccessToken)
	require.Equal(t, waAppSecret, bot.Channels.WhatsApp.AppSecret, "the other credentials stay")
}

// TestDeleteContactsDuringBroadcast deletes contacts through the API while a
// broadcast to everyone fans out and runs: every delete answers, the
// broadcast finishes (done, not failed) and the deleted contacts are gone.
func TestDeleteContactsDuringBroadcast(t *testing.T) {
	deleteDuringBroadcast(t)
}

func deleteDuringBroadcast(t *testing.T) {
	dir := t.TempDir()
	d, c := startDev(t, dir)
	defer func() { _ = d.Stop() }()
	key := setupAcme(c)
	const n = 3000
	c.importCSV("acme", key, sandboxCSV(n, "d"))
	var ids []string
	for after := ""; ; {
		cs, err := d.Store.StreamContacts(context.Background(), "acme", store.ContactFilter{After: after, Limit: 1000})
		require.NoError(t, err)
		if len(cs) == 0 {
			break
		}
		for _, ct := range cs {
			ids = append(ids, ct.ID)
		}
		after = cs[len(cs)-1].ID
	}
	require.Len(t, ids, n)

	acc := c.must("POST", "/v1/bots/acme/triggers", key, `{"flow":"welcome","channel":"sandbox","audience":{"everyone":true},"data":{"referralCode":"X"}}`, 202)
	id := acc["trigger_id"].(string)
	// Delete every third contact, from both ends of the id order, while
	// the fan-out and the runs are under way.
	deleted := map[string]bool{}
	for i := 0; i < n/3; i++ {
		for _, ct := range []string{ids[3*i/2], ids[n-1-3*i/2]} {
			if deleted[ct] {
				continue
			}
			code, b := c.call("DELETE", "/v1/bots/acme/contacts/"+ct, key, "")
			require.Contains(t, []int{200, 404}, code, string(b))
			deleted[ct] = true
		}
		if len(deleted) >= n/3 {
			break
		}
	}
	var tr store.Trigger
	require.Eventually(t, func() bool {
		var err error
		tr, err = d.Store.GetTrigger(context.Background(), "acme", id)
		return err == nil && tr.Status == store.TriggerDone
	}, 3*time.Minute, 100*time.Millisecond, "the broadcast finishes")
	// Let the runs that were started finish their sends.
	time.Sleep(3 * time.Second)

	count := sqliteCounter(t, dir)
	require.Equal(t, n-len(deleted), count(`SELECT count(*) FROM contacts WHERE bot_id = 'acme'`))
	require.LessOrEqual(t, tr.Counters.Targeted, int64(n))
	require.GreaterOrEqual(t, tr.Counters.Targeted, int64(n-len(deleted)), "every contact not deleted was targeted")
	// A contact deleted while the fan-out was creating its batch keeps no
	// run and no message: the store drops what is written for a deleted
	// contact (its tombstone) in the same transaction as the write.
	require.Zero(t, count(`SELECT count(*) FROM runs r WHERE r.bot_id = 'acme' AND NOT EXISTS (SELECT 1 FROM contacts c WHERE c.id = r.contact_id)`),
		"runs of deleted contacts left behind")
	require.Zero(t, count(`SELECT count(*) FROM messages m WHERE m.bot_id = 'acme' AND NOT EXISTS (SELECT 1 FROM contacts c WHERE c.id = m.contact_id)`),
		"messages of deleted contacts left behind")
	t.Logf("trigger counters: %+v; %d contacts deleted during the broadcast", tr.Counters, len(deleted))
}
