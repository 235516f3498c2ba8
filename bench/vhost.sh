#!/usr/bin/env bash
# vhost-user benchmark: 64-byte frames between two vhost-user ports of a switch, against the
# DPDK io-forwarding ceiling and Open vSwitch with DPDK.
#
# One DPDK testpmd is the traffic source and sink (the "guest side"): two net_virtio_user
# ports in io forward mode, both on one core (GEN_CPU). The switch under test runs on the
# other core (SWITCH_CPU), pinned with taskset:
#   g  switchd, two vhost-user ports (socket_mode: server), access ports in VLAN 10
#   h  DPDK testpmd net_vhost io forwarding between two vhost-user ports (no learning:
#      the ceiling the ratios are taken against)
#   i  Open vSwitch with DPDK (Debian openvswitch-switch-dpdk), netdev bridge, NORMAL
#      action, two dpdkvhostuserclient ports (tag=10), one PMD core, 1024 x 2 MiB hugepages
# The generator starts with `start tx_first 32` and then forwards whatever it receives on
# one port out of the other, so a fixed number of frames circulates through the switch as
# fast as the slower of the two sides allows. The script reads both ports' RX-packets from
# `show port stats all` at the start and the end of a DURATION s window (after 2 s of
# warm-up): frames per second per direction. It also takes the switch process's CPU
# (utime + stime from /proc/PID/stat, all threads) over that window, and over 5 s with the
# generator stopped but still connected (idle). See bench/README.md.
#
# Usage: sudo bench/vhost.sh [--only g,h,i] [--json FILE] [--install] [--perf]
#   --install   install missing Debian packages (dpdk-dev, librte-net-virtio23,
#               librte-net-vhost23, openvswitch-switch-dpdk, linux-perf for --perf);
#               without it a setup whose tools are missing is skipped, with the reason
#   --perf      after (g)'s measured window, `perf record -g` switchd for PERF_SECS s
#               (traffic still running) and print the top symbols
# Environment: DURATION (s, default 10), SWITCHD (binary, default target/release/switchd;
#              the script does not build it), SWITCHD_WORKERS (default 1), SWITCHD_ARGS
#              (more switchd options, split on spaces, e.g. "--poll-us 0"), GEN_MODE (io,
#              the default: frames forwarded unchanged; mac: each direction has its own
#              source and destination MAC), GEN_CPU (default
#              0), SWITCH_CPU (default 1), PERF_SECS (default 5), KEEP_LOGS=1 (keep the run
#              directory with all logs).
#
# No network interface is created: all traffic is in shared memory between the processes
# this script starts, over unix sockets in its private run directory.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DURATION=${DURATION:-10}
SWITCHD_SRC=${SWITCHD:-$REPO/target/release/switchd}
SWITCHD_WORKERS=${SWITCHD_WORKERS:-1}
SWITCHD_ARGS=${SWITCHD_ARGS:-}
GEN_MODE=${GEN_MODE:-io}
# The generator's two ports and what their frames carry. io: frames go back out unchanged,
# so one source MAC arrives on both switch ports in turn (relearned, flooded, every frame).
# mac: each port rewrites the source to its own MAC and the destination to the other's, as
# two hosts talking would: learned once, then known unicast.
GEN_MAC0=02:00:00:00:0b:01 GEN_MAC1=02:00:00:00:0b:02
case $GEN_MODE in
    io) GEN_FWD=(--forward-mode=io) ;;
    mac) GEN_FWD=(--forward-mode=mac "--eth-peer=0,$GEN_MAC1" "--eth-peer=1,$GEN_MAC0") ;;
    *) echo "GEN_MODE must be io or mac" >&2; exit 2 ;;
esac
GEN_CPU=${GEN_CPU:-0}
SWITCH_CPU=${SWITCH_CPU:-1}
PERF_SECS=${PERF_SECS:-5}
KEEP_LOGS=${KEEP_LOGS:-0}
IDLE_SECS=5
WARMUP_SECS=2
TESTPMD=/usr/bin/dpdk-testpmd
OVS_DPDK_VSWITCHD=/usr/lib/openvswitch-switch-dpdk/ovs-vswitchd-dpdk
OVS_HUGEPAGES=1024 # 2 MiB pages reserved for (i)
OVS_SOCKET_MEM=1024 # MB of them that OVS's DPDK takes

# Every name this script creates starts with "vsb" (vlanswitch bench): DPDK file prefixes
# (/var/run/dpdk/vsb-*), the OVS bridge and ports.
LOCK=/run/lock/vlanswitch-bench-vhost.lock
E2E_LOCK=/run/lock/vlanswitch-bench-e2e.lock
# What (i) changed in the system's hugepage setup, so that a killed run can be undone
HUGE_STATE=/run/lock/vlanswitch-bench-vhost.hugepages

ALL_SETUPS=(g h i)
declare -A SETUP_NAME=(
    [g]="switchd vhost-user"
    [h]="testpmd net_vhost io"
    [i]="OVS-DPDK NORMAL"
)

SELECTED=("${ALL_SETUPS[@]}")
JSON_OUT=""
INSTALL=0
PERF=0

PIDS=()        # processes we started, stopped by pid, newest first
SWITCH_PIDS=() # the switch's own process(es), for CPU
DPDK_PREFIXES=() # DPDK runtime directories to remove
SWITCHD_LOG=""
RUN=""
declare -A R=()
declare -A NOTES=()
FAILED=0

# hugepages (i)
HUGE_PREV="" HUGE_MNT=""

# the generator's stdin (a fifo held open on fd GEN_FD) and output
GEN_FD="" GEN_LOG="" GEN_PID=""

# ---------------------------------------------------------------------------------------------
# helpers

log() { printf '%s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }
note() {
    local s=$1; shift
    log "  note: $*"
    NOTES[$s]+="${NOTES[$s]:+; }$*"
}
now() { date +%s.%N; }
calc() { awk "BEGIN { printf \"%.6f\", $* }"; }
fmt() { if [[ -z ${1:-} ]]; then printf -- '-'; else awk -v v="$1" -v d="$2" 'BEGIN { printf "%.*f", d, v }'; fi; }
want() { local s; for s in "${SELECTED[@]}"; do [[ $s == "$1" ]] && return 0; done; return 1; }

usage() {
    sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d' | sed 's/^# \{0,1\}//'
    exit "${1:-0}"
}

parse_args() {
    while (($#)); do
        case $1 in
            --only)
                [[ $# -ge 2 ]] || die "--only needs a list, e.g. --only g,h"
                IFS=, read -r -a SELECTED <<<"$2"
                local s
                for s in "${SELECTED[@]}"; do
                    [[ -n ${SETUP_NAME[$s]:-} ]] || die "unknown setup '$s' (known: ${ALL_SETUPS[*]})"
                done
                shift 2 ;;
            --json)
                [[ $# -ge 2 ]] || die "--json needs a file name"
                JSON_OUT=$2; shift 2 ;;
            --install) INSTALL=1; shift ;;
            --perf) PERF=1; shift ;;
            -h | --help) usage 0 ;;
            *) log "unknown argument: $1"; usage 2 ;;
        esac
    done
    [[ $DURATION =~ ^[0-9]+$ && $DURATION -ge 1 ]] || die "DURATION must be a whole number of seconds >= 1"
    [[ $GEN_CPU =~ ^[0-9]+$ && $SWITCH_CPU =~ ^[0-9]+$ && $GEN_CPU != "$SWITCH_CPU" ]] ||
        die "GEN_CPU and SWITCH_CPU must be two different CPU numbers"
    [[ $SWITCHD_WORKERS =~ ^[0-9]+$ && $SWITCHD_WORKERS -ge 1 ]] || die "SWITCHD_WORKERS must be >= 1"
}

# stop_pid PID: SIGTERM, SIGKILL after 10 s; waits for it
stop_pid() {
    local pid=$1 i
    kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null || true; return 0; }
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 100; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        if [[ $(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null) == Z ]]; then break; fi
        sleep 0.1
    done
    kill -0 "$pid" 2>/dev/null && [[ $(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null) != Z ]] &&
        kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

# Removes what the current setup made, newest process first. Safe to call twice.
teardown() {
    local i p
    if [[ -n $GEN_FD ]]; then
        # a clean quit first: testpmd closes its ports
        (printf 'quit\n' >&"$GEN_FD") 2>/dev/null || true
        for ((i = 0; i < 30; i++)); do kill -0 "$GEN_PID" 2>/dev/null || break; sleep 0.1; done
        exec {GEN_FD}>&- || true
        GEN_FD=""
    fi
    for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do stop_pid "${PIDS[i]}"; done
    for p in "${DPDK_PREFIXES[@]}"; do rm -rf "/var/run/dpdk/$p"; done
    PIDS=() SWITCH_PIDS=() DPDK_PREFIXES=() GEN_PID=""
    huge_release
}

on_exit() {
    local rc=$?
    trap - EXIT INT TERM
    teardown
    if [[ -n $RUN && -d $RUN ]]; then
        if [[ $KEEP_LOGS == 1 || $rc -ne 0 ]]; then log "logs kept in $RUN"; else rm -rf "$RUN"; fi
    fi
    exit "$rc"
}

# Undoes what an earlier run that was killed left behind: its hugetlbfs mount and hugepage
# reservation, its DPDK runtime directories. Its processes are only listed.
remove_leftovers() {
    local prev mnt p
    if [[ -f $HUGE_STATE ]]; then
        read -r prev mnt <"$HUGE_STATE" || true
        if [[ -n ${mnt:-} ]] && mountpoint -q "$mnt" 2>/dev/null; then umount "$mnt" || true; fi
        [[ ${prev:-} =~ ^[0-9]+$ ]] && echo "$prev" >/proc/sys/vm/nr_hugepages || true
        rm -f "$HUGE_STATE"
        log "restored the hugepage reservation an earlier run left ($prev pages)"
    fi
    for p in /var/run/dpdk/vsb-*; do [[ -e $p ]] && rm -rf "$p"; done
    local procs
    procs=$(pgrep -af '/tmp/vlanswitch-bench-vhost\.' || true)
    [[ -z $procs ]] || log "warning: processes of an earlier run are still running:
$procs"
}

# ---------------------------------------------------------------------------------------------
# tools

APT_UPDATED=0
apt_install() { # apt_install PACKAGE...: only with --install
    ((INSTALL)) || return 1
    log "installing $*"
    if ((APT_UPDATED == 0)); then
        apt-get update -qq >/dev/null 2>&1 || log "  apt-get update failed; trying the install anyway"
        APT_UPDATED=1
    fi
    # no service of the packages starts: the benchmark runs its own daemons
    local policy=/usr/sbin/policy-rc.d made_policy=0 rc=0
    if [[ ! -e $policy ]]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod +x "$policy" && made_policy=1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >>"$RUN/apt.log" 2>&1 || rc=$?
    ((made_policy == 0)) || rm -f "$policy"
    ((rc == 0)) || log "  apt-get install $* failed (see $RUN/apt.log)"
    return "$rc"
}

pkg_installed() { dpkg-query -W -f '${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }

# The packages testpmd needs for both kinds of ports; sets HAVE_TESTPMD and WHY_NO_TESTPMD
check_testpmd() {
    local missing=() p
    [[ -x $TESTPMD ]] || missing+=(dpdk-dev)
    for p in librte-net-virtio23 librte-net-vhost23; do pkg_installed "$p" || missing+=("$p"); done
    if ((${#missing[@]})); then apt_install "${missing[@]}" || true; fi
    missing=()
    [[ -x $TESTPMD ]] || missing+=(dpdk-dev)
    for p in librte-net-virtio23 librte-net-vhost23; do pkg_installed "$p" || missing+=("$p"); done
    if ((${#missing[@]})); then
        HAVE_TESTPMD=0
        WHY_NO_TESTPMD="missing packages: ${missing[*]} (run with --install)"
    else
        HAVE_TESTPMD=1
    fi
}

check_ovs() {
    HAVE_OVS=1 WHY_NO_OVS=""
    local c ok=1
    for c in "$OVS_DPDK_VSWITCHD" ovsdb-tool ovsdb-server ovs-vsctl; do command -v "$c" >/dev/null 2>&1 || ok=0; done
    ((ok)) || apt_install openvswitch-switch-dpdk || true
    ok=1
    for c in "$OVS_DPDK_VSWITCHD" ovsdb-tool ovsdb-server ovs-vsctl; do command -v "$c" >/dev/null 2>&1 || ok=0; done
    if ((ok == 0)); then
        HAVE_OVS=0 WHY_NO_OVS="openvswitch-switch-dpdk not installed (run with --install)"
    fi
}

check_perf() {
    HAVE_PERF=1
    perf --version >/dev/null 2>&1 || apt_install linux-perf || true
    perf --version >/dev/null 2>&1 || HAVE_PERF=0
}

# ---------------------------------------------------------------------------------------------
# the generator: testpmd, two net_virtio_user ports, interactive over a fifo

# start_gen SERVER SOCK0 SOCK1: SERVER is virtio_user's server= (0: connect to the switch's
# sockets; 1: listen on them, the switch connects)
start_gen() {
    local server=$1 s0=$2 s1=$3 fifo=$RUN/gen.in
    GEN_LOG=$RUN/gen-$CUR.log
    rm -f "$fifo"; mkfifo "$fifo"
    DPDK_PREFIXES+=(vsb-gen)
    # Both lcores (main: the prompt, which blocks on stdin; 1: forwarding) on GEN_CPU.
    # stdbuf: testpmd's printf output reaches the log line by line, not at exit.
    taskset -c "$GEN_CPU" stdbuf -oL -eL "$TESTPMD" --lcores "0@$GEN_CPU,1@$GEN_CPU" \
        --no-huge -m 1024 --no-pci --file-prefix vsb-gen \
        --vdev "net_virtio_user0,path=$s0,queues=1,server=$server,mac=$GEN_MAC0" \
        --vdev "net_virtio_user1,path=$s1,queues=1,server=$server,mac=$GEN_MAC1" \
        -- -i "${GEN_FWD[@]}" --nb-cores=1 <"$fifo" >"$GEN_LOG" 2>&1 8>&- 9>&- &
    GEN_PID=$!
    PIDS+=("$GEN_PID")
    exec {GEN_FD}>"$fifo"
}

# gen_cmd CMD PATTERN COUNT: sends CMD to the generator and waits (up to 10 s) until the
# output that follows holds PATTERN COUNT times; prints that output
gen_cmd() {
    local cmd=$1 pat=$2 n=$3 off i out
    off=$(stat -c %s "$GEN_LOG")
    # in a subshell: a write to a generator that died kills that with SIGPIPE, not the script
    (printf '%s\n' "$cmd" >&"$GEN_FD") 2>/dev/null || return 1
    for ((i = 0; i < 200; i++)); do
        out=$(tail -c +$((off + 1)) "$GEN_LOG")
        if (($(grep -c -- "$pat" <<<"$out" || true) >= n)); then printf '%s\n' "$out"; return 0; fi
        kill -0 "$GEN_PID" 2>/dev/null || return 1
        sleep 0.05
    done
    return 1
}

# waits up to 30 s for both ports' links to come up
gen_links_up() {
    local i out
    for ((i = 0; i < 60; i++)); do
        kill -0 "$GEN_PID" 2>/dev/null || return 1
        out=$(gen_cmd 'show port info all' 'Link status:' 2 2>/dev/null || true)
        (($(grep -c 'Link status: up' <<<"$out" || true) >= 2)) && return 0
        sleep 0.5
    done
    return 1
}

# prints "RX0 RX1" from one `show port stats all`
gen_rx() {
    local out
    out=$(gen_cmd 'show port stats all' 'Tx-pps' 2) || return 1
    awk '/NIC statistics for port/ { p = $(NF - 1) }
         /RX-packets:/ { rx[p] = $2 }
         END { if ((0 in rx) && (1 in rx)) print rx[0], rx[1]; else exit 1 }' <<<"$out"
}

# ---------------------------------------------------------------------------------------------
# setups: each starts its switch (pinned to SWITCH_CPU) and the generator

wait_sockets() { # wait_sockets PID SOCK...: up to 20 s for the switch to create them
    local pid=$1 i s ok; shift
    for ((i = 0; i < 200; i++)); do
        ok=1
        for s in "$@"; do [[ -S $s ]] || ok=0; done
        ((ok)) && return 0
        kill -0 "$pid" 2>/dev/null || return 1
        sleep 0.1
    done
    return 1
}

setup_g() {
    [[ -x $SWITCHD_SRC ]] || { note g "no switchd binary at $SWITCHD_SRC (cargo build --release -p switchd, or set SWITCHD)"; return 1; }
    ((HAVE_TESTPMD)) || { note g "$WHY_NO_TESTPMD"; return 1; }
    local s0=$RUN/g0.sock s1=$RUN/g1.sock i
    cat >"$RUN/topology-g.yaml" <<EOF
vlans: [{ id: 10 }]
ports:
  - { name: vsbg0, kind: vhost-user, socket: $s0, socket_mode: server, mode: access, vlan: 10 }
  - { name: vsbg1, kind: vhost-user, socket: $s1, socket_mode: server, mode: access, vlan: 10 }
EOF
    SWITCHD_LOG=$RUN/switchd-g.log
    RUST_LOG=info taskset -c "$SWITCH_CPU" "$SWITCHD" --topology "$RUN/topology-g.yaml" \
        --workers "$SWITCHD_WORKERS" --listen "unix:$RUN/switchd-g.api" $SWITCHD_ARGS \
        2>"$SWITCHD_LOG" >/dev/null 8>&- 9>&- &
    local pid=$!
    PIDS+=("$pid")
    SWITCH_PIDS=("$pid")
    for ((i = 0; i < 200; i++)); do
        grep -q 'switch ready' "$SWITCHD_LOG" && break
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    grep -q 'switch ready' "$SWITCHD_LOG" && wait_sockets "$pid" "$s0" "$s1" || {
        note g "switchd did not come up; log: $(tail -n 5 "$SWITCHD_LOG" | tr '\n' ' ')"; return 1; }
    start_gen 0 "$s0" "$s1"
}

setup_h() {
    ((HAVE_TESTPMD)) || { note h "$WHY_NO_TESTPMD"; return 1; }
    local s0=$RUN/h0.sock s1=$RUN/h1.sock fifo=$RUN/h.in
    rm -f "$fifo"; mkfifo "$fifo"
    DPDK_PREFIXES+=(vsb-h)
    # Main lcore (blocks on stdin) and the forwarding lcore on SWITCH_CPU; no hugepages
    # (net_vhost maps the generator's memory; its own mbufs fit in 1 GB of normal pages).
    # stdin: the fifo, held open by a sleeping reader-less writer below, so that testpmd
    # (without -i it runs until a line arrives) keeps going.
    taskset -c "$SWITCH_CPU" "$TESTPMD" --lcores "0@$SWITCH_CPU,1@$SWITCH_CPU" \
        --no-huge -m 1024 --no-pci --file-prefix vsb-h \
        --vdev "net_vhost0,iface=$s0,client=0,queues=1" \
        --vdev "net_vhost1,iface=$s1,client=0,queues=1" \
        -- --forward-mode=io --nb-cores=1 --auto-start --total-num-mbufs=16384 \
        <"$fifo" >"$RUN/testpmd-h.log" 2>&1 8>&- 9>&- &
    local pid=$!
    PIDS+=("$pid")
    SWITCH_PIDS=("$pid")
    # keep the fifo's write end open (a process that never writes) until teardown
    sleep infinity >"$fifo" 8>&- 9>&- &
    PIDS+=("$!")
    wait_sockets "$pid" "$s0" "$s1" || {
        note h "testpmd net_vhost did not create its sockets; log: $(tail -n 5 "$RUN/testpmd-h.log" | tr '\n' ' ')"
        return 1; }
    start_gen 0 "$s0" "$s1"
}

# ---- (i) Open vSwitch with DPDK

# Reserves OVS_HUGEPAGES more 2 MiB pages and mounts a private hugetlbfs
huge_reserve() {
    HUGE_PREV=$(</proc/sys/vm/nr_hugepages)
    HUGE_MNT=$RUN/hugepages
    mkdir -p "$HUGE_MNT"
    printf '%s %s\n' "$HUGE_PREV" "$HUGE_MNT" >"$HUGE_STATE"
    echo $((HUGE_PREV + OVS_HUGEPAGES)) >/proc/sys/vm/nr_hugepages
    local got
    got=$(</proc/sys/vm/nr_hugepages)
    if ((got < HUGE_PREV + OVS_HUGEPAGES)); then
        note i "could reserve only $((got - HUGE_PREV)) of $OVS_HUGEPAGES hugepages"
        return 1
    fi
    mount -t hugetlbfs -o pagesize=2M nodev "$HUGE_MNT" || { note i "cannot mount hugetlbfs"; return 1; }
}

huge_release() {
    [[ -n $HUGE_PREV ]] || return 0
    if [[ -n $HUGE_MNT ]] && mountpoint -q "$HUGE_MNT" 2>/dev/null; then
        rm -f "$HUGE_MNT"/* 2>/dev/null || true
        umount "$HUGE_MNT" || log "warning: cannot unmount $HUGE_MNT"
    fi
    echo "$HUGE_PREV" >/proc/sys/vm/nr_hugepages || log "warning: cannot restore nr_hugepages=$HUGE_PREV"
    rm -f "$HUGE_STATE"
    HUGE_PREV="" HUGE_MNT=""
}

OVS_DB=""
ovs_vsctl() { ovs-vsctl --db="unix:$OVS_DB" --timeout=30 "$@"; }

setup_i() {
    ((HAVE_TESTPMD)) || { note i "$WHY_NO_TESTPMD"; return 1; }
    ((HAVE_OVS)) || { note i "$WHY_NO_OVS"; return 1; }
    local dir=$RUN/ovs s0=$RUN/i0.sock s1=$RUN/i1.sock i
    mkdir -p "$dir"
    huge_reserve || return 1
    # The generator listens (virtio_user server=1); OVS's dpdkvhostuserclient ports connect.
    start_gen 1 "$s0" "$s1"
    export OVS_RUNDIR=$dir OVS_LOGDIR=$dir OVS_DBDIR=$dir OVS_SYSCONFDIR=$dir
    OVS_DB=$dir/db.sock
    ovsdb-tool create "$dir/conf.db" /usr/share/openvswitch/vswitch.ovsschema >/dev/null || {
        note i "ovsdb-tool create failed"; return 1; }
    taskset -c "$SWITCH_CPU" ovsdb-server "$dir/conf.db" --remote="punix:$OVS_DB" \
        --unixctl="$dir/ovsdb-server.ctl" --pidfile="$dir/ovsdb-server.pid" \
        --log-file="$dir/ovsdb-server.log" >"$dir/ovsdb-server.out" 2>&1 8>&- 9>&- &
    PIDS+=("$!")
    for ((i = 0; i < 100; i++)); do [[ -S $OVS_DB ]] && break; sleep 0.1; done
    [[ -S $OVS_DB ]] || { note i "ovsdb-server did not start"; return 1; }
    local mask
    mask=$(printf '0x%x' $((1 << SWITCH_CPU)))
    ovs_vsctl --no-wait init &&
        ovs_vsctl --no-wait set Open_vSwitch . other_config:dpdk-init=true \
            other_config:dpdk-socket-mem="$OVS_SOCKET_MEM" \
            other_config:dpdk-socket-limit="$OVS_SOCKET_MEM" \
            other_config:pmd-cpu-mask="$mask" \
            other_config:dpdk-extra="--file-prefix=vsb-ovs --no-pci --huge-dir=$HUGE_MNT" || {
        note i "ovs-vsctl init failed"; return 1; }
    DPDK_PREFIXES+=(vsb-ovs)
    # The DPDK build of ovs-vswitchd, run directly: the system's ovs-vswitchd alternative
    # is left as it is.
    taskset -c "$SWITCH_CPU" "$OVS_DPDK_VSWITCHD" "unix:$OVS_DB" --unixctl="$dir/ovs-vswitchd.ctl" \
        --pidfile="$dir/ovs-vswitchd.pid" --log-file="$dir/ovs-vswitchd.log" \
        >"$dir/ovs-vswitchd.out" 2>&1 8>&- 9>&- &
    local pid=$!
    PIDS+=("$pid")
    SWITCH_PIDS=("$pid")
    ovs_vsctl add-br vsb-ovs -- set bridge vsb-ovs datapath_type=netdev &&
        ovs_vsctl add-port vsb-ovs vsbi0 tag=10 -- set Interface vsbi0 type=dpdkvhostuserclient \
            "options:vhost-server-path=$s0" &&
        ovs_vsctl add-port vsb-ovs vsbi1 tag=10 -- set Interface vsbi1 type=dpdkvhostuserclient \
            "options:vhost-server-path=$s1" || {
        note i "OVS bridge or ports failed: $(grep -E 'ERR|EMER|WARN' "$dir/ovs-vswitchd.log" | tail -n 3 | tr '\n' ' ')"
        return 1; }
    kill -0 "$pid" 2>/dev/null || {
        note i "ovs-vswitchd exited: $(tail -n 3 "$dir/ovs-vswitchd.log" | tr '\n' ' ')"; return 1; }
}

# ---------------------------------------------------------------------------------------------
# measurements

switch_ticks() {
    local pid t=0
    for pid in "${SWITCH_PIDS[@]}"; do
        t=$((t + $(awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$pid/stat" 2>/dev/null || echo 0)))
    done
    echo "$t"
}
switch_running() {
    local pid
    for pid in "${SWITCH_PIDS[@]}"; do
        kill -0 "$pid" 2>/dev/null || return 1
        [[ $(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null) != Z ]] || return 1
    done
}
# busy ticks of the whole machine (all CPUs), and of the generator
machine_ticks() { awk '/^cpu / { print $2 + $3 + $4 + $7 + $8 + $9; exit }' /proc/stat; }
gen_ticks() { awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$GEN_PID/stat" 2>/dev/null || echo 0; }
CLK_TCK=$(getconf CLK_TCK)
cpu_percent() { calc "($2 - $1) / $CLK_TCK / ($4 - $3) * 100"; }

measure() {
    local s=$1 rx0 rx1 t0 t1 c0 c1 a0 a1 b0 b1 el m0 m1 g0 g1
    gen_cmd 'start tx_first 32' 'packet forwarding' 1 >/dev/null || { note "$s" "testpmd did not start forwarding"; return 1; }
    sleep "$WARMUP_SECS"
    rx0=$(gen_rx) || { note "$s" "no port statistics from testpmd"; return 1; }
    t0=$(now); c0=$(switch_ticks); m0=$(machine_ticks); g0=$(gen_ticks)
    sleep "$DURATION"
    rx1=$(gen_rx) || { note "$s" "no port statistics from testpmd"; return 1; }
    t1=$(now); c1=$(switch_ticks); m1=$(machine_ticks); g1=$(gen_ticks)
    # CPU used by anything but the generator and the switch: another job on the machine
    R[$s:other_cpu]=$(cpu_percent 0 $(((m1 - m0) - (c1 - c0) - (g1 - g0))) "$t0" "$t1")
    if awk -v o="${R[$s:other_cpu]}" 'BEGIN { exit !(o > 15) }'; then
        note "$s" "other processes used $(fmt "${R[$s:other_cpu]}" 0)% of a core during the window: not an idle machine, the figures are not reliable"
    fi
    switch_running || { note "$s" "the switch process exited during the measurement"; return 1; }
    read -r a0 b0 <<<"$rx0"
    read -r a1 b1 <<<"$rx1"
    el=$(calc "$t1 - $t0")
    R[$s:p0_mpps]=$(calc "($a1 - $a0) / $el / 1e6")
    R[$s:p1_mpps]=$(calc "($b1 - $b0) / $el / 1e6")
    R[$s:mpps]=$(calc "(${R[$s:p0_mpps]} + ${R[$s:p1_mpps]}) / 2")
    R[$s:cpu]=$(cpu_percent "$c0" "$c1" "$t0" "$t1")
    if ((PERF)) && [[ $s == g ]]; then profile "$s"; fi
    gen_cmd 'stop' 'Done\.' 1 >/dev/null || note "$s" "testpmd did not stop forwarding"
    sleep 1
    t0=$(now); c0=$(switch_ticks)
    sleep "$IDLE_SECS"
    t1=$(now); c1=$(switch_ticks)
    if switch_running; then
        R[$s:idle_cpu]=$(cpu_percent "$c0" "$c1" "$t0" "$t1")
    else
        note "$s" "the switch process exited while idle"
    fi
}

# perf record -g of the switch, traffic still running; the top symbols into $RUN/perf-top.txt
profile() {
    local s=$1
    ((HAVE_PERF)) || { note "$s" "perf not installed (run with --install); no profile"; return 0; }
    log "  perf record -g for $PERF_SECS s"
    perf record -q -g -p "${SWITCH_PIDS[0]}" -o "$RUN/perf.data" -- sleep "$PERF_SECS" \
        >"$RUN/perf-record.log" 2>&1 || { note "$s" "perf record failed: $(tail -n 2 "$RUN/perf-record.log" | tr '\n' ' ')"; return 0; }
    perf report -i "$RUN/perf.data" --stdio --no-children --sort symbol >"$RUN/perf-report.txt" 2>/dev/null || true
    perf report -i "$RUN/perf.data" --stdio --no-children -g none --sort symbol 2>/dev/null |
        grep -E '^ +[0-9.]+%' | sed -E 's/([[:space:]]+-)+[[:space:]]*$//' | head -n 10 >"$RUN/perf-top.txt" || true
    PROFILE=$(<"$RUN/perf-top.txt")
}
PROFILE=""

# After switchd stopped: its per-port counters, when any drop counter is non-zero
switchd_drops() {
    local s=$1 line
    [[ -n $SWITCHD_LOG && -f $SWITCHD_LOG ]] || return 0
    while read -r line; do
        note "$s" "switchd counters: $line"
    done < <(grep ' stats ' "$SWITCHD_LOG" | grep -E 'drop_[a-z_]+=[1-9]' |
        sed -E 's/.* stats //; s/\x1b\[[0-9;]*m//g' || true)
    SWITCHD_LOG=""
}

run_setup() {
    local s=$1
    CUR=$s
    log ""
    log "== $s: ${SETUP_NAME[$s]}"
    R[$s:load1]=$(cut -d' ' -f1 /proc/loadavg)
    if ! "setup_$s"; then
        R[$s:skipped]=1
        [[ $s != g ]] || FAILED=1
        [[ -n ${NOTES[$s]:-} ]] || note "$s" "setup failed (see the messages above)"
        teardown; switchd_drops "$s"
        return
    fi
    log "  waiting for both links"
    if ! gen_links_up; then
        note "$s" "testpmd's ports did not come up in 30 s; log: $(grep -iE 'error|fail|cannot' "$GEN_LOG" | tail -n 3 | tr '\n' ' ')"
        R[$s:skipped]=1
        [[ $s != g ]] || FAILED=1
        teardown; switchd_drops "$s"
        return
    fi
    log "  64-byte frames, ${DURATION} s, then ${IDLE_SECS} s idle"
    if ! measure "$s"; then
        [[ -n ${R[$s:mpps]:-} ]] || R[$s:skipped]=1
        [[ $s != g ]] || FAILED=1
    fi
    teardown
    switchd_drops "$s"
}

# ---------------------------------------------------------------------------------------------
# report

ratio() { # ratio VALUE BASE: "0.46x", or "-"
    [[ -n ${1:-} && -n ${2:-} ]] || { printf -- '-'; return; }
    awk -v v="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2fx", v / b; else printf "-" }'
}

print_table() {
    local f="%-26s %-15s %7s %7s %7s %9s %7s\n" s
    printf '\n'
    printf "$f" "setup" "Mpps p0 / p1" "mean" "vs h" "vs i" "CPU%" "idle%"
    for s in "${SELECTED[@]}"; do
        if [[ -n ${R[$s:skipped]:-} ]]; then
            printf "$f" "$s ${SETUP_NAME[$s]}" "not run" "" "" "" "" ""
            continue
        fi
        printf "$f" "$s ${SETUP_NAME[$s]}" \
            "$(fmt "${R[$s:p0_mpps]:-}" 2) / $(fmt "${R[$s:p1_mpps]:-}" 2)" \
            "$(fmt "${R[$s:mpps]:-}" 2)" \
            "$(ratio "${R[$s:mpps]:-}" "${R[h:mpps]:-}")" "$(ratio "${R[$s:mpps]:-}" "${R[i:mpps]:-}")" \
            "$(fmt "${R[$s:cpu]:-}" 1)" "$(fmt "${R[$s:idle_cpu]:-}" 1)"
    done
    printf '\n'
    printf 'Mpps p0 / p1: 64-byte frames per second received by testpmd port 0 / port 1 (one per\n'
    printf 'direction) over %s s; mean: their mean, the figure the ratios use (h: net_vhost io\n' "$DURATION"
    printf 'ceiling, i: OVS-DPDK). CPU%%: the switch process over the window (100 = one core);\n'
    printf 'idle%%: over %s s with the generator stopped but connected. Switch on CPU %s, generator on CPU %s.\n' \
        "$IDLE_SECS" "$SWITCH_CPU" "$GEN_CPU"
    local any=0
    for s in "${SELECTED[@]}"; do
        [[ -n ${NOTES[$s]:-} ]] || continue
        ((any)) || printf '\nNotes:\n'
        any=1
        printf '  %s: %s\n' "$s" "${NOTES[$s]}"
    done
    local t=()
    if [[ -n ${R[g:mpps]:-} ]]; then
        [[ -z ${R[i:mpps]:-} ]] || t+=("g >= 1.0x OVS-DPDK: $(ratio "${R[g:mpps]}" "${R[i:mpps]}") $(awk -v v="${R[g:mpps]}" -v b="${R[i:mpps]}" 'BEGIN { print (v / b >= 1.0 ? "met" : "NOT met") }')")
        [[ -z ${R[h:mpps]:-} ]] || t+=("g >= 0.6x the io ceiling (stretch): $(ratio "${R[g:mpps]}" "${R[h:mpps]}") $(awk -v v="${R[g:mpps]}" -v b="${R[h:mpps]}" 'BEGIN { print (v / b >= 0.6 ? "met" : "NOT met") }')")
    fi
    [[ -z ${R[g:idle_cpu]:-} ]] ||
        t+=("g idle CPU <= 1%: $(fmt "${R[g:idle_cpu]}" 2)% $(awk -v v="${R[g:idle_cpu]}" 'BEGIN { print (v <= 1 ? "met" : "NOT met") }')")
    if ((${#t[@]})); then
        printf '\nTargets (issue 11, shared DESIGN.md "Targets"):\n'
        printf '  %s\n' "${t[@]}"
    fi
    if [[ -n $PROFILE ]]; then
        printf '\nProfile of switchd during (g), %s s, perf record -g, top symbols (self):\n%s\n' "$PERF_SECS" "$PROFILE"
    fi
}

json_num() { [[ -n ${1:-} ]] && printf '%s' "$1" || printf 'null'; }

write_json() {
    command -v jq >/dev/null 2>&1 || { log "jq is missing; no JSON written"; return; }
    local s rows=()
    for s in "${SELECTED[@]}"; do
        rows+=("$(jq -n --arg id "$s" --arg name "${SETUP_NAME[$s]}" \
            --argjson measured "$([[ -z ${R[$s:skipped]:-} ]] && echo true || echo false)" \
            --argjson p0 "$(json_num "${R[$s:p0_mpps]:-}")" --argjson p1 "$(json_num "${R[$s:p1_mpps]:-}")" \
            --argjson mean "$(json_num "${R[$s:mpps]:-}")" \
            --argjson cpu "$(json_num "${R[$s:cpu]:-}")" --argjson idle "$(json_num "${R[$s:idle_cpu]:-}")" \
            --argjson load1 "$(json_num "${R[$s:load1]:-}")" --arg notes "${NOTES[$s]:-}" \
            --argjson other "$(json_num "${R[$s:other_cpu]:-}")" \
            '{id: $id, name: $name, measured: $measured, port0_rx_mpps: $p0, port1_rx_mpps: $p1,
              mpps_per_direction: $mean, switch_cpu_pct: $cpu, switch_idle_cpu_pct: $idle,
              loadavg_1min_before: $load1, other_cpu_pct: $other, notes: $notes}')")
    done
    printf '%s\n' "${rows[@]}" | jq -s --arg date "$START_DATE" --arg kernel "$(uname -r)" \
        --arg cpu "$CPU_MODEL" --argjson cores "$(nproc)" --argjson duration "$DURATION" \
        --arg switchd "$SWITCHD_VERSION" --arg commit "$COMMIT" --argjson workers "$SWITCHD_WORKERS" \
        --arg dpdk "$DPDK_VERSION" --arg ovs "$OVS_VERSION" --arg profile "$PROFILE" \
        --arg args "$SWITCHD_ARGS" --arg gen "$GEN_MODE" \
        '(map(select(.id == "h" and .measured)) | first) as $h
         | (map(select(.id == "i" and .measured)) | first) as $i
         | def r($b): if $b == null or $b.mpps_per_direction == null or .mpps_per_direction == null
                      then null else .mpps_per_direction / $b.mpps_per_direction end;
         {date: $date, kernel: $kernel, cpu: $cpu, cores: $cores, duration_s: $duration,
          switchd: $switchd, switchd_workers: $workers, switchd_args: $args, generator_mode: $gen,
          commit: $commit, dpdk: $dpdk, ovs: $ovs,
          switchd_profile: $profile,
          setups: map(. + {ratio_to_h: r($h), ratio_to_i: r($i)})}' >"$JSON_OUT"
    log "results written to $JSON_OUT"
}

# ---------------------------------------------------------------------------------------------

main() {
    parse_args "$@"
    [[ $EUID -eq 0 ]] || die "run as root (sudo bench/vhost.sh): hugepages, DPDK and pinning need it"
    (($(nproc) >= 2)) || die "needs two cores (one for the generator, one for the switch)"
    exec 9>"$LOCK"
    flock -n 9 || die "another bench/vhost.sh is running"
    exec 8>"$E2E_LOCK"
    flock -n 8 || die "bench/e2e.sh is running; run one benchmark at a time"

    RUN=$(mktemp -d /tmp/vlanswitch-bench-vhost.XXXXXX)
    trap on_exit EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM

    remove_leftovers
    check_testpmd
    HAVE_OVS=0 WHY_NO_OVS="" HAVE_PERF=0
    if want i; then check_ovs; fi
    if ((PERF)) && want g; then check_perf; fi
    if [[ -n $JSON_OUT ]] && ! command -v jq >/dev/null 2>&1; then apt_install jq || true; fi

    SWITCHD_VERSION=""
    if want g && [[ -x $SWITCHD_SRC ]]; then
        # a private copy: a rebuild during the run does not change the binary under test
        SWITCHD=$RUN/switchd
        cp "$SWITCHD_SRC" "$SWITCHD"
        SWITCHD_VERSION="$("$SWITCHD" --version 2>/dev/null | head -n 1 || true), built $(date -r "$SWITCHD_SRC" '+%F %T')"
    fi
    DPDK_VERSION=$(dpkg-query -W -f '${Version}' dpdk-dev 2>/dev/null || true)
    OVS_VERSION=""
    ((HAVE_OVS == 0)) || OVS_VERSION=$("$OVS_DPDK_VSWITCHD" --version 2>/dev/null | head -n 1 || true)

    START_DATE=$(date -Iseconds)
    CPU_MODEL=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
    COMMIT=$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo unknown)
    printf 'vlanswitch vhost-user benchmark\n'
    printf 'date:    %s\n' "$START_DATE"
    printf 'kernel:  %s\n' "$(uname -r)"
    printf 'cpu:     %s (%s cores)\n' "$CPU_MODEL" "$(nproc)"
    printf 'load:    %s\n' "$(cut -d' ' -f1-3 /proc/loadavg)"
    [[ -z $SWITCHD_VERSION ]] || printf 'switchd: %s (repo at %s), workers: %s, options: %s\n' \
        "$SWITCHD_VERSION" "$COMMIT" "$SWITCHD_WORKERS" "${SWITCHD_ARGS:-none}"
    printf 'generator: testpmd forward mode %s\n' "$GEN_MODE"
    printf 'tools:   DPDK %s' "${DPDK_VERSION:-not installed}"
    [[ -z $OVS_VERSION ]] || printf '; %s' "$OVS_VERSION"
    printf '\nduration: %s s per setup (after %s s warm-up); generator on CPU %s, switch on CPU %s\n' \
        "$DURATION" "$WARMUP_SECS" "$GEN_CPU" "$SWITCH_CPU"
    if awk '{ exit !($1 > 0.5) }' /proc/loadavg; then
        printf 'warning: the machine is not idle (load %s); figures will be noisy\n' \
            "$(cut -d' ' -f1 /proc/loadavg)"
    fi

    local s
    for s in "${SELECTED[@]}"; do run_setup "$s"; done

    print_table
    [[ -z $JSON_OUT ]] || write_json
    return "$FAILED"
}

main "$@"
