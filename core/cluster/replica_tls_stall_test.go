package cluster_test

import (
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/mailgate/gateway/core/cluster"
	"github.com/mailgate/gateway/core/cluster/clustertest"
	"github.com/mailgate/gateway/core/config"
	"github.com/mailgate/gateway/core/smtp/smtptest"
)

// TestReplicaTLSLinkBackAfterStall: a link to a NATS server over TLS
// stops passing bytes for a few seconds and comes back, as a network
// does after a blip. A write caught by the stall gives up after twice
// the timeout (nats.FlusherTimeout); when it had not finished the TLS
// record it was writing (one small copy is one record), crypto/tls makes
// the error permanent, but the NATS client closes the socket only after
// a write that returned some bytes: the connection stays "connected"
// with every later write failing at once, until its pings find it stale
// (5 s apart, two missed), and every copy the node makes meanwhile
// fails, with the link long back. Over plain TCP, or with the client's
// minute-long default, the copies go through again as soon as the link
// does.
func TestReplicaTLSLinkBackAfterStall(t *testing.T) {
	const (
		timeout = time.Second
		within  = 3 * time.Second // after the link is back, for a copy to go through
	)
	dir := t.TempDir()
	certFile, keyFile := smtptest.WriteCertificate(t, dir)
	addr := startTLSJetStream(t, certFile, keyFile)
	// A small receive buffer, so that the client's send buffer holds
	// most of what waits while the link is paused.
	link := clustertest.NewLink(t, addr, 0, clustertest.ReceiveBuffer(4096))
	c := clustertest.Connect(t, cluster.Options{
		Config: config.Cluster{Node: "gw1", NATSURLs: []string{"tls://" + link.Addr()}, Replicas: 1,
			TLS: &config.ClusterTLS{CA: certFile}},
		Timeout: timeout,
	})
	s, _ := spoolOnReplicas(t, c, "gw1", 1)
	t.Cleanup(c.Close) // before the spool's: its removals then fail at once
	// Past the TLS client's small first records (128 KB).
	if _, err := commitMessage(t, s, "bob@example.net", 256<<10); err != nil {
		t.Fatal(err)
	}

	link.Pause()
	paused := time.Now()
	// Fill the sockets' buffers (a few MB here) with copies that fit
	// them, then copies of one TLS record each, until a write waits.
	// (Each written here, committed by a goroutine of its own.)
	var wg sync.WaitGroup
	_, commit := draftMessage(t, s, "bob@example.net", 1<<20)
	wg.Go(func() { commit() })
	for time.Since(paused) < 2*timeout {
		_, commit := draftMessage(t, s, "bob@example.net", 12<<10)
		wg.Go(func() { commit() })
		time.Sleep(5 * time.Millisecond)
	}
	// The write that waited gives up 2 × timeout after it began.
	time.Sleep(2*timeout + 500*time.Millisecond)
	link.Resume()
	back := time.Now()
	wg.Wait()

	var last error
	for time.Since(back) < within {
		if _, last = commitMessage(t, s, "bob@example.net", 300); last == nil {
			t.Logf("a copy went through %v after the link came back", time.Since(back).Round(time.Millisecond))
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Errorf("the link has been back for %v, the client connected = %v, and copies still fail: %v",
		within, c.Connected(), last)
}

// startTLSJetStream runs a JetStream server that speaks TLS with the
// certificate in certFile until the test ends, and returns its address.
func startTLSJetStream(t *testing.T, certFile, keyFile string) string {
	t.Helper()
	tc, err := server.GenTLSConfig(&server.TLSConfigOpts{CertFile: certFile, KeyFile: keyFile})
	if err != nil {
		t.Fatal(err)
	}
	return startServer(t, server.Options{TLSConfig: tc, TLSTimeout: 5}).Addr().String()
}
