#!/usr/bin/env bash
# Accept and relay benchmarks, interleaved, RUNS times each, on this machine:
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

bin=$(mktemp -d)/gateway
go build -o "$bin" ./cmd/gateway
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT

# cpu_ticks PID: user+system clock ticks of a process so far.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
hz=$(getconf CLK_TCK)

# run_bench ADDR: one bench run; prints "msgs_per_sec p50_ms".
run_bench() {
	"$bin" bench --server "$1" --messages "$MESSAGES" --concurrency "$CONCURRENCY" \
		--size "$SIZE" --rcpts "$RCPTS" --json >"$work/bench.json"
	python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); print(r["messages_per_second"], r["latency_p50_ms"], r["failures"])' "$work/bench.json"
}

# wait_port ADDR: until something listens there.
wait_port() {
	for _ in $(seq 100); do
		(exec 3<>"/dev/tcp/${1%:*}/${1##*:}") 2>/dev/null && return 0
		sleep 0.05
	done
	echo "nothing listening on $1" >&2; return 1
}

# wait_count FILE N: until a sink's --report output says messages=N.
wait_count() {
	for _ in $(seq 6000); do
		tail -n 1 "$1" 2>/dev/null | grep -q "^messages=$2 " && return 0
		sleep 0.01
	done
	echo "sink never reached $2 messages" >&2; return 1
}

sink_rates=(); serve_rates=(); serve_cpu=(); relay_rates=(); relay_cpu=(); lua_rates=(); lua_cpu=()
here=$(pwd)/examples/benchmark
for i in $(seq "$RUNS"); do
	"$bin" sink --listen 127.0.0.1:2626 >"$work/sink.out" &
	sink=$!
	wait_port 127.0.0.1:2626
	read -r rate p50 fails < <(run_bench 127.0.0.1:2626)
	kill -TERM "$sink"; wait "$sink" || true
	sink_rates+=("$rate")
	echo "run $i sink : $rate msg/s, p50 ${p50} ms, failures $fails"

	data="$work/data$i"
	sed "s|^data_dir = .*|data_dir = \"$data\"|" examples/benchmark/gateway.hcl >"$work/gateway.hcl"
	"$bin" serve -config "$work/gateway.hcl" 2>"$work/serve.err" &
	srv=$!
	wait_port 127.0.0.1:2527
	before=$(cpu_ticks "$srv")
	read -r rate p50 fails < <(run_bench 127.0.0.1:2527)
	after=$(cpu_ticks "$srv")
	kill -TERM "$srv"; wait "$srv" || true
	cpu_us=$(( (after - before) * 1000000 / hz / MESSAGES ))
	serve_rates+=("$rate"); serve_cpu+=("$cpu_us")
	echo "run $i serve: $rate msg/s, p50 ${p50} ms, failures $fails, server CPU ${cpu_us} µs/msg"
	rm -rf "$data"

	sed -e "s|^data_dir = .*|data_dir = \"$data\"|" -e "s|path    = \"hooks.lua\"|path    = \"$here/hooks.lua\"|" \
		examples/benchmark/lua.hcl >"$work/lua.hcl"
	"$bin" serve -config "$work/lua.hcl" 2>"$work/lua.err" &
	srv=$!
	wait_port 127.0.0.1:2529
	before=$(cpu_ticks "$srv")
	read -r rate p50 fails < <(run_bench 127.0.0.1:2529)
	after=$(cpu_ticks "$srv")
	kill -TERM "$srv"; wait "$srv" || true
	cpu_us=$(( (after - before) * 1000000 / hz / MESSAGES ))
	lua_rates+=("$rate"); lua_cpu+=("$cpu_us")
	echo "run $i hooks: $rate msg/s, p50 ${p50} ms, failures $fails, server CPU ${cpu_us} µs/msg"
	rm -rf "$data"

	"$bin" sink --listen 127.0.0.1:2627 --report 10ms >"$work/down.out" &
	down=$!
	wait_port 127.0.0.1:2627
	sed "s|^data_dir = .*|data_dir = \"$data\"|" examples/benchmark/relay.hcl >"$work/relay.hcl"
	"$bin" serve -config "$work/relay.hcl" 2>"$work/relay.err" &
	srv=$!
	wait_port 127.0.0.1:2528
	before=$(cpu_ticks "$srv")
	start=$(date +%s.%N)
	read -r rate p50 fails < <(run_bench 127.0.0.1:2528)
	wait_count "$work/down.out" "$MESSAGES"
	end=$(date +%s.%N)
	after=$(cpu_ticks "$srv")
	kill -TERM "$srv"; wait "$srv" || true
	kill -TERM "$down"; wait "$down" || true
	rate=$(python3 -c "print(round($MESSAGES/($end-$start), 1))")
	cpu_us=$(( (after - before) * 1000000 / hz / MESSAGES ))
	relay_rates+=("$rate"); relay_cpu+=("$cpu_us")
	echo "run $i relay: $rate msg/s end to end (accept p50 ${p50} ms), failures $fails, gateway CPU ${cpu_us} µs/msg"
	rm -rf "$data"
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
