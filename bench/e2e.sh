#!/usr/bin/env bash
# End-to-end benchmark of switchd against other software switches.
#
# For each setup, two hosts (network namespaces) sit in one L2 segment behind one switch:
#   a  Linux kernel bridge over veths            (the reference for the ratios)
#   b  switchd, tap ports
#   c  switchd, netdev ports (veths, AF_PACKET)
#   d  vde_switch, tap ports                     (optional: package vde2)
#   e  Open vSwitch userspace datapath, taps     (optional: package openvswitch-switch)
#   f  Open vSwitch userspace datapath, veths    (optional: package openvswitch-switch)
# and the script measures TCP throughput (1 and 4 streams), 64-byte frames delivered per
# second, ping RTT, and the switch process's CPU and memory. Offloads are left at their
# defaults everywhere. See bench/README.md.
#
# Usage: sudo bench/e2e.sh [--only a,b,c] [--json FILE]
# Environment: DURATION (s, default 10), SWITCHD (binary), SWITCHD_WORKERS (default: switchd's),
#              SWITCHD_ARGS (more switchd options, split on spaces, e.g. "--poll-us 0"),
#              KEEP_LOGS=1 (keep the run directory with all logs).
#
# Traffic only ever flows between the two namespaces this script creates (198.18.0.1 and
# 198.18.0.2, inside them).
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DURATION=${DURATION:-10}
SWITCHD_SRC=${SWITCHD:-$REPO/target/release/switchd}
SWITCHD_WORKERS=${SWITCHD_WORKERS:-}
SWITCHD_ARGS=${SWITCHD_ARGS:-}
KEEP_LOGS=${KEEP_LOGS:-0}
IDLE_SECS=5
PING_COUNT=50

# Every name this script creates starts with "vsb" (vlanswitch bench).
NS1=vsb-h1 NS2=vsb-h2
IP1=198.18.0.1 IP2=198.18.0.2
HOST_IF=eth0 # the host's interface inside each namespace
IPERF_PORT=5201
LOCK=/run/lock/vlanswitch-bench-e2e.lock

ALL_SETUPS=(a b c d e f)
declare -A SETUP_NAME=(
    [a]="Linux bridge, veths"
    [b]="switchd, taps"
    [c]="switchd, netdev veths"
    [d]="vde_switch, taps"
    [e]="OVS userspace, taps"
    [f]="OVS userspace, veths"
)

SELECTED=("${ALL_SETUPS[@]}")
JSON_OUT=""

# What the current setup made, for teardown (and for the exit trap).
PIDS=()      # processes we started (children or daemons), killed by pid
LINKS=()     # interfaces in the root namespace we created
NETNS=()     # namespaces we created
SWITCH_PIDS=() # the switch's own processes, for CPU and RSS (empty for the kernel bridge)
SWITCHD_LOG=""

RUN=""       # private run directory (logs, topology files, OVS database)
declare -A R=()  # results: R[<setup>:<metric>]
declare -A NOTES=()
FAILED=0

# ---------------------------------------------------------------------------------------------
# helpers

log() { printf '%s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }
note() { # note SETUP TEXT...: a remark shown under the table and stored in the JSON
    local s=$1; shift
    log "  note: $*"
    NOTES[$s]+="${NOTES[$s]:+; }$*"
}
in_ns() { local ns=$1; shift; ip netns exec "$ns" "$@"; }
now() { date +%s.%N; }
calc() { awk "BEGIN { printf \"%.6f\", $* }"; }
fmt() { # fmt VALUE DECIMALS: prints "-" for an empty value
    if [[ -z ${1:-} ]]; then printf -- '-'; else awk -v v="$1" -v d="$2" 'BEGIN { printf "%.*f", d, v }'; fi
}

usage() {
    sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d' | sed 's/^# \{0,1\}//'
    exit "${1:-0}"
}

parse_args() {
    while (($#)); do
        case $1 in
            --only)
                [[ $# -ge 2 ]] || die "--only needs a list, e.g. --only a,b,c"
                IFS=, read -r -a SELECTED <<<"$2"
                local s
                for s in "${SELECTED[@]}"; do
                    [[ -n ${SETUP_NAME[$s]:-} ]] || die "unknown setup '$s' (known: ${ALL_SETUPS[*]})"
                done
                shift 2 ;;
            --json)
                [[ $# -ge 2 ]] || die "--json needs a file name"
                JSON_OUT=$2
                shift 2 ;;
            -h | --help) usage 0 ;;
            *) log "unknown argument: $1"; usage 2 ;;
        esac
    done
    [[ $DURATION =~ ^[0-9]+$ && $DURATION -ge 1 ]] || die "DURATION must be a whole number of seconds >= 1"
}

# Kills one process by pid: SIGTERM, then SIGKILL after 10 s. Waits for it.
stop_pid() {
    local pid=$1 i
    kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null || true; return 0; }
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 100; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        # a child that exited is a zombie until waited for; kill -0 still succeeds on it
        if [[ $(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null) == Z ]]; then break; fi
        sleep 0.1
    done
    kill -0 "$pid" 2>/dev/null && [[ $(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null) != Z ]] &&
        kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

# Removes everything the current setup made, newest process first. Safe to call twice.
teardown() {
    local i ns pid
    for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do stop_pid "${PIDS[i]}"; done
    # anything still running inside our namespaces was started by us (iperf3, trafgen, ping)
    for ns in "${NETNS[@]}"; do
        for pid in $(ip netns pids "$ns" 2>/dev/null); do stop_pid "$pid"; done
    done
    for i in "${LINKS[@]}"; do ip link del "$i" 2>/dev/null || true; done
    for ns in "${NETNS[@]}"; do ip netns del "$ns" 2>/dev/null || true; done
    PIDS=() LINKS=() NETNS=() SWITCH_PIDS=()
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

# Removes the namespaces and interfaces an earlier, killed run of this script left behind
# (same names). Its switch processes, if any, are only listed: they are not ours to kill.
remove_leftovers() {
    local ns l pid found=0
    for ns in $(ip netns list 2>/dev/null | awk '{print $1}' | grep '^vsb-' || true); do
        for pid in $(ip netns pids "$ns" 2>/dev/null); do stop_pid "$pid"; done
        ip netns del "$ns"; found=1
    done
    for l in $(ip -o link show 2>/dev/null | awk -F': ' '{print $2}' | cut -d@ -f1 | grep '^vsb' || true); do
        ip link del "$l" 2>/dev/null || true; found=1
    done
    ((found == 0)) || log "removed leftovers (vsb-* namespaces/interfaces) of an earlier run"
    local procs
    procs=$(pgrep -af '/tmp/vlanswitch-bench\.' || true)
    [[ -z $procs ]] || log "warning: processes of an earlier run are still running:
$procs"
}

# ---------------------------------------------------------------------------------------------
# installation

# need CMD PACKAGE: installs PACKAGE with apt if CMD is missing. Returns non-zero on failure.
APT_UPDATED=0
need() {
    local cmd=$1 pkg=$2
    command -v "$cmd" >/dev/null 2>&1 && return 0
    log "installing $pkg (for $cmd)"
    if ((APT_UPDATED == 0)); then
        apt-get update -qq >/dev/null 2>&1 || log "  apt-get update failed; trying the install anyway"
        APT_UPDATED=1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$pkg" >"$RUN/apt-$pkg.log" 2>&1 || {
        log "  apt-get install $pkg failed (see $RUN/apt-$pkg.log)"; return 1; }
    command -v "$cmd" >/dev/null 2>&1
}

install_tools() {
    need ip iproute2 || die "iproute2 is required"
    need iperf3 iperf3 || die "iperf3 is required"
    need trafgen netsniff-ng || die "trafgen (netsniff-ng) is required"
    need ping iputils-ping || die "ping (iputils-ping) is required"
    need jq jq || die "jq is required"
    HAVE_VDE=0 HAVE_OVS=0
    if want d; then need vde_switch vde2 && HAVE_VDE=1 || true; fi
    if want e || want f; then
        need ovs-vswitchd openvswitch-switch && need ovsdb-tool openvswitch-switch && HAVE_OVS=1 || true
    fi
}

want() { local s; for s in "${SELECTED[@]}"; do [[ $s == "$1" ]] && return 0; done; return 1; }

# ---------------------------------------------------------------------------------------------
# hosts

make_netns() {
    local ns=$1
    ip netns add "$ns"
    NETNS+=("$ns")
    ip -n "$ns" link set lo up
    # no IPv6: keeps neighbour discovery and MLD out of the frame counters
    in_ns "$ns" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
}

make_hosts() { make_netns "$NS1"; make_netns "$NS2"; }

# adopt_tap NS TAP ADDR: moves the kernel side of a tap (held by a switch) into NS as $HOST_IF
adopt_tap() {
    local ns=$1 tap=$2 addr=$3
    ip link set "$tap" netns "$ns" &&
        ip -n "$ns" link set "$tap" name "$HOST_IF" &&
        address_host "$ns" "$addr"
}

# veth_host NS PORT ADDR: a veth pair, PORT in the root namespace (for the switch), its peer
# $HOST_IF in NS
veth_host() {
    local ns=$1 port=$2 addr=$3
    ip link add "$port" type veth peer name "$HOST_IF" netns "$ns" || return 1
    LINKS+=("$port")
    address_host "$ns" "$addr"
}

address_host() {
    local ns=$1 addr=$2
    ip -n "$ns" addr add "$addr/24" dev "$HOST_IF" &&
        ip -n "$ns" link set "$HOST_IF" up
}

wait_reachable() {
    local i
    for ((i = 0; i < 20; i++)); do
        in_ns "$NS1" ping -c 1 -W 1 "$IP2" >/dev/null 2>&1 && return 0
        sleep 0.5
    done
    return 1
}

# ---------------------------------------------------------------------------------------------
# setups: each builds its switch between $NS1/$HOST_IF and $NS2/$HOST_IF and returns non-zero
# (with a note) when it cannot

setup_a() { # Linux bridge over veths
    ip link add vsb-br0 type bridge || return 1
    LINKS+=(vsb-br0)
    veth_host "$NS1" vsba1 "$IP1" && veth_host "$NS2" vsba2 "$IP2" &&
        ip link set vsba1 master vsb-br0 && ip link set vsba2 master vsb-br0 &&
        ip link set vsba1 up && ip link set vsba2 up && ip link set vsb-br0 up
}

# start_switchd SETUP TOPOLOGY_YAML: starts switchd and waits for "switch ready"
start_switchd() {
    local s=$1 yaml=$2 i args=()
    printf '%s\n' "$yaml" >"$RUN/topology-$s.yaml"
    SWITCHD_LOG=$RUN/switchd-$s.log
    args=(--topology "$RUN/topology-$s.yaml")
    if [[ -n $SWITCHD_WORKERS ]]; then args+=(--workers "$SWITCHD_WORKERS"); fi
    # shellcheck disable=SC2206 # split on purpose: several options
    if [[ -n $SWITCHD_ARGS ]]; then args+=($SWITCHD_ARGS); fi
    # keep the REST API (if this build has one) off TCP ports other instances may use
    if "$SWITCHD" --help 2>/dev/null | grep -q -- '--listen'; then
        args+=(--listen "unix:$RUN/switchd-$s.sock")
    fi
    RUST_LOG=info "$SWITCHD" "${args[@]}" 2>"$SWITCHD_LOG" >/dev/null 9>&- &
    local pid=$!
    PIDS+=("$pid")
    SWITCH_PIDS=("$pid")
    for ((i = 0; i < 200; i++)); do
        grep -q 'switch ready' "$SWITCHD_LOG" && return 0
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    note "$s" "switchd did not become ready; log: $(tail -n 5 "$SWITCHD_LOG" | tr '\n' ' ')"
    return 1
}

setup_b() { # switchd over taps it creates
    start_switchd b "vlans: [{ id: 10 }]
ports:
  - { name: vsbb1, kind: tap, mode: access, vlan: 10 }
  - { name: vsbb2, kind: tap, mode: access, vlan: 10 }" || return 1
    adopt_tap "$NS1" vsbb1 "$IP1" && adopt_tap "$NS2" vsbb2 "$IP2"
}

setup_c() { # switchd over veths attached as netdev ports (AF_PACKET)
    veth_host "$NS1" vsbc1 "$IP1" && veth_host "$NS2" vsbc2 "$IP2" || return 1
    start_switchd c "vlans: [{ id: 10 }]
ports:
  - { name: vsbc1, kind: netdev, mode: access, vlan: 10, admin_up: true }
  - { name: vsbc2, kind: netdev, mode: access, vlan: 10, admin_up: true }"
}

setup_d() { # vde_switch with its built-in tap module (-t), one tap per host
    if ((HAVE_VDE == 0)); then note d "vde2 not installed; skipped"; return 1; fi
    local i pid=""
    vde_switch -t vsbd1 -t vsbd2 -s "$RUN/vde.ctl" -M "$RUN/vde.mgmt" \
        -d -p "$RUN/vde.pid" </dev/null >"$RUN/vde.log" 2>&1 9>&- || {
        note d "vde_switch failed to start: $(tr '\n' ' ' <"$RUN/vde.log")"; return 1; }
    for ((i = 0; i < 50; i++)); do
        [[ -s $RUN/vde.pid ]] && pid=$(<"$RUN/vde.pid") && [[ -n $pid ]] && break
        sleep 0.1
    done
    [[ -n $pid ]] || { note d "vde_switch wrote no pid file"; return 1; }
    PIDS+=("$pid")
    SWITCH_PIDS=("$pid")
    for ((i = 0; i < 50; i++)); do
        ip link show vsbd2 >/dev/null 2>&1 && break
        sleep 0.1
    done
    adopt_tap "$NS1" vsbd1 "$IP1" && adopt_tap "$NS2" vsbd2 "$IP2"
}

# Open vSwitch, userspace (netdev) datapath, with its own database and run directory.
OVS_DB=""
ovs_vsctl() { ovs-vsctl --db="unix:$OVS_DB" --timeout=20 "$@"; }

start_ovs() {
    local s=$1 dir=$RUN/ovs-$1 i
    mkdir -p "$dir"
    export OVS_RUNDIR=$dir OVS_LOGDIR=$dir OVS_DBDIR=$dir OVS_SYSCONFDIR=$dir
    OVS_DB=$dir/db.sock
    ovsdb-tool create "$dir/conf.db" /usr/share/openvswitch/vswitch.ovsschema >/dev/null || {
        note "$s" "ovsdb-tool create failed"; return 1; }
    ovsdb-server "$dir/conf.db" --remote="punix:$OVS_DB" --unixctl="$dir/ovsdb-server.ctl" \
        --pidfile="$dir/ovsdb-server.pid" --log-file="$dir/ovsdb-server.log" \
        >"$dir/ovsdb-server.out" 2>&1 9>&- &
    PIDS+=("$!")
    for ((i = 0; i < 100; i++)); do [[ -S $OVS_DB ]] && break; sleep 0.1; done
    [[ -S $OVS_DB ]] || { note "$s" "ovsdb-server did not start"; return 1; }
    ovs_vsctl --no-wait init || { note "$s" "ovs-vsctl init failed"; return 1; }
    ovs-vswitchd "unix:$OVS_DB" --unixctl="$dir/ovs-vswitchd.ctl" \
        --pidfile="$dir/ovs-vswitchd.pid" --log-file="$dir/ovs-vswitchd.log" \
        >"$dir/ovs-vswitchd.out" 2>&1 9>&- &
    local pid=$!
    PIDS+=("$pid")
    SWITCH_PIDS=("$pid")
    ovs_vsctl add-br vsb-ovs -- set bridge vsb-ovs datapath_type=netdev || {
        note "$s" "ovs-vsctl add-br failed; see $dir/ovs-vswitchd.log"; return 1; }
    LINKS+=(vsb-ovs)
}

setup_e() { # OVS userspace datapath, tap ports (OVS creates the taps)
    if ((HAVE_OVS == 0)); then note e "openvswitch-switch not installed; skipped"; return 1; fi
    start_ovs e || return 1
    ovs_vsctl add-port vsb-ovs vsbe1 tag=10 -- set interface vsbe1 type=tap &&
        ovs_vsctl add-port vsb-ovs vsbe2 tag=10 -- set interface vsbe2 type=tap || {
        note e "ovs-vsctl add-port failed"; return 1; }
    adopt_tap "$NS1" vsbe1 "$IP1" && adopt_tap "$NS2" vsbe2 "$IP2"
}

setup_f() { # OVS userspace datapath, veths (AF_PACKET)
    if ((HAVE_OVS == 0)); then note f "openvswitch-switch not installed; skipped"; return 1; fi
    veth_host "$NS1" vsbf1 "$IP1" && veth_host "$NS2" vsbf2 "$IP2" || return 1
    ip link set vsbf1 up && ip link set vsbf2 up || return 1
    start_ovs f || return 1
    ovs_vsctl add-port vsb-ovs vsbf1 tag=10 && ovs_vsctl add-port vsb-ovs vsbf2 tag=10 || {
        note f "ovs-vsctl add-port failed"; return 1; }
}

# ---------------------------------------------------------------------------------------------
# measurements

# CPU ticks (utime + stime, all threads) of the switch processes (a gone process counts 0)
switch_ticks() {
    local pid t=0
    for pid in "${SWITCH_PIDS[@]}"; do
        t=$((t + $(awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$pid/stat" 2>/dev/null || echo 0)))
    done
    echo "$t"
}

# switch_running: all switch processes still run (a zombie has exited)
switch_running() {
    local pid
    for pid in "${SWITCH_PIDS[@]}"; do
        kill -0 "$pid" 2>/dev/null || return 1
        [[ $(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null) != Z ]] || return 1
    done
}

# switch_alive SETUP: like switch_running, and notes (once) that the switch died, e.g.
# crashed under load
SWITCH_DIED=0
switch_alive() {
    local s=$1
    switch_running && return 0
    if ((SWITCH_DIED == 0)); then
        note "$s" "the switch process exited during the measurements; later figures are missing"
        [[ $s != b && $s != c ]] || FAILED=1
        SWITCH_DIED=1
    fi
    return 1
}
CLK_TCK=$(getconf CLK_TCK)
cpu_percent() { # cpu_percent TICKS0 TICKS1 T0 T1
    calc "($2 - $1) / $CLK_TCK / ($4 - $3) * 100"
}

measure_ping() {
    local s=$1 out
    if out=$(in_ns "$NS1" ping -q -c "$PING_COUNT" -i 0.01 -W 1 "$IP2" 2>&1); then
        # rtt min/avg/max/mdev = 0.011/0.015/0.040/0.004 ms
        R[$s:ping_us]=$(awk -F'[/ ]+' '/^rtt/ { printf "%.1f", $8 * 1000 }' <<<"$out")
        local loss
        loss=$(grep -o '[0-9.]*% packet loss' <<<"$out" | cut -d% -f1 || true)
        [[ $loss == 0 ]] || note "$s" "ping: ${loss}% loss"
    else
        note "$s" "ping failed: $(tail -n 2 <<<"$out" | tr '\n' ' ')"
    fi
}

start_iperf_server() {
    in_ns "$NS2" iperf3 -s -1 -B "$IP2" -p "$IPERF_PORT" >"$RUN/iperf3-server.log" 2>&1 9>&- &
    PIDS+=("$!")
    local i
    for ((i = 0; i < 50; i++)); do
        in_ns "$NS2" ss -Hltn "sport = :$IPERF_PORT" | grep -q . && return 0
        sleep 0.1
    done
    return 1
}

# measure_tcp SETUP STREAMS KEY: iperf3 from host1 to host2; sets R[SETUP:KEY] (Gbit/s) and
# R[SETUP:cpu_KEY] (switch CPU% over the run)
measure_tcp() {
    local s=$1 streams=$2 key=$3 gbps t0 t1 c0 c1 err
    local json=$RUN/iperf3-$s-$key.json
    start_iperf_server || { note "$s" "iperf3 server did not start"; return; }
    t0=$(now); c0=$(switch_ticks)
    timeout $((DURATION + 20)) ip netns exec "$NS1" iperf3 -c "$IP2" -p "$IPERF_PORT" \
        -t "$DURATION" -P "$streams" --connect-timeout 3000 -J >"$json" 2>&1 || true
    t1=$(now); c1=$(switch_ticks)
    stop_pid "${PIDS[-1]}"; unset 'PIDS[-1]'
    if ((${#SWITCH_PIDS[@]} > 0)) && switch_running; then
        R[$s:cpu_$key]=$(cpu_percent "$c0" "$c1" "$t0" "$t1")
    fi
    gbps=$(jq -r '(.end.sum_received.bits_per_second // empty) / 1e9' "$json" 2>/dev/null || true)
    err=$(jq -r '.error // empty' "$json" 2>/dev/null || true)
    if [[ -n $gbps && -z $err ]]; then
        R[$s:$key]=$(fmt "$gbps" 3)
        # a transfer that stalls after a few frames is broken, not slow
        if awk -v g="$gbps" 'BEGIN { exit !(g < 0.01) }'; then
            note "$s" "TCP x$streams: only $(fmt "$gbps" 4) Gbit/s, effectively broken"
        fi
    else
        [[ -n $err ]] || err="no result (timed out or no JSON): $(head -c 200 "$json" | tr '\n' ' ')"
        note "$s" "TCP x$streams broken: $err"
        R[$s:$key]=0
        R[$s:${key}_broken]=1
    fi
}

# link_stat NS FIELD: tx/rx packet counters of $HOST_IF in NS (FIELD like rx.packets)
link_stat() { ip -n "$1" -s -j link show "$HOST_IF" | jq -r ".[0].stats64.$2"; }

# 64-byte frames: trafgen in host1 sends UDP frames of 60 bytes (64 on the wire with the FCS)
# to host2's MAC as fast as it can, from one CPU, for $DURATION s. host2's rx_packets counts
# what arrived; host1's tx_packets + tx_dropped count what was offered.
measure_64b() {
    local s=$1 mac1 mac2 cfg=$RUN/trafgen.cfg out rx0 rx1 drop0 drop1 tx0 tx1 t0 t1 c0 c1 sent elapsed
    mac1=$(in_ns "$NS1" cat "/sys/class/net/$HOST_IF/address")
    mac2=$(in_ns "$NS2" cat "/sys/class/net/$HOST_IF/address")
    cat >"$cfg" <<EOF
{
  eth(da=$mac2, sa=$mac1, type=0x0800),
  ipv4(saddr=$IP1, daddr=$IP2, ttl=64),
  udp(sport=9, dport=9),
  fill(0x00, 18)
}
EOF
    rx0=$(link_stat "$NS2" rx.packets)
    drop0=$(link_stat "$NS1" tx.dropped)
    tx0=$(link_stat "$NS1" tx.packets)
    t0=$(now); c0=$(switch_ticks)
    # -P 1: one sender process; --no-sock-mem/--notouch-irq: leave socket memory sysctls and IRQ affinity alone
    out=$(in_ns "$NS1" timeout -s INT "$DURATION" trafgen -o "$HOST_IF" -i "$cfg" -P 1 --no-sock-mem --notouch-irq 2>&1) || true
    t1=$(now); c1=$(switch_ticks)
    if ((${#SWITCH_PIDS[@]} > 0)) && switch_running; then
        R[$s:cpu_64b]=$(cpu_percent "$c0" "$c1" "$t0" "$t1")
    fi
    sleep 0.5 # let queued frames drain
    rx1=$(link_stat "$NS2" rx.packets)
    drop1=$(link_stat "$NS1" tx.dropped)
    tx1=$(link_stat "$NS1" tx.packets)
    printf '%s\n' "$out" >"$RUN/trafgen-$s.log"
    # trafgen redraws its progress line with \r
    sent=$(tr '\r' '\n' <<<"$out" | awk '$2 == "packets" && $3 == "outgoing" { print $1; exit }')
    elapsed=$(calc "$t1 - $t0")
    if ! [[ $sent =~ ^[0-9]+$ && $sent -gt 0 ]]; then
        note "$s" "trafgen sent nothing: $(tail -n 3 <<<"$out" | tr '\n' ' ')"
        return
    fi
    # Offered = what host1's interface sent plus what it dropped itself. trafgen counts only
    # the frames the interface accepted, and a tap whose reader (the switch) falls behind
    # drops the rest at the sender (tx_dropped); a veth passes them on and the switch's
    # socket drops them instead.
    local offered=$((tx1 - tx0 + drop1 - drop0))
    R[$s:kpps]=$(calc "($rx1 - $rx0) / $elapsed / 1000")
    R[$s:offered_kpps]=$(calc "$offered / $elapsed / 1000")
    R[$s:delivered_pct]=$(calc "($rx1 - $rx0) * 100 / $offered")
    R[$s:h1_tx_dropped_kpps]=$(calc "($drop1 - $drop0) / $elapsed / 1000")
    R[$s:trafgen_kpps]=$(calc "$sent / $elapsed / 1000")
}

measure_idle() {
    local s=$1 t0 t1 c0 c1
    ((${#SWITCH_PIDS[@]} > 0)) || return 0
    log "  idle CPU"
    sleep 1
    t0=$(now); c0=$(switch_ticks)
    sleep "$IDLE_SECS"
    t1=$(now); c1=$(switch_ticks)
    R[$s:idle_cpu]=$(cpu_percent "$c0" "$c1" "$t0" "$t1")
}

measure_rss() {
    local s=$1 pid kb=0
    ((${#SWITCH_PIDS[@]} > 0)) || return 0
    for pid in "${SWITCH_PIDS[@]}"; do
        kb=$((kb + $(awk '/^VmRSS:/ { print $2 }' "/proc/$pid/status" 2>/dev/null || echo 0)))
    done
    R[$s:rss_mb]=$(calc "$kb / 1024")
}

# After switchd stopped: its per-port counters, when any drop counter is non-zero.
switchd_drops() {
    local s=$1 line
    [[ -n $SWITCHD_LOG && -f $SWITCHD_LOG ]] || return 0
    while read -r line; do
        note "$s" "switchd counters: $line"
    done < <(grep ' stats ' "$SWITCHD_LOG" | grep -E 'drop_[a-z_]+=[1-9]' |
        sed -E 's/.* stats //; s/\x1b\[[0-9;]*m//g' || true)
    SWITCHD_LOG=""
}

# ---------------------------------------------------------------------------------------------
# one setup, start to finish

run_setup() {
    local s=$1
    log ""
    log "== $s: ${SETUP_NAME[$s]}"
    R[$s:load1]=$(cut -d' ' -f1 /proc/loadavg)
    SWITCH_DIED=0
    make_hosts
    if ! "setup_$s"; then
        R[$s:skipped]=1
        # the switch under test must come up; an optional peer may be missing
        [[ $s != b && $s != c ]] || FAILED=1
        [[ -n ${NOTES[$s]:-} ]] || note "$s" "setup failed (see the messages above)"
        teardown
        return
    fi
    if ! wait_reachable; then
        note "$s" "host1 cannot ping host2; not measured"
        R[$s:skipped]=1
        FAILED=1
        teardown
        switchd_drops "$s"
        return
    fi
    log "  ping";           measure_ping "$s"
    log "  TCP, 1 stream";  measure_tcp "$s" 1 tcp1
    if switch_alive "$s"; then log "  TCP, 4 streams"; measure_tcp "$s" 4 tcp4; fi
    if switch_alive "$s"; then log "  64-byte frames"; measure_64b "$s"; fi
    if switch_alive "$s"; then measure_idle "$s"; measure_rss "$s"; fi
    teardown
    switchd_drops "$s"
}

# ---------------------------------------------------------------------------------------------
# report

ratio() { # ratio VALUE BASE: "(0.46x)", or nothing
    [[ -n ${1:-} && -n ${2:-} ]] || return 0
    awk -v v="$1" -v b="$2" 'BEGIN { if (b > 0) printf " (%.2fx)", v / b }'
}

cell_rate() { # cell_rate SETUP KEY DECIMALS: value with its ratio to the bridge
    local s=$1 k=$2 d=$3 v
    v=${R[$s:$k]:-}
    [[ -n $v ]] || { printf -- '-'; return; }
    if [[ -n ${R[$s:${k}_broken]:-} ]]; then printf 'broken'; return; fi
    printf '%s%s' "$(fmt "$v" "$d")" "$([[ $s == a ]] || ratio "$v" "${R[a:$k]:-}")"
}

print_table() {
    local fmtstr="%-24s %-15s %-15s %-14s %8s  %-14s %5s %7s %6s\n" s
    printf '\n'
    printf "$fmtstr" "setup" "TCP 1 Gbit/s" "TCP 4 Gbit/s" "64B kpps" "%offered" "ping us" \
        "CPU%" "RSS MB" "idle%"
    for s in "${SELECTED[@]}"; do
        if [[ -n ${R[$s:skipped]:-} ]]; then
            printf "$fmtstr" "$s ${SETUP_NAME[$s]}" "not run" "" "" "" "" "" "" ""
            continue
        fi
        printf "$fmtstr" "$s ${SETUP_NAME[$s]}" "$(cell_rate "$s" tcp1 2)" "$(cell_rate "$s" tcp4 2)" \
            "$(cell_rate "$s" kpps 0)" "$(fmt "${R[$s:delivered_pct]:-}" 0)" \
            "$(cell_rate "$s" ping_us 0)" "$(fmt "${R[$s:cpu_tcp1]:-}" 0)" \
            "$(fmt "${R[$s:rss_mb]:-}" 1)" "$(fmt "${R[$s:idle_cpu]:-}" 1)"
    done
    printf '\n'
    printf 'Ratios (in parentheses) are to the Linux bridge (a) of this run; for ping, lower is better.\n'
    printf '64B kpps: frames delivered to host2 per second; %%offered: their share of what host1 offered.\n'
    printf 'CPU%%: switch process(es) over the 1-stream TCP run (100 = one core); idle%%: over %s s without traffic.\n' "$IDLE_SECS"
    printf 'RSS: after the run. OVS: ovs-vswitchd only. Duration %s s per throughput test.\n' "$DURATION"
    for s in "${SELECTED[@]}"; do
        [[ -z ${R[$s:offered_kpps]:-} ]] ||
            printf '  %s: 64B offered %s kpps, of which %s kpps dropped by host1'"'"'s own interface\n' "$s" \
                "$(fmt "${R[$s:offered_kpps]}" 0)" "$(fmt "${R[$s:h1_tx_dropped_kpps]:-}" 0)"
    done
    local any=0
    for s in "${SELECTED[@]}"; do
        [[ -n ${NOTES[$s]:-} ]] || continue
        ((any)) || printf '\nNotes:\n'
        any=1
        printf '  %s: %s\n' "$s" "${NOTES[$s]}"
    done
    print_targets
}

# The design's targets, where this run has the figures to check them.
print_targets() {
    local s=b lines=()
    for s in b c; do
        want "$s" && [[ -z ${R[$s:skipped]:-} ]] || continue
        local tcp=${R[$s:tcp1]:-} br_tcp=${R[a:tcp1]:-} ping=${R[$s:ping_us]:-} br_ping=${R[a:ping_us]:-}
        if [[ -n $tcp && -n $br_tcp ]]; then
            lines+=("$s TCP >= 0.5x bridge: $(awk -v v="$tcp" -v b="$br_tcp" 'BEGIN { printf "%.2fx %s", v/b, (v/b >= 0.5 ? "met" : "NOT met") }')")
        fi
        if [[ -n $ping && -n $br_ping ]]; then
            lines+=("$s ping <= 2x bridge: $(awk -v v="$ping" -v b="$br_ping" 'BEGIN { printf "%.2fx %s", v/b, (v/b <= 2 ? "met" : "NOT met") }')")
        fi
        local peer
        for peer in d e f; do
            [[ -n ${R[$s:kpps]:-} && -n ${R[$peer:kpps]:-} ]] || continue
            lines+=("$s 64B >= 3x $peer: $(awk -v v="${R[$s:kpps]}" -v b="${R[$peer:kpps]}" 'BEGIN { printf "%.2fx %s", v/b, (v/b >= 3 ? "met" : "NOT met") }')")
        done
        [[ -z ${R[$s:idle_cpu]:-} ]] ||
            lines+=("$s idle ~0% CPU: $(fmt "${R[$s:idle_cpu]}" 2)%")
    done
    ((${#lines[@]})) || return 0
    printf '\nTargets (docs: shared DESIGN.md "Targets"):\n'
    printf '  %s\n' "${lines[@]}"
}

json_num() { # a number, or null
    [[ -n ${1:-} ]] && printf '%s' "$1" || printf 'null'
}

write_json() {
    local s rows=()
    for s in "${SELECTED[@]}"; do
        rows+=("$(jq -n \
            --arg id "$s" --arg name "${SETUP_NAME[$s]}" \
            --argjson measured "$([[ -z ${R[$s:skipped]:-} ]] && echo true || echo false)" \
            --argjson tcp1 "$(json_num "${R[$s:tcp1]:-}")" \
            --argjson tcp4 "$(json_num "${R[$s:tcp4]:-}")" \
            --argjson tcp1_broken "$([[ -n ${R[$s:tcp1_broken]:-} ]] && echo true || echo false)" \
            --argjson tcp4_broken "$([[ -n ${R[$s:tcp4_broken]:-} ]] && echo true || echo false)" \
            --argjson kpps "$(json_num "${R[$s:kpps]:-}")" \
            --argjson offered "$(json_num "${R[$s:offered_kpps]:-}")" \
            --argjson pct "$(json_num "${R[$s:delivered_pct]:-}")" \
            --argjson h1drop "$(json_num "${R[$s:h1_tx_dropped_kpps]:-}")" \
            --argjson tgen "$(json_num "${R[$s:trafgen_kpps]:-}")" \
            --argjson ping "$(json_num "${R[$s:ping_us]:-}")" \
            --argjson cpu1 "$(json_num "${R[$s:cpu_tcp1]:-}")" \
            --argjson cpu4 "$(json_num "${R[$s:cpu_tcp4]:-}")" \
            --argjson cpu64 "$(json_num "${R[$s:cpu_64b]:-}")" \
            --argjson rss "$(json_num "${R[$s:rss_mb]:-}")" \
            --argjson idle "$(json_num "${R[$s:idle_cpu]:-}")" \
            --argjson load1 "$(json_num "${R[$s:load1]:-}")" \
            --arg notes "${NOTES[$s]:-}" \
            '{id: $id, name: $name, measured: $measured,
              tcp_1_stream_gbps: $tcp1, tcp_1_stream_broken: $tcp1_broken,
              tcp_4_streams_gbps: $tcp4, tcp_4_streams_broken: $tcp4_broken,
              frames_64b_delivered_kpps: $kpps, frames_64b_offered_kpps: $offered,
              frames_64b_delivered_pct: $pct, frames_64b_host1_tx_dropped_kpps: $h1drop,
              frames_64b_trafgen_sent_kpps: $tgen,
              ping_rtt_avg_us: $ping,
              switch_cpu_pct_tcp_1_stream: $cpu1, switch_cpu_pct_tcp_4_streams: $cpu4,
              switch_cpu_pct_64b: $cpu64,
              switch_rss_mb: $rss, switch_idle_cpu_pct: $idle, loadavg_1min_before: $load1,
              notes: $notes}')")
    done
    printf '%s\n' "${rows[@]}" | jq -s \
        --arg date "$START_DATE" --arg kernel "$(uname -r)" --arg cpu "$CPU_MODEL" \
        --argjson cores "$(nproc)" --argjson duration "$DURATION" --arg switchd "$SWITCHD_VERSION" \
        --arg commit "$COMMIT" --arg workers "${SWITCHD_WORKERS:-default}" --arg args "$SWITCHD_ARGS" \
        '(map(select(.id == "a" and .measured)) | first) as $br
         | def ratio($k): if $br == null or $br[$k] == null or $br[$k] == 0 or .[$k] == null
                          then null else .[$k] / $br[$k] end;
         {date: $date, kernel: $kernel, cpu: $cpu, cores: $cores, duration_s: $duration,
          switchd: $switchd, switchd_workers: $workers, switchd_args: $args, commit: $commit,
          setups: map(. + {ratio_to_bridge: {
              tcp_1_stream: ratio("tcp_1_stream_gbps"), tcp_4_streams: ratio("tcp_4_streams_gbps"),
              frames_64b_delivered: ratio("frames_64b_delivered_kpps"),
              ping_rtt: ratio("ping_rtt_avg_us")}})}' >"$JSON_OUT"
    log "results written to $JSON_OUT"
}

# ---------------------------------------------------------------------------------------------

main() {
    parse_args "$@"
    [[ $EUID -eq 0 ]] || die "run as root (sudo bench/e2e.sh): namespaces, taps and veths need it"
    exec 9>"$LOCK"
    flock -n 9 || die "another bench/e2e.sh is running"

    RUN=$(mktemp -d /tmp/vlanswitch-bench.XXXXXX)
    trap on_exit EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM

    install_tools
    remove_leftovers

    if want b || want c; then
        [[ -x $SWITCHD_SRC ]] || die "no switchd binary at $SWITCHD_SRC (cargo build --release -p switchd, or set SWITCHD)"
        # a private copy: a rebuild during the run does not change the binary under test
        SWITCHD=$RUN/switchd
        cp "$SWITCHD_SRC" "$SWITCHD"
        SWITCHD_VERSION="$("$SWITCHD" --version 2>/dev/null | head -n 1 || true), built $(date -r "$SWITCHD_SRC" '+%F %T')"
    else
        SWITCHD_VERSION=""
    fi

    START_DATE=$(date -Iseconds)
    CPU_MODEL=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
    COMMIT=$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo unknown)
    printf 'vlanswitch end-to-end benchmark\n'
    printf 'date:    %s\n' "$START_DATE"
    printf 'kernel:  %s\n' "$(uname -r)"
    printf 'cpu:     %s (%s cores)\n' "$CPU_MODEL" "$(nproc)"
    printf 'load:    %s\n' "$(cut -d' ' -f1-3 /proc/loadavg)"
    [[ -z $SWITCHD_VERSION ]] || printf 'switchd: %s (repo at %s), workers: %s, options: %s\n' \
        "$SWITCHD_VERSION" "$COMMIT" "${SWITCHD_WORKERS:-default}" "${SWITCHD_ARGS:-none}"
    printf 'tools:   %s; %s' "$(iperf3 --version | head -n 1)" "$(trafgen -v 2>&1 | head -n 1)"
    ((HAVE_VDE == 0)) || printf '; %s' "$(dpkg-query -W -f 'vde2 ${Version}' vde2 2>/dev/null)"
    ((HAVE_OVS == 0)) || printf '; %s' "$(ovs-vswitchd --version | head -n 1)"
    printf '\nduration: %s s per throughput test\n' "$DURATION"
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

# run only when executed: bench/vxlan.sh sources this file for its helpers
if [[ ${BASH_SOURCE[0]} == "$0" ]]; then main "$@"; fi
