#!/usr/bin/env bash
# The two costs of issue 14 that grow with the queue, measured on one
# `gateway serve` each with Postfix's smtp-source (20 sessions, 2 KB,
# 1 recipient, a new connection per message):
#
#   growth: accept TOTAL messages in blocks of STEP while the next hop is
#           down (`retry = ["1h"]`: nothing leaves the queue) and print each
#           block's rate, the server's CPU per message, its RSS and Go heap;
#           accept should not slow as the queue grows.
#   outage: queue OUTAGE messages with the next hop down and
#           `retry = ["20s"]`, then sample SAMPLE seconds of the retries:
#           attempts, fsyncs and CPU per second. fsyncs should stay
#           proportional to time, not to the messages retried.
#
#   examples/benchmark/queue.sh                       # 200,000 in blocks of 20,000; outage of 20,000 (about 4 minutes)
#   TOTAL=60000 STEP=20000 OUTAGE=5000 examples/benchmark/queue.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
PATH=$PATH:/usr/sbin # smtp-source

TOTAL=${TOTAL:-200000}
STEP=${STEP:-20000}
OUTAGE=${OUTAGE:-20000}
SAMPLE=${SAMPLE:-40}

# Every port this script uses, all on 127.0.0.1.
SERVE_PORT=2760 # gateway serve
ADMIN_PORT=2761 # its admin API (/metrics)
# The next hop is 127.0.0.1:9, where nothing listens.

command -v smtp-source >/dev/null || { echo "smtp-source is not installed (Debian: postfix)" >&2; exit 2; }
. examples/benchmark/lib.sh # work, bin, cleanup on exit, wait_port, stop
build_gateway

# start_gateway RETRY: `gateway serve` with a fresh data_dir, the next hop
# down and retry = [RETRY]; sets srv.
start_gateway() {
	rm -rf "$work/data"
	cat >"$work/gateway.hcl" <<-EOF
		hostname = "bench.test"
		data_dir = "$work/data"
		listener "mx" {
		  address                = "127.0.0.1:$SERVE_PORT"
		  max_connections_per_ip = 200
		}
		domains = ["example.test"]
		delivery {
		  route "*" { via = "127.0.0.1:9" }
		  retry = ["$1"]
		}
		log { level = "warn" }
		admin { address = "127.0.0.1:$ADMIN_PORT" }
	EOF
	"$bin" serve -config "$work/gateway.hcl" 2>"$work/serve.err" &
	srv=$!
	wait_port "$SERVE_PORT" || { cat "$work/serve.err" >&2; return 1; }
}

# source N: smtp-source sends N messages; waited for as a job so that a
# signal stops the script at once.
source_n() {
	smtp-source -s 20 -m "$1" -l 2048 -f bench@bench.test -t rcpt@example.test -M bench.test "127.0.0.1:$SERVE_PORT" &
	wait $!
}

ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
hz=$(getconf CLK_TCK)
# metric NAME: the sum of a metric's samples from the admin API.
metric() { curl -s "127.0.0.1:$ADMIN_PORT/metrics" | awk -v k="$1" '$1 ~ "^" k "([{]|$)" {s += $2} END {printf "%.0f", s}'; }

echo "growth: $TOTAL messages in blocks of $STEP, next hop down"
echo "| queued before the block | msg/s | CPU ms/msg | RSS MB | Go heap MB |"
echo "|---|---|---|---|---|"
start_gateway 1h
for q in $(seq 0 "$STEP" $((TOTAL - STEP))); do
	t0=$(ticks "$srv"); s=$(date +%s.%N)
	source_n "$STEP"
	e=$(date +%s.%N); t1=$(ticks "$srv")
	rss=$(awk '/VmRSS/ {printf "%.0f", $2 / 1024}' "/proc/$srv/status")
	heap=$(($(metric go_memstats_heap_inuse_bytes) >> 20))
	python3 -c "print('| %d | %.0f | %.3f | %s | %s |' % ($q, $STEP / ($e - $s), ($t1 - $t0) * 1000 / $hz / $STEP, '$rss', '$heap'))"
done
stop "$srv"

echo
echo "outage: $OUTAGE messages queued, next hop down, retry every 20 s; $SAMPLE s sampled"
start_gateway 20s
source_n "$OUTAGE"
sleep 5
t0=$(ticks "$srv"); f0=$(metric gateway_spool_fsyncs_total); a0=$(metric gateway_delivery_attempts_total)
sleep "$SAMPLE"
t1=$(ticks "$srv"); f1=$(metric gateway_spool_fsyncs_total); a1=$(metric gateway_delivery_attempts_total)
python3 -c "print('attempts/s %.0f, fsyncs/s %.1f, CPU %.2f cores, %s messages queued' % (($a1 - $a0) / $SAMPLE, ($f1 - $f0) / $SAMPLE, ($t1 - $t0) / $hz / $SAMPLE, '$(metric gateway_queue_messages)'))"
stop "$srv"
