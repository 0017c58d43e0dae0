package bustest

import (
	"net"
	"sync/atomic"
	"testing"
	"time"
)

// A route port taken between its pick and the node's start (by another
// test process) makes the cluster start again on other ports, where it
// used to leave that node never listening and the test failing after 30 s.
func TestStartClusterAgainWhenARoutePortIsTaken(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	taken := l.Addr().(*net.TCPAddr).Port
	var picks atomic.Int32
	pickPort = func(t testing.TB) int {
		if picks.Add(1) == 3 {
			return taken // the first attempt's third node
		}
		return freePort(t)
	}
	defer func() { pickPort = freePort }()
	start := time.Now()
	c := StartCluster(t, 3)
	if len(c.Servers) != 3 {
		t.Fatalf("%d nodes", len(c.Servers))
	}
	if n := picks.Load(); n != 6 {
		t.Fatalf("%d ports picked, want 6 (two attempts)", n)
	}
	for _, s := range c.Servers {
		if a := s.ClusterAddr(); a == nil || a.Port == taken {
			t.Fatalf("%s routes on %v, the port taken is %d", s.Name(), a, taken)
		}
	}
	t.Logf("started in %s", time.Since(start))
}

// FreeAddr never gives this process one port twice, though it closes what
// it picked: a cluster's ports are all picked before its first node starts.
func TestFreeAddrNeverRepeats(t *testing.T) {
	seen := map[string]bool{}
	for range 2000 {
		a := FreeAddr(t)
		if seen[a] {
			t.Fatalf("%s given twice", a)
		}
		seen[a] = true
	}
}
