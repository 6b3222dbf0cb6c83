#!/usr/bin/env bash
# Accept and relay benchmarks, interleaved, RUNS times each, on this machine.
#
#   sink : `gateway bench` -> `gateway sink` (the ceiling: keeps nothing)
#   serve: `gateway bench` -> `gateway serve` (fsync'd spool, no delivery)
#   hooks: as serve, with a Lua script answering rcpt and data (lua.hcl)
#   relay: `gateway bench` -> `gateway serve` -> `gateway sink`, timed until
#          the downstream sink has every message
# Prints every run, the medians, and the gateway's CPU time per message.
#
#   examples/benchmark/run.sh            # 5 runs of 20000 messages, 2 KB, 1 rcpt, 20 sessions
#   RUNS=3 MESSAGES=10000 examples/benchmark/run.sh
set -euo pipefail
cd "$(dirname "$0")/../.."

RUNS=${RUNS:-5}
MESSAGES=${MESSAGES:-20000}
CONCURRENCY=${CONCURRENCY:-20}
SIZE=${SIZE:-2048}
RCPTS=${RCPTS:-1}

# Every port this script uses, all on 127.0.0.1: the configs' are set from these.
SINK_PORT=2626       # gateway sink, the ceiling of the gateway bench phases
SERVE_PORT=2527      # gateway serve with gateway.hcl
RELAY_PORT=2528      # gateway serve with relay.hcl
LUA_PORT=2529        # gateway serve with lua.hcl
DOWN_PORT=2627       # gateway sink, the relay's next hop

work=$(mktemp -d)
cleanup() {
	kill $(jobs -p) 2>/dev/null || true
	wait 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
bin=$work/gateway
go build -o "$bin" ./cmd/gateway

# cpu_ticks PID: user+system clock ticks of a process so far.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
hz=$(getconf CLK_TCK)

# rate START END: messages per second between two `date +%s.%N`.
rate() { python3 -c "print(round($MESSAGES / ($2 - $1), 1))"; }

# The load generators run as jobs the script waits for, so that a signal
# stops the script at once (bash runs a trap only after a foreground
# command ends, but interrupts `wait`).

# run_bench ADDR: one bench run; sets rate, p50 (ms) and fails.
run_bench() {
	"$bin" bench --server "$1" --messages "$MESSAGES" --concurrency "$CONCURRENCY" \
		--size "$SIZE" --rcpts "$RCPTS" --json >"$work/bench.json" &
	wait $!
	read -r rate p50 fails < <(python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); print(round(r["messages_per_second"], 1), r["latency_p50_ms"], r["failures"])' "$work/bench.json")
}

# wait_port PORT: until something listens on 127.0.0.1:PORT.
wait_port() {
	for _ in $(seq 200); do
		(exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
		sleep 0.05
	done
	echo "nothing listening on 127.0.0.1:$1" >&2; return 1
}

# wait_count FILE N: until a sink's --report output says messages=N.
wait_count() {
	for _ in $(seq 6000); do
		tail -n 1 "$1" 2>/dev/null | grep -q "^messages=$2 " && return 0
		sleep 0.01
	done
	echo "sink never reached $2 messages" >&2; return 1
}

# stop PID: SIGTERM, and wait for it to end.
stop() { kill -TERM "$1"; wait "$1" || true; }

# start_sink PORT [ARGS]: `gateway sink` on 127.0.0.1:PORT, its output in
# $work/sink-PORT.out; sets sink.
start_sink() {
	local port=$1; shift
	"$bin" sink --listen "127.0.0.1:$port" "$@" >"$work/sink-$port.out" &
	sink=$!
	wait_port "$port"
}

# start_gateway NAME PORT: `gateway serve` with examples/benchmark/NAME.hcl
# on 127.0.0.1:PORT, a fresh data_dir, the next hop DOWN_PORT (relay.hcl)
# and the Lua script's absolute path (lua.hcl); sets srv and data.
start_gateway() {
	data="$work/data-$1"
	sed -e "s|^data_dir = .*|data_dir = \"$data\"|" \
		-e "s|address *= \"127.0.0.1:[0-9]*\"|address = \"127.0.0.1:$2\"|" \
		-e "s|via = \"127.0.0.1:2627\"|via = \"127.0.0.1:$DOWN_PORT\"|" \
		-e "s|path    = \"hooks.lua\"|path    = \"$(pwd)/examples/benchmark/hooks.lua\"|" \
		"examples/benchmark/$1.hcl" >"$work/$1.hcl"
	"$bin" serve -config "$work/$1.hcl" 2>"$work/$1.err" &
	srv=$!
	wait_port "$2"
}

# stop_gateway: stops srv and removes its data_dir.
stop_gateway() { stop "$srv"; rm -rf "$data"; }

sink_rates=(); serve_rates=(); serve_cpu=(); relay_rates=(); relay_cpu=(); lua_rates=(); lua_cpu=()

# bench_phases I: run I of the `gateway bench` phases.
bench_phases() {
	local i=$1 rate p50 fails before after cpu_us start end phase label name port
	start_sink "$SINK_PORT"
	run_bench "127.0.0.1:$SINK_PORT"
	stop "$sink"
	sink_rates+=("$rate")
	echo "run $i sink : $rate msg/s, p50 ${p50} ms, failures $fails"

	for phase in serve:gateway:$SERVE_PORT hooks:lua:$LUA_PORT; do
		IFS=: read -r label name port <<<"$phase"
		start_gateway "$name" "$port"
		before=$(cpu_ticks "$srv")
		run_bench "127.0.0.1:$port"
		after=$(cpu_ticks "$srv")
		stop_gateway
		cpu_us=$(( (after - before) * 1000000 / hz / MESSAGES ))
		if [ "$label" = serve ]; then serve_rates+=("$rate"); serve_cpu+=("$cpu_us")
		else lua_rates+=("$rate"); lua_cpu+=("$cpu_us"); fi
		echo "run $i $label: $rate msg/s, p50 ${p50} ms, failures $fails, server CPU ${cpu_us} µs/msg"
	done

	start_sink "$DOWN_PORT" --report 10ms
	start_gateway relay "$RELAY_PORT"
	before=$(cpu_ticks "$srv")
	start=$(date +%s.%N)
	run_bench "127.0.0.1:$RELAY_PORT"
	wait_count "$work/sink-$DOWN_PORT.out" "$MESSAGES"
	end=$(date +%s.%N)
	after=$(cpu_ticks "$srv")
	stop_gateway
	stop "$sink"
	rate=$(rate "$start" "$end")
	cpu_us=$(( (after - before) * 1000000 / hz / MESSAGES ))
	relay_rates+=("$rate"); relay_cpu+=("$cpu_us")
	echo "run $i relay: $rate msg/s end to end (accept p50 ${p50} ms), failures $fails, gateway CPU ${cpu_us} µs/msg"
}

for i in $(seq "$RUNS"); do
	bench_phases "$i"
done

median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
ms=$(median "${sink_rates[@]}"); mv=$(median "${serve_rates[@]}"); mc=$(median "${serve_cpu[@]}")
echo
echo "median sink (ceiling): $ms msg/s"
echo "median serve (fsync):  $mv msg/s = $(python3 -c "print(round(100*$mv/$ms))")% of the ceiling, server CPU $mc µs/msg"
ml=$(median "${lua_rates[@]}"); mlc=$(median "${lua_cpu[@]}")
echo "median serve + Lua:    $ml msg/s = $(python3 -c "print(round(100*$ml/$mv))")% of serve without hooks, server CPU $mlc µs/msg"
mr=$(median "${relay_rates[@]}"); mrc=$(median "${relay_cpu[@]}")
echo "median relay:          $mr msg/s = $(python3 -c "print(round(100*$mr/$ms))")% of the ceiling, gateway CPU $mrc µs/msg"

