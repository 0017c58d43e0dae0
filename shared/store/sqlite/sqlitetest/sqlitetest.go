// Package sqlitetest opens real SQLite stores for tests.
package sqlitetest

import (
	"context"
	"testing"

	"github.com/flowgate/flowgate/shared/store/sqlite"
)

// Open opens a SQLite store in a new temporary directory, closed when the
// test ends.
func Open(t testing.TB, opts ...sqlite.Option) *sqlite.Store {
	t.Helper()
	return OpenDir(t, t.TempDir(), opts...)
}

// OpenDir opens the SQLite store in dir (e.g. to reopen one a test wrote),
// closed when the test ends.
func OpenDir(t testing.TB, dir string, opts ...sqlite.Option) *sqlite.Store {
	t.Helper()
	st, err := sqlite.Open(context.Background(), dir, opts...)
	if err != nil {
		t.Fatalf("sqlitetest: open %s: %v", dir, err)
	}
	t.Cleanup(func() {
		_ = st.Close()
		if n := st.UnsafeSharedWrites(); n > 0 {
			t.Errorf("sqlitetest: %d shared writes ran several modifying statements outside a savepoint (half of one could be committed)", n)
		}
	})
	return st
}
