#!/usr/bin/env bash
# One gateway node with a `cluster` block against the same node without
# one, on this machine, with Postfix's smtp-source (a new connection per
# message, HELO, no pipelining), RUNS times each, alternated:
#   accept: smtp-source -> `gateway serve` (next hop down: mail queues up)
#   relay : smtp-source -> `gateway serve` -> `gateway sink`, end to end
# With the block, every message is copied to a 3-node NATS JetStream
# cluster (replicas 3) before its 250: three nats-server processes on
# loopback, sharing the machine's cores with the gateway and smtp-source.
# Prints every run, the medians, the ratio on/off, the gateway's and the
# NATS servers' CPU per message (from /proc), and the replication's added
# latency per message (gateway_cluster_copy_wait_seconds_total over
# gateway_cluster_copies_total, from the admin API).
#
#   examples/benchmark/cluster.sh          # 3 runs of 5000 messages, 2 KB, 1 rcpt, 20 sessions: about 2 minutes
#   RUNS=5 MESSAGES=20000 examples/benchmark/cluster.sh
#
# Needs smtp-source (Debian: postfix) and nats-server, in PATH or as
#   go install github.com/nats-io/nats-server/v2@v2.15.3
set -euo pipefail
cd "$(dirname "$0")/../.."
PATH=$PATH:/usr/sbin:$(go env GOPATH)/bin

RUNS=${RUNS:-3}
MESSAGES=${MESSAGES:-5000}
CONCURRENCY=${CONCURRENCY:-20}
SIZE=${SIZE:-2048}

# Every port this script uses, all on 127.0.0.1.
SERVE_PORT=2541  # gateway serve, accept phases
RELAY_PORT=2542  # gateway serve, relay phases
DOWN_PORT=2643   # gateway sink, the relay's next hop
ADMIN_PORT=8541  # the gateway's admin API (metrics)
NATS_PORT=4322   # nats-server n1; n2 and n3 take the next two
ROUTE_PORT=6322  # their cluster ports, likewise
MON_PORT=8322    # their monitoring ports, likewise

for cmd in smtp-source nats-server curl; do
	command -v "$cmd" >/dev/null || { echo "cluster.sh needs $cmd" >&2; exit 1; }
done
. examples/benchmark/lib.sh # work, bin, cleanup on exit, wait_port, stop
build_gateway
hz=$(getconf CLK_TCK)
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
per_msg_ms() { calc "$1 * 1000 / $hz / $MESSAGES"; }
rate() { calc "$MESSAGES / ($2 - $1)" 1; }

# start_nats: three nats-server nodes routed to each other, JetStream on,
# until each says its JetStream has a meta leader; sets nats_pids.
nats_pids=()
start_nats() {
	local i routes=""
	for i in 0 1 2; do routes="$routes,nats://127.0.0.1:$((ROUTE_PORT + i))"; done
	for i in 0 1 2; do
		nats-server -js -sd "$work/nats/n$i" -n "n$i" -a 127.0.0.1 -p $((NATS_PORT + i)) -m $((MON_PORT + i)) \
			--cluster_name bench --cluster "nats://127.0.0.1:$((ROUTE_PORT + i))" --routes "${routes#,}" \
			>"$work/nats-$i.log" 2>&1 &
		nats_pids+=($!)
	done
	for i in 0 1 2; do
		for _ in $(seq 600); do
			curl -fs "http://127.0.0.1:$((MON_PORT + i))/healthz" >/dev/null 2>&1 && break
			sleep 0.1
		done
	done
}
nats_ticks() { local t=0 p; for p in "${nats_pids[@]}"; do t=$((t + $(cpu_ticks "$p"))); done; echo "$t"; }

# start_gateway CLUSTER PORT NEXT_HOP RUN: `gateway serve` on 127.0.0.1:PORT,
# a fresh data_dir, delivering to NEXT_HOP (a port on 127.0.0.1; 9: down),
# with a cluster block (node bench-RUN-PORT) when CLUSTER is on; sets srv.
start_gateway() {
	local cfg=$work/gw.hcl
	cat >"$cfg" <<-EOF
		hostname = "bench.test"
		data_dir = "$work/data"
		listener "mx" {
		  address                = "127.0.0.1:$2"
		  max_connections_per_ip = 200
		}
		domains = ["example.test"]
		relay { networks = ["127.0.0.0/8"] }
		delivery {
		  route "*" { via = "127.0.0.1:$3" }
		  retry = ["1h"]
		}
		admin { address = "127.0.0.1:$ADMIN_PORT" }
		log { level = "warn" }
	EOF
	if [ "$1" = on ]; then
		cat >>"$cfg" <<-EOF
			cluster {
			  node           = "bench-$4-$2"
			  nats_urls      = ["nats://127.0.0.1:$NATS_PORT", "nats://127.0.0.1:$((NATS_PORT + 1))", "nats://127.0.0.1:$((NATS_PORT + 2))"]
			  replicas       = 3
			  takeover_after = "1h"   # the runs' nodes stop one after another: none takes another's queue
			}
		EOF
	fi
	"$bin" serve -config "$cfg" 2>"$work/gw.err" &
	srv=$!
	wait_port "$2" || { cat "$work/gw.err" >&2; return 1; }
}

# metric NAME: a value of the gateway's /metrics.
metric() { curl -s "http://127.0.0.1:$ADMIN_PORT/metrics" | awk -v m="$1" '$1 == m {print $2}'; }

# run_phase MODE CLUSTER RUN: one accept or relay run; appends to the
# arrays named MODE_CLUSTER_{rates,cpu,nats,wait}.
run_phase() {
	local mode=$1 on=$2 port=$SERVE_PORT hop=9 g0 g1 n0 n1 start end r wait="-"
	if [ "$mode" = relay ]; then
		port=$RELAY_PORT hop=$DOWN_PORT
		"$bin" sink --listen "127.0.0.1:$DOWN_PORT" --report 10ms >"$work/sink.out" &
		sink=$!
		wait_port "$DOWN_PORT"
	fi
	start_gateway "$on" "$port" "$hop" "$3"
	g0=$(cpu_ticks "$srv") n0=$(nats_ticks)
	start=$(date +%s.%N)
	smtp-source -s "$CONCURRENCY" -m "$MESSAGES" -l "$SIZE" -f bench@bench.test -t rcpt@example.test \
		-M bench.test "127.0.0.1:$port" &
	wait $!
	end=$(date +%s.%N)
	if [ "$mode" = relay ]; then
		wait_count "$work/sink.out" "$MESSAGES"
		end=$(sink_last "$work/sink.out")
	fi
	g1=$(cpu_ticks "$srv") n1=$(nats_ticks)
	if [ "$on" = on ]; then
		wait=$(calc "1000 * $(metric gateway_cluster_copy_wait_seconds_total) / $(metric gateway_cluster_copies_total)" 2)
	fi
	stop "$srv"
	rm -rf "$work/data"
	[ "$mode" = relay ] && stop "$sink"
	r=$(rate "$start" "$end")
	eval "${mode}_${on}_rates+=($r); ${mode}_${on}_cpu+=($(per_msg_ms $((g1 - g0)))); ${mode}_${on}_nats+=($(per_msg_ms $((n1 - n0)))); ${mode}_${on}_wait+=($wait)"
	echo "run $3 $mode cluster $on: $r msg/s, gateway CPU $(per_msg_ms $((g1 - g0))) ms/msg, NATS CPU $(per_msg_ms $((n1 - n0))) ms/msg, copy wait $wait ms/msg"
}

start_nats
echo "$RUNS runs of $MESSAGES messages, $SIZE bytes, $CONCURRENCY sessions; 3 nats-server nodes on loopback share the cores"
for i in $(seq "$RUNS"); do
	for phase in accept:off accept:on relay:off relay:on; do
		run_phase "${phase%:*}" "${phase#*:}" "$i"
	done
done
echo
for mode in accept relay; do
	for on in off on; do
		eval "r=\$(median \"\${${mode}_${on}_rates[@]}\") c=\$(median \"\${${mode}_${on}_cpu[@]}\") n=\$(median \"\${${mode}_${on}_nats[@]}\")"
		eval "${mode}_${on}=$r"
		w="-"; [ "$on" = on ] && eval "w=\$(median \"\${${mode}_on_wait[@]}\")"
		echo "median $mode cluster $on: $r msg/s, gateway CPU $c ms/msg, NATS CPU $n ms/msg, copy wait $w ms/msg"
	done
	eval "echo \"$mode: cluster on / off = \$(calc \"\$${mode}_on / \$${mode}_off\" 2)\""
done
