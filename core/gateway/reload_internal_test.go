package gateway

import (
	"slices"
	"testing"

	"github.com/mailgate/gateway/core/config"
)

// TestRestartSectionsCluster: a reload that adds, removes or changes the
// cluster block says that it needs a restart; one that keeps it says
// nothing of it.
func TestRestartSectionsCluster(t *testing.T) {
	gw1 := &config.Cluster{Node: "gw1", NATSURLs: []string{"nats://127.0.0.1:4222"}, Replicas: 3}
	gw2 := &config.Cluster{Node: "gw2", NATSURLs: []string{"nats://127.0.0.1:4222"}, Replicas: 3}
	same := *gw1
	for _, c := range []struct {
		name            string
		running, loaded *config.Cluster
		want            []string
	}{
		{"none", nil, nil, nil},
		{"added", nil, gw1, []string{"cluster"}},
		{"removed", gw1, nil, []string{"cluster"}},
		{"node renamed", gw1, gw2, []string{"cluster"}},
		{"kept", gw1, &same, nil},
	} {
		got := restartSections(&config.Config{Cluster: c.running}, &config.Config{Cluster: c.loaded})
		if !slices.Equal(got, c.want) {
			t.Errorf("%s: %v; want %v", c.name, got, c.want)
		}
	}
}
