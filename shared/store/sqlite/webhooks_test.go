package sqlite_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/flowgate/flowgate/shared/store/sqlite"
	"github.com/flowgate/flowgate/shared/store/storetest"
)

func TestSubscriptions(t *testing.T) {
	storetest.RunSubscriptions(t, openTemp(t), time.Nanosecond)
}

// Subscriptions survive a reopen (the table is part of the migrated schema).
func TestSubscriptionsSurviveReopen(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s, err := sqlite.Open(ctx, dir)
	require.NoError(t, err)
	storetest.RunSubscriptions(t, s, time.Nanosecond)
	require.NoError(t, s.Close())
	s, err = sqlite.Open(ctx, dir)
	require.NoError(t, err)
	defer s.Close()
	got, err := s.ListSubscriptions(ctx, "sub-a")
	require.NoError(t, err)
	require.Len(t, got, 1)
	require.Equal(t, "wh_a2", got[0].ID)
}
