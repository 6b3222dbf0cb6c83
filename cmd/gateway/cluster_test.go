package main

import (
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/mailgate/gateway/core/cluster"
	"github.com/mailgate/gateway/core/cluster/clustertest"
	"github.com/mailgate/gateway/core/gateway/gatewaytest"
)

// TestClusterStatus: `gateway cluster status` lists the nodes that write
// heartbeats, alive, with their queues; one without a cluster block is
// an error that says so.
func TestClusterStatus(t *testing.T) {
	nc := clustertest.Start(t, 3)
	conf := func(node string) string {
		return fmt.Sprintf(`
hostname = "mx.test"
listener "mx" { address = "127.0.0.1:0" }
domains = ["example.test"]
cluster {
  node      = %q
  nats_urls = ["%s"]
  replicas  = 3
}
admin { address = "127.0.0.1:0" }
relay { networks = ["127.0.0.0/8"] }
%s`, node, strings.Join(nc.URLs(), `", "`), gatewaytest.DeadRoute)
	}
	path := gatewaytest.WriteConfig(t, conf("gw1"))
	gw1 := gatewaytest.StartFile(t, path)
	gw2 := gatewaytest.Start(t, conf("gw2"))

	want := regexp.MustCompile(`(?m)^gw1 +alive +\ds ago +0 +\S* +\d{4}-\d\d-\d\dT[\d:]+Z\ngw2 +alive +\ds ago +0 `)
	var out string
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		var code int
		code, out, _ = runCLI(t, "cluster", "status", "-config", path)
		if code == 0 && want.MatchString(out) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("cluster status:\n%s\nwant gw1 and gw2 alive with empty queues", out)
		}
	}

	// gw1's admin API lists gw2's copy too.
	if !sendSeq(t, gw2.Addr(t, "mx"), "ls-1") {
		t.Fatal("gw2 refused the message")
	}
	q := gw2.Queued(t)
	if len(q) != 1 {
		t.Fatalf("gw2 queued %d messages; want 1\n%s", len(q), gw2.Log().String())
	}
	id := q[0].ID
	code, out, errOut := runCLI(t, "queue", "ls", "-cluster", "-admin", gw1.Addr(t, "admin"))
	if code != 0 || !strings.Contains(out, "gw2/"+id+" ") || !strings.Contains(out, "r@remote.test") {
		t.Errorf("queue ls -cluster: exit %d\n%s%s\nwant gw2/%s to r@remote.test", code, out, errOut, id)
	}

	// gateway check reaches NATS as serve would.
	code, out, errOut = runCLI(t, "check", "-config", path)
	if want := "  cluster: node gw1, JetStream answers at nats://127.0.0.1:"; code != 0 || !strings.Contains(out, want) {
		t.Errorf("check: exit %d\n%s%s\nwant 0 and %q", code, out, errOut, want)
	}
	nc.StopAll()
	code, _, errOut = runCLI(t, "check", "-config", path)
	if code != 1 || !strings.Contains(errOut, path+": cluster: connect to") {
		t.Errorf("check with NATS gone: exit %d, %q; want 1 and %q", code, errOut, path+": cluster: connect to")
	}

	plain := gatewaytest.WriteConfig(t, "hostname = \"mx.test\"\nlistener \"mx\" { address = \"127.0.0.1:0\" }\n")
	if code, _, errOut := runCLI(t, "cluster", "status", "-config", plain); code != 1 || !strings.Contains(errOut, "has no cluster block") {
		t.Errorf("without a cluster block: exit %d, %q; want 1 and 'has no cluster block'", code, errOut)
	}
}

// TestPrintNodesSilent: a node whose heartbeat is older than
// takeover_after is shown silent.
func TestPrintNodesSilent(t *testing.T) {
	now := time.Date(2026, 12, 7, 1, 0, 0, 0, time.UTC)
	var out strings.Builder
	printNodes(&cli{Stdout: &out}, []cluster.NodeStatus{
		{Node: "gw1", Version: "v1", Started: now.Add(-time.Hour), Heartbeat: now.Add(-2 * time.Second), Queued: 3},
		{Node: "gw2", Version: "v1", Started: now.Add(-time.Hour), Heartbeat: now.Add(-31 * time.Second), Queued: 7},
	}, 30*time.Second, now)
	want := "NODE  STATE   HEARTBEAT  QUEUED  VERSION  STARTED\n" +
		"gw1   alive   2s ago     3       v1       2026-12-07T00:00:00Z\n" +
		"gw2   silent  31s ago    7       v1       2026-12-07T00:00:00Z\n"
	if out.String() != want {
		t.Errorf("got\n%s\nwant\n%s", out.String(), want)
	}
}
