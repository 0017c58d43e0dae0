package sqlite_test

import (
	"context"
	"database/sql"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/flowgate/flowgate/shared/store"
	"github.com/flowgate/flowgate/shared/store/sqlite"
	"github.com/flowgate/flowgate/shared/testclock"
)

// testAt is this file's one instant (the test clock's).
var testAt = testclock.Date(2026, 3, 1, 12, 0, 0)

// TestSharedWritesAreAllOrNothing makes the second statement of each
// multi-statement write fail (a SQLite trigger that raises, the way a
// failing statement does: that statement undone, the transaction open)
// and checks that the first statement's change is gone too. Each of these
// writes joins the group commit's shared transaction: without a savepoint
// its half would be committed with the batch (a trigger-scope key stored
// without its scope, which reads as an admin key; a secret rotated with
// the old one lost; a subscription deleted but for its previous secret; a
// run kept for a deleted contact).
func TestSharedWritesAreAllOrNothing(t *testing.T) {
	ctx := context.Background()
	for _, c := range []struct {
		name string
		// fault is the SQLite trigger event that fails, e.g.
		// "INSERT ON api_key_meta".
		fault []string
		setup func(t *testing.T, s *sqlite.Store)
		write func(s *sqlite.Store) error
		// unchanged is a query whose answer must be the same before and
		// after the failed write.
		unchanged string
	}{
		{
			name:  "CreateAPIKey",
			fault: []string{"INSERT ON api_key_meta"},
			write: func(s *sqlite.Store) error {
				return s.CreateAPIKey(ctx, store.APIKey{ID: "k2", BotID: "b1", Hash: strings.Repeat("ef", 32), Prefix: "fg_ef",
					Scope: store.ScopeTrigger, Name: "crm"})
			},
			unchanged: `SELECT count(*) FROM api_keys WHERE id = 'k2'`,
		},
		{
			name:  "RevokeAPIKey",
			fault: []string{"INSERT ON api_key_meta", "UPDATE ON api_key_meta"},
			setup: func(t *testing.T, s *sqlite.Store) {
				require.NoError(t, s.CreateAPIKey(ctx, store.APIKey{ID: "k1", BotID: "b1", Hash: strings.Repeat("ab", 32), Prefix: "fg_ab"}))
			},
			write:     func(s *sqlite.Store) error { return s.RevokeAPIKey(ctx, "b1", "k1", testAt) },
			unchanged: `SELECT revoked FROM api_keys WHERE id = 'k1'`,
		},
		{
			name:  "RotateSubscriptionSecret",
			fault: []string{"INSERT ON subscription_previous_secrets", "UPDATE ON subscription_previous_secrets"},
			setup: func(t *testing.T, s *sqlite.Store) {
				require.NoError(t, s.CreateSubscription(ctx, store.Subscription{ID: "wh1", BotID: "b1", URL: "https://example.com/hook",
					Secret: "0123456789abcdef", EventTypes: []string{"run.status"}, CreatedAt: testAt}))
			},
			write:     func(s *sqlite.Store) error { return s.RotateSubscriptionSecret(ctx, "b1", "wh1", "fedcba9876543210") },
			unchanged: `SELECT secret FROM subscriptions WHERE id = 'wh1'`,
		},
		{
			name:  "DeleteSubscription",
			fault: []string{"DELETE ON subscription_previous_secrets"},
			setup: func(t *testing.T, s *sqlite.Store) {
				require.NoError(t, s.CreateSubscription(ctx, store.Subscription{ID: "wh1", BotID: "b1", URL: "https://example.com/hook",
					Secret: "0123456789abcdef", EventTypes: []string{"run.status"}, CreatedAt: testAt}))
				require.NoError(t, s.RotateSubscriptionSecret(ctx, "b1", "wh1", "fedcba9876543210"))
			},
			write:     func(s *sqlite.Store) error { return s.DeleteSubscription(ctx, "b1", "wh1") },
			unchanged: `SELECT count(*) FROM subscriptions WHERE id = 'wh1'`,
		},
		{
			name:  "CreateRun for a deleted contact",
			fault: []string{"DELETE ON runs"},
			setup: func(t *testing.T, s *sqlite.Store) {
				c, _, err := s.UpsertContact(ctx, store.ContactUpsert{BotID: "b1", Channel: "whatsapp", ExternalID: "+15550001", NewID: "c1"})
				require.NoError(t, err)
				require.NoError(t, s.DeleteContact(ctx, "b1", c.ID))
			},
			write: func(s *sqlite.Store) error {
				_, _, err := s.CreateRun(ctx, store.Run{ID: "r1", BotID: "b1", TriggerID: "t1", FlowID: "f", FlowVersion: 1,
					ContactID: "c1", Channel: "whatsapp", Status: store.RunRunning})
				return err
			},
			unchanged: `SELECT count(*) FROM runs WHERE id = 'r1'`,
		},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			s, err := sqlite.Open(ctx, dir)
			require.NoError(t, err)
			defer s.Close()
			require.NoError(t, s.CreateBot(ctx, store.Bot{ID: "b1", Name: "B"}))
			if c.setup != nil {
				c.setup(t, s)
			}
			db, err := sql.Open("sqlite", "file:"+filepath.Join(dir, sqlite.FileName)+"?_pragma=busy_timeout(5000)")
			require.NoError(t, err)
			defer db.Close()
			var before string
			require.NoError(t, db.QueryRow(c.unchanged).Scan(&before))
			for i, ev := range c.fault {
				_, err := db.Exec(`CREATE TRIGGER fault` + string(rune('a'+i)) + ` BEFORE ` + ev + ` BEGIN SELECT RAISE(ABORT, 'injected fault'); END`)
				require.NoError(t, err)
			}
			err = c.write(s)
			require.ErrorContains(t, err, "injected fault")
			var after string
			require.NoError(t, db.QueryRow(c.unchanged).Scan(&after))
			require.Equal(t, before, after, "%s: the write's first statement outlived its failure", c.unchanged)
		})
	}
}
