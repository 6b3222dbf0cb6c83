#!/usr/bin/env bash
# Memory under load (issue 14, "Memory bounded"): the resident memory of
# `gateway serve` while SESSIONS clients each send one SIZE-byte message at
# the same time, over SESSIONS concurrent SMTP sessions.
#
# The load is `gateway bench --mode smtp-source --concurrency SESSIONS
# --messages SESSIONS`: every worker opens its own connection at once and
# sends one message (HELO, MAIL, RCPT, DATA, the content, QUIT), so all
# sessions are open with their content in flight together. The server runs
# gateway.hcl (durable spool, next hop down, so every message stays queued)
# with a listener that takes SESSIONS connections from 127.0.0.1 and
# messages of SIZE bytes, and an admin API for its metrics.
#
# While the load runs, VmRSS and VmHWM of the server are read from
# /proc/PID/status every 100 ms, and every 500 ms the established
# connections on its port (ss) and the drafts being received (the spool's
# bodies/*.tmp files). It prints peak RSS, peak HWM (the kernel's own peak
# of RSS, which no sampling can miss), the Go heap's peak and GC goal
# sampled each second from /metrics, the sessions seen, the time taken,
# and whether every message arrived whole (the queue's message count from
# /metrics, and the body files of exactly SIZE bytes). It exits 1 when the
# peak is over LIMIT_MB or a message did not arrive.
#
# Disk: SESSIONS × SIZE bytes are written to the spool (20 GiB by default)
# in a temporary folder under TMPDIR; the script checks there is room first,
# and removes the folder, the binary it builds and the spool, at the end.
#
#   examples/benchmark/memory.sh                      # 1000 sessions × 20 MiB, limit 256 MB
#   SESSIONS=100 SIZE=1048576 examples/benchmark/memory.sh   # quick check
#   GOGC=100 examples/benchmark/memory.sh             # Go's default GC target (serve's is 400 unless GOGC is set)
set -euo pipefail
cd "$(dirname "$0")/../.."

SESSIONS=${SESSIONS:-1000}
SIZE=${SIZE:-20971520} # 20 MiB, headers included (gateway bench --size)
LIMIT_MB=${LIMIT_MB:-256}

# Every port this script uses, all on 127.0.0.1: the config's are set from these.
SERVE_PORT=2740 # gateway serve with gateway.hcl
ADMIN_PORT=2741 # its admin API (/metrics)
# The next hop is gateway.hcl's 127.0.0.1:9, where nothing listens.

. examples/benchmark/lib.sh # work, bin, cleanup on exit, wait_port, stop

need=$((SESSIONS * SIZE + (1 << 30))) # the messages and 1 GiB of room beside them
avail=$(($(df --output=avail -B1 "$work" | tail -n 1)))
if [ "$avail" -lt "$need" ]; then
	echo "the spool needs $((need >> 20)) MiB free in $work's file system, it has $((avail >> 20)) MiB" >&2
	exit 2
fi

build_gateway

# start_gateway: `gateway serve` with gateway.hcl on 127.0.0.1:SERVE_PORT,
# a data_dir in the temporary folder, room for SESSIONS sessions from one
# address and messages of SIZE bytes (max_message_size 25MB unless SIZE is
# larger; the timeouts long enough for a disk-bound DATA), and an admin
# API on ADMIN_PORT; sets srv and data.
start_gateway() {
	local max=$(((SIZE >> 20) + 1))
	[ "$max" -ge 25 ] || max=25
	data=$work/data
	sed -e "s|^data_dir = .*|data_dir = \"$data\"|" \
		-e "s|address *= \"127.0.0.1:[0-9]*\"|address = \"127.0.0.1:$SERVE_PORT\"|" \
		-e "s|^  max_connections_per_ip = .*|  max_connections        = $SESSIONS\n  max_connections_per_ip = $SESSIONS\n  max_message_size       = \"${max}MB\"\n  timeouts {\n    data_block = \"10m\"\n    message    = \"30m\"\n  }|" \
		examples/benchmark/gateway.hcl >"$work/gateway.hcl"
	printf '\nadmin { address = "127.0.0.1:%s" }\n' "$ADMIN_PORT" >>"$work/gateway.hcl"
	grep -q "max_connections        = $SESSIONS" "$work/gateway.hcl" ||
		{ echo "gateway.hcl has changed: its listener was not rewritten" >&2; return 1; }
	"$bin" serve -config "$work/gateway.hcl" 2>"$work/gateway.err" &
	srv=$!
	wait_port "$SERVE_PORT"
}

# sample PID: every 100 ms, "rss KB hwm KB at MS" (MS: milliseconds since
# the first sample) of PID; every 500 ms, "est N" (connections established on
# SERVE_PORT) and "tmp N" (drafts spilled to the spool and not yet
# committed); every second, "heap INUSE GOAL GOGC" from the admin API's
# go_memstats_heap_inuse_bytes, go_memstats_next_gc_bytes and
# go_gc_gogc_percent, fetched in the background so that a slow answer
# delays no RSS sample. Until PID ends or this is killed (TERM), which
# ends the fetches too.
sample() {
	local pid=$1 i=0 t0=${EPOCHREALTIME/./} k v _ rss hwm tmps
	trap 'kill $(jobs -p) 2>/dev/null; exit 0' TERM
	shopt -s nullglob
	while [ -r "/proc/$pid/status" ]; do
		rss=0 hwm=0
		while read -r k v _; do
			case $k in VmRSS:) rss=$v ;; VmHWM:) hwm=$v ;; esac
		done <"/proc/$pid/status" 2>/dev/null || break
		echo "rss $rss hwm $hwm at $(((${EPOCHREALTIME/./} - t0) / 1000))"
		if [ $((i % 5)) = 0 ]; then
			echo "est $(ss -Htn state established "( sport = :$SERVE_PORT )" | wc -l)"
			tmps=("$data"/queue/bodies/*.tmp)
			echo "tmp ${#tmps[@]}"
		fi
		if [ $((i % 10)) = 0 ]; then
			{ curl -fsS --max-time 5 "http://127.0.0.1:$ADMIN_PORT/metrics" 2>/dev/null | awk '
				$1 == "go_memstats_heap_inuse_bytes" {u = $2}
				$1 == "go_memstats_next_gc_bytes" {n = $2}
				$1 == "go_gc_gogc_percent" {g = $2}
				END {if (u != "") print "heap", u + 0, n + 0, g + 0; else print "noheap"}'; } &
		fi
		i=$((i + 1))
		sleep 0.1
	done
}

# metric NAME: the value of an unlabelled metric from the admin API.
metric() {
	curl -fsS "http://127.0.0.1:$ADMIN_PORT/metrics" | awk -v m="$1" '$1 == m {print $2}'
}

start_gateway
idle=$(awk '/^VmRSS:/ {print $2}' "/proc/$srv/status")
echo "gateway serve on 127.0.0.1:$SERVE_PORT, RSS idle $((idle / 1024)) MB; $SESSIONS sessions × $SIZE bytes"

sample "$srv" >"$work/samples" &
sampler=$!
start=$(date +%s.%N)
# A job the script waits for, so that a signal stops the script at once.
"$bin" bench --server "127.0.0.1:$SERVE_PORT" --mode smtp-source --concurrency "$SESSIONS" \
	--messages "$SESSIONS" --size "$SIZE" --timeout 30m --json >"$work/bench.json" &
wait $!
end=$(date +%s.%N)
kill "$sampler"; wait "$sampler" || true

read -r sent fails replies < <(python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); print(r["messages"], r["failures"], "; ".join(sorted(set(r.get("failure_replies") or [])))[:300])' "$work/bench.json")
read -r rss peak_at hwm est tmp samples heap nextgc gogc scrapes missed < <(awk '
	$1 == "rss" {n++; if ($2 > r) {r = $2; at = $6}; if ($4 > h) h = $4}
	$1 == "est" && $2 > e {e = $2}
	$1 == "tmp" && $2 > t {t = $2}
	$1 == "heap" {s++; if ($2 > u) u = $2; if ($3 > x) x = $3; g = $4}
	$1 == "noheap" {s++; m++}
	END {print r + 0, at + 0, h + 0, e + 0, t + 0, n + 0, int(u / 1024), int(x / 1024), g + 0, s + 0, m + 0}' "$work/samples")
final_hwm=$(awk '/^VmHWM:/ {print $2}' "/proc/$srv/status")
[ "$final_hwm" -le "$hwm" ] || hwm=$final_hwm
queued=$(metric gateway_queue_messages)
accepted=$(metric gateway_messages_accepted_total)
whole=$(find "$data/queue/bodies" -type f -size "${SIZE}c" | wc -l)
kill -TERM "$srv"; wait "$srv" || true
rm -rf "$data"

mb() { python3 -c "print(round($1 / 1024, 1))"; }
echo "time: $(python3 -c "print(round($end - $start, 1))") s for $SESSIONS messages of $SIZE bytes (RSS sampled $samples times, every $(python3 -c "print(round(1000 * ($end - $start) / max($samples, 1)))") ms on average)"
echo "peak RSS: $(mb "$rss") MB (sampled, $(python3 -c "print(round($peak_at / 1000, 1))") s after the start), peak HWM: $(mb "$hwm") MB (limit $LIMIT_MB MB)"
echo "Go heap ($scrapes scrapes of /metrics, $missed unanswered within 5 s): peak in use $(mb "$heap") MB, peak GC goal $(mb "$nextgc") MB (GOGC $gogc: the goal is $((100 + gogc))% of the heap live after the last GC)"
echo "sessions established at once (ss, max): $est; drafts receiving at once (bodies/*.tmp, max): $tmp"
echo "bench: $sent accepted, $fails failed${replies:+ ($replies)}"
echo "spool: gateway_queue_messages $queued, gateway_messages_accepted_total $accepted, body files of $SIZE bytes: $whole"

status=0
if [ "$hwm" -gt $((LIMIT_MB * 1024)) ] || [ "$rss" -gt $((LIMIT_MB * 1024)) ]; then
	echo "FAIL: peak memory over $LIMIT_MB MB" >&2; status=1
fi
if [ "$sent" != "$SESSIONS" ] || [ "$whole" != "$SESSIONS" ] || [ "${queued%.*}" != "$SESSIONS" ]; then
	echo "FAIL: not every message arrived whole (see above)" >&2; status=1
fi
exit "$status"
