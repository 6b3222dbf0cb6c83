package config

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// TestLoadCluster loads the cluster block exactly as issue 13 shows it
// (testdata/cluster.hcl) through the public API.
func TestLoadCluster(t *testing.T) {
	cfg, err := Load("testdata/cluster.hcl")
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	want := &Cluster{
		Node:          "gw1",
		NATSURLs:      []string{"nats://127.0.0.1:4222", "nats://127.0.0.1:4223", "nats://127.0.0.1:4224"},
		Replicas:      3,
		TakeoverAfter: 30 * time.Second,
	}
	if diff := cmp.Diff(want, cfg.Cluster); diff != "" {
		t.Errorf("Cluster (-want +got):\n%s", diff)
	}
}

// TestClusterNodeDefault: without node, the machine's host name names the
// node; a host name that cannot is an error at the block.
func TestClusterNodeDefault(t *testing.T) {
	const src = `
listener "mx" { address = "127.0.0.1:2525" }
cluster { nats_urls = ["nats://127.0.0.1:4222"] }
`
	tests := []struct {
		name     string
		hostname func() (string, error)
		want     string // the node, or the error's text
	}{
		{"hostname", func() (string, error) { return "gw-2.example", nil }, "gw-2.example"},
		{"no hostname", func() (string, error) { return "", errors.New("no name") }, `gateway.hcl:3:1: Missing node name; The machine's host name is unknown (no name); set node = "…".`},
		{"unusable hostname", func() (string, error) { return "my host", nil }, `gateway.hcl:3:1: Missing node name; The machine's host name "my host" cannot name this node; set node = "…".`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := parser{hostname: tt.hostname}.parse([]byte(src), "gateway.hcl")
			got := ""
			if err != nil {
				got = strings.TrimSpace(err.Error())
			} else {
				got = cfg.Cluster.Node
			}
			if got != tt.want {
				t.Errorf("got %q; want %q", got, tt.want)
			}
		})
	}
}

// TestNoCluster: a file without the block is one node.
func TestNoCluster(t *testing.T) {
	cfg, err := Parse([]byte(`listener "mx" { address = "127.0.0.1:2525" }`), "gateway.hcl")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Cluster != nil {
		t.Errorf("Cluster = %+v; want nil", cfg.Cluster)
	}
}
