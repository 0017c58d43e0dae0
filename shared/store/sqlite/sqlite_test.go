package sqlite_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/flowgate/flowgate/shared/store"
	"github.com/flowgate/flowgate/shared/store/sqlite"
	"github.com/flowgate/flowgate/shared/store/storetest"
)

func openTemp(t *testing.T, opts ...sqlite.Option) *sqlite.Store {
	t.Helper()
	s, err := sqlite.Open(context.Background(), t.TempDir(), opts...)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, s.Close()) })
	return s
}

func TestContract(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store { return openTemp(t) },
		storetest.Features{TimePrecision: time.Nanosecond + 1, AtomicBulk: true})
}

// The contract holds without lingering in the group commit as well.
func TestContractNoLinger(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store { return openTemp(t, sqlite.WithGroupCommit(0, 64)) },
		storetest.Features{TimePrecision: time.Nanosecond + 1, AtomicBulk: true, Concurrency: 16})
}
