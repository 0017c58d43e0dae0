// Package floor is the same-run baseline of Flowgate's dispatch path: the
// cheapest pipeline we know with the guarantees Flowgate gives, built from
// the same components (NATS JetStream with file storage, SQLite with the
// store's schema in WAL mode, synchronous=NORMAL) and no Flowgate code:
//
//   - an HTTP handler checks a bearer key, decodes the BuilderBot dispatch
//     body and hands the trigger to a group commit that publishes the
//     triggers waiting (up to 64) as one JetStream message with a dedup id,
//     and answers 202 once JetStream acknowledged it;
//   - a trigger consumer takes the messages waiting (up to 256), stores
//     each trigger (done), its contact (upsert), its run and its messages
//     in one SQLite transaction, publishes one bundle per run with the run
//     id as dedup id, waits for their acknowledgements and acks;
//   - an outbound consumer takes the bundles waiting (up to 256) and, in
//     one transaction, appends each message to the sandbox transcript,
//     marks it sent and counts it on its trigger, then acks.
//
// Each consumer runs two such loops, so one batch's store write overlaps
// the next batch's JetStream work. A redelivered trigger republishes its
// bundle (JetStream drops the duplicate); a redelivered bundle changes
// nothing. It leaves out what a product needs and a floor does not: the
// flow interpreter (its cost is the interpreter baseline), API keys in the
// store, lanes and fairness, pacing, metrics, logs, supersede, replies.
//
// bench/e2e runs the three parts in one process on an embedded NATS server
// (the shape of `flowgate dev`); bench/suite runs each part as a process of
// its own on the external nats-server (the deployed shape, Config.Roles).
package floor

import (
	"bytes"
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/flowgate/flowgate/shared/bus"
	"github.com/flowgate/flowgate/shared/store/sqlite"
)

// Role is one part of the floor.
type Role string

// The floor's parts: a process of the deployed shape runs one of them.
const (
	Ingress  Role = "ingress"  // the HTTP handler and its group commit
	Triggers Role = "triggers" // the trigger consumer (the orchestrator's part)
	Outbound Role = "outbound" // the outbound consumer (the channel worker's part)
)

// Config says which parts to run where.
type Config struct {
	// Dir holds the SQLite database (the store's schema is made there
	// if missing) and, without NATSURL, the embedded NATS server's data.
	Dir string
	// NATSURL is an external NATS server; empty starts an embedded one.
	NATSURL string
	// Replicas of the floor's streams on an external server (0 means 1).
	Replicas int
	// Key is the bearer key the ingress accepts.
	Key string
	// Multi writes one multi-row statement per table and batch (multi.go)
	// instead of one statement per row.
	Multi bool
	// ShareBundles is the most runs' bundles one outbound message carries,
	// as Flowgate's bundles share messages on unpaced channels; 0 or 1
	// publishes one message per run.
	ShareBundles int
	// Roles are the parts to run; none means all three.
	Roles []Role
	// Addr is where the HTTP server listens (dispatch for the ingress,
	// /readyz and /stats for every part); empty picks a free loopback port.
	Addr string
	// Texts are the messages of one run for a dispatch's data; nil is
	// WelcomeTexts (the BuilderBot seed's welcome flow).
	Texts func(data map[string]any) []string
}

// Stats is what the outbound part has sent: the messages, and when the
// first and the last batch of them were stored (Unix ns; 0 before any).
type Stats struct {
	Sent  int64 `json:"sent"`
	First int64 `json:"first_ns"`
	Last  int64 `json:"last_ns"`
}

// Floor is a running floor (some or all of its parts).
type Floor struct {
	cfg         Config
	emb         *bus.Embedded
	nc          *nats.Conn
	js          jetstream.JetStream
	db          *sql.DB
	srv         *http.Server
	addr        string
	reqs        chan *floorReq
	mu          sync.Mutex // the one SQLite writer of this process
	sent        atomic.Int64
	first, last atomic.Int64
	stops       []func()
}

type floorReq struct {
	trigger []byte
	done    chan error
}

type floorTrigger struct {
	ID    string         `json:"id"`
	BotID string         `json:"bot_id"`
	Event string         `json:"event"`
	From  string         `json:"from"`
	Data  map[string]any `json:"data"`
}

type floorBundle struct {
	BotID     string   `json:"bot_id"`
	TriggerID string   `json:"trigger_id"`
	RunID     string   `json:"run_id"`
	To        string   `json:"to"`
	IDs       []string `json:"ids"`
	Texts     []string `json:"texts"`
}

func (c Config) runs(r Role) bool {
	if len(c.Roles) == 0 {
		return true
	}
	for _, x := range c.Roles {
		if x == r {
			return true
		}
	}
	return false
}

// Start starts the configured parts; Stop ends them.
func Start(cfg Config) (*Floor, error) {
	ctx := context.Background()
	for _, r := range cfg.Roles {
		if r != Ingress && r != Triggers && r != Outbound {
			return nil, fmt.Errorf("floor: unknown role %q (ingress, triggers or outbound)", r)
		}
	}
	if cfg.Texts == nil {
		cfg.Texts = WelcomeTexts
	}
	if cfg.Replicas == 0 {
		cfg.Replicas = 1
	}
	f := &Floor{cfg: cfg, reqs: make(chan *floorReq, 1024)}
	ok := false
	defer func() {
		if !ok {
			f.Stop()
		}
	}()
	var err error
	if cfg.NATSURL == "" {
		if f.emb, err = bus.StartEmbedded(bus.EmbeddedConfig{StoreDir: filepath.Join(cfg.Dir, "nats")}); err != nil {
			return nil, err
		}
		if f.nc, err = f.emb.Connect(); err != nil {
			return nil, err
		}
	} else if f.nc, err = nats.Connect(cfg.NATSURL); err != nil {
		return nil, err
	}
	if f.js, err = jetstream.New(f.nc, jetstream.WithPublishAsyncMaxPending(16384)); err != nil {
		return nil, err
	}
	for name, subj := range map[string]string{"FLOOR_TRIGGERS": "floor.triggers", "FLOOR_OUTBOUND": "floor.outbound"} {
		if _, err := f.js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{Name: name, Subjects: []string{subj},
			Storage: jetstream.FileStorage, Retention: jetstream.WorkQueuePolicy, Duplicates: 10 * time.Minute,
			Replicas: cfg.Replicas}); err != nil {
			return nil, err
		}
	}
	if cfg.runs(Triggers) || cfg.runs(Outbound) {
		// The store's schema, then a raw connection to it.
		s, err := sqlite.Open(ctx, cfg.Dir)
		if err != nil {
			return nil, err
		}
		if err := s.Close(); err != nil {
			return nil, err
		}
		if f.db, err = sql.Open("sqlite", "file:"+filepath.Join(cfg.Dir, sqlite.FileName)+
			"?_pragma=busy_timeout(5000)&_pragma=journal_mode(WAL)&_pragma=synchronous(NORMAL)&_pragma=cache_size(-32000)&_txlock=immediate"); err != nil {
			return nil, err
		}
		f.db.SetMaxOpenConns(1)
	}
	triggers, bundles := f.handleTriggers, f.handleBundles
	if cfg.Multi {
		triggers, bundles = f.handleTriggersMulti, f.handleBundlesMulti
	}
	if cfg.runs(Triggers) {
		if err := f.consume("FLOOR_TRIGGERS", triggers); err != nil {
			return nil, err
		}
	}
	if cfg.runs(Outbound) {
		if err := f.consume("FLOOR_OUTBOUND", bundles); err != nil {
			return nil, err
		}
	}
	if cfg.runs(Ingress) {
		batcherDone := make(chan struct{})
		go func() { defer close(batcherDone); f.groupCommit() }()
		f.stops = append(f.stops, func() { close(f.reqs); <-batcherDone })
	}
	addr := cfg.Addr
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	f.addr = l.Addr().String()
	mux := http.NewServeMux()
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) })
	mux.HandleFunc("GET /stats", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(f.Stats())
	})
	if cfg.runs(Ingress) {
		mux.HandleFunc("/", f.dispatch)
	}
	f.srv = &http.Server{Handler: mux}
	go func() { _ = f.srv.Serve(l) }()
	ok = true
	return f, nil
}

// Addr is the address of the floor's HTTP server.
func (f *Floor) Addr() string { return f.addr }

// Stats is what this process's outbound part has sent so far.
func (f *Floor) Stats() Stats {
	return Stats{Sent: f.sent.Load(), First: f.first.Load(), Last: f.last.Load()}
}

// counted records n messages sent in a batch stored at now (Unix ns).
func (f *Floor) counted(n, now int64) {
	if n == 0 {
		return
	}
	f.first.CompareAndSwap(0, now)
	for {
		last := f.last.Load()
		if now <= last || f.last.CompareAndSwap(last, now) {
			break
		}
	}
	f.sent.Add(n)
}

// Stop ends the parts and closes the connections.
func (f *Floor) Stop() {
	if f.srv != nil {
		// Shutdown waits for the handlers in flight (they wait on the
		// group commit, stopped after them) before the request queue closes.
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		if err := f.srv.Shutdown(ctx); err != nil {
			_ = f.srv.Close()
		}
		cancel()
	}
	for i := len(f.stops) - 1; i >= 0; i-- {
		f.stops[i]()
	}
	if f.db != nil {
		f.db.Close()
	}
	if f.nc != nil {
		f.nc.Close()
	}
	if f.emb != nil {
		f.emb.Shutdown()
	}
}

func floorError(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	fmt.Fprintf(w, `{"error":%q}`, msg)
}

// dispatch is POST /v1/bots/{bot}/dispatch/{event}.
func (f *Floor) dispatch(w http.ResponseWriter, r *http.Request) {
	parts := strings.Split(strings.Trim(r.URL.Path, "/"), "/")
	if r.Method != http.MethodPost || len(parts) != 5 || parts[0] != "v1" || parts[1] != "bots" || parts[3] != "dispatch" {
		floorError(w, http.StatusNotFound, "not found")
		return
	}
	if r.Header.Get("Authorization") != "Bearer "+f.cfg.Key {
		floorError(w, http.StatusUnauthorized, "unauthorized")
		return
	}
	var data map[string]any
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20)).Decode(&data); err != nil {
		floorError(w, http.StatusBadRequest, "body: "+err.Error())
		return
	}
	from, _ := data["from"].(string)
	if from == "" {
		floorError(w, http.StatusBadRequest, "from is required")
		return
	}
	id, err := uuid.NewV7()
	if err != nil {
		floorError(w, http.StatusInternalServerError, err.Error())
		return
	}
	t, err := json.Marshal(floorTrigger{ID: id.String(), BotID: parts[2], Event: parts[4], From: from, Data: data})
	if err != nil {
		floorError(w, http.StatusInternalServerError, err.Error())
		return
	}
	req := &floorReq{trigger: t, done: make(chan error, 1)}
	f.reqs <- req
	if err := <-req.done; err != nil {
		floorError(w, http.StatusServiceUnavailable, err.Error())
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusAccepted)
	fmt.Fprintf(w, `{"id":%q}`, id.String())
}

// groupCommit publishes the triggers waiting as one message (a JSON array)
// and answers their requests once JetStream acknowledged it.
func (f *Floor) groupCommit() {
	for first := range f.reqs {
		batch := []*floorReq{first}
	more:
		for len(batch) < 64 {
			select {
			case r, ok := <-f.reqs:
				if !ok {
					break more
				}
				batch = append(batch, r)
			default:
				break more
			}
		}
		var buf bytes.Buffer
		buf.WriteByte('[')
		for i, r := range batch {
			if i > 0 {
				buf.WriteByte(',')
			}
			buf.Write(r.trigger)
		}
		buf.WriteByte(']')
		var head struct {
			ID string `json:"id"`
		}
		_ = json.Unmarshal(first.trigger, &head)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_, err := f.js.Publish(ctx, "floor.triggers", buf.Bytes(), jetstream.WithMsgID(fmt.Sprintf("%s+%d", head.ID, len(batch))))
		cancel()
		for _, r := range batch {
			r.done <- err
		}
	}
}

// consume runs two loops over stream's messages, each handing the
// messages waiting (up to 256) to handle as one batch, then acking them
// (or nak'ing them all when handle fails).
func (f *Floor) consume(stream string, handle func([]jetstream.Msg) error) error {
	ctx := context.Background()
	c, err := f.js.CreateOrUpdateConsumer(ctx, stream, jetstream.ConsumerConfig{Durable: "floor",
		AckPolicy: jetstream.AckExplicitPolicy, MaxAckPending: 4096})
	if err != nil {
		return err
	}
	msgs := make(chan jetstream.Msg, 1024)
	cc, err := c.Consume(func(m jetstream.Msg) { msgs <- m }, jetstream.PullMaxMessages(1024))
	if err != nil {
		return err
	}
	var wg sync.WaitGroup
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for first := range msgs {
				batch := []jetstream.Msg{first}
			more:
				for len(batch) < 256 {
					select {
					case m, ok := <-msgs:
						if !ok {
							break more
						}
						batch = append(batch, m)
					default:
						break more
					}
				}
				err := handle(batch)
				for _, m := range batch {
					if err != nil {
						_ = m.Nak()
					} else {
						_ = m.Ack()
					}
				}
			}
		}()
	}
	f.stops = append(f.stops, func() { cc.Stop(); close(msgs); wg.Wait() })
	return nil
}

const (
	floorInsertTrigger = `INSERT INTO triggers (id, bot_id, source, event, flow_id, channel, spec, idempotency_key, status, cursor,
		targeted, runs_created, version, created_at, updated_at)
		VALUES (?, ?, 'dispatch', ?, 'welcome', 'sandbox', ?, '', 'done', '1', 1, 1, 1, ?, ?) ON CONFLICT (id) DO NOTHING`
	floorUpsertContact = `INSERT INTO contacts (id, bot_id, channel, external_id, name, attributes, last_request, created_at, updated_at)
		VALUES (?, ?, 'sandbox', ?, ?, '{}', ?, ?, ?)
		ON CONFLICT (bot_id, channel, external_id) DO UPDATE SET last_request = excluded.last_request, updated_at = excluded.updated_at
		RETURNING id`
	floorContactID = `SELECT id FROM contacts WHERE bot_id = ? AND channel = 'sandbox' AND external_id = ?`
	floorInsertRun = `INSERT INTO runs (id, bot_id, trigger_id, flow_id, flow_version, contact_id, channel, status, state, data, wait_until, error, version, created_at, updated_at)
		VALUES (?, ?, ?, 'welcome', 1, ?, 'sandbox', 'completed', '{"pc":3}', ?, NULL, '', 1, ?, ?)`
	floorInsertMessage = `INSERT INTO messages (id, bot_id, run_id, trigger_id, contact_id, channel, to_addr, seq, content, status, provider_message_id, error, created_at, updated_at)
		VALUES (?, ?, ?, ?, ?, 'sandbox', ?, ?, ?, 'queued', '', '', ?, ?)`
	floorAppendSandbox = `INSERT INTO sandbox (message_id, bot_id, run_id, to_addr, content, created_at) VALUES (?, ?, ?, ?, ?, ?)
		ON CONFLICT (message_id) DO NOTHING`
	floorMarkSent  = `UPDATE messages SET status = 'sent', provider_message_id = ?, updated_at = ? WHERE id = ? AND bot_id = ? AND status = 'queued'`
	floorCountSent = `UPDATE triggers SET sent = sent + ?, updated_at = ? WHERE id = ? AND bot_id = ?`
)

// tx runs fn in one transaction on the one writer connection, with the
// statements qs prepared.
func (f *Floor) tx(qs []string, fn func(st []*sql.Stmt) error) error {
	return f.txRaw(func(tx *sql.Tx) error {
		st := make([]*sql.Stmt, len(qs))
		for i, q := range qs {
			var err error
			if st[i], err = tx.Prepare(q); err != nil {
				return err
			}
		}
		return fn(st)
	})
}

// decodeAll is the items of the consumed messages, each a JSON array of
// them (triggers, or bundles), in order.
func decodeAll[T any](msgs []jetstream.Msg) ([]T, error) {
	var all []T
	for _, m := range msgs {
		var items []T
		if err := json.Unmarshal(m.Data(), &items); err != nil {
			return nil, err
		}
		all = append(all, items...)
	}
	return all, nil
}

// WelcomeTexts are the BuilderBot seed's welcome flow for data: two
// messages, three with a referral code.
func WelcomeTexts(data map[string]any) []string {
	s := func(k string) string { v, _ := data[k].(string); return v }
	texts := []string{"Welcome " + s("name") + "! 🎉", "You've signed up for the " + s("plan") + " plan."}
	if rc := s("referralCode"); rc != "" {
		texts = append(texts, "Referral code: "+rc)
	}
	return texts
}

func (f *Floor) handleTriggers(msgs []jetstream.Msg) error {
	ts, err := decodeAll[floorTrigger](msgs)
	if err != nil {
		return err
	}
	bundles := make([]floorBundle, 0, len(ts))
	now := time.Now().UnixNano()
	err = f.tx([]string{floorInsertTrigger, floorUpsertContact, floorContactID, floorInsertRun, floorInsertMessage}, func(st []*sql.Stmt) error {
		for _, t := range ts {
			spec, err := json.Marshal(t)
			if err != nil {
				return err
			}
			res, err := st[0].Exec(t.ID, t.BotID, t.Event, string(spec), now, now)
			if err != nil {
				return err
			}
			fresh, err := res.RowsAffected()
			if err != nil {
				return err
			}
			var cid string
			if fresh == 0 {
				// Redelivered: the run is stored; publish its bundle again.
				if err := st[2].QueryRow(t.BotID, t.From).Scan(&cid); err != nil {
					return err
				}
			} else {
				name, _ := t.Data["name"].(string)
				lr, err := json.Marshal(t.Data)
				if err != nil {
					return err
				}
				if err := st[1].QueryRow(uuid.NewString(), t.BotID, t.From, name, string(lr), now, now).Scan(&cid); err != nil {
					return err
				}
			}
			b := floorBundle{BotID: t.BotID, TriggerID: t.ID, RunID: t.ID + "." + cid, To: t.From, Texts: f.cfg.Texts(t.Data)}
			for i := range b.Texts {
				b.IDs = append(b.IDs, fmt.Sprintf("%s:%d", b.RunID, i+1))
			}
			bundles = append(bundles, b)
			if fresh == 0 {
				continue
			}
			lr, _ := json.Marshal(t.Data)
			if _, err := st[3].Exec(b.RunID, t.BotID, t.ID, cid, string(lr), now, now); err != nil {
				return err
			}
			for i, text := range b.Texts {
				content, _ := json.Marshal(map[string]string{"type": "text", "text": text})
				if _, err := st[4].Exec(b.IDs[i], t.BotID, b.RunID, t.ID, cid, t.From, i+1, string(content), now, now); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	return f.publishBundles(bundles)
}

// publishBundles publishes the runs' bundles, ShareBundles of them per
// message (one per run by default; the run id, or a hash of the shared
// message's run ids, as dedup id) and waits for JetStream's
// acknowledgements.
func (f *Floor) publishBundles(bundles []floorBundle) error {
	per := max(1, f.cfg.ShareBundles)
	futs := make([]jetstream.PubAckFuture, 0, (len(bundles)+per-1)/per)
	for lo := 0; lo < len(bundles); lo += per {
		group := bundles[lo:min(lo+per, len(bundles))]
		data, err := json.Marshal(group)
		if err != nil {
			return err
		}
		id := group[0].RunID
		if len(group) > 1 {
			h := sha256.New()
			for _, b := range group {
				h.Write([]byte(b.RunID))
				h.Write([]byte{0})
			}
			id = "outs:" + hex.EncodeToString(h.Sum(nil))
		}
		fut, err := f.js.PublishAsync("floor.outbound", data, jetstream.WithMsgID(id))
		if err != nil {
			return err
		}
		futs = append(futs, fut)
	}
	var errs []error
	for _, fut := range futs {
		select {
		case <-fut.Ok():
		case err := <-fut.Err():
			errs = append(errs, err)
		case <-time.After(10 * time.Second):
			errs = append(errs, errors.New("bundle publish: no acknowledgement in 10 s"))
		}
	}
	return errors.Join(errs...)
}

func (f *Floor) handleBundles(msgs []jetstream.Msg) error {
	bundles, err := decodeAll[floorBundle](msgs)
	if err != nil {
		return err
	}
	now := time.Now().UnixNano()
	var sent int64
	err = f.tx([]string{floorAppendSandbox, floorMarkSent, floorCountSent}, func(st []*sql.Stmt) error {
		for _, b := range bundles {
			var n int64
			for i, id := range b.IDs {
				content, _ := json.Marshal(map[string]string{"type": "text", "text": b.Texts[i]})
				if _, err := st[0].Exec(id, b.BotID, b.RunID, b.To, string(content), now); err != nil {
					return err
				}
				res, err := st[1].Exec("sandbox-"+id, now, id, b.BotID)
				if err != nil {
					return err
				}
				k, err := res.RowsAffected()
				if err != nil {
					return err
				}
				n += k
			}
			if n > 0 {
				if _, err := st[2].Exec(n, now, b.TriggerID, b.BotID); err != nil {
					return err
				}
			}
			sent += n
		}
		return nil
	})
	if err == nil {
		f.counted(sent, time.Now().UnixNano())
	}
	return err
}
