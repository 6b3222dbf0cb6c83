package config

import (
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"time"

	"github.com/hashicorp/hcl/v2"
)

// Cluster is the cluster { … } block: this node's place among gateways
// that share state on a NATS JetStream cluster (core/cluster). nil: no
// block, a single node.
type Cluster struct {
	// Node names this gateway among the others, unique per node: letters,
	// digits, '.', '_' and '-'. Default: the machine's host name (not the
	// hostname setting, which nodes behind one MX name often share).
	Node string
	// NATSURLs are the NATS servers to connect to (nats://host:port,
	// tls://, ws:// or wss://); the client learns the rest of the cluster
	// from them and reconnects to any.
	NATSURLs []string
	// Replicas is how many JetStream copies the shared state and the
	// queue's copy have: 1 to 5, default 3.
	Replicas int
	// CredentialsFile is a NATS credentials file (a user JWT and its nkey
	// seed); "" = none.
	CredentialsFile string `json:",omitempty"`
	// TLS configures TLS to the NATS servers; nil = the URLs decide.
	TLS *ClusterTLS `json:",omitempty"`
	// TakeoverAfter is how long a node may be silent before a surviving
	// node takes its queued mail over. Default 30s.
	TakeoverAfter time.Duration
}

// ClusterTLS is cluster's tls { ca cert key } block: CA is the PEM file
// of the roots the NATS servers' certificates are checked with ("" = the
// system's), Cert and Key a client certificate (both or neither).
type ClusterTLS struct {
	CA   string `json:",omitempty"`
	Cert string `json:",omitempty"`
	Key  string `json:",omitempty"`
}

// rawCluster is cluster { … }.
type rawCluster struct {
	DefRange hcl.Range `hcl:",def_range"`

	Node            hcl.Expression `hcl:"node,optional"`
	NATSURLs        hcl.Expression `hcl:"nats_urls,optional"` // required
	Replicas        hcl.Expression `hcl:"replicas,optional"`
	CredentialsFile hcl.Expression `hcl:"credentials_file,optional"`
	TakeoverAfter   hcl.Expression `hcl:"takeover_after,optional"`

	TLS *rawClusterTLS `hcl:"tls,block"`
}

// rawClusterTLS is tls { … } in cluster.
type rawClusterTLS struct {
	DefRange hcl.Range      `hcl:",def_range"`
	CA       hcl.Expression `hcl:"ca,optional"`
	Cert     hcl.Expression `hcl:"cert,optional"`
	Key      hcl.Expression `hcl:"key,optional"`
}

// maxReplicas is JetStream's most replicas of a stream.
const maxReplicas = 5

// cluster converts cluster { … }; nil when absent.
func (d *decoder) cluster(r *rawCluster) *Cluster {
	if r == nil {
		return nil
	}
	c := &Cluster{Replicas: defaultClusterReplicas, TakeoverAfter: defaultTakeoverAfter}
	if present(r.Node) {
		if d.str("node", r.Node, &c.Node) && !validListenerName(c.Node) {
			d.errorf(r.Node.Range(), "Invalid value",
				"node = %q: a node name has letters, digits, '.', '_' and '-', and starts with a letter or digit.", c.Node)
		}
	} else {
		c.Node = d.defaultNode(r.DefRange)
	}
	if d.required("nats_urls", r.NATSURLs, r.DefRange) {
		c.NATSURLs = d.natsURLs("nats_urls", r.NATSURLs)
	}
	if d.integer("replicas", r.Replicas, &c.Replicas, 1) && c.Replicas > maxReplicas {
		d.errorf(r.Replicas.Range(), "Invalid value", "replicas must be at most %d (JetStream's limit); got %d.", maxReplicas, c.Replicas)
	}
	if present(r.CredentialsFile) {
		d.file("credentials_file", r.CredentialsFile, &c.CredentialsFile)
	}
	d.duration("takeover_after", r.TakeoverAfter, &c.TakeoverAfter, false)
	c.TLS = d.clusterTLS(r.TLS)
	return c
}

// defaultNode is the machine's host name as a node name; an error at the
// block (def) when there is none or it cannot be one.
func (d *decoder) defaultNode(def hcl.Range) string {
	name, err := d.hostname()
	switch {
	case err != nil:
		d.errorf(def, "Missing node name", "The machine's host name is unknown (%s); set node = \"…\".", err)
	case !validListenerName(name):
		d.errorf(def, "Missing node name", "The machine's host name %q cannot name this node; set node = \"…\".", name)
	default:
		return name
	}
	return ""
}

// clusterTLS converts cluster's tls { ca cert key }: each a readable file,
// cert and key together.
func (d *decoder) clusterTLS(r *rawClusterTLS) *ClusterTLS {
	if r == nil {
		return nil
	}
	t := &ClusterTLS{}
	if present(r.CA) {
		d.file("ca", r.CA, &t.CA)
	}
	if present(r.Cert) {
		d.file("cert", r.Cert, &t.Cert)
	}
	if present(r.Key) {
		d.file("key", r.Key, &t.Key)
	}
	if present(r.Cert) != present(r.Key) {
		d.errorf(r.DefRange, "Invalid tls block", "Give both cert and key (a client certificate), or neither.")
	}
	return t
}

// natsURLs decodes a non-empty list of NATS server URLs, each reported at
// its own position when it is not one, or is there twice.
func (d *decoder) natsURLs(name string, expr hcl.Expression) []string {
	list, ok := value[[]string](d, name, expr)
	if !ok {
		return nil
	}
	if len(list) == 0 {
		d.errorf(expr.Range(), "Invalid value", "%s needs at least one URL.", name)
		return nil
	}
	ranges := elementRanges(expr, len(list))
	var out []string
	for i, s := range list {
		err := checkNATSURL(s)
		if err == nil && slices.Contains(out, s) {
			err = fmt.Errorf("listed twice")
		}
		if err != nil {
			d.errorf(ranges[i], "Invalid URL", "%s: %q: %s.", name, s, err)
			continue
		}
		out = append(out, s)
	}
	return out
}

// natsSchemes are the URL schemes the NATS client dials.
func natsSchemes() []string { return []string{"nats", "tls", "ws", "wss"} }

// checkNATSURL checks a NATS server URL: scheme://host[:port], no path.
func checkNATSURL(s string) error {
	u, err := url.Parse(s)
	switch {
	case err != nil || u.Opaque != "":
		return fmt.Errorf(`want scheme://host:port, as in "nats://127.0.0.1:4222"`)
	case !slices.Contains(natsSchemes(), u.Scheme):
		return fmt.Errorf("the scheme is %q; want %s", u.Scheme, orList(natsSchemes()))
	case u.Hostname() == "":
		return fmt.Errorf("the host is empty")
	case u.Path != "" && u.Path != "/", u.RawQuery != "", u.Fragment != "":
		return fmt.Errorf("a NATS URL has no path, query or fragment")
	}
	if p := u.Port(); p != "" {
		if n, err := strconv.ParseUint(p, 10, 16); err != nil || n == 0 {
			return fmt.Errorf("port %q is not a number from 1 to 65535", p)
		}
	}
	return nil
}
