#!/usr/bin/env bash
# The edge-gateway example's accept throughput, with its hooks (relay.lua,
# the aliases, lists and webhook plugins) and without them (the same
# config with the pipeline, the hook blocks and the webhook route taken
# out), interleaved, RUNS times each. Both run the example's gateway.hcl
# on loopback ports, a loopback DNS server (`gateway` has none built in:
# python3 answers the MX look-ups verify_sender_domain makes), its rate
# limit raised so the load generator is not throttled, and local mail
# delivered to its Maildirs while the load runs.
#
#   examples/benchmark/edge.sh              # 5 runs of 10000 messages, 2 KB, 1 rcpt, 20 sessions
#   RUNS=3 MESSAGES=5000 examples/benchmark/edge.sh
set -euo pipefail
cd "$(dirname "$0")/../.."

RUNS=${RUNS:-5}
MESSAGES=${MESSAGES:-10000}
CONCURRENCY=${CONCURRENCY:-20}
SIZE=${SIZE:-2048}

. examples/benchmark/lib.sh # work, bin, cleanup on exit, wait_port, stop
build_gateway
for p in aliases lists webhook; do go build -o "$work/gateway-plugin-$p" "./plugins/$p"; done

# A DNS server on loopback that says every domain has an MX (127.0.0.1).
python3 - "$work/dns.port" <<'PY' &
import socket, struct, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1", 0))
open(sys.argv[1], "w").write(str(s.getsockname()[1]))
while True:
    q, a = s.recvfrom(512)
    i = 12
    while q[i]: i += 1 + q[i]
    qtype = struct.unpack(">H", q[i+1:i+3])[0]
    name = q[12:i+1]
    hdr = q[:2] + b"\x81\x80" + q[4:6] + b"\x00\x01\x00\x00\x00\x00"
    if qtype == 15:   # MX 10 <name>
        rr = b"\xc0\x0c" + struct.pack(">HHIH", 15, 1, 300, 2 + len(name)) + b"\x00\x0a" + name
    elif qtype == 1:  # A 127.0.0.1
        rr = b"\xc0\x0c" + struct.pack(">HHIH", 1, 1, 300, 4) + bytes([127, 0, 0, 1])
    else:
        rr = b""; hdr = hdr[:6] + b"\x00\x00" + hdr[8:]
    s.sendto(hdr + q[12:i+5] + rr, a)
PY
for _ in $(seq 100); do [ -s "$work/dns.port" ] && break; sleep 0.05; done
dns="127.0.0.1:$(cat "$work/dns.port")"

# config HOOKS DATA: the example's gateway.hcl for this machine; HOOKS=0
# takes the hooks out.
config() {
	python3 - "$1" "$2" "$dns" "$work" "$(pwd)/examples/edge-gateway" <<'PY'
import re, sys
hooks, data, dns, work, here = sys.argv[1] == "1", sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5]
s = open(here + "/gateway.hcl").read()
s = s.replace('data_dir = "data"', 'data_dir = "%s"' % data).replace('path      = "data/mail"', 'path      = "%s/mail"' % data)
s = s.replace('127.0.0.1:5353', dns).replace('"../../scripts/relay.lua"', '"%s/../../scripts/relay.lua"' % here)
s = s.replace('rate = { limit = 500, per = 3600 }', 'rate = { limit = 100000000, per = 3600 }')
for p in ("aliases", "lists", "webhook"):
    s = s.replace('"bin/gateway-plugin-%s"' % p, '"%s/gateway-plugin-%s"' % (work, p))
s = s.replace('key_file = "dkim/', 'key_file = "%s/dkim/' % here)
for f in ('"aliases"', '"virtual"', '"lists"'):
    s = s.replace('= %s' % f, '= "%s/%s"' % (here, f.strip('"')))
if not hooks:
    s = re.sub(r'(?m)^pipeline = .*\n', '', s)
    s = re.sub(r'(?ms)^(lua|plugin) "[a-z]+" \{.*?^\}\n', '', s)
    s = re.sub(r'(?ms)^  route "hooks\.example\.test" \{.*?^  \}\n', '', s)
open(data + ".hcl", "w").write(s)
PY
}

# cpu_ticks PID: user+system clock ticks of a process so far.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
hz=$(getconf CLK_TCK)

# one HOOKS RUN: prints "msgs_per_sec cpu_us_per_msg failures".
one() {
	data="$work/data-$1-$2"
	config "$1" "$data"
	"$work/gateway" serve -config "$data.hcl" 2>"$data.err" &
	srv=$!
	wait_port 2532 || { cat "$data.err" >&2; return 1; }
	before=$(cpu_ticks "$srv")
	"$work/gateway" bench --server 127.0.0.1:2532 --messages "$MESSAGES" --concurrency "$CONCURRENCY" \
		--size "$SIZE" --from bench@bench.test --to-domain example.test --json >"$data.json"
	after=$(cpu_ticks "$srv")
	kill -TERM "$srv"; wait "$srv" || true
	python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); print(r["messages_per_second"], sys.argv[2], r["failures"])' \
		"$data.json" "$(( (after - before) * 1000000 / hz / MESSAGES ))"
	rm -rf "$data"
}


with=(); without=(); ratios=()
for i in $(seq "$RUNS"); do
	read -r r0 c0 f0 < <(one 0 "$i")
	read -r r1 c1 f1 < <(one 1 "$i")
	with+=("$r1"); without+=("$r0")
	ratio=$(python3 -c "print(round($r1 / $r0, 3))")
	ratios+=("$ratio")
	echo "run $i: without hooks $r0 msg/s (${c0} µs CPU/msg, $f0 failures); with hooks $r1 msg/s (${c1} µs CPU/msg, $f1 failures); ratio $ratio"
done
echo "median: without hooks $(median "${without[@]}") msg/s; with hooks $(median "${with[@]}") msg/s; ratio (same run) $(median "${ratios[@]}")"
