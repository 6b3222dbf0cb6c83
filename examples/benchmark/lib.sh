# Sourced by run.sh, tls.sh, memory.sh, queue.sh, edge.sh and cluster.sh (from the repository's root):
# a temporary folder, removed on exit together with every job the script
# started (after its cleanup_more, if it defines one), and the helpers
# they share. bin is where build_gateway puts the gateway.
work=$(mktemp -d)
bin=$work/gateway
cleanup() {
	if [ "$(type -t cleanup_more)" = function ]; then cleanup_more; fi
	kill $(jobs -p) 2>/dev/null || true
	wait 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# build_gateway: go build the gateway into bin.
build_gateway() { go build -o "$bin" ./cmd/gateway; }

# wait_port PORT: until something listens on 127.0.0.1:PORT.
wait_port() {
	for _ in $(seq 200); do
		(exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
		sleep 0.05
	done
	echo "nothing listening on 127.0.0.1:$1" >&2; return 1
}

# stop PID: SIGTERM, and wait for it to end.
stop() { kill -TERM "$1"; wait "$1" || true; }

# median VALUES...: the median of numbers.
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }

# calc EXPR [DECIMALS]: EXPR worked out by awk, to DECIMALS places (3 if
# not given). Not python3, which takes a third of a second to start on
# the machine these figures were made on: inside a timed section that
# was a quarter of a relay run.
# A division by zero fails (mawk, Debian's awk, prints inf or nan).
calc() {
	local r
	r=$(awk "BEGIN { printf \"%.${2:-3}f\\n\", $1 }") || return 1
	case $r in
	*inf* | *nan*) echo "calc: $1 is not a number" >&2; return 1 ;;
	esac
	echo "$r"
}

# wait_count FILE N: until a sink's --report output says messages=N.
wait_count() {
	for _ in $(seq 6000); do
		tail -n 1 "$1" 2>/dev/null | grep -q "^messages=$2 " && return 0
		sleep 0.01
	done
	echo "sink never reached $2 messages" >&2; return 1
}

# sink_last FILE: when the latest message reached the sink whose --report
# output is FILE (its last line's last=, Unix seconds): the end of an end
# to end run, however late the script looked.
# Fails when no message came.
sink_last() {
	local t
	t=$(tail -n 1 "$1" | sed -n 's/.* last=\([0-9.]*\)$/\1/p')
	case $t in
	"" | 0 | 0.000000000) echo "sink_last: no message reached the sink ($1)" >&2; return 1 ;;
	esac
	echo "$t"
}

