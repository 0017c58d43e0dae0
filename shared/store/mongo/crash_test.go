package mongo

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/flowgate/flowgate/shared/store"
)

const (
	crashChildEnv = "FLOWGATE_MONGO_CRASH_CHILD" // "uri database"
	crashRuns     = 16
)

// TestKilledClientLosesNoAcknowledgedWrite runs a child process that updates
// runs through the group commit and prints every update the store
// acknowledged, kills it with SIGKILL mid-stream, and checks that every
// acknowledged version is stored. The server (FerretDB) lives in this
// process and survives the kill.
func TestKilledClientLosesNoAcknowledgedWrite(t *testing.T) {
	uri := sharedFerret(t)
	s := openTest(t, uri)
	ctx := setup(t, s)
	for i := range crashRuns {
		_, _, err := s.CreateRun(ctx, newRun(fmt.Sprintf("r%02d", i), "", fmt.Sprintf("c%02d", i)))
		require.NoError(t, err)
	}

	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), crashChildEnv+"="+uri+" "+s.Database())
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	acked := map[string]int64{}
	lines := bufio.NewScanner(out)
	deadline := time.Now().Add(30 * time.Second)
	for n := 0; n < 40 && time.Now().Before(deadline) && lines.Scan(); n++ {
		id, v, ok := strings.Cut(lines.Text(), " ")
		require.True(t, ok, "child said %q", lines.Text())
		version, err := strconv.ParseInt(v, 10, 64)
		require.NoError(t, err)
		acked[id] = max(acked[id], version)
	}
	require.NoError(t, cmd.Process.Signal(syscall.SIGKILL))
	_ = cmd.Wait()
	require.GreaterOrEqual(t, len(acked), 4, "the child acknowledged updates before it was killed")

	for id, v := range acked {
		r, err := s.GetRun(ctx, bot, id)
		require.NoError(t, err)
		require.GreaterOrEqual(t, r.Version, v, "run %s: acknowledged version %d is stored", id, v)
	}
}

// crashChild updates the runs from several goroutines until it is killed,
// printing "<run id> <version>" after each acknowledged update.
func crashChild() {
	uri, db, _ := strings.Cut(os.Getenv(crashChildEnv), " ")
	ctx := context.Background()
	s, err := Open(ctx, uri, db, WithLogger(quiet))
	if err != nil {
		fmt.Fprintln(os.Stderr, "crash child:", err)
		os.Exit(2)
	}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := 0; ; k++ {
				id := fmt.Sprintf("r%02d", g+4*(k%(crashRuns/4)))
				r, err := s.GetRun(ctx, bot, id)
				if err == nil {
					r.Status = []string{store.RunRunning, store.RunWaiting}[k%2]
					r, err = s.UpdateRun(ctx, r)
				}
				if err != nil {
					fmt.Fprintln(os.Stderr, "crash child:", err)
					os.Exit(2)
				}
				mu.Lock()
				fmt.Printf("%s %d\n", r.ID, r.Version)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
}
