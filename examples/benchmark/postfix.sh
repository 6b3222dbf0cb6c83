# Sourced by run.sh and tls.sh after lib.sh, with POSTFIX_PORT set and
# PATH holding /usr/sbin: a throwaway Postfix to measure against, and the
# CPU and context-switch counters of a process read from /proc.
# The caller runs `chmod 755 "$work"` (Postfix's daemons run as postfix
# and chdir to its queue in there), sets postfix_live="" and calls
# postfix_stop from its cleanup_more.

# cpu_ticks PID: user+system clock ticks of a process so far.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
hz=$(getconf CLK_TCK)

# switches PID: context switches of a process's threads so far.
switches() { cat /proc/"$1"/task/*/status 2>/dev/null | awk '/ctxt_switches/ {s += $2} END {print s + 0}'; }

# tree_ticks PID: clock ticks of a process, of its children it has reaped,
# and of its live descendants: for Postfix, whose daemons come and go.
tree_ticks() {
	local t c
	t=$(awk '{print $14 + $15 + $16 + $17}' "/proc/$1/stat" 2>/dev/null || echo 0)
	for c in $(cat /proc/"$1"/task/*/children 2>/dev/null); do
		t=$((t + $(tree_ticks "$c")))
	done
	echo "$t"
}

# postfix_start NEXT_HOP: a throwaway Postfix in $work/postfix (its own
# config_directory, queue_directory and data_directory) with one smtpd on
# 127.0.0.1:POSTFIX_PORT, relaying all mail to NEXT_HOP (a port on
# 127.0.0.1), and the lines of POSTFIX_MAIN_CF (if set) added to its
# main.cf; sets postfix_live and postfix_master (the master's PID).
postfix_start() {
	local d=$work/postfix
	mkdir -p "$d/conf" "$d/queue" "$d/data"
	chown postfix "$d/data"
	cat >"$d/conf/main.cf" <<-EOF
		compatibility_level = 3.6
		queue_directory = $d/queue
		data_directory = $d/data
		maillog_file = $d/maillog
		maillog_file_prefixes = $d
		myhostname = postfix.bench.test
		mydestination =
		inet_interfaces = loopback-only
		inet_protocols = ipv4
		mynetworks = 127.0.0.0/8
		smtpd_relay_restrictions = permit_mynetworks, reject
		relayhost = [127.0.0.1]:$1
		alias_maps =
		alias_database =
		local_recipient_maps =
		biff = no
		${POSTFIX_MAIN_CF:-}
	EOF
	{
		echo "127.0.0.1:$POSTFIX_PORT inet n - n - - smtpd"
		for s in "pickup unix n - n 60 1 pickup" "cleanup unix n - n - 0 cleanup" "qmgr unix n - n 300 1 qmgr" \
			"rewrite unix - - n - - trivial-rewrite" "bounce unix - - n - 0 bounce" "defer unix - - n - 0 bounce" \
			"trace unix - - n - 0 bounce" "verify unix - - n - 1 verify" "flush unix n - n 1000? 0 flush" \
			"proxymap unix - - n - - proxymap" "smtp unix - - n - - smtp" "relay unix - - n - - smtp" \
			"showq unix n - n - - showq" "error unix - - n - - error" "retry unix - - n - - error" \
			"discard unix - - n - - discard" "anvil unix - - n - 1 anvil" "scache unix - - n - 1 scache" \
			"tlsmgr unix - - n 1000? 1 tlsmgr" \
			"postlog unix-dgram n - n - 1 postlogd"; do
			echo "$s"
		done
	} >"$d/conf/master.cf"
	postfix_live=$d
	if ! postfix -c "$d/conf" start >/dev/null 2>&1; then
		echo "postfix did not start:" >&2; tail -n 5 "$d/maillog" >&2; return 1
	fi
	postfix_master=$(tr -d ' ' <"$d/queue/pid/master.pid")
	wait_port "$POSTFIX_PORT"
}

# postfix_stop: stops the throwaway Postfix, if one runs, waits until none
# of its processes (those whose working directory is its queue) is left,
# and removes its folder.
postfix_stop() {
	local d=$postfix_live p left
	[ -n "$d" ] || return 0
	postfix -c "$d/conf" stop >/dev/null 2>&1 || true
	for _ in $(seq 100); do
		left=""
		for p in /proc/[0-9]*; do
			case $(readlink "$p/cwd" 2>/dev/null) in "$d"/*) left="$left ${p#/proc/}" ;; esac
		done
		[ -z "$left" ] && break
		sleep 0.1
	done
	[ -z "$left" ] || kill -KILL $left 2>/dev/null || true
	postfix_live=""
	rm -rf "$d"
}
