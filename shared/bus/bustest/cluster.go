// Package bustest starts NATS JetStream servers in-process for tests: a
// cluster of real nats-server nodes joined by routes on loopback.
package bustest

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Cluster is n nats-server nodes with JetStream, joined by routes.
type Cluster struct {
	Servers []*server.Server
}

// pickPort picks a route port (a test takes a port already in use).
var pickPort = freePort

// picked holds the ports FreeAddr has given (or found taken) in this
// process.
var picked sync.Map

func freePort(t testing.TB) int {
	t.Helper()
	_, port, err := net.SplitHostPort(FreeAddr(t))
	if err != nil {
		t.Fatal(err)
	}
	n, err := strconv.Atoi(port)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// FreeAddr is a loopback address nobody listens on, for a server that
// must be told its port before it starts (a node of a cluster, a process).
// Its port is below the kernel's ephemeral range, where the kernel never
// hands out ports to listeners or connections on port 0 — so another test
// process running side by side cannot take it between the pick and the
// start, as it could a port the kernel picked (and did: a cluster node
// that never listened). Only another pick like this one can, once in
// thousands. Nor does this process get one port twice: a test that picks
// a cluster's nine ports before starting its first node would otherwise
// be given, now and then, one it had already picked (a node then failed
// with "address already in use").
func FreeAddr(t testing.TB) string {
	t.Helper()
	lo, hi := 20000, ephemeralLow()-1
	for range 100 {
		if hi <= lo {
			break
		}
		port := lo + rand.IntN(hi-lo+1)
		addr := fmt.Sprintf("127.0.0.1:%d", port)
		if _, taken := picked.LoadOrStore(port, true); taken {
			continue
		}
		if l, err := net.Listen("tcp", addr); err == nil {
			l.Close()
			return addr
		}
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("bustest: free port: %v", err)
	}
	defer l.Close()
	return l.Addr().String()
}

// ephemeralLow is the first port of the kernel's ephemeral range (Linux;
// 32768, its default, elsewhere).
func ephemeralLow() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 32768
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return 32768
	}
	n, err := strconv.Atoi(f[0])
	if err != nil {
		return 32768
	}
	return n
}

// StartCluster starts n nodes (named n1…; n = 1 is a plain server) and waits until JetStream has a
// meta leader. The nodes stop when the test ends. opts adjust each node's
// options (e.g. SyncAlways, SyncInterval) before it starts.
//
// The route ports are picked before the nodes start (each node is given
// every other's address: a JetStream cluster needs its routes configured),
// so another process may take one in between, and that node never listens.
// The cluster is then started again on other ports, up to three times.
func StartCluster(t testing.TB, n int, opts ...func(*server.Options)) *Cluster {
	t.Helper()
	var c *Cluster
	for attempt := 1; ; attempt++ {
		var err error
		if c, err = startNodes(t, n, opts); err == nil {
			break
		}
		if attempt == 3 {
			t.Fatalf("bustest: %v (attempt %d)", err, attempt)
		}
		t.Logf("bustest: %v; starting the cluster again on other ports", err)
	}
	t.Cleanup(c.stop)
	// JetStream answers once the meta group has elected a leader.
	nc := c.Connect(t)
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	WaitForJetStream(t, js, 60*time.Second)
	return c
}

// startNodes starts n nodes and waits until each listens; on failure it
// shuts them down again.
func startNodes(t testing.TB, n int, opts []func(*server.Options)) (*Cluster, error) {
	t.Helper()
	ports := make([]int, n)
	routes := make([]string, n)
	for i := range ports {
		ports[i] = pickPort(t)
		routes[i] = fmt.Sprintf("nats://127.0.0.1:%d", ports[i])
	}
	c := &Cluster{}
	var fatals []*fatalLog
	stop := c.stop
	for i := range n {
		so := &server.Options{
			ServerName: fmt.Sprintf("n%d", i+1),
			Host:       "127.0.0.1",
			Port:       -1,
			JetStream:  true,
			StoreDir:   t.TempDir(),
			NoSigs:     true,
			NoLog:      true,
			Cluster: server.ClusterOpts{
				Name: "flowgate-test",
				Host: "127.0.0.1",
				Port: ports[i],
			},
			Routes: server.RoutesFromStr(strings.Join(routes, ",")),
		}
		if n == 1 {
			// One node: a plain server (a cluster of one never elects a
			// JetStream meta leader).
			so.Cluster, so.Routes = server.ClusterOpts{}, nil
		}
		for _, o := range opts {
			o(so)
		}
		s, err := server.NewServer(so)
		if err != nil {
			stop()
			t.Fatalf("bustest: node %d: %v", i+1, err)
		}
		fatal := &fatalLog{err: make(chan string, 1)}
		s.SetLogger(fatal, false, false)
		go s.Start()
		c.Servers = append(c.Servers, s)
		fatals = append(fatals, fatal)
	}
	deadline := time.Now().Add(30 * time.Second)
	for i, s := range c.Servers {
		for !s.ReadyForConnections(20 * time.Millisecond) {
			select {
			case msg := <-fatals[i].err:
				// A node that cannot listen says so and never will.
				stop()
				return nil, fmt.Errorf("%s: %s", s.Name(), msg)
			default:
			}
			if time.Now().After(deadline) {
				stop()
				t.Fatalf("bustest: %s did not start", s.Name())
			}
		}
	}
	return c, nil
}

// stop shuts every node down and waits until each has.
func (c *Cluster) stop() {
	for _, s := range c.Servers {
		s.Shutdown()
		s.WaitForShutdown()
	}
}

// fatalLog is a node's logger: silent (as NoLog), except that it hands on
// the server's fatal error (which, with no logger, would go unseen and
// leave the node half started).
type fatalLog struct {
	err chan string
}

func (f *fatalLog) Fatalf(format string, v ...any) {
	select {
	case f.err <- fmt.Sprintf(format, v...):
	default:
	}
}
func (*fatalLog) Noticef(string, ...any) {}
func (*fatalLog) Warnf(string, ...any)   {}
func (*fatalLog) Errorf(string, ...any)  {}
func (*fatalLog) Debugf(string, ...any)  {}
func (*fatalLog) Tracef(string, ...any)  {}

// URLs is every node's client URL, comma-separated (as FLOWGATE_NATS_URL
// takes it).
func (c *Cluster) URLs() string {
	urls := make([]string, len(c.Servers))
	for i, s := range c.Servers {
		urls[i] = s.ClientURL()
	}
	return strings.Join(urls, ",")
}

// Connect opens a client connection to the cluster, closed when the test
// ends.
func (c *Cluster) Connect(t testing.TB) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect(c.URLs(), nats.MaxReconnects(-1))
	if err != nil {
		t.Fatalf("bustest: connect: %v", err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// WaitForJetStream waits until JetStream answers (a cluster has elected its
// meta leader), failing the test after timeout.
func WaitForJetStream(t testing.TB, js jetstream.JetStream, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_, err := js.AccountInfo(ctx)
		cancel()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("bustest: JetStream not ready after %s: %v", timeout, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
