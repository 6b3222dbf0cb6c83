#!/usr/bin/env bash
# Accept and relay benchmarks, interleaved, RUNS times each, on this machine.
#
# With `gateway bench` (pipelined, a connection per worker reused):
#   sink : `gateway bench` -> `gateway sink` (the ceiling: keeps nothing)
#   serve: `gateway bench` -> `gateway serve` (fsync'd spool, no delivery)
#   hooks: as serve, with a Lua script answering rcpt and data (lua.hcl)
#   relay: `gateway bench` -> `gateway serve` -> `gateway sink`, timed until
#          the downstream sink has every message
# With Postfix's smtp-source (a new connection per message, HELO, no
# pipelining: how most MX traffic arrives), when it is installed:
#   ceiling: smtp-source -> smtp-sink (keeps nothing)
#   sink   : smtp-source -> `gateway sink`
#   serve  : smtp-source -> `gateway serve`, as above
#   lua    : as serve, with the Lua rcpt and data hooks (lua.hcl)
#   plugin : as serve, with the aliases plugin answering rcpt (plugin.hcl)
#   relay  : smtp-source -> `gateway serve` -> `gateway sink`, end to end
# and, when Postfix is installed and this runs as root, a throwaway Postfix
# (its own config, queue and data directories in the temporary folder):
#   postfix accept: smtp-source -> Postfix (next hop down, mail queues up)
#   postfix relay : smtp-source -> Postfix -> `gateway sink`, end to end
#   journal: smtp-source -> `gateway sink --journal` (appends each message
#            to one file synced before the 250: the floor of a durable
#            server with this session layer, without spool or engine)
# Prints every run, the medians, shares of the ceiling from the same run,
# and the servers' CPU time and context switches per message read from
# /proc (a switch costs tens of µs on a paravirtualised VM: they are much
# of the gap between a Go server and smtp-sink's single-threaded loop).
#
#   examples/benchmark/run.sh            # 3 runs of 5000 messages, 2 KB, 1 rcpt, 20 sessions: about 4 minutes
#   RUNS=5 MESSAGES=20000 examples/benchmark/run.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
PATH=$PATH:/usr/sbin # smtp-source, smtp-sink, postfix

RUNS=${RUNS:-3}
MESSAGES=${MESSAGES:-5000}
CONCURRENCY=${CONCURRENCY:-20}
SIZE=${SIZE:-2048}
RCPTS=${RCPTS:-1}

# Every port this script uses, all on 127.0.0.1: the configs' are set from these.
SINK_PORT=2626       # gateway sink, the ceiling of the gateway bench phases
SERVE_PORT=2527      # gateway serve with gateway.hcl
RELAY_PORT=2528      # gateway serve with relay.hcl
LUA_PORT=2529        # gateway serve with lua.hcl
DOWN_PORT=2627       # gateway sink, the relays' next hop (gateway's and Postfix's)
SMTP_SINK_PORT=2630  # Postfix's smtp-sink, the ceiling of the smtp-source phases
POSTFIX_PORT=2531    # the throwaway Postfix's smtpd
PLUGIN_PORT=2532     # gateway serve with plugin.hcl

. examples/benchmark/lib.sh     # work, bin, cleanup on exit, wait_port, stop
. examples/benchmark/postfix.sh # postfix_start, postfix_stop, cpu_ticks, tree_ticks, switches
chmod 755 "$work" # the throwaway Postfix's daemons run as postfix and chdir to its queue in here
postfix_live=""   # the running throwaway Postfix's folder, if any
cleanup_more() { postfix_stop; }
build_gateway
go build -o "$work/gateway-plugin-aliases" ./plugins/aliases
echo "postmaster: root" >"$work/aliases"

# cpu_ms BEFORE AFTER: CPU milliseconds per message between two tick counts.
cpu_ms() { calc "($2 - $1) * 1000 / $hz / $MESSAGES"; }

# rate START END: messages per second between two `date +%s.%N`.
rate() { calc "$MESSAGES / ($2 - $1)" 1; }

# share A B: A / B with two decimals.
share() { calc "$1 / $2" 2; }

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

# run_source PORT: smtp-source sends MESSAGES to 127.0.0.1:PORT as the
# issue measures (CONCURRENCY sessions, SIZE bytes of payload after its
# own few headers, RCPTS recipients); sets rate (messages per second) and
# source_cpu (smtp-source's own CPU ms per message: this shell's reaped
# children's ticks before and after).
run_source() {
	local start end before
	before=$(awk '{print $16 + $17}' "/proc/$$/stat")
	start=$(date +%s.%N)
	smtp-source -s "$CONCURRENCY" -m "$MESSAGES" -l "$SIZE" -r "$RCPTS" \
		-f bench@bench.test -t rcpt@example.test -M bench.test "127.0.0.1:$1" &
	wait $!
	end=$(date +%s.%N)
	rate=$(rate "$start" "$end")
	source_cpu=$(cpu_ms "$before" "$(awk '{print $16 + $17}' "/proc/$$/stat")")
}

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
		-e "s|path     = \"gateway-plugin-aliases\"|path     = \"$work/gateway-plugin-aliases\"|" \
		-e "s|aliases_file = \"aliases\"|aliases_file = \"$work/aliases\"|" \
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
	end=$(sink_last "$work/sink-$DOWN_PORT.out")
	after=$(cpu_ticks "$srv")
	stop_gateway
	stop "$sink"
	rate=$(rate "$start" "$end")
	cpu_us=$(( (after - before) * 1000000 / hz / MESSAGES ))
	relay_rates+=("$rate"); relay_cpu+=("$cpu_us")
	echo "run $i relay: $rate msg/s end to end (accept p50 ${p50} ms), failures $fails, gateway CPU ${cpu_us} µs/msg"
}

src_ceiling_rates=(); src_ceiling_cpu=(); src_ceiling_sw=(); src_source_cpu=()
src_sink_rates=(); src_sink_shares=(); src_sink_cpu=(); src_sink_sw=(); src_journal_rates=(); src_journal_shares=(); src_journal_cpu=(); src_journal_sw=()
src_serve_sw=(); src_lua_sw=(); src_relay_sw=(); pf_serve_sw=(); pf_relay_sw=()
src_serve_rates=(); src_serve_shares=(); src_serve_cpu=(); src_relay_rates=(); src_relay_shares=(); src_relay_cpu=()
src_lua_rates=(); src_lua_shares=(); src_lua_cpu=(); src_lua_of_serve=(); src_serve_of_journal=(); src_relay_of_journal=()
src_plugin_rates=(); src_plugin_shares=(); src_plugin_cpu=(); src_plugin_sw=(); src_plugin_of_serve=()
pf_serve_rates=(); pf_serve_shares=(); pf_serve_cpu=(); pf_relay_rates=(); pf_relay_shares=(); pf_relay_cpu=()

# source_ceiling I: smtp-source -> smtp-sink, then -> `gateway sink`, then
# -> `gateway sink --journal`, each with its CPU and context switches per
# message (what SMTP over loopback costs a server that keeps nothing, and
# one that only syncs each message to a file); sets ceiling and journal.
source_ceiling() {
	local i=$1 rate cpu sw sinkuser=()
	[ "$(id -u)" != 0 ] || sinkuser=(-u nobody) # smtp-sink will not run as root
	smtp-sink "${sinkuser[@]}" "127.0.0.1:$SMTP_SINK_PORT" 1024 &
	sink=$!
	wait_port "$SMTP_SINK_PORT"
	measure_accept "$SMTP_SINK_PORT" cpu_ticks "$sink"
	ceiling=$rate
	stop "$sink"
	src_ceiling_rates+=("$ceiling"); src_ceiling_cpu+=("$cpu"); src_ceiling_sw+=("$sw"); src_source_cpu+=("$source_cpu")
	echo "run $i smtp-source ceiling (smtp-sink): $ceiling msg/s, smtp-sink CPU $cpu ms/msg, $sw switches/msg, smtp-source CPU $source_cpu ms/msg"

	start_sink "$SINK_PORT"
	measure_accept "$SINK_PORT" cpu_ticks "$sink"
	stop "$sink"
	record src_sink "$i" "gateway sink"

	start_sink "$SINK_PORT" --journal "$work/journal"
	measure_accept "$SINK_PORT" cpu_ticks "$sink"
	stop "$sink"
	rm -f "$work/journal"
	record src_journal "$i" "gateway sink --journal"
	journal=$rate
}

# measure_accept PORT TICKS PID: smtp-source -> the server on PORT; sets
# rate, cpu from `TICKS PID` (the server's clock ticks) and sw, the
# server's context switches per message ("–" for a tree of processes).
measure_accept() {
	local before after sw0
	before=$($2 "$3"); sw0=$(switches "$3")
	run_source "$1"
	after=$($2 "$3")
	cpu=$(cpu_ms "$before" "$after")
	per_switches "$2" "$3" "$sw0"
}

# per_switches TICKS PID BEFORE: sets sw from PID's switches since BEFORE.
per_switches() {
	if [ "$1" = cpu_ticks ]; then
		sw=$(calc "($(switches "$2") - $3) / $MESSAGES" 2)
	else
		sw="–"
	fi
}

# measure_relay PORT TICKS PID: as measure_accept, but the rate is end to
# end: until the sink on DOWN_PORT has every message.
measure_relay() {
	local before after start end sw0
	before=$($2 "$3"); sw0=$(switches "$3")
	start=$(date +%s.%N)
	run_source "$1"
	wait_count "$work/sink-$DOWN_PORT.out" "$MESSAGES"
	end=$(sink_last "$work/sink-$DOWN_PORT.out")
	after=$($2 "$3")
	rate=$(rate "$start" "$end")
	cpu=$(cpu_ms "$before" "$after")
	per_switches "$2" "$3" "$sw0"
}

# record NAME I WHAT: adds rate, its share of the ceiling, cpu and sw to
# the arrays NAME_rates, NAME_shares, NAME_cpu and NAME_sw, and prints run
# I's line.
record() {
	local -n rates=$1_rates shares=$1_shares cpus=$1_cpu sws=$1_sw
	rates+=("$rate"); shares+=("$(share "$rate" "$ceiling")"); cpus+=("$cpu"); sws+=("$sw")
	echo "run $2 smtp-source $3: $rate msg/s = ${shares[-1]} of the ceiling, CPU $cpu ms/msg, $sw switches/msg"
}

# source_gateway I: smtp-source -> `gateway serve` (accept), then relay end to end.
source_gateway() {
	local i=$1 rate cpu
	start_gateway gateway "$SERVE_PORT"
	measure_accept "$SERVE_PORT" cpu_ticks "$srv"
	stop_gateway
	record src_serve "$i" "gateway accept"
	src_serve_of_journal+=("$(share "$rate" "$journal")")
	local plain=$rate

	start_gateway lua "$LUA_PORT"
	measure_accept "$LUA_PORT" cpu_ticks "$srv"
	stop_gateway
	record src_lua "$i" "gateway accept + Lua hooks"
	src_lua_of_serve+=("$(share "$rate" "$plain")")

	start_gateway plugin "$PLUGIN_PORT"
	measure_accept "$PLUGIN_PORT" tree_ticks "$srv" # the plugin's process too
	stop_gateway
	record src_plugin "$i" "gateway accept + plugin rcpt hook"
	src_plugin_of_serve+=("$(share "$rate" "$plain")")

	start_sink "$DOWN_PORT" --report 10ms
	start_gateway relay "$RELAY_PORT"
	measure_relay "$RELAY_PORT" cpu_ticks "$srv"
	stop_gateway
	stop "$sink"
	record src_relay "$i" "gateway relay (end to end)"
	src_relay_of_journal+=("$(share "$rate" "$journal")")
}

# source_postfix I: smtp-source -> a throwaway Postfix whose next hop is
# down (accept), then one that relays to `gateway sink` (end to end).
source_postfix() {
	local i=$1 rate cpu
	postfix_start 9 # nothing listens on port 9: mail is tried, deferred and queued
	measure_accept "$POSTFIX_PORT" tree_ticks "$postfix_master"
	postfix_stop
	record pf_serve "$i" "postfix accept"

	start_sink "$DOWN_PORT" --report 10ms
	postfix_start "$DOWN_PORT"
	measure_relay "$POSTFIX_PORT" tree_ticks "$postfix_master"
	postfix_stop
	stop "$sink"
	record pf_relay "$i" "postfix relay (end to end)"
}

have_source=""; have_postfix=""
if command -v smtp-source >/dev/null && command -v smtp-sink >/dev/null; then
	have_source=1
else
	echo "smtp-source or smtp-sink not installed (Debian: postfix): skipping the smtp-source phases"
fi
if [ -n "$have_source" ] && command -v postfix >/dev/null && [ "$(id -u)" = 0 ] && id postfix >/dev/null 2>&1; then
	have_postfix=1
elif [ -n "$have_source" ]; then
	echo "postfix not installed, or not root: skipping the Postfix phases"
fi

for i in $(seq "$RUNS"); do
	bench_phases "$i"
	if [ -n "$have_source" ]; then
		source_ceiling "$i"
		source_gateway "$i"
		[ -z "$have_postfix" ] || source_postfix "$i"
	fi
done

ms=$(median "${sink_rates[@]}"); mv=$(median "${serve_rates[@]}"); mc=$(median "${serve_cpu[@]}")
echo
echo "gateway bench (pipelined, connections reused), medians of $RUNS:"
echo "median sink (ceiling): $ms msg/s"
echo "median serve (fsync):  $mv msg/s = $(calc "100*$mv/$ms" 0)% of the ceiling, server CPU $mc µs/msg"
ml=$(median "${lua_rates[@]}"); mlc=$(median "${lua_cpu[@]}")
echo "median serve + Lua:    $ml msg/s = $(calc "100*$ml/$mv" 0)% of serve without hooks, server CPU $mlc µs/msg"
mr=$(median "${relay_rates[@]}"); mrc=$(median "${relay_cpu[@]}")
echo "median relay:          $mr msg/s = $(calc "100*$mr/$ms" 0)% of the ceiling, gateway CPU $mrc µs/msg"

[ -n "$have_source" ] || exit 0
echo
echo "smtp-source -s $CONCURRENCY -l $SIZE -r $RCPTS, $MESSAGES messages, medians of $RUNS (shares: of the ceiling in the same run; of the journal: of gateway sink --journal's rate in the same run, the floor of a durable server; CPU: the server's, from /proc):"
echo
echo "| | accept msg/s | relay end to end msg/s | CPU ms/msg accept, relay | context switches/msg accept, relay |"
echo "|---|---|---|---|---|"
echo "| ceiling: smtp-source → smtp-sink (keeps nothing) | $(median "${src_ceiling_rates[@]}") | – | $(median "${src_ceiling_cpu[@]}") (smtp-source itself: $(median "${src_source_cpu[@]}")) | $(median "${src_ceiling_sw[@]}") |"
echo "| smtp-source → gateway sink (keeps nothing) | $(median "${src_sink_rates[@]}") ($(median "${src_sink_shares[@]}")) | – | $(median "${src_sink_cpu[@]}") | $(median "${src_sink_sw[@]}") |"
echo "| smtp-source → gateway sink --journal (syncs each message to a file, nothing else) | $(median "${src_journal_rates[@]}") ($(median "${src_journal_shares[@]}")) | – | $(median "${src_journal_cpu[@]}") | $(median "${src_journal_sw[@]}") |"
if [ -n "$have_postfix" ]; then
	echo "| Postfix $(postconf -h mail_version) (fsync before 250) | $(median "${pf_serve_rates[@]}") ($(median "${pf_serve_shares[@]}")) | $(median "${pf_relay_rates[@]}") ($(median "${pf_relay_shares[@]}")) | $(median "${pf_serve_cpu[@]}"), $(median "${pf_relay_cpu[@]}") | – |"
fi
echo "| this gateway | $(median "${src_serve_rates[@]}") ($(median "${src_serve_shares[@]}"); $(median "${src_serve_of_journal[@]}") of the journal) | $(median "${src_relay_rates[@]}") ($(median "${src_relay_shares[@]}"); $(median "${src_relay_of_journal[@]}") of the journal) | $(median "${src_serve_cpu[@]}"), $(median "${src_relay_cpu[@]}") | $(median "${src_serve_sw[@]}"), $(median "${src_relay_sw[@]}") |"
echo "| this gateway + Lua rcpt and data hooks | $(median "${src_lua_rates[@]}") ($(median "${src_lua_shares[@]}"); $(median "${src_lua_of_serve[@]}") of accept without) | – | $(median "${src_lua_cpu[@]}") | $(median "${src_lua_sw[@]}") |"
echo "| this gateway + a plugin's rcpt hook | $(median "${src_plugin_rates[@]}") ($(median "${src_plugin_shares[@]}"); $(median "${src_plugin_of_serve[@]}") of accept without) | – | $(median "${src_plugin_cpu[@]}") (the gateway's and the plugin's) | – |"
if [ -n "$have_postfix" ]; then
	echo "| this gateway / Postfix | $(share "$(median "${src_serve_rates[@]}")" "$(median "${pf_serve_rates[@]}")") | $(share "$(median "${src_relay_rates[@]}")" "$(median "${pf_relay_rates[@]}")") | | |"
fi
