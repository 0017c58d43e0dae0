// Package bustest starts NATS JetStream servers in-process for tests: a
// cluster of real nats-server nodes joined by routes on loopback.
package bustest

import (
	"context"
	"fmt"
	"net"
	"strings"
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

func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("bustest: free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// StartCluster starts n nodes (named n1…; n = 1 is a plain server) and waits until JetStream has a
// meta leader. The nodes stop when the test ends. opts adjust each node's
// options (e.g. SyncAlways, SyncInterval) before it starts.
func StartCluster(t testing.TB, n int, opts ...func(*server.Options)) *Cluster {
	t.Helper()
	ports := make([]int, n)
	routes := make([]string, n)
	for i := range ports {
		ports[i] = freePort(t)
		routes[i] = fmt.Sprintf("nats://127.0.0.1:%d", ports[i])
	}
	c := &Cluster{}
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
			t.Fatalf("bustest: node %d: %v", i+1, err)
		}
		go s.Start()
		t.Cleanup(func() {
			s.Shutdown()
			s.WaitForShutdown()
		})
		c.Servers = append(c.Servers, s)
	}
	for _, s := range c.Servers {
		if !s.ReadyForConnections(30 * time.Second) {
			t.Fatalf("bustest: %s did not start", s.Name())
		}
	}
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
