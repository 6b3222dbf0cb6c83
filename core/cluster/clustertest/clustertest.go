// Package clustertest runs a real NATS JetStream cluster in-process for
// tests: n nats-server nodes (the server's own Go API, the same code an
// operator runs as nats-server), each with its client and route ports on
// 127.0.0.1 and its JetStream store in a temporary folder, routed to each
// other. Start returns once JetStream has a meta leader that sees every
// node and every node is current, and the test's cleanup shuts every node
// down and waits for it.
package clustertest

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"net/url"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/mailgate/gateway/core/cluster"
)

// readyTimeout bounds how long Start waits for the cluster to form, and
// listenTimeout how long it waits for a node to listen (a port taken by
// another process keeps it from ever listening).
const (
	readyTimeout  = 30 * time.Second
	listenTimeout = 10 * time.Second
)

// Cluster is a running JetStream cluster.
type Cluster struct {
	t       testing.TB
	servers []*server.Server
	opts    []*server.Options // each server's, for Restart
	links   []*Link           // to each node's route port (StartLinked)
}

// Start runs a JetStream cluster of n nodes (3 for replicas = 3) until the
// test ends. The route ports must be known before the first node starts,
// so they are chosen free and may be taken by another process before the
// node listens on them: a node that does not come up makes Start try again
// with other ports, up to startAttempts times.
func Start(t testing.TB, n int) *Cluster {
	t.Helper()
	return startCluster(t, n, false, 0)
}

// StartLinked is Start with the nodes routed to each other through Links
// that pass rate bytes a second each way (0: unpaced): servers whose
// replication a slow network holds back, and that StallRoutes cuts off
// from each other while their clients stay connected.
func StartLinked(t testing.TB, n, rate int) *Cluster {
	t.Helper()
	return startCluster(t, n, true, rate)
}

func startCluster(t testing.TB, n int, linked bool, rate int) *Cluster {
	t.Helper()
	c := &Cluster{t: t}
	var err error
	for range startAttempts {
		if err = c.start(t, n, linked, rate); err == nil {
			return c
		}
		c.StopAll()
		c.servers, c.opts, c.links = nil, nil, nil
	}
	t.Fatalf("clustertest: %d attempts: %v", startAttempts, err)
	return nil
}

// StallRoutes stalls the Links between the nodes of a cluster that
// StartLinked started: no node hears another any more (no quorum, no
// acknowledgement of a replicated write), while each still answers its
// clients' pings.
func (c *Cluster) StallRoutes() {
	for _, l := range c.links {
		l.Stall()
	}
}

// startAttempts bounds how often Start tries new route ports.
const startAttempts = 3

// start starts n nodes routed to each other (through Links when linked)
// and waits for them.
func (c *Cluster) start(t testing.TB, n int, linked bool, rate int) error {
	routes := make([]*url.URL, n)
	ports := make([]int, n)
	dirs := make([]string, n)
	for i := range n {
		ports[i] = routePort(t)
		routes[i] = &url.URL{Scheme: "nats-route", Host: fmt.Sprintf("127.0.0.1:%d", ports[i])}
		if linked {
			c.links = append(c.links, NewLink(t, routes[i].Host, rate))
			routes[i].Host = c.links[i].Addr()
		}
		dirs[i] = t.TempDir()
	}
	var started []*server.Server
	// Registered after the folders', so it runs before their removal.
	t.Cleanup(func() {
		// The links first: a node shuts down slowly while its routes stall.
		for _, l := range c.links {
			l.close()
		}
		for _, s := range started {
			s.Shutdown()
			s.WaitForShutdown()
		}
	})
	for i := range n {
		opts := &server.Options{
			ServerName: fmt.Sprintf("n%d", i+1),
			Host:       "127.0.0.1",
			Port:       server.RANDOM_PORT,
			NoLog:      true,
			NoSigs:     true,
			JetStream:  true,
			StoreDir:   dirs[i],
			// NoAdvertise: a client knows the servers it was given, so
			// that a test can cut it off by stopping them.
			Cluster: server.ClusterOpts{Name: "test", Host: "127.0.0.1", Port: ports[i], NoAdvertise: true},
			Routes:  routes,
			// Small limits: JetStream otherwise reserves from the machine's.
			JetStreamMaxMemory: 256 << 20,
			JetStreamMaxStore:  1 << 30,
		}
		if linked {
			// The others learn of this node from each other as its link.
			opts.Cluster.Advertise = routes[i].Host
		}
		s, err := server.NewServer(opts)
		if err != nil {
			return fmt.Errorf("node %d: %w", i+1, err)
		}
		c.servers, started = append(c.servers, s), append(started, s)
		c.opts = append(c.opts, opts)
		s.Start()
	}
	return c.waitReady(readyTimeout)
}

// waitReady waits until every node takes clients, JetStream has a meta
// leader that sees every node online (so a stream of n replicas can be
// placed), and every node is current with it.
func (c *Cluster) waitReady(d time.Duration) error {
	deadline := time.Now().Add(d)
	for _, s := range c.servers {
		if !s.ReadyForConnections(listenTimeout) {
			return fmt.Errorf("node %s does not take connections after %v", s.Name(), listenTimeout)
		}
	}
	for time.Now().Before(deadline) {
		peers, current := 0, true
		for _, s := range c.servers {
			if s.JetStreamIsLeader() {
				peers = len(s.JetStreamClusterPeers()) // online, with JetStream and stats
			}
			current = current && s.JetStreamIsCurrent()
		}
		if peers == len(c.servers) && current {
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("JetStream has no meta leader that sees every node after %v", d)
}

// routePort returns a port on 127.0.0.1 that was free a moment ago,
// chosen at random below Linux's ephemeral range (32768 and up), where
// the kernel puts the :0 listeners and outgoing connections of the tests
// running in parallel.
func routePort(t testing.TB) int {
	t.Helper()
	for {
		port := routePortLow + rand.IntN(routePortHigh-routePortLow)
		ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err == nil {
			ln.Close()
			return port
		}
	}
}

// The range routePort chooses from.
const (
	routePortLow  = 20000
	routePortHigh = 32768
)

// URL returns the client URL of node i (from 0), nats://127.0.0.1:port.
func (c *Cluster) URL(i int) string { return c.servers[i].ClientURL() }

// URLs returns the client URLs of every node.
func (c *Cluster) URLs() []string {
	urls := make([]string, len(c.servers))
	for i := range c.servers {
		urls[i] = c.URL(i)
	}
	return urls
}

// Stop shuts node i down and waits until it has stopped.
func (c *Cluster) Stop(i int) {
	c.servers[i].Shutdown()
	c.servers[i].WaitForShutdown()
}

// Restart starts node i again, stopped by Stop, with its folder and its
// client and route ports, and waits until it takes connections; the
// test's cleanup stops it.
func (c *Cluster) Restart(i int) {
	c.t.Helper()
	opts := *c.opts[i]
	u, err := url.Parse(c.servers[i].ClientURL())
	if err != nil {
		c.t.Fatalf("clustertest: %v", err)
	}
	if opts.Port, err = strconv.Atoi(u.Port()); err != nil {
		c.t.Fatalf("clustertest: %v", err)
	}
	s, err := server.NewServer(&opts)
	if err != nil {
		c.t.Fatalf("clustertest: node %d: %v", i+1, err)
	}
	s.Start()
	c.t.Cleanup(func() { s.Shutdown(); s.WaitForShutdown() })
	c.servers[i] = s
	if !s.ReadyForConnections(listenTimeout) {
		c.t.Fatalf("clustertest: node %s does not take connections after %v", s.Name(), listenTimeout)
	}
}

// StopAll shuts every node down and waits until each has stopped; the
// test's cleanup stops them too, and stopping again does nothing.
func (c *Cluster) StopAll() {
	for i := range c.servers {
		c.Stop(i)
	}
}

// StartPlain runs one NATS server without JetStream until the test ends
// and returns its client URL: what a gateway must refuse to cluster on.
func StartPlain(t testing.TB) string {
	t.Helper()
	return runOne(t, &server.Options{Host: "127.0.0.1", Port: server.RANDOM_PORT, NoLog: true, NoSigs: true})
}

// StartAlone runs one JetStream node of a cluster of three whose two
// others never start, until the test ends, and returns its client URL:
// it takes connections, but its JetStream API never answers (no meta
// leader), as a cluster's first seconds or a lost quorum.
func StartAlone(t testing.TB) string {
	t.Helper()
	routes := []*url.URL{
		{Scheme: "nats-route", Host: fmt.Sprintf("127.0.0.1:%d", routePort(t))},
		{Scheme: "nats-route", Host: fmt.Sprintf("127.0.0.1:%d", routePort(t))},
	}
	return runOne(t, &server.Options{ServerName: "alone", Host: "127.0.0.1", Port: server.RANDOM_PORT,
		NoLog: true, NoSigs: true, JetStream: true, StoreDir: t.TempDir(),
		Cluster: server.ClusterOpts{Name: "test", Host: "127.0.0.1", Port: server.RANDOM_PORT}, Routes: routes})
}

// runOne runs the server of opts until the test ends and returns its
// client URL once it takes connections.
func runOne(t testing.TB, opts *server.Options) string {
	t.Helper()
	s, err := server.NewServer(opts)
	if err != nil {
		t.Fatalf("clustertest: %v", err)
	}
	s.Start()
	t.Cleanup(func() { s.Shutdown(); s.WaitForShutdown() })
	if !s.ReadyForConnections(listenTimeout) {
		t.Fatalf("clustertest: the server does not take connections after %v", listenTimeout)
	}
	return s.ClientURL()
}

// Connect connects to a cluster as cluster.Connect does with opt, failing
// t if it cannot, and closes the connection when t ends.
func Connect(t testing.TB, opt cluster.Options) *cluster.Conn {
	t.Helper()
	c, err := cluster.Connect(context.Background(), opt)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}
