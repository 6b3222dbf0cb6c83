// Package cluster owns a gateway's place in a cluster of gateways that
// share state on NATS JetStream (issue 13): the connection to the NATS
// servers that the config's cluster block names (Connect; it reconnects
// by itself, and Close ends it), and the shared key-value stores of the
// hooks (Store, a hostsvc.Store on a JetStream key-value bucket). The
// assembly (core/gateway) hands the host services two: gateway_kv, on the
// servers' disks, as the Durable store in place of the spool, and
// gateway_ephemeral, in the servers' memory (never a disk write, lost
// when every server restarts), as the Ephemeral store in place of the
// gateway's memory. Lua's gw.durable (gw.kv) and gw.ephemeral, and a
// plugin's Host.Durable and Host.Ephemeral, so see the same keys on every
// node, and relay.lua's rate limit holds across nodes.
//
// The store keeps the spool store's semantics (core/queue/kv.go): a get
// sees every write acknowledged before it (reads go to the bucket's
// stream leader); a ttl from 0 (never) to 100 years, to the nanosecond,
// read against the nodes' clocks (keep them in sync with NTP); incr counts
// an absent or expired key as 0 and gives it the ttl, keeps an existing
// key's expiry, and is atomic across nodes: a compare-and-set on the
// key's revision, retried on conflict. Expired keys are removed by the
// servers themselves (JetStream per-message TTL, nats-server 2.11 or
// later), so nothing sweeps. Every call is bounded by its ctx and by
// Options.Timeout; while the connection is down a call fails at once with
// ErrUnavailable, and the hook that made it takes its on_error path.
//
// The replicated queue (replica.go): a Replica is the copy of this
// node's spool on the stream GATEWAY_QUEUE (queue.Replica: Commit waits
// for the copy's acknowledgement, a recipient made final sends a newer
// record, Delete removes both), and Copies reads a node's copies back. The nodes' heartbeats and the claims on silent
// nodes' queues (nodes.go) are a bucket of their own, gateway_nodes; the
// takeover itself, which uses them, is core/gateway's (takeover.go).
//
// # Running NATS
//
// The gateway connects to NATS servers run as operators already run them;
// nats-server 2.11 or later with JetStream on, clustered for replicas > 1
// (3 servers for replicas = 3). The binary the tests use is at hand with
//
//	go install github.com/nats-io/nats-server/v2@v2.15.3
//
// and a node of three on one machine runs as
//
//	nats-server -js -sd /var/lib/nats/n1 -p 4222 -n n1 \
//	  --cluster_name gw --cluster nats://127.0.0.1:6222 \
//	  --routes nats://127.0.0.1:6223,nats://127.0.0.1:6224
//
// # The cluster block
//
//	cluster {
//	  node      = "gw1"   # unique per node; default: the machine's host name
//	  nats_urls = ["nats://127.0.0.1:4222", "nats://127.0.0.1:4223", "nats://127.0.0.1:4224"]
//	  replicas  = 3       # JetStream copies of the shared state; 1 to 5, default 3
//	  # credentials_file = "gw.creds"              # NATS user JWT and nkey seed
//	  # tls { ca = "ca.pem" cert = "gw.pem" key = "gw.key" }
//	  # takeover_after = "30s"                     # silent this long: its queue is taken over
//	}
//
// The buckets are gateway_kv and gateway_ephemeral (streams
// KV_gateway_kv and KV_gateway_ephemeral, for the `nats kv` tools), each
// with the block's replicas; a key's NATS key is the base64url of the key
// ("<script>/<key>" for Lua, "plugin.<name>/<key>" for a plugin), since
// NATS keys allow only [-/_=.a-zA-Z0-9]. The ephemeral bucket has no
// bound of its own: the servers' JetStream memory limit is its bound, and
// a full one fails writes (the hook's on_error) where the single node's
// memory store drops the entries closest to expiry.
package cluster
