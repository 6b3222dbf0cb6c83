#!/usr/bin/env bash
# Three NATS servers and three gateways on this machine, on loopback, with
# one command: the cluster of issue 13 to try by hand.
#
#   examples/cluster/run.sh          # runs until Ctrl-C, then stops everything
#   examples/cluster/run.sh check    # starts it, sends one message, shows
#                                    # `gateway cluster status`, stops
#
# NATS client ports 4222-4224 (routes 6222-6224, monitoring 8222-8224);
# gateways' SMTP on 127.0.0.1:2525-2527, admin APIs on 127.0.0.1:8081-8083.
# Their listeners take a PROXY header from 127.0.0.2 (and only there), the
# source address of HAProxy in README.md and haproxy.cfg; clients
# connecting from 127.0.0.1 talk to the gateways directly. Their next hop is
# 127.0.0.1:2600, where nothing listens unless you start one
# (`gateway sink --listen 127.0.0.1:2600`): mail waits in the queues. Needs
# nats-server 2.11 or later on PATH or in $(go env GOPATH)/bin
# (`go install github.com/nats-io/nats-server/v2@v2.15.3`).
set -euo pipefail
cd "$(dirname "$0")/../.."
PATH=$PATH:$(go env GOPATH)/bin
command -v nats-server >/dev/null || { echo "nats-server not found: go install github.com/nats-io/nats-server/v2@v2.15.3" >&2; exit 2; }
. examples/benchmark/lib.sh # work, bin, cleanup on exit, wait_port, stop
build_gateway

routes=nats://127.0.0.1:6222,nats://127.0.0.1:6223,nats://127.0.0.1:6224
for i in 0 1 2; do
	nats-server -js -sd "$work/nats$i" -n "n$i" -a 127.0.0.1 -p $((4222 + i)) \
		-m $((8222 + i)) --cluster_name gw --cluster "nats://127.0.0.1:$((6222 + i))" --routes "$routes" \
		>"$work/nats$i.log" 2>&1 &
done
# A gateway refuses to start while JetStream has no meta leader (its
# check gives up after 5 s), and a new cluster takes some seconds to elect
# one: wait until every server's /healthz says ok.
for i in 0 1 2; do
	wait_port $((8222 + i))
	for t in $(seq 120); do
		health=$(curl -s "http://127.0.0.1:$((8222 + i))/healthz") || true
		case $health in *'"ok"'*) break ;; esac
		[ "$t" = 120 ] && { echo "nats n$i: $health" >&2; cat "$work/nats$i.log" >&2; exit 1; }
		sleep 0.5
	done
done

for i in 1 2 3; do
	mkdir -p "$work/gw$i"
	cat >"$work/gw$i/gateway.hcl" <<-EOF
		hostname = "gw$i.example.test"
		data_dir = "data"
		listener "mx" {
		  address        = "127.0.0.1:$((2524 + i))"
		  proxy_protocol = ["127.0.0.2/32"]  # HAProxy, as in README.md
		}
		domains = ["example.test"]
		relay { networks = ["127.0.0.0/8"] }
		delivery {
		  route "*" { via = "127.0.0.1:2600" }
		}
		admin { address = "127.0.0.1:$((8080 + i))" }
		cluster {
		  node      = "gw$i"
		  nats_urls = ["nats://127.0.0.1:4222", "nats://127.0.0.1:4223", "nats://127.0.0.1:4224"]
		  replicas  = 3
		}
	EOF
	"$bin" serve -config "$work/gw$i/gateway.hcl" 2>"$work/gw$i/serve.log" &
done
for i in 1 2 3; do
	wait_port $((2524 + i)) || { cat "$work/gw$i/serve.log" >&2; exit 1; }
done
echo "3 NATS servers (4222-4224) and 3 gateways (SMTP 2525-2527, admin 8081-8083) are running in $work"
echo "gateway binary: $bin; a stopped node N starts again with"
echo "  $bin serve -config $work/gwN/gateway.hcl 2>>$work/gwN/serve.log &"

if [ "${1:-}" = check ]; then
	printf 'Subject: cluster\r\n\r\nHello.\r\n' |
		"$bin" send --server 127.0.0.1:2525 --from a@example.org --to b@remote.test
	sleep 6 # a heartbeat (every 5 s) that counts the message
	"$bin" cluster status -config "$work/gw1/gateway.hcl"
	"$bin" queue ls --cluster -admin 127.0.0.1:8082
	exit 0
fi
echo "Ctrl-C stops them all."
wait
