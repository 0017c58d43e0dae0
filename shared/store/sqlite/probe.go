package sqlite

import (
	"context"
	"time"
)

// The write probe's table: one row, rewritten by every probe.
func init() {
	schema = append(schema, `CREATE TABLE IF NOT EXISTS write_probe (id INTEGER PRIMARY KEY, at INTEGER NOT NULL)`)
}

// PingWrite proves the database accepts a write now: it rewrites one row
// through the group commit, as every other write goes (readiness checks
// use it; a full disk or a read-only file fails it).
func (s *Store) PingWrite(ctx context.Context) error {
	err := s.w.do(ctx, false, func(t *wtx) error {
		_, err := t.exec(`INSERT INTO write_probe (id, at) VALUES (1, ?) ON CONFLICT (id) DO UPDATE SET at = excluded.at`,
			time.Now().UnixNano())
		return err
	})
	return dbErr("write probe", err)
}
