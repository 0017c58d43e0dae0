package deploytest

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/flowgate/flowgate/shared/bus/bustest"
)

// freePort returns a loopback address nobody listens on, one another
// test process cannot take before the server told to listen there starts
// (bustest.FreeAddr).
func freePort(t *testing.T) string {
	t.Helper()
	return bustest.FreeAddr(t)
}

// buildBinaries builds flowgate and nats-server (from the module's own
// dependency) into dir.
func buildBinaries(t *testing.T, root, dir string) (flowgate, natsServer string) {
	t.Helper()
	flowgate, natsServer = filepath.Join(dir, "flowgate"), filepath.Join(dir, "nats-server")
	goBuild(t, root, flowgate, "./cmd/flowgate")
	goBuild(t, root, natsServer, "github.com/nats-io/nats-server/v2")
	return flowgate, natsServer
}

// goBuild builds pkg into out with the Dockerfile's flags: the compiled
// packages are shared with TestDockerBuildContext through the build cache.
func goBuild(t *testing.T, root, out, pkg string) {
	t.Helper()
	gobin := filepath.Join(runtime.GOROOT(), "bin", "go")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, gobin, "build", "-trimpath", "-ldflags=-s -w", "-o", out, pkg)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build %s: %v\n%s", pkg, err, b)
	}
}

// proc is a child process whose output goes to a log file.
type proc struct {
	name string
	cmd  *exec.Cmd
	log  string
	done chan error
	// metrics is the URL of a service's /metrics ("" for other processes).
	metrics string
}

func startProc(t *testing.T, logDir, name string, env []string, bin string, args ...string) *proc {
	t.Helper()
	logPath := filepath.Join(logDir, name+".log")
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = f, f
	// If the test binary dies without its cleanups (killed, timed out), the
	// kernel ends its children: no orphan servers on the CI machine.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		f.Close()
		t.Fatalf("start %s: %v", name, err)
	}
	p := &proc{name: name, cmd: cmd, log: logPath, done: make(chan error, 1)}
	go func() { p.done <- cmd.Wait(); f.Close() }()
	procsMu.Lock()
	if _, ok := testProcs[t]; !ok {
		// One cleanup stops every process of the test at once: graceful
		// drains run in parallel instead of one after the other.
		t.Cleanup(func() {
			procsMu.Lock()
			ps := testProcs[t]
			delete(testProcs, t)
			procsMu.Unlock()
			var wg sync.WaitGroup
			for _, p := range ps {
				wg.Add(1)
				go func() { defer wg.Done(); p.stop() }()
			}
			wg.Wait()
		})
	}
	testProcs[t] = append(testProcs[t], p)
	procsMu.Unlock()
	return p
}

var (
	procsMu   sync.Mutex
	testProcs = map[*testing.T][]*proc{}
)

// stop ends the process gracefully (SIGTERM), then by force after 15 s.
// Whether it has exited is read from p.done only: cmd.ProcessState is
// written by the goroutine in cmd.Wait, unsynchronized with this one.
func (p *proc) stop() {
	select {
	case err := <-p.done:
		p.done <- err
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-p.done:
		p.done <- err
	case <-time.After(15 * time.Second):
		_ = p.cmd.Process.Kill()
		p.done <- <-p.done
	}
}

// lameDuck stops a nats-server gracefully in lame duck mode (SIGUSR2: it
// hands its JetStream leaderships over, evicts its clients, exits), and
// waits for it to exit, by force after limit.
func (p *proc) lameDuck(limit time.Duration) {
	if done, _ := p.exited(); done {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGUSR2)
	select {
	case err := <-p.done:
		p.done <- err
	case <-time.After(limit):
		_ = p.cmd.Process.Kill()
		p.done <- <-p.done
	}
}

// exited reports whether the process ended, and how.
// kill ends the process with SIGKILL and waits until it has exited.
func (p *proc) kill() {
	_ = p.cmd.Process.Kill()
	err := <-p.done
	p.done <- err
}

func (p *proc) exited() (bool, error) {
	select {
	case err := <-p.done:
		p.done <- err
		return true, err
	default:
		return false, nil
	}
}

func (p *proc) tail(n int) string {
	b, _ := os.ReadFile(p.log)
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// waitHTTP polls url until it answers 200 or the deadline passes.
func waitHTTP(t *testing.T, url string, timeout time.Duration, procs ...*proc) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var last string
	for time.Now().Before(deadline) {
		for _, p := range procs {
			if done, err := p.exited(); done {
				t.Fatalf("%s exited (%v) while waiting for %s:\n%s", p.name, err, url, p.tail(30))
			}
		}
		resp, err := http.Get(url)
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
			last = fmt.Sprintf("%d %s", resp.StatusCode, body)
		} else {
			last = err.Error()
		}
		time.Sleep(200 * time.Millisecond)
	}
	var logs bytes.Buffer
	for _, p := range procs {
		fmt.Fprintf(&logs, "--- %s\n%s\n", p.name, p.tail(20))
	}
	t.Fatalf("%s not ready after %s: %s\n%s", url, timeout, last, logs.String())
}
