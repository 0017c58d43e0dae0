package app_test

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	_ "modernc.org/sqlite"

	"github.com/flowgate/flowgate/cmd/flowgate/app"
	"github.com/flowgate/flowgate/shared/apitest"
	"github.com/flowgate/flowgate/shared/bus"
	"github.com/flowgate/flowgate/shared/bus/bustest"
	"github.com/flowgate/flowgate/shared/store/sqlite"
)

// broadcastSize is the audience of TestBroadcastSurvivesSIGKILL: 100,000 by
// default (the acceptance size); FLOWGATE_BROADCAST_CONTACTS overrides it.
func broadcastSize(t *testing.T) int {
	if v := os.Getenv("FLOWGATE_BROADCAST_CONTACTS"); v != "" {
		n, err := strconv.Atoi(v)
		require.NoError(t, err)
		return n
	}
	return 100_000
}

// buildFlowgate builds the flowgate binary without the race detector (the
// child is killed and measured; the race detector would make it ~10x slower).
func buildFlowgate(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "flowgate")
	goTool := filepath.Join(runtime.GOROOT(), "bin", "go")
	cmd := exec.Command(goTool, "build", "-o", bin, "github.com/flowgate/flowgate/cmd/flowgate")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "go build: %s", out)
	return bin
}

func freeAddr(t *testing.T) string {
	t.Helper()
	return bustest.FreeAddr(t)
}

// devProcess is `flowgate dev` running as a child process.
type devProcess struct {
	t    *testing.T
	cmd  *exec.Cmd
	log  *os.File
	base string
}

const childAdminKey = "broadcast-admin-key-0123456789"

func startChild(t *testing.T, bin, dir, addr string) *devProcess {
	t.Helper()
	logf, err := os.OpenFile(filepath.Join(dir, "child.log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	require.NoError(t, err)
	cmd := exec.Command(bin, "dev", "--data-dir", dir, "--http-addr", addr, "--admin-key", childAdminKey,
		"--no-demo", "--log-level", "warn")
	cmd.Stdout, cmd.Stderr = logf, logf
	require.NoError(t, cmd.Start())
	t.Cleanup(func() { // a test that fails before it stops the process
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	})
	p := &devProcess{t: t, cmd: cmd, log: logf, base: "http://" + addr}
	require.Eventually(t, func() bool {
		resp, err := http.Get(p.base + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	}, 30*time.Second, 50*time.Millisecond, "flowgate dev did not become ready")
	return p
}

// massBot creates the bot "mass" with the flow "hello" and returns its API
// key.
func (p *devProcess) massBot() string {
	p.t.Helper()
	var bot struct {
		APIKey string `json:"api_key"`
	}
	code, b := p.call("POST", "/v1/bots", childAdminKey, `{"id":"mass","name":"Mass"}`)
	require.Equal(p.t, 201, code, string(b))
	require.NoError(p.t, json.Unmarshal(b, &bot))
	code, b = p.call("PUT", "/v1/bots/mass/flows/hello", bot.APIKey, `{"steps":[{"id":"hi","type":"send","text":"Hello {{ name }}"}]}`)
	require.Equal(p.t, 200, code, string(b))
	return bot.APIKey
}

// sqliteCounter opens the SQLite database of a Flowgate data directory
// (closed when the test ends) and returns a function giving a query's
// count.
func sqliteCounter(t *testing.T, dir string) func(q string, args ...any) int {
	t.Helper()
	db, err := sql.Open("sqlite", filepath.Join(dir, sqlite.FileName)+"?_pragma=busy_timeout(5000)")
	require.NoError(t, err)
	t.Cleanup(func() { _ = db.Close() })
	return func(q string, args ...any) int {
		t.Helper()
		var c int
		require.NoError(t, db.QueryRow(q, args...).Scan(&c))
		return c
	}
}

func (p *devProcess) kill() {
	p.t.Helper()
	require.NoError(p.t, p.cmd.Process.Signal(syscall.SIGKILL))
	_ = p.cmd.Wait()
	p.log.Close()
}

func (p *devProcess) stop() {
	p.t.Helper()
	require.NoError(p.t, p.cmd.Process.Signal(syscall.SIGTERM))
	done := make(chan error, 1)
	go func() { done <- p.cmd.Wait() }()
	select {
	case err := <-done:
		require.NoError(p.t, err)
	case <-time.After(90 * time.Second):
		_ = p.cmd.Process.Kill()
		p.t.Fatal("flowgate dev did not stop within 90 s")
	}
	p.log.Close()
}

func (p *devProcess) call(method, path, key, body string) (int, []byte) {
	p.t.Helper()
	code, b, err := apitest.Client{Base: p.base}.Do(method, path, key, body)
	if err != nil {
		return 0, []byte(err.Error()) // the process may be down: a status the test can wait on
	}
	return code, b
}

type triggerStatus struct {
	Status   string `json:"status"`
	Counters struct {
		Targeted    int64            `json:"targeted"`
		RunsCreated int64            `json:"runs_created"`
		Skipped     int64            `json:"skipped"`
		SkipReasons map[string]int64 `json:"skip_reasons"`
	} `json:"counters"`
}

func (p *devProcess) trigger(bot, key, id string) (triggerStatus, bool) {
	code, b := p.call("GET", "/v1/bots/"+bot+"/triggers/"+id, key, "")
	var out struct{ Trigger triggerStatus }
	if code != 200 || json.Unmarshal(b, &out) != nil {
		return triggerStatus{}, false
	}
	return out.Trigger, true
}

// TestBroadcastSurvivesSIGKILL is the broadcast acceptance test: 100k
// contacts imported with `flowgate contacts import`, one trigger with
// "everyone", and `flowgate dev` killed with SIGKILL twice during the
// fan-out. It must end with exactly one run and exactly one sandbox message
// per contact.
func TestBroadcastSurvivesSIGKILL(t *testing.T) {
	n := broadcastSize(t)
	bin := buildFlowgate(t)
	dir := t.TempDir()
	addr := freeAddr(t)
	p := startChild(t, bin, dir, addr)
	key := p.massBot()

	// Import through the command line, as a user would.
	csvPath := filepath.Join(t.TempDir(), "contacts.csv")
	var csv bytes.Buffer
	csv.WriteString("channel,external_id,name,plan\n")
	for i := range n {
		fmt.Fprintf(&csv, "sandbox,user-%07d,User %d,%s\n", i, i, []string{"Basic", "Premium"}[i%2])
	}
	require.NoError(t, os.WriteFile(csvPath, csv.Bytes(), 0o600))
	start := time.Now()
	imp := exec.Command(bin, "contacts", "import", csvPath, "--url", p.base, "--bot", "mass")
	imp.Env = append(os.Environ(), "FLOWGATE_API_KEY="+key)
	var stdout, stderr bytes.Buffer
	imp.Stdout, imp.Stderr = &stdout, &stderr
	require.NoError(t, imp.Run(), stderr.String())
	var sum struct{ Created, Updated, RejectedCount int }
	require.NoError(t, json.Unmarshal(stdout.Bytes(), &sum), stdout.String())
	require.Equal(t, n, sum.Created, stdout.String())
	require.Zero(t, sum.RejectedCount)
	// stderr is not a terminal here: no carriage-return progress bar in it.
	require.NotContains(t, stderr.String(), "\r", "no progress bar when stderr is not a terminal")
	t.Logf("imported %d contacts in %s", n, time.Since(start).Round(time.Millisecond))

	start = time.Now()
	code, b := p.call("POST", "/v1/bots/mass/triggers", key, `{"flow":"hello","channel":"sandbox","audience":{"everyone":true},"data":{"campaign":"launch"}}`)
	require.Equal(t, 202, code, string(b))
	var acc struct {
		TriggerID string `json:"trigger_id"`
	}
	require.NoError(t, json.Unmarshal(b, &acc))
	id := acc.TriggerID

	// Kill twice during the fan-out, at a quarter and at half of the runs.
	for i, frac := range []float64{0.25, 0.5} {
		require.Eventually(t, func() bool {
			st, ok := p.trigger("mass", key, id)
			return ok && float64(st.Counters.RunsCreated) >= frac*float64(n)
		}, 5*time.Minute, 20*time.Millisecond, "fan-out did not reach %.0f%%", frac*100)
		st, _ := p.trigger("mass", key, id)
		require.NotEqual(t, "done", st.Status, "the fan-out finished before kill %d: nothing was tested", i+1)
		p.kill()
		t.Logf("kill %d at %d runs (%s)", i+1, st.Counters.RunsCreated, time.Since(start).Round(time.Millisecond))
		p = startChild(t, bin, dir, addr)
	}
	var final triggerStatus
	require.Eventually(t, func() bool {
		st, ok := p.trigger("mass", key, id)
		final = st
		return ok && st.Status == "done"
	}, 5*time.Minute, 100*time.Millisecond, "the fan-out did not finish after the kills")
	t.Logf("fan-out done in %s", time.Since(start).Round(time.Millisecond))
	require.Equal(t, int64(n), final.Counters.Targeted, "counters are exact across kills")
	require.Equal(t, int64(n), final.Counters.RunsCreated)
	require.Zero(t, final.Counters.Skipped)

	count := sqliteCounter(t, dir)
	require.Eventually(t, func() bool {
		return count(`SELECT count(*) FROM sandbox WHERE bot_id = 'mass'`) >= n
	}, 5*time.Minute, 200*time.Millisecond, "not every contact got its message")
	t.Logf("every message delivered to the sandbox after %s", time.Since(start).Round(time.Millisecond))
	p.stop()

	require.Equal(t, n, count(`SELECT count(*) FROM runs WHERE trigger_id = ?`, id), "exactly one run per contact")
	require.Equal(t, n, count(`SELECT count(DISTINCT contact_id) FROM runs WHERE trigger_id = ?`, id))
	require.Equal(t, n, count(`SELECT count(*) FROM messages WHERE trigger_id = ?`, id))
	require.Equal(t, n, count(`SELECT count(*) FROM sandbox WHERE bot_id = 'mass'`), "no duplicate message")
	require.Equal(t, n, count(`SELECT count(DISTINCT to_addr) FROM sandbox WHERE bot_id = 'mass'`), "every contact got one")
	require.Equal(t, n, count(`SELECT count(*) FROM contacts WHERE bot_id = 'mass' AND json_extract(last_request, '$.campaign') = 'launch'`),
		"the trigger's data is every contact's last_request")
	require.Zero(t, count(`SELECT count(*) FROM runs WHERE trigger_id = ? AND status <> 'completed'`, id))
}

// TestContactsImportCommand runs the import client against an in-process
// Flowgate: format from the extension, progress on stderr, errors named.
func TestContactsImportCommand(t *testing.T) {
	d, c := startDev(t, t.TempDir())
	// Stop's error is not this test's subject (a stop right after start can
	// catch the channel workers still setting up).
	defer func() { _ = d.Stop() }()
	key := setupAcme(c)
	dir := t.TempDir()
	nd := filepath.Join(dir, "people.ndjson")
	require.NoError(t, os.WriteFile(nd, []byte(`{"channel":"whatsapp","external_id":"06 1234 5678","name":"Ann"}`+"\n"+
		`{"channel":"whatsapp","external_id":"123"}`+"\n"), 0o600))
	var stdout, stderr bytes.Buffer
	err := app.ContactsCommand(context.Background(), []string{"import", nd, "--url", "http://" + d.Addr, "--bot", "acme",
		"--key", key, "--region", "nl"}, &stdout, &stderr)
	var rejected app.RejectedRowsError
	require.ErrorAs(t, err, &rejected, "a rejected row fails the command (exit status 2): %s", stderr.String())
	require.Equal(t, 1, rejected.Count)
	require.Equal(t, 2, rejected.ExitCode())
	var sum struct {
		Created  int
		Rejected []struct {
			Line  int
			Field string
		}
	}
	require.NoError(t, json.Unmarshal(stdout.Bytes(), &sum))
	require.Equal(t, 1, sum.Created)
	require.Len(t, sum.Rejected, 1)
	require.Equal(t, 2, sum.Rejected[0].Line)
	require.Equal(t, "external_id", sum.Rejected[0].Field)
	require.NotContains(t, stderr.String(), "\r", "no progress bar when stderr is not a terminal")
	_, err = d.Store.GetContactByExternalID(context.Background(), "acme", "whatsapp", "+31612345678")
	require.NoError(t, err)

	txt := filepath.Join(dir, "people.txt")
	require.NoError(t, os.WriteFile(txt, []byte("x"), 0o600))
	err = app.ContactsCommand(context.Background(), []string{"import", txt, "--url", "http://" + d.Addr, "--bot", "acme", "--key", key}, io.Discard, io.Discard)
	require.ErrorContains(t, err, "--format")
	csv := filepath.Join(dir, "bad.csv")
	require.NoError(t, os.WriteFile(csv, []byte("name\nAnn\n"), 0o600))
	err = app.ContactsCommand(context.Background(), []string{"import", csv, "--url", "http://" + d.Addr, "--bot", "acme", "--key", key, "--quiet"}, io.Discard, io.Discard)
	require.ErrorContains(t, err, "422")
	require.ErrorContains(t, err, "header")
	err = app.ContactsCommand(context.Background(), []string{"import", csv, "--url", "http://" + d.Addr, "--bot", "acme", "--key", "wrong"}, io.Discard, io.Discard)
	require.ErrorContains(t, err, "401")
}

// TestBroadcastFilterAndCancelAPI drives broadcasts through the HTTP API of
// an in-process Flowgate: contacts imported as CSV, a filtered trigger
// whose counters show the skips with reasons, and a cancel mid-broadcast.
func TestBroadcastFilterAndCancelAPI(t *testing.T) {
	d, c := startDev(t, t.TempDir())
	defer func() { _ = d.Stop() }()
	key := setupAcme(c)
	const n = 20_000
	var csv strings.Builder
	csv.WriteString("channel,external_id,name,plan,city,opted_out\n")
	want, mismatch, optedOut := 0, 0, 0
	for i := range n {
		plan, city, opted := []string{"Basic", "Premium"}[i%2], []string{"Lima", "Quito", "Lima"}[i%3], i%5 == 1
		switch {
		case plan != "Premium" || city != "Lima":
			mismatch++ // the filter is applied first
		case opted:
			optedOut++
		default:
			want++
		}
		fmt.Fprintf(&csv, "sandbox,p%05d,P %d,%s,%s,%t\n", i, i, plan, city, opted)
	}
	code, b := c.call("POST", "/v1/bots/acme/contacts/import", key, `{"channel":"sandbox"}`) // application/json
	require.Equal(t, 415, code, string(b))
	c.importCSV("acme", key, csv.String())

	// A segment: only Premium contacts in Lima who did not opt out.
	acc := c.must("POST", "/v1/bots/acme/triggers", key,
		`{"flow":"welcome","channel":"sandbox","audience":{"filter":"plan == \"Premium\" && city == \"Lima\""},"data":{"referralCode":"SEG"}}`, 202)
	id := acc["trigger_id"].(string)
	var tr map[string]any
	require.Eventually(t, func() bool {
		code, b := c.call("GET", "/v1/bots/acme/triggers/"+id, key, "")
		if code != 200 {
			return false
		}
		var out struct{ Trigger map[string]any }
		require.NoError(t, json.Unmarshal(b, &out))
		tr = out.Trigger
		return tr["status"] == "done"
	}, 2*time.Minute, 50*time.Millisecond)
	counters := tr["counters"].(map[string]any)
	require.EqualValues(t, n, counters["targeted"])
	require.EqualValues(t, want, counters["runs_created"])
	require.EqualValues(t, n-want, counters["skipped"])
	require.Equal(t, map[string]any{"filter_mismatch": float64(mismatch), "opted_out": float64(optedOut)}, counters["skip_reasons"])
	// p00000 is Basic; p00003 is Premium in Lima (i%6 == 3), and i%5 != 1.
	require.Empty(t, c.sandbox("acme", key, "p00000"))
	require.Eventually(t, func() bool { return len(c.sandbox("acme", key, "p00003")) == 3 }, 30*time.Second, 50*time.Millisecond)
	require.Equal(t, "Referral code: SEG", c.sandbox("acme", key, "p00003")[2].Text)

	// Everyone, cancelled as soon as the orchestrator has taken it.
	acc = c.must("POST", "/v1/bots/acme/triggers", key, `{"flow":"welcome","channel":"sandbox","audience":{"everyone":true}}`, 202)
	id = acc["trigger_id"].(string)
	require.Eventually(t, func() bool {
		code, _ := c.call("GET", "/v1/bots/acme/triggers/"+id, key, "")
		return code == 200
	}, 30*time.Second, 5*time.Millisecond)
	cancel := c.must("POST", "/v1/bots/acme/triggers/"+id+"/cancel", key, "", 200)
	require.Equal(t, "cancelled", cancel["trigger"].(map[string]any)["status"])
	runsOf := func() int {
		var count int
		cursor := ""
		for {
			page := c.must("GET", "/v1/bots/acme/runs?limit=1000&trigger="+id+"&cursor="+cursor, key, "", 200)
			count += len(page["runs"].([]any))
			next, _ := page["next_cursor"].(string)
			if next == "" {
				return count
			}
			cursor = next
		}
	}
	// The batch under way finishes (its runs are stored as it ends, which
	// under -race on a loaded machine can take seconds); no new one starts.
	// The orchestrator is done with the trigger once its consumer holds no
	// message: two equal counts alone could both be read before the first
	// batch was stored (a CI run read 0 twice, 5 s apart, then 800).
	cons, err := d.Bus.JetStream().Consumer(context.Background(), bus.StreamTriggers, bus.TriggerConsumer.Durable)
	require.NoError(t, err)
	stopped := -1
	require.Eventually(t, func() bool {
		info, err := cons.Info(context.Background())
		if err != nil || info.NumPending > 0 || info.NumAckPending > 0 {
			return false
		}
		before := runsOf()
		time.Sleep(2 * time.Second)
		stopped = runsOf()
		return stopped == before
	}, 90*time.Second, 10*time.Millisecond, "the fan-out settles")
	time.Sleep(3 * time.Second)
	require.Equal(t, stopped, runsOf(), "the fan-out stopped")
	require.Less(t, stopped, n-n/5, "a cancelled broadcast does not reach everyone")
	t.Logf("cancelled after %d runs", stopped)

	// Counters equal the stored runs, and every message the sandbox
	// delivered belongs to a stored run of the trigger (two each: the
	// trigger has no referral code).
	tr = c.must("GET", "/v1/bots/acme/triggers/"+id, key, "", 200)["trigger"].(map[string]any)
	require.EqualValues(t, stopped, tr["counters"].(map[string]any)["runs_created"])
	stored := map[string]bool{}
	for cursor := ""; ; {
		page := c.must("GET", "/v1/bots/acme/runs?limit=1000&trigger="+id+"&cursor="+cursor, key, "", 200)
		for _, r := range page["runs"].([]any) {
			stored[r.(map[string]any)["id"].(string)] = true
		}
		cursor, _ = page["next_cursor"].(string)
		if cursor == "" {
			break
		}
	}
	delivered := func() (n int) {
		for after := int64(0); ; {
			code, b := c.call("GET", fmt.Sprintf("/v1/bots/acme/sandbox/messages?limit=10000&after=%d", after), key, "")
			require.Equal(t, 200, code, string(b))
			var out struct{ Messages []sandboxMsg }
			require.NoError(t, json.Unmarshal(b, &out))
			if len(out.Messages) == 0 {
				return n
			}
			for _, m := range out.Messages {
				if strings.HasPrefix(m.RunID, id+".") {
					require.True(t, stored[m.RunID], "message %d delivered for run %s, which is not stored", m.Seq, m.RunID)
					n++
				}
				after = m.Seq
			}
		}
	}
	require.Eventually(t, func() bool { return delivered() == 2*stopped }, 60*time.Second, 100*time.Millisecond,
		"every stored run's messages are delivered, and no others")
}
