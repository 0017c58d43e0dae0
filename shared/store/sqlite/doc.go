// Package sqlite is the embedded store adapter: one SQLite database file
// (dir/flowgate.db, WAL mode) written by a single writer goroutine that
// group-commits small writes, read through a pool of reader connections.
// It is the default for `flowgate dev` and single-node installs, and it
// passes the same contract suite (storetest) as the MongoDB adapter.
//
// # Tables and keys
//
//	bots       id (primary key)
//	api_keys   id; hash unique
//	flows      (bot_id, id, version), WITHOUT ROWID
//	events     (bot_id, name); index (bot_id, token_hash)
//	contacts   id; unique (bot_id, channel, external_id); (bot_id, id) and
//	           (bot_id, channel, id) for streaming an audience in id order
//	triggers   id; counters are columns, skip reasons a JSON object
//	runs       id; unique (contact_id, trigger key) where the key is
//	           "t:"+trigger_id, or "r:"+id for runs without a trigger: one
//	           run per trigger + contact, and the runs of a contact;
//	           (bot_id, created_at, id) for listing newest first;
//	           partial (wait_until) WHERE status = 'waiting' for timers
//	messages   id; (run_id, seq); partial (bot_id, provider_message_id)
//	sandbox    seq INTEGER PRIMARY KEY AUTOINCREMENT; message_id unique;
//	           (bot_id, to_addr, seq), (bot_id, seq)
//
// Maps and raw JSON are stored as JSON text, times as INTEGER nanoseconds
// since the epoch (UTC). The schema is created or migrated on Open; every
// statement is idempotent.
//
// # Consistency
//
// Every write goes through one goroutine and one connection (BEGIN
// IMMEDIATE), so read-modify-write inside an operation is atomic: PutFlow
// versions, contact upsert merges, message status moves and counter
// increments never race. Small writes share a transaction (group commit,
// see WithGroupCommit): each must change at most one statement's worth of
// rows, so SQLite's statement atomicity keeps it all or nothing, and each
// caller gets its own result. Bulk and multi-statement writes (CreateRuns,
// ImportContacts, DeleteContact, ExpireBefore chunks, InsertMessages of
// more than 64) get a transaction of their own. A caller is answered only
// after COMMIT: an acknowledged write survives the process being killed
// (TestCrashLosesNoAcknowledgedWrite). With synchronous=NORMAL (default) a
// power loss may lose the last commits; WithSynchronous("FULL") syncs every
// commit.
//
// # Limits
//
// One process writes: two processes may open the same file, but their
// writes queue on SQLite's lock (busy_timeout 5s). Throughput is bounded by
// one writer core; see bench_test.go for figures. ExpireBefore scans runs
// (no index on updated_at, which every UpdateRun changes) on a reader
// connection, then deletes by id in chunks. Listing runs by trigger walks
// the bot's runs newest first (no trigger index, to keep inserts fast).
package sqlite
