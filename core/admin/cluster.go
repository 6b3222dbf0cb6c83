package admin

import (
	"context"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/mailgate/gateway/core/cluster"
	"github.com/mailgate/gateway/core/queue"
)

// Cluster is what the admin API reports of a gateway's place in a
// cluster (core/gateway implements it over core/cluster).
type Cluster interface {
	ClusterStats() ClusterStats
	// ClusterNodes reads every node's last heartbeat from the NATS servers.
	ClusterNodes(ctx context.Context) ([]cluster.NodeStatus, error)
	// ClusterQueue calls fn with every node's copies on the queue's
	// stream, node by node, until fn returns false.
	ClusterQueue(ctx context.Context, fn func(node string, m *queue.Message) bool) error
}

// ClusterStats are a node's cluster counters since start.
type ClusterStats struct {
	Node      string `json:"node"`
	Connected bool   `json:"connected"` // to NATS, now
	// WriteError is why the last write to JetStream (a copy, a
	// heartbeat) failed; "" when it succeeded.
	WriteError    string `json:"write_error,omitempty"`
	CopiesPending int    `json:"copies_pending"` // parts of copies published, not yet acknowledged
	Copies        int64  `json:"copies"`         // messages copied to the stream
	CopyFailures  int64  `json:"copy_failures"`  // messages refused because their copy failed
	// CopyWaitSeconds is the time Commits waited for their copies'
	// acknowledgements, summed: over Copies, the replication's latency.
	CopyWaitSeconds float64 `json:"copy_wait_seconds"`
	// StateUpdates: newer records sent to copies because a recipient was
	// delivered or failed (a takeover then does not deliver to it again).
	StateUpdates int64 `json:"state_updates"`
	Takeovers    int64 `json:"takeovers"`  // silent nodes' queues taken over
	TakenOver    int64 `json:"taken_over"` // messages imported by them
}

// clusterReport is GET /v1/cluster.
type clusterReport struct {
	ClusterStats
	Nodes []cluster.NodeStatus `json:"nodes"`
}

func (a *Admin) cluster(w http.ResponseWriter, r *http.Request) {
	c := a.opt.Cluster
	if c == nil {
		writeError(w, http.StatusNotFound, "this gateway has no cluster block")
		return
	}
	nodes, err := c.ClusterNodes(r.Context())
	if err != nil {
		writeError(w, http.StatusServiceUnavailable, err.Error())
		return
	}
	writeJSON(w, http.StatusOK, clusterReport{ClusterStats: c.ClusterStats(), Nodes: nodes})
}

// clusterMetrics are the cluster's metric descriptions.
type clusterMetrics struct {
	connected, pending, copies, failures, wait, states, takeovers, takenOver *prometheus.Desc
}

func newClusterMetrics() clusterMetrics {
	d := func(name, help string) *prometheus.Desc { return prometheus.NewDesc(name, help, nil, nil) }
	return clusterMetrics{
		connected: d("gateway_cluster_connected", "1 while the gateway is connected to NATS; 0 while it answers new mail 451 4.3.0."),
		pending:   d("gateway_cluster_copies_pending", "Parts of message copies published to the queue's stream and not yet acknowledged."),
		copies:    d("gateway_cluster_copies_total", "Messages copied to the queue's stream before their 250."),
		failures:  d("gateway_cluster_copy_failures_total", "Messages refused (451 4.3.0) because their copy was not acknowledged."),
		wait: d("gateway_cluster_copy_wait_seconds_total", "Time Commits waited for their copies' acknowledgements (before the local commit); "+
			"over gateway_cluster_copies_total, the replication's added latency."),
		states: d("gateway_cluster_state_updates_total", "Records sent to message copies because a recipient was delivered or failed, "+
			"so that a takeover does not deliver to it again."),
		takeovers: d("gateway_cluster_takeovers_total", "Queues of silent nodes this node took over."),
		takenOver: d("gateway_cluster_taken_over_messages_total", "Messages this node imported from silent nodes' queues."),
	}
}

func (m clusterMetrics) describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{m.connected, m.pending, m.copies, m.failures, m.wait, m.states, m.takeovers, m.takenOver} {
		ch <- d
	}
}

func (m clusterMetrics) collect(ch chan<- prometheus.Metric, s ClusterStats) {
	connected := 0.0
	if s.Connected {
		connected = 1
	}
	gauge := func(d *prometheus.Desc, v float64) { ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v) }
	counter := func(d *prometheus.Desc, v float64) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v)
	}
	gauge(m.connected, connected)
	gauge(m.pending, float64(s.CopiesPending))
	counter(m.copies, float64(s.Copies))
	counter(m.failures, float64(s.CopyFailures))
	counter(m.wait, s.CopyWaitSeconds)
	counter(m.states, float64(s.StateUpdates))
	counter(m.takeovers, float64(s.Takeovers))
	counter(m.takenOver, float64(s.TakenOver))
}
