#!/usr/bin/env bash
# Accept under STARTTLS, as most MX traffic now arrives, RUNS times,
# interleaved. The load is `gateway bench --mode smtp-source --starttls`
# (smtp-source itself speaks no TLS): a new connection per message, EHLO,
# STARTTLS, EHLO again, one command at a time, QUIT. Each server is
# measured three ways: in clear text, under TLS resuming a session (TLS
# 1.3 tickets, as MTAs with a session cache send), and under TLS with a
# full handshake on every connection (--tls-resume=false).
#   ceiling: -> `gateway sink --tls-cert` (keeps nothing)
#   gateway: -> `gateway serve`, gateway.hcl with a tls block (fsync'd
#            spool, next hop down)
#   postfix: -> a throwaway Postfix with smtpd_tls_security_level = may
#            (needs Postfix installed and root; skipped otherwise)
# Prints every run, then the medians: messages/s and the server's CPU
# milliseconds per message (Postfix's whole tree of processes).
#
#   examples/benchmark/tls.sh               # 3 runs of 2000 messages, 2 KB, 20 sessions, RSA 2048: about 3 minutes
#   KEY=ec examples/benchmark/tls.sh        # an ECDSA P-256 certificate instead
set -euo pipefail
cd "$(dirname "$0")/../.."
PATH=$PATH:/usr/sbin # postfix

RUNS=${RUNS:-3}
MESSAGES=${MESSAGES:-2000}
CONCURRENCY=${CONCURRENCY:-20}
SIZE=${SIZE:-2048}
KEY=${KEY:-rsa} # rsa (2048 bits, as most MX certificates) or ec (P-256)

# Every port this script uses, all on 127.0.0.1.
SINK_PORT=2640    # gateway sink with the certificate
SERVE_PORT=2641   # gateway serve with gateway.hcl and a tls block
POSTFIX_PORT=2642 # the throwaway Postfix's smtpd

. examples/benchmark/lib.sh     # work, bin, cleanup on exit, wait_port, stop, median
. examples/benchmark/postfix.sh # postfix_start, postfix_stop, cpu_ticks, tree_ticks
chmod 755 "$work"
postfix_live=""
cleanup_more() { postfix_stop; }
build_gateway

case $KEY in
rsa) newkey=(-newkey rsa:2048) ;;
ec) newkey=(-newkey ec -pkeyopt ec_paramgen_curve:P-256) ;;
*) echo "KEY=$KEY: want rsa or ec" >&2; exit 2 ;;
esac
openssl req -x509 "${newkey[@]}" -nodes -days 2 -subj /CN=127.0.0.1 \
	-addext subjectAltName=IP:127.0.0.1 -keyout "$work/key.pem" -out "$work/cert.pem" 2>/dev/null
chmod 644 "$work/key.pem" # a throwaway key, read by Postfix's smtpd too

# measure PORT TICKS PID ARGS...: bench against 127.0.0.1:PORT with
# ARGS; prints "RATE CPU" (msg/s; the server's CPU ms per message by
# TICKS, cpu_ticks or tree_ticks).
measure() {
	local port=$1 ticks=$2 pid=$3 before after rate
	shift 3
	before=$($ticks "$pid")
	"$bin" bench --server "127.0.0.1:$port" --mode smtp-source --messages "$MESSAGES" \
		--concurrency "$CONCURRENCY" --size "$SIZE" --json "$@" >"$work/bench.json" &
	wait $! || true # failures are counted in the report
	after=$($ticks "$pid")
	rate=$(python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); print(round(r["messages_per_second"]) if r["failures"] == 0 else "failed")' "$work/bench.json" 2>/dev/null || echo failed)
	echo "$rate $(python3 -c "print(round(($after - $before) * 1000 / $hz / $MESSAGES, 3))")"
}

# measure_three NAME TICKS PID PORT I: the three ways against one server,
# after a warm-up (a Postfix starts its smtpd processes on demand, and
# the first phase would pay for them); appends to NAME_plain,
# NAME_resumed and NAME_full (rates) and their _cpu twins.
measure_three() {
	local name=$1 ticks=$2 pid=$3 port=$4 i=$5 way r c
	"$bin" bench --server "127.0.0.1:$port" --mode smtp-source --messages "$((CONCURRENCY * 5))" \
		--concurrency "$CONCURRENCY" --size "$SIZE" --starttls >/dev/null &
	wait $! || true
	for way in plain resumed full; do
		case $way in
		plain) read -r r c < <(measure "$port" "$ticks" "$pid") ;;
		resumed) read -r r c < <(measure "$port" "$ticks" "$pid" --starttls) ;;
		full) read -r r c < <(measure "$port" "$ticks" "$pid" --starttls --tls-resume=false) ;;
		esac
		eval "${name}_${way}+=(\"$r\"); ${name}_${way}_cpu+=(\"$c\")"
		echo "run $i $name $way: $r msg/s, server CPU $c ms/msg"
	done
}

# serve_config: gateway.hcl on SERVE_PORT with a fresh data_dir and the certificate.
serve_config() {
	sed -e "s|^data_dir = .*|data_dir = \"$work/data\"|" \
		-e "s|address *= \"127.0.0.1:[0-9]*\"|address = \"127.0.0.1:$SERVE_PORT\"|" \
		-e "s|^  max_connections_per_ip = 200|&\n  tls {\n    cert = \"$work/cert.pem\"\n    key  = \"$work/key.pem\"\n  }|" \
		examples/benchmark/gateway.hcl >"$work/tls.hcl"
	grep -q 'tls {' "$work/tls.hcl" || { echo "gateway.hcl changed: no place for the tls block" >&2; exit 1; }
}

have_postfix=""
if command -v postfix >/dev/null && [ "$(id -u)" = 0 ]; then
	have_postfix=1
else
	echo "postfix not installed, or not root: skipping the Postfix phases"
fi
POSTFIX_MAIN_CF="smtpd_tls_cert_file = $work/cert.pem
smtpd_tls_key_file = $work/key.pem
smtpd_tls_security_level = may"

sink_plain=(); sink_resumed=(); sink_full=(); sink_plain_cpu=(); sink_resumed_cpu=(); sink_full_cpu=()
gw_plain=(); gw_resumed=(); gw_full=(); gw_plain_cpu=(); gw_resumed_cpu=(); gw_full_cpu=()
pf_plain=(); pf_resumed=(); pf_full=(); pf_plain_cpu=(); pf_resumed_cpu=(); pf_full_cpu=()
serve_config
for i in $(seq "$RUNS"); do
	"$bin" sink --listen "127.0.0.1:$SINK_PORT" --tls-cert "$work/cert.pem" --tls-key "$work/key.pem" >/dev/null &
	sink=$!
	wait_port "$SINK_PORT"
	measure_three sink cpu_ticks "$sink" "$SINK_PORT" "$i"
	stop "$sink"

	"$bin" serve -config "$work/tls.hcl" 2>"$work/serve.err" &
	srv=$!
	wait_port "$SERVE_PORT"
	measure_three gw cpu_ticks "$srv" "$SERVE_PORT" "$i"
	stop "$srv"
	rm -rf "$work/data"

	if [ -n "$have_postfix" ]; then
		postfix_start 9 # nothing listens on port 9: mail is tried, deferred and queued
		measure_three pf tree_ticks "$postfix_master" "$POSTFIX_PORT" "$i"
		postfix_stop
	fi
done

# row LABEL NAME: a table row of NAME's medians.
row() {
	local m=() w
	for w in plain resumed full; do
		eval "m+=(\"\$(median \"\${${2}_${w}[@]}\")\" \"\$(median \"\${${2}_${w}_cpu[@]}\")\")"
	done
	echo "| $1 | ${m[0]} | ${m[2]} | ${m[4]} | ${m[1]} | ${m[3]} | ${m[5]} |"
}
echo
echo "STARTTLS, $KEY certificate; $MESSAGES messages of $SIZE bytes over $CONCURRENCY sessions, a connection each; medians of $RUNS:"
echo "| server | msg/s clear | msg/s TLS resumed | msg/s TLS full | CPU ms/msg clear | resumed | full |"
echo "|---|---|---|---|---|---|---|"
row "ceiling: gateway sink" sink
row "gateway accept" gw
if [ -n "$have_postfix" ]; then row "postfix accept" pf; fi
