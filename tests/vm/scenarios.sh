#!/bin/sh
# The kernel matrix's scenarios (tests/tests/kernels.rs), run by busybox sh: inside a VM as
# the guest init's child (tests/vm/init.sh), and natively on the test host. It runs
# `observer check`, starts `observer run`, makes "containers" the way tests/src/lib.rs does
# (a kubepods cgroup, kubelet's log layout, `unshare -p -f` so the workload is PID 1 of a
# pid namespace; `noinit`'s is not), stops them as a runtime would, and prints what it did
# and the daemon's journal as marker lines for the host to check field by field:
#
#   @@observer-vm <key> <rest of the line>
#
# keys: kernel, version, check, check-exit, fact <scenario> k=v..., error, journal <JSON
# line>, daemon-log <line>, end <exit status>. Progress goes to stderr.
#
# Input (environment):
#   OBS_APPLETS  a directory of busybox applet links (`busybox --install -s DIR`)
#   OBS_BIN      the observer binary
#   OBS_THREADS_EXIT  tests/progs/threads_exit.c, built static
#   OBS_TCP_HOLD  tests/progs/tcp_hold.c, built static
#   OBS_V2       where the cgroup v2 hierarchy is mounted
#   OBS_WORK     a directory of its own (journal, kubelet log root, daemon log)
#   OBS_TAG      makes the ids unique to this run
#   OBS_LISTEN   the daemon's HTTP address (127.0.0.1:PORT)
#   OBS_NODE     the node name the daemon writes in every record
#   OBS_OUT      the file the marker lines go to: a regular file, never a terminal or a pipe
#                (a write(2) blocked on those returns EINTR when this shell's SIGCHLD handler
#                runs, and the line is lost: the VM's serial port did that to a line written
#                right after a kill; the VM's init copies the file to the port at the end)
#   OBS_V1_MEMORY  the v1 memory controller, used for the OOM case when the v2 hierarchy has
#                no memory controller (hybrid hosts; default /sys/fs/cgroup/memory)
#
# Everything it starts is ended by PID and everything it creates is removed at its exit.

set -u
: "${OBS_APPLETS:?}" "${OBS_BIN:?}" "${OBS_THREADS_EXIT:?}" "${OBS_TCP_HOLD:?}" "${OBS_V2:?}"
: "${OBS_WORK:?}" "${OBS_TAG:?}" "${OBS_LISTEN:?}" "${OBS_NODE:?}"
OBS_V1_MEMORY=${OBS_V1_MEMORY:-/sys/fs/cgroup/memory}
# The daemon's pins: a directory of this run's own (never the default a real daemon uses).
# (bpffs refuses names with a dot: kernel/bpf/inode.c bpf_lookup()).
OBS_PINS=/sys/fs/bpf/observer-scenarios-$(printf %s "$OBS_TAG" | tr -c 'A-Za-z0-9_-' '-')
A=$OBS_APPLETS
: "${OBS_OUT:?}"
exec 3>"$OBS_OUT"

NS=kmatrix
LOGS=$OBS_WORK/logs
JOURNAL=$OBS_WORK/journal.jsonl
DAEMON_LOG=$OBS_WORK/daemon.log
DPID=
# "unshare-pid:pid1-pid" pairs still to reap, other children still to reap, and the cgroups
# made (removed first to last: containers before their pods).
LIVE=
CHILDREN=
CGROUPS=
# Container ids whose record must be in the journal before the daemon is stopped.
EXPECT=

say() { printf '@@observer-vm %s\n' "$*" >&3; }
log() { printf 'scenarios: %s\n' "$*" >&2; }
fact() { say fact "$@"; }
fail() {
	say error "$*"
	log "error: $*"
	exit 1
}

# A 64-hex id (sha256 of the seed), and a pod uid made of one.
hash64() { printf '%s' "$1" | sha256sum | cut -c1-64; }
uuid() {
	hash64 "$1" | sed 's/^\(.\{8\}\)\(.\{4\}\)\(.\{4\}\)\(.\{4\}\)\(.\{12\}\).*/\1-\2-\3-\4-\5/'
}

# The state letter of /proc/PID/stat (empty when gone); comm cannot hold ") " here.
proc_state() {
	local line
	line=$(cat "/proc/$1/stat" 2>/dev/null) || return 0
	line=${line##*) }
	echo "${line%% *}"
}
alive() {
	case $(proc_state "$1") in "" | Z | X) return 1 ;; esac
}

# new_container SCENARIO POD CONTAINER: kubelet's log layout for it
# (pods/<ns>_<pod>_<uid>/<container>/ and containers/<pod>_<ns>_<container>-<id>.log), then
# its cgroup /kubepods/besteffort/pod<uid>/<id>. Sets CID, PUID, POD_CG (relative) and CG.
new_container() {
	CID=$(hash64 "$OBS_TAG/$1/container")
	PUID=$(uuid "$OBS_TAG/$1/pod")
	local pdir="$LOGS/pods/${NS}_${2}_${PUID}"
	mkdir -p "$pdir/$3" "$LOGS/containers" || fail "log layout of $1"
	ln -s "$pdir/$3/0.log" "$LOGS/containers/${2}_${NS}_${3}-${CID}.log" || fail "log link of $1"
	POD_CG=kubepods/besteffort/pod$PUID
	CG=$OBS_V2/$POD_CG/$CID
	mkdir -p "$CG" || fail "mkdir $CG"
	CGROUPS="$CGROUPS $CG $OBS_V2/$POD_CG"
	fact "$1" "cid=$CID" "pod_uid=$PUID" "namespace=$NS" "pod=$2" "container=$3" "cgroup=/$POD_CG/$CID"
}

# A shell that moves itself into the cgroups $CGS, then execs its arguments. (Applets are run
# by path throughout: busybox sh execs an applet named alone as /proc/self/exe, comm "exe".)
JOIN='for d in $CGS; do echo $$ > "$d/cgroup.procs" || exit 97; done; exec "$@"'

# wait_started SCENARIO PID COMM: until PID runs COMM (in the first cgroup of $CGS, if any).
wait_started() {
	local n=0 rel=${CGS%% *}
	rel=${rel#"$OBS_V2"}
	until [ "$(cat "/proc/$2/comm" 2>/dev/null)" = "$3" ] &&
		{ [ -z "$CGS" ] || grep -qx "0::$rel" "/proc/$2/cgroup"; }; do
		n=$((n + 1))
		[ $n -gt 1000 ] && fail "$1: pid $2 is not running $3 in $rel after 10 s"
		sleep 0.01
	done
}

# spawn SCENARIO PROG ARGS...: PROG as PID 1 of a new pid namespace in the cgroups $CGS, as a
# runtime starts a container: `unshare -p -f` forks the namespace's init, which moves itself
# into the cgroups and execs PROG. unshare stays outside, as a runtime's shim does (inside,
# it would be an exec session into the container: a preStop candidate). Sets UPID (unshare,
# our child) and PID (the host pid of PID 1).
spawn() {
	local scenario=$1
	shift
	CGS=$CGS "$A/unshare" -p -f "$A/sh" -c "$JOIN" sh "$@" </dev/null >/dev/null 2>&1 &
	UPID=$!
	adopt "$scenario" "$1"
}

# spawn_netns SCENARIO PROG ARGS...: spawn's, in a network namespace of its own as a pod's
# (the runtime makes it for the pod's sandbox; every container of the pod joins it): PID 1
# execs `unshare -n` before it joins the cgroups (so no exec in the container), brings up
# loopback, the namespace's only interface and address (127.0.0.1), then joins and execs
# PROG. PROG's parent, unshare -p -f, stays in the host's namespace: a main process in a
# namespace other than its parent's is on the pod network (observer-ebpf/src/probes/net.rs
# learn()); in its parent's, it would be a host-network container.
NETJOIN='"$A/ip" link set lo up || exit 96; '$JOIN
spawn_netns() {
	local scenario=$1
	shift
	A=$A CGS=$CGS "$A/unshare" -p -f "$A/unshare" -n "$A/sh" -c "$NETJOIN" sh "$@" \
		</dev/null >/dev/null 2>&1 &
	UPID=$!
	adopt "$scenario" "$1"
}

# adopt SCENARIO PROG: after spawn's unshare (UPID), until its PID 1 runs PROG; sets PID.
adopt() {
	local kids n=0
	# PID 1 is unshare's only child (/proc/PID/task/TID/children: CONFIG_PROC_CHILDREN).
	until [ -n "${kids:-}" ]; do
		kids=$(cat "/proc/$UPID/task/$UPID/children" 2>/dev/null)
		n=$((n + 1))
		[ $n -gt 1000 ] && fail "$1: unshare (pid $UPID) started no PID 1 in 10 s"
		sleep 0.01
	done
	PID=${kids%% *}
	LIVE="$LIVE $UPID:$PID"
	wait_started "$1" "$PID" "${2##*/}"
	fact "$1" "pid=$PID" "comm=${2##*/}"
}

# wait_gone SCENARIO SECONDS: until PID 1 has exited and unshare with it; reaps unshare.
# Facts: gone (a time after the exit) and status (unshare's: PID 1's code, 128 + its signal).
wait_gone() {
	local n=$(($2 * 100)) status keep pair
	while [ $n -gt 0 ] && alive "$UPID"; do
		sleep 0.01
		n=$((n - 1))
	done
	fact "$1" "gone=$EPOCHREALTIME"
	[ $n -gt 0 ] || fail "$1: PID 1 ($PID) still running after $2 s"
	wait "$UPID"
	status=$?
	keep=
	for pair in $LIVE; do [ "${pair%%:*}" = "$UPID" ] || keep="$keep $pair"; done
	LIVE=$keep
	fact "$1" "status=$status"
}

# wait_disposition PID SigCgt|SigIgn: until PID catches (ignores) SIGTERM, bit 15 of the
# mask in /proc/PID/status (a shell runs `trap` only after its exec: a signal sent before
# meets SIG_DFL, which a pid namespace's init drops).
wait_disposition() {
	local n=0 key mask
	while [ $n -lt 1000 ]; do
		while read -r key mask; do
			if [ "$key" = "$2:" ] && [ $((0x${mask#"${mask%????}"} & 0x4000)) -ne 0 ]; then
				return 0
			fi
		done <"/proc/$1/status"
		n=$((n + 1))
		sleep 0.01
	done
	fail "pid $1 has no $2 bit for SIGTERM after 10 s"
}

# signal SCENARIO NAME SIG: sends SIG to PID 1 from this shell (the runtime's role); facts
# NAME_a and NAME_b: times right before and right after the kill(2).
signal() {
	local a b
	a=$EPOCHREALTIME
	kill "-$3" "$PID" || fail "$1: kill -$3 $PID"
	b=$EPOCHREALTIME
	fact "$1" "${2}_a=$a" "${2}_b=$b"
}

finish() {
	local rc=$1 pair n line d
	trap - EXIT INT TERM
	if [ -n "$DPID" ]; then
		kill -TERM "$DPID" 2>/dev/null
		n=0
		while alive "$DPID" && [ $n -lt 1500 ]; do
			sleep 0.01
			n=$((n + 1))
		done
		alive "$DPID" && kill -KILL "$DPID"
		wait "$DPID"
		fact daemon "exit=$?"
		# The daemon leaves its probes pinned; the DaemonSet's removal step takes them.
		"$OBS_BIN" cleanup --pin-dir "$OBS_PINS" >&2
		fact daemon "cleanup=$?"
		[ -e "$OBS_PINS" ] && fact daemon "pins_left=yes"
	fi
	if [ -f "$JOURNAL" ]; then
		while IFS= read -r line; do say journal "$line"; done <"$JOURNAL"
	fi
	if [ -f "$DAEMON_LOG" ]; then
		while IFS= read -r line; do say daemon-log "$line"; done <"$DAEMON_LOG"
	fi
	# What is still running: PID 1s (only while their unshare parent, not yet reaped,
	# holds them: a reaped pid may already be another process's), then our children.
	for pair in $LIVE; do
		if [ "$(awk '{print $4}' "/proc/${pair#*:}/stat" 2>/dev/null)" = "${pair%%:*}" ]; then
			kill -KILL "${pair#*:}"
		fi
		kill -KILL "${pair%%:*}" 2>/dev/null
		wait "${pair%%:*}"
	done
	for pair in $CHILDREN; do
		kill -KILL "$pair" 2>/dev/null
		wait "$pair"
	done
	for d in $CGROUPS; do
		n=0
		while [ -d "$d" ] && ! rmdir "$d" 2>/dev/null && [ $n -lt 100 ]; do
			sleep 0.01
			n=$((n + 1))
		done
		[ -d "$d" ] && log "warning: could not remove $d"
	done
	rm -rf "$LOGS" "$JOURNAL" "$DAEMON_LOG" "$OBS_WORK/check.txt" "$OBS_WORK/family" \
		"$OBS_WORK/tcp"
	say end "$rc"
	exec 3>&-
}
trap 'finish $?' EXIT
trap 'exit 143' TERM
trap 'exit 130' INT

say kernel "$(uname -r)"
say version "$(cat /proc/version)"
# The stop signals' sender: this shell (kill is its builtin).
fact script "pid=$$" "comm=$(cat /proc/$$/comm)"
log "kernel $(uname -r), cgroup v2 at $OBS_V2"

# 1. The preflight: every line PASS, exit 0.
"$OBS_BIN" check >"$OBS_WORK/check.txt" 2>&1
rc=$?
while IFS= read -r line; do say check "$line"; done <"$OBS_WORK/check.txt"
say check-exit "$rc"

# A container that predates the daemon (the start-up walk must find it).
new_container early cache-0 redis
CGS=$CG
spawn early "$A/sleep" 1000
EXPECT="$EXPECT $CID"
EARLY_PID=$PID
EARLY_UPID=$UPID

RUST_LOG=info "$OBS_BIN" run --listen "$OBS_LISTEN" --journal "$JOURNAL" \
	--kubelet-log-root "$LOGS" --cri-endpoint none --node "$OBS_NODE" --pin-dir "$OBS_PINS" \
	--containerd-state "$OBS_WORK/no-containerd" --crio-storage "$OBS_WORK/no-crio" \
	</dev/null >"$DAEMON_LOG" 2>&1 &
DPID=$!
n=0
# (no `wget -T`: it crashes in the busybox of Debian 12)
until [ "$(timeout 5 wget -q -O - "http://$OBS_LISTEN/healthz" 2>/dev/null)" = ok ]; do
	alive "$DPID" || fail "observer run exited before it was healthy (its log follows)"
	n=$((n + 1))
	[ $n -gt 1200 ] && fail "observer run not healthy after 120 s"
	sleep 0.1
done
log "daemon healthy (pid $DPID)"

# 2. No handler: the kernel drops SIGTERM at a pid namespace's init with SIG_DFL; SIGKILL.
new_container noh web-7d4b9c6f8-x2k9p app
CGS=$CG
spawn noh "$A/sleep" 1000
EXPECT="$EXPECT $CID"
signal noh term TERM
sleep 1.5
alive "$PID" && fact noh alive_after_term=yes
signal noh kill KILL
wait_gone noh 10

# 3. A handler that exits with code 3.
new_container handled api-0 api
CGS=$CG
spawn handled "$A/sh" -c 'trap "exit 3" TERM; sleep 1000 & wait'
EXPECT="$EXPECT $CID"
wait_disposition "$PID" SigCgt
signal handled term TERM
wait_gone handled 10

# 4. SIG_IGN for SIGTERM, then SIGKILL.
new_container ignored worker-5f6d7c8b9-bcdfg worker
CGS=$CG
spawn ignored "$A/sh" -c 'trap "" TERM; sleep 1000 & wait'
EXPECT="$EXPECT $CID"
wait_disposition "$PID" SigIgn
signal ignored term TERM
sleep 1
alive "$PID" && fact ignored alive_after_term=yes
signal ignored kill KILL
wait_gone ignored 10

# 5. Not containers: a host process and a pid namespace's init outside kubepods. Stopped
# before the scenarios below, whose records then prove theirs would have been written by the
# end (so do the family's child and nested init, section 8).
fact hostproc "start=$EPOCHREALTIME"
"$A/sleep" 1000 </dev/null >/dev/null 2>&1 &
HOST_PID=$!
CHILDREN="$CHILDREN $HOST_PID"
CGS=
wait_started hostproc "$HOST_PID" sleep
fact hostproc "pid=$HOST_PID"
kill -TERM "$HOST_PID"
wait "$HOST_PID"
fact hostproc "status=$?" "gone=$EPOCHREALTIME"
CHILDREN=

OUTSIDE=$OBS_V2/observer-matrix-$OBS_TAG-outside
mkdir -p "$OUTSIDE" || fail "mkdir $OUTSIDE"
CGROUPS="$CGROUPS $OUTSIDE"
CGS=$OUTSIDE
fact outside "start=$EPOCHREALTIME"
spawn outside "$A/sleep" 1000
signal outside term TERM
signal outside kill KILL
wait_gone outside 10

# A main process that is no pid namespace's init (as each app container's is with
# shareProcessNamespace): a process forked outside the container (by this shell, the
# runtime's role) joins its cgroup and execs the entrypoint. Nothing protects it: SIGTERM's
# default action kills it, taken at generation (never delivered as itself).
new_container noinit nginx-7d4b9c6f8-x2k9p nginx
CGS=$CG
CGS=$CGS "$A/sh" -c "$JOIN" sh "$A/sleep" 1000 </dev/null >/dev/null 2>&1 &
PID=$!
CHILDREN="$CHILDREN $PID"
EXPECT="$EXPECT $CID"
wait_started noinit "$PID" sleep
fact noinit "pid=$PID" comm=sleep
signal noinit term TERM
wait "$PID"
status=$?
fact noinit "gone=$EPOCHREALTIME" "status=$status"
CHILDREN=

# 6. OOM under a 32 MiB limit: memory.max when the v2 hierarchy has the memory controller
# (enabled in subtree_control down the kubepods tree), else the v1 memory controller's
# memory.limit_in_bytes (hybrid hosts), as tests/tests/termination.rs does.
new_container oom hog-7d4b9c6f8-x2k9p hog
EXPECT="$EXPECT $CID"
LIMIT=33554432
if grep -qw memory "$OBS_V2/cgroup.controllers"; then
	d=$OBS_V2
	for part in kubepods besteffort "pod$PUID"; do
		echo +memory >"$d/cgroup.subtree_control" || fail "oom: +memory in $d"
		d=$d/$part
	done
	echo +memory >"$d/cgroup.subtree_control" || fail "oom: +memory in $d"
	echo "$LIMIT" >"$CG/memory.max" || fail "oom: memory.max"
	fact oom memory=v2
	MEM_CGS=$CG
elif [ -f "$OBS_V1_MEMORY/memory.limit_in_bytes" ]; then
	M=$OBS_V1_MEMORY/$POD_CG/$CID
	mkdir -p "$M" || fail "mkdir $M"
	CGROUPS="$M $OBS_V1_MEMORY/$POD_CG $CGROUPS"
	echo "$LIMIT" >"$M/memory.limit_in_bytes" || fail "oom: memory.limit_in_bytes"
	echo "$LIMIT" >"$M/memory.memsw.limit_in_bytes" 2>/dev/null
	fact oom memory=v1
	MEM_CGS="$CG $M"
else
	fail "oom: no memory controller, neither in $OBS_V2 nor at $OBS_V1_MEMORY"
fi
CGS=$MEM_CGS
spawn oom "$A/sh" -c 'a=xxxxxxxxxxxxxxxx; while :; do a="$a$a"; done'
wait_gone oom 60

# 7. An exec session right before the stop, as a preStop exec hook through `runc exec`: a
# process forked outside the container joins its cgroup and execs `sleep 1`; the stop
# signal follows its end at once (a session counts up to 0.5 s after it ended).
new_container prestop shop-7d4b9c6f8-x2k9p main
CGS=$CG
spawn prestop "$A/sh" -c 'trap "exit 0" TERM; sleep 1000 & wait'
EXPECT="$EXPECT $CID"
wait_disposition "$PID" SigCgt
a=$EPOCHREALTIME
CGS=$CG "$A/sh" -c "$JOIN" sh "$A/sleep" 1 </dev/null >/dev/null 2>&1 &
HOOK_PID=$!
wait "$HOOK_PID"
fact prestop "hook_status=$?" "hook_pid=$HOOK_PID" "hook_a=$a" "hook_b=$EPOCHREALTIME"
signal prestop term TERM
wait_gone prestop 10

# A threaded PID 1 (tests/progs/threads_exit.c, static) whose group leader leaves at SIGTERM:
# the process ends with its last thread, DELAY ms later, which SYS_exit(7)s (threads) or
# exit(5)s, a group exit (threadgroup). Which thread's exit ends a process is group_dead,
# the sched_process_exit argument that kernels before 6.16 lack.
threaded() {
	local n=0
	new_container "$1" "$2" "$3"
	CGS=$CG
	spawn "$1" "$OBS_THREADS_EXIT" "$4" "$5" "$6"
	EXPECT="$EXPECT $CID"
	until grep -qx "Threads:	2" "/proc/$PID/status"; do
		n=$((n + 1))
		[ $n -gt 1000 ] && fail "$1: PID 1 did not start its second thread in 10 s"
		sleep 0.01
	done
	fact "$1" "delay_ms=$5"
	signal "$1" term TERM
	wait_gone "$1" 10
}
threaded threads queue-7d4b9c6f8-x2k9p consumer leader-first-thread-exit 400 7
threaded threadgroup cron-7d4b9c6f8-x2k9p tick leader-first-group-exit 200 5

# SIGKILL with no stop signal first (a force delete).
new_container force batch-28340160-4sxv9 job
CGS=$CG
spawn force "$A/sleep" 1000
EXPECT="$EXPECT $CID"
signal force kill KILL
wait_gone force 10

# 8. A container's own processes are no container, and its own signals no stop. PID 1 (a
# shell) forks a child (`sleep`) and a nested pid namespace's init (`unshare -p -f sleep`:
# a sandbox inside the container); both exec with their parent inside the cgroup. Then:
# - selfsig: an exec session (forked outside, joined to the cgroup, as `runc exec`) runs
#   `kill -TERM <PID 1>`: a signal from inside the container (a preStop hook's `kill 1`),
#   counted in observer_container_self_signals_total, never a record nor the record's stop
#   signal (a pid namespace's init with SIG_DFL drops it anyway);
# - child: SIGTERM from this shell kills the child (status 143, reaped by PID 1);
# - nested: SIGTERM from this shell is dropped by the nested init (SIG_DFL), SIGKILL ends it
#   (unshare, PID 1's child, ends with its signal: 137);
# and SIGKILL (no stop signal) ends the container, whose one record is PID 1's.
self_signals() {
	timeout 5 wget -q -O - "http://$OBS_LISTEN/metrics" 2>/dev/null |
		awk '$1 == "observer_container_self_signals_total" { print $2; found = 1 }
			END { if (!found) print "none" }'
}
# kids_named PID COMM: PID's children running COMM (their host pids).
kids_named() {
	local k out=
	for k in $(cat "/proc/$1/task/$1/children" 2>/dev/null); do
		[ "$(cat "/proc/$k/comm" 2>/dev/null)" = "$2" ] && out="$out $k"
	done
	echo $out
}
# wait_kid SCENARIO PID COMM: until PID has exactly one child running COMM; sets KID.
wait_kid() {
	local n=0
	KID=$(kids_named "$2" "$3")
	until [ -n "$KID" ] && [ "$KID" = "${KID%% *}" ]; do
		n=$((n + 1))
		[ $n -gt 1000 ] && fail "$1: pid $2 has no single child running $3 after 10 s"
		sleep 0.01
		KID=$(kids_named "$2" "$3")
	done
}
# wait_file SCENARIO FILE: until FILE holds a line; sets LINE.
wait_file() {
	local n=0
	until [ -s "$2" ]; do
		n=$((n + 1))
		[ $n -gt 1000 ] && fail "$1: nothing in $2 after 10 s"
		sleep 0.01
	done
	LINE=$(cat "$2")
}
new_container family relay-7d4b9c6f8-x2k9p relay
CGS=$CG
FAM=$OBS_WORK/family
mkdir -p "$FAM" || fail "mkdir $FAM"
fact child "start=$EPOCHREALTIME"
fact nested "start=$EPOCHREALTIME"
# shellcheck disable=SC2016
spawn family "$A/sh" -c 'S=$1/sleep
"$S" 1000 &
c=$!
"$1/unshare" -p -f "$S" 1000 &
u=$!
wait $c
echo $? >"$2/child"
wait $u
echo $? >"$2/nested"
"$S" 1000 &
wait' sh "$A" "$FAM"
EXPECT="$EXPECT $CID"
wait_kid child "$PID" sleep
CHILD_PID=$KID
wait_kid nested "$PID" unshare
wait_kid nested "$KID" sleep
NESTED_PID=$KID
grep -qx "0::${CG#"$OBS_V2"}" "/proc/$CHILD_PID/cgroup" || fail "child: $CHILD_PID not in $CG"
grep -qx "0::${CG#"$OBS_V2"}" "/proc/$NESTED_PID/cgroup" || fail "nested: $NESTED_PID not in $CG"
fact child "pid=$CHILD_PID"
fact nested "pid=$NESTED_PID"

before=$(self_signals)
CGS=$CG "$A/sh" -c "$JOIN" sh "$A/kill" -TERM "$PID" </dev/null >/dev/null 2>&1 &
SELF_PID=$!
wait "$SELF_PID"
fact selfsig "kill_status=$?" "sender=$SELF_PID" "before=$before"
n=0
after=$(self_signals)
until [ "$after" != "$before" ] || [ $n -gt 100 ]; do
	sleep 0.05
	n=$((n + 1))
	after=$(self_signals)
done
fact selfsig "after=$after"
alive "$PID" && fact family alive_after_self_signal=yes
# More than the 0.5 s an exec session counts as a preStop, before any signal of ours.
sleep 0.6

kill -TERM "$CHILD_PID" || fail "child: kill -TERM $CHILD_PID"
wait_file child "$FAM/child"
fact child "gone=$EPOCHREALTIME" "status=$LINE"

a=$EPOCHREALTIME
kill -TERM "$NESTED_PID" || fail "nested: kill -TERM $NESTED_PID"
fact nested "term_a=$a" "term_b=$EPOCHREALTIME"
sleep 0.5
alive "$NESTED_PID" && fact nested alive_after_term=yes
kill -KILL "$NESTED_PID" || fail "nested: kill -KILL $NESTED_PID"
wait_file nested "$FAM/nested"
fact nested "gone=$EPOCHREALTIME" "status=$LINE"

signal family kill KILL
wait_gone family 10

# 9. Traffic at termination (observer/src/traffic.rs): a TCP server (tests/progs/tcp_hold.c)
# that holds every connection, SIGTERMed with HELD connections open; it accepts LATE more
# after it saw the signal (each waited for: the figures are exact), closes its listener,
# keeps its connections, and SIGKILL cuts them all 0.5 s later. Its clients (tcp_hold
# connect, forked by this shell: outside the container, as other pods or nodes are) stay
# until its end. Two containers:
# - traffic: on the pod network (spawn_netns): the server and its clients (`nsenter -n`, into
#   the server's namespace) talk over the pod's loopback, so both ends of each connection
#   are in the pod's namespace and count;
# - hostnet: a host-network container (the host's namespace, like its clients): only the
#   connections to its listening port count, their server ends.
# Facts: net, port, held, late; last_connect_a (right before the last client was started)
# and last_accept_b (right after the server said it accepted it), closed_b (right after it
# said its listener was closed), clients_alive (right before the SIGKILL).

# wait_value SCENARIO FILE VALUE: until FILE holds VALUE (one of tcp_hold's state files).
wait_value() {
	local n=0
	until [ "$(cat "$2" 2>/dev/null)" = "$3" ]; do
		n=$((n + 1))
		[ $n -gt 1000 ] && fail "$1: $2 holds '$(cat "$2" 2>/dev/null)', not $3, after 10 s"
		sleep 0.01
	done
}
# tcp_client NET: one client of the server ($PID, $PORT), in its namespace (pod) or in this
# shell's (host); busybox nsenter forks only to enter a pid namespace: $! is the client.
tcp_client() {
	if [ "$1" = pod ]; then
		"$A/nsenter" -t "$PID" -n "$OBS_TCP_HOLD" connect "$PORT" </dev/null >/dev/null 2>&1 &
	else
		"$OBS_TCP_HOLD" connect "$PORT" </dev/null >/dev/null 2>&1 &
	fi
	CLIENTS="$CLIENTS $!"
	CHILDREN="$CHILDREN $!"
}
# tcp_scenario SCENARIO POD CONTAINER NET HELD LATE
tcp_scenario() {
	local s=$1 net=$4 held=$5 late=$6 st i=0 a= c alive_n=0
	new_container "$s" "$2" "$3"
	st=$OBS_WORK/tcp/$s
	mkdir -p "$st" || fail "mkdir $st"
	CGS=$CG
	if [ "$net" = pod ]; then
		spawn_netns "$s" "$OBS_TCP_HOLD" serve 0 "$late" "$st"
	else
		spawn "$s" "$OBS_TCP_HOLD" serve 0 "$late" "$st"
	fi
	EXPECT="$EXPECT $CID"
	wait_file "$s" "$st/port"
	PORT=$LINE
	wait_disposition "$PID" SigCgt
	fact "$s" "net=$net" "port=$PORT" "held=$held" "late=$late"
	CLIENTS=
	while [ $i -lt "$held" ]; do
		i=$((i + 1))
		tcp_client "$net"
		wait_value "$s" "$st/accepted" $i
	done
	signal "$s" term TERM
	# The server saw the signal (its handler ran) with HELD accepted.
	wait_value "$s" "$st/stopped" "$held"
	while [ $i -lt $((held + late)) ]; do
		i=$((i + 1))
		a=$EPOCHREALTIME
		tcp_client "$net"
		wait_value "$s" "$st/accepted" $i
	done
	fact "$s" "last_connect_a=$a" "last_accept_b=$EPOCHREALTIME"
	wait_value "$s" "$st/closed" $i
	fact "$s" "closed_b=$EPOCHREALTIME"
	sleep 0.5
	for c in $CLIENTS; do alive "$c" && alive_n=$((alive_n + 1)); done
	fact "$s" "clients_alive=$alive_n"
	signal "$s" kill KILL
	wait_gone "$s" 10
	for c in $CLIENTS; do
		kill -KILL "$c" 2>/dev/null
		wait "$c"
	done
	CHILDREN=
	rm -rf "$st"
}
tcp_scenario traffic gateway-7d4b9c6f8-x2k9p envoy pod 2 3
tcp_scenario hostnet edge-5f6d7c8b9-bcdfg proxy host 1 2

# The early container, stopped last.
PID=$EARLY_PID
UPID=$EARLY_UPID
signal early term TERM
sleep 0.5
signal early kill KILL
wait_gone early 10

# Every record is in before the daemon stops.
n=0
for cid in $EXPECT; do
	until grep -q "\"container_id\":\"$cid\"" "$JOURNAL" 2>/dev/null; do
		n=$((n + 1))
		[ $n -gt 3000 ] && fail "no record for container $cid after 30 s"
		sleep 0.01
	done
done
log "all records written"
