#!/usr/bin/env bash
# Where a server's OS context switches come from, per message: each server
# below takes MESSAGES messages from smtp-source (as run.sh's rows do) while
# `perf record -e sched:sched_switch -g` watches it, and the switches are
# counted by what the switching thread was doing (its innermost Go
# function that names it: the runtime's sysmon, its netpoller, a thread
# parking, a file sync...). On a paravirtualised VM a switch costs tens of
# µs, so this table is where a Go server's CPU per message goes (see
# HACKING.md, "Where the time goes").
#
#   examples/benchmark/switches.sh                 # sink and serve, 5000 messages each
#   SERVERS="serve" MESSAGES=20000 examples/benchmark/switches.sh
#
# Needs smtp-source and smtp-sink (Debian: postfix) and perf (linux-perf),
# run as root (or with kernel.perf_event_paranoid <= 1).
set -euo pipefail
cd "$(dirname "$0")/../.."
PATH=$PATH:/usr/sbin

MESSAGES=${MESSAGES:-5000}
SERVERS=${SERVERS:-"ceiling sink journal serve"}
PORT=${PORT:-2640} # 127.0.0.1:PORT, the server under test

for tool in perf smtp-source smtp-sink; do
	command -v "$tool" >/dev/null || { echo "switches.sh: $tool is not installed" >&2; exit 1; }
done
. examples/benchmark/lib.sh # work, bin, cleanup on exit, wait_port, stop
build_gateway

# start NAME: the server NAME on 127.0.0.1:PORT, its PID in srv.
start() {
	case $1 in
	ceiling) smtp-sink -u nobody "127.0.0.1:$PORT" 256 & ;;
	sink) "$bin" sink --listen "127.0.0.1:$PORT" >/dev/null & ;;
	journal) "$bin" sink --listen "127.0.0.1:$PORT" --journal "$work/journal" >/dev/null & ;;
	serve)
		rm -rf "$work/data"
		sed -e "s|^data_dir = .*|data_dir = \"$work/data\"|" \
			-e "s|address *= \"127.0.0.1:[0-9]*\"|address = \"127.0.0.1:$PORT\"|" \
			examples/benchmark/gateway.hcl >"$work/gateway.hcl"
		"$bin" serve -config "$work/gateway.hcl" 2>"$work/serve.log" & ;;
	*) echo "switches.sh: no server $1" >&2; exit 2 ;;
	esac
	srv=$!
	wait_port "$PORT"
}

# classify: reads `perf script` output, prints "count source" lines.
classify() {
	awk 'BEGIN { RS = "" }
	/sched:sched_switch/ {
		src = "other"
		if (/runtime\.sysmon/) src = "sysmon (the runtime'"'"'s monitor thread waking)"
		else if (/runtime\.netpoll/) src = "netpoll (a thread waiting for the network)"
		else if (/runtime\.stopm/) src = "stopm (an idle thread parking)"
		else if (/dsync|fsync|Fdatasync/) src = "fsync (waiting for the disk)"
		else if (/runtime\.runqgrab|runtime\.osyield/) src = "spinning (a thread yielding while it steals work)"
		else if (/exit_to_user_mode|irqentry_exit/) src = "preempted (the CPU given to another thread)"
		else if (/do_epoll_wait|do_select|do_sys_poll/) src = "event loop (smtp-sink waiting for the network)"
		n[src]++
	}
	END { for (s in n) print n[s], s }'
}

for name in $SERVERS; do
	start "$name"
	perf record -q -e sched:sched_switch -g -p "$srv" -o "$work/perf.data" 2>/dev/null &
	rec=$!
	sleep 0.5
	smtp-source -s 20 -m "$MESSAGES" -l 2048 -r 1 -f bench@bench.test -t rcpt@example.test -M bench.test \
		"127.0.0.1:$PORT"
	kill -INT "$rec"; wait "$rec" || true
	stop "$srv"
	echo "== $name: context switches per message, by what the thread was doing"
	perf script -i "$work/perf.data" 2>/dev/null | classify | sort -rn |
		awk -v m="$MESSAGES" '{ c = $1; $1 = ""; t += c; printf "%6.2f %s\n", c / m, $0 } END { printf "%6.2f total\n", t / m }'
done
