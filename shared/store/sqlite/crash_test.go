package sqlite_test

import (
	"bufio"
	"context"
	"database/sql"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/flowgate/flowgate/shared/store"
	"github.com/flowgate/flowgate/shared/store/sqlite"
)

// crashChildEnv makes the test binary act as the crash test's child: it
// writes through the group commit until it is killed.
const (
	crashChildEnv = "FLOWGATE_SQLITE_CRASH_CHILD_DIR"
	crashRoundEnv = "FLOWGATE_SQLITE_CRASH_ROUND"
)

func TestMain(m *testing.M) {
	if dir := os.Getenv(crashChildEnv); dir != "" {
		crashChild(dir, os.Getenv(crashRoundEnv))
		os.Exit(3) // crashChild never returns; the parent kills it
	}
	os.Exit(m.Run())
}

// crashChild creates and updates runs and counts trigger progress from many
// goroutines, printing each write the store acknowledged:
//
//	run <id> <version>
//	sent <n>        (this goroutine's acknowledged increments so far)
func crashChild(dir, round string) {
	trigger := "crash-" + round
	ctx := context.Background()
	s, err := sqlite.Open(ctx, dir)
	if err != nil {
		fmt.Fprintln(os.Stderr, "open:", err)
		os.Exit(2)
	}
	if _, _, err := s.CreateTrigger(ctx, store.Trigger{ID: trigger, BotID: "crash", Status: store.TriggerFanningOut}); err != nil {
		fmt.Fprintln(os.Stderr, "trigger:", err)
		os.Exit(2)
	}
	out := bufio.NewWriter(os.Stdout)
	var mu sync.Mutex
	ack := func(format string, args ...any) {
		mu.Lock()
		fmt.Fprintf(out, format+"\n", args...)
		out.Flush() // unbuffered in effect: the line is in the pipe before the next write starts
		mu.Unlock()
	}
	ack("ready")
	for g := range 32 {
		go func() {
			for i := 0; ; i++ {
				r, _, err := s.CreateRun(ctx, store.Run{ID: fmt.Sprintf("%s-g%02d-%06d", round, g, i), BotID: "crash", TriggerID: trigger,
					FlowID: "f", ContactID: fmt.Sprintf("c%02d-%06d", g, i), Status: store.RunQueued})
				if err != nil {
					fmt.Fprintln(os.Stderr, "create:", err)
					os.Exit(2)
				}
				ack("run %s %d", r.ID, r.Version)
				r.Status = store.RunRunning
				if r, err = s.UpdateRun(ctx, r); err != nil {
					fmt.Fprintln(os.Stderr, "update:", err)
					os.Exit(2)
				}
				ack("run %s %d", r.ID, r.Version)
				if err := s.IncrTriggerCounters(ctx, "crash", trigger, store.TriggerCounters{Sent: 1}); err != nil {
					fmt.Fprintln(os.Stderr, "incr:", err)
					os.Exit(2)
				}
				ack("sent %d %d", g, i+1)
			}
		}()
	}
	select {}
}

// TestCrashLosesNoAcknowledgedWrite kills a writing child process with
// SIGKILL in the middle of its batches, reopens the store and checks that
// every write the child saw acknowledged is there.
func TestCrashLosesNoAcknowledgedWrite(t *testing.T) {
	dir := t.TempDir()
	for round := range 3 { // the second and third rounds also recover a killed store
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), crashChildEnv+"="+dir, fmt.Sprintf("%s=%d", crashRoundEnv, round))
		cmd.Stderr = os.Stderr
		stdout, err := cmd.StdoutPipe()
		require.NoError(t, err)
		require.NoError(t, cmd.Start())

		runs := map[string]int64{}
		sent := map[int]int64{} // per child goroutine
		lines := bufio.NewScanner(stdout)
		killed := false
		start := time.Now()
		for lines.Scan() {
			f := strings.Fields(lines.Text())
			switch f[0] {
			case "run":
				v, err := strconv.ParseInt(f[2], 10, 64)
				require.NoError(t, err)
				runs[f[1]] = max(runs[f[1]], v)
			case "sent":
				g, _ := strconv.Atoi(f[1])
				n, _ := strconv.ParseInt(f[2], 10, 64)
				sent[g] = max(sent[g], n)
			}
			// Kill while 32 writers are busy: every moment is mid-batch.
			if !killed && (len(runs) >= 2000+round*500 || time.Since(start) > 20*time.Second) {
				require.NoError(t, cmd.Process.Signal(syscall.SIGKILL))
				killed = true
			}
		}
		require.NoError(t, lines.Err())
		err = cmd.Wait()
		require.True(t, killed, "child ended by itself: %v", err)
		var exitErr *exec.ExitError
		require.ErrorAs(t, err, &exitErr)
		require.Equal(t, syscall.SIGKILL, exitErr.Sys().(syscall.WaitStatus).Signal(), "child died of SIGKILL")
		require.NotEmpty(t, runs, "the child acknowledged writes before it was killed")

		s, err := sqlite.Open(context.Background(), dir)
		require.NoError(t, err)
		ctx := context.Background()
		for id, v := range runs {
			r, err := s.GetRun(ctx, "crash", id)
			require.NoError(t, err, "acknowledged run %s lost", id)
			require.GreaterOrEqual(t, r.Version, v, "acknowledged update of run %s lost", id)
		}
		var acked int64
		for _, n := range sent {
			acked += n
		}
		tr, err := s.GetTrigger(ctx, "crash", fmt.Sprintf("crash-%d", round))
		require.NoError(t, err)
		require.GreaterOrEqual(t, tr.Counters.Sent, acked, "acknowledged counter increments lost")
		require.NoError(t, s.Close())
		t.Logf("round %d: %d acknowledged runs, %d acknowledged increments, all present after SIGKILL", round, len(runs), acked)

		db, err := sql.Open("sqlite", "file:"+filepath.Join(dir, sqlite.FileName))
		require.NoError(t, err)
		var check string
		require.NoError(t, db.QueryRow("PRAGMA integrity_check").Scan(&check))
		require.Equal(t, "ok", check)
		require.NoError(t, db.Close())
	}
}
