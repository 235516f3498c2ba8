#!/usr/bin/env bash
# Two-host VXLAN benchmark: VLAN 10 carried between two hosts as VNI 1010, by the kernel
# and by switchd.
#
# Each setup has two hosts (network namespaces vsb-h1, vsb-h2) joined by a veth underlay
# (ul1 192.0.2.1/24, ul2 192.0.2.2/24), and behind each host one VM (namespace vsb-vm1
# 198.18.10.1/24, vsb-vm2 198.18.10.2/24):
#   a  kernel: in each host a Linux bridge with a vxlan interface and a veth to the VM
#   b  switchd: in each host switchd, the VM on a tap port (VLAN 10), VNI 1010 to the
#      other host (its own vxlan interface, or one made by hand when this switchd does not
#      know the topology's `vxlan:` section yet)
# and the script measures TCP throughput VM1 -> VM2 (1 and 4 streams), ping RTT, and for
# b the CPU and memory of both switchd processes. Offloads are left at their defaults.
# See bench/README.md.
#
# Usage: sudo bench/vxlan.sh [--only a,b] [--json FILE]
# Environment: DURATION (s, default 10), UNDERLAY_MTU (default 1550; the VMs get 50 less),
#              SWITCHD (binary), SWITCHD_WORKERS (default: switchd's),
#              SWITCHD_ARGS (more switchd options, split on spaces, e.g. "--poll-us 0"),
#              KEEP_LOGS=1 (keep the run directory with all logs).
#
# Traffic only ever flows between the namespaces this script creates.
set -euo pipefail

# The helpers (processes, teardown, exit trap, leftovers, installation, CPU, ping, iperf3,
# ratios) are bench/e2e.sh's; sourcing it defines them without running its main.
# shellcheck source=bench/e2e.sh
source "$(dirname "${BASH_SOURCE[0]}")/e2e.sh"

UNDERLAY_MTU=${UNDERLAY_MTU:-1550}
VXLAN_OVERHEAD=50 # outer Ethernet 14 + IPv4 20 + UDP 8 + VXLAN 8
VNI=1010 VLAN=10 VXLAN_PORT=4789
SWITCHD_LISTEN=127.0.0.1:7390 # inside each host namespace, so the two do not collide

# Every name this script creates starts with "vsb"; the interfaces live in the namespaces.
HNS1=vsb-h1 HNS2=vsb-h2            # the hosts
NS1=vsb-vm1 NS2=vsb-vm2            # the VMs; e2e.sh's ping and iperf3 helpers use NS1 -> NS2
UL1=ul1 UL2=ul2                    # underlay veth ends, in the hosts
UIP1=192.0.2.1 UIP2=192.0.2.2      # underlay addresses
IP1=198.18.10.1 IP2=198.18.10.2    # the VMs' addresses
HOST_IF=eth0                       # the VM's interface inside its namespace
LOCK=/run/lock/vlanswitch-bench-vxlan.lock
E2E_LOCK=/run/lock/vlanswitch-bench-e2e.lock # same vsb names: never next to bench/e2e.sh

ALL_SETUPS=(a b)
SETUP_NAME=(
    [a]="kernel bridge + vxlan"
    [b]="switchd + vxlan"
)
SELECTED=("${ALL_SETUPS[@]}")

SWITCHD_LOGS=()   # b: one log per host

usage() {
    sed -n '2,/^set -euo/p' "$REPO/bench/vxlan.sh" | sed '$d' | sed 's/^# \{0,1\}//'
    exit "${1:-0}"
}

in_h() { local ns=$1; shift; ip -n "$ns" "$@"; } # ip command in a host namespace

# ---------------------------------------------------------------------------------------------
# hosts, underlay, VMs

# make_hosts: both hosts joined by the underlay veth, and both (empty) VM namespaces
make_hosts() {
    make_netns "$HNS1"; make_netns "$HNS2"; make_netns "$NS1"; make_netns "$NS2"
    in_h "$HNS1" link add "$UL1" type veth peer name "$UL2" netns "$HNS2"
    in_h "$HNS1" link set "$UL1" mtu "$UNDERLAY_MTU"
    in_h "$HNS2" link set "$UL2" mtu "$UNDERLAY_MTU"
    in_h "$HNS1" addr add "$UIP1/24" dev "$UL1"
    in_h "$HNS2" addr add "$UIP2/24" dev "$UL2"
    in_h "$HNS1" link set "$UL1" up
    in_h "$HNS2" link set "$UL2" up
}

# vxlan_link HOST NAME LOCAL REMOTE DEV: the kernel vxlan interface for VNI $VNI, up
vxlan_link() {
    local h=$1 name=$2 lip=$3 rip=$4 dev=$5
    in_h "$h" link add "$name" type vxlan id "$VNI" local "$lip" remote "$rip" \
        dstport "$VXLAN_PORT" dev "$dev" &&
        in_h "$h" link set "$name" mtu "$VM_MTU" up
}

# vm_if VM ADDR: addresses the VM's $HOST_IF, sets its MTU and brings it up
vm_if() {
    local vm=$1 addr=$2
    ip -n "$vm" link set "$HOST_IF" mtu "$VM_MTU" && address_host "$vm" "$addr"
}

# ---------------------------------------------------------------------------------------------
# setups

setup_a() { # per host: bridge br0 with vx1010 and a veth vm1 whose peer is the VM's eth0
    local h vm lip rip ul addr i=0
    for h in "$HNS1" "$HNS2"; do
        i=$((i + 1))
        if ((i == 1)); then vm=$NS1 lip=$UIP1 rip=$UIP2 ul=$UL1 addr=$IP1
        else vm=$NS2 lip=$UIP2 rip=$UIP1 ul=$UL2 addr=$IP2; fi
        in_h "$h" link add br0 type bridge &&
            vxlan_link "$h" vx1010 "$lip" "$rip" "$ul" &&
            in_h "$h" link set vx1010 master br0 &&
            in_h "$h" link add vm1 mtu "$VM_MTU" type veth peer name "$HOST_IF" netns "$vm" &&
            in_h "$h" link set vm1 master br0 &&
            in_h "$h" link set vm1 up &&
            in_h "$h" link set br0 up &&
            vm_if "$vm" "$addr" || return 1
    done
}

# switchd_topology LOCAL REMOTE: the topology of one host's switchd
switchd_topology() {
    printf '%s\n' "vxlan: { local: $1, remotes: [$2] }" \
        "vlans: [{ id: $VLAN, vni: $VNI }]" \
        "ports:" \
        "  - { name: vm1, kind: tap, mode: access, vlan: $VLAN, admin_up: true }"
}

# start_switchd_in SETUP HOST TOPOLOGY_FILE: switchd in the host's namespace, until "switch ready"
start_switchd_in() {
    local s=$1 h=$2 topo=$3 i args=() log=$RUN/switchd-$s-$2.log
    args=(--topology "$topo" --listen "$SWITCHD_LISTEN")
    if [[ -n $SWITCHD_WORKERS ]]; then args+=(--workers "$SWITCHD_WORKERS"); fi
    # shellcheck disable=SC2206 # split on purpose: several options
    if [[ -n $SWITCHD_ARGS ]]; then args+=($SWITCHD_ARGS); fi
    # ip netns exec execs switchd itself, so $! is switchd's pid
    RUST_LOG=info ip netns exec "$h" "$SWITCHD" "${args[@]}" 2>"$log" >/dev/null 8>&- 9>&- &
    local pid=$!
    PIDS+=("$pid")
    SWITCH_PIDS+=("$pid")
    SWITCHD_LOGS+=("$log")
    for ((i = 0; i < 200; i++)); do
        grep -q 'switch ready' "$log" && return 0
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    note "$s" "switchd in $h did not become ready; log: $(tail -n 5 "$log" | tr '\n' ' ')"
    return 1
}

setup_b() { # per host: switchd with tap vm1 (moved into the VM as eth0) and VNI 1010
    local h vm lip rip ul addr topo i=0
    SWITCHD_LOGS=()
    for h in "$HNS1" "$HNS2"; do
        i=$((i + 1))
        if ((i == 1)); then vm=$NS1 lip=$UIP1 rip=$UIP2 ul=$UL1 addr=$IP1
        else vm=$NS2 lip=$UIP2 rip=$UIP1 ul=$UL2 addr=$IP2; fi
        topo=$RUN/topology-b-$h.yaml
        switchd_topology "$lip" "$rip" >"$topo"
        start_switchd_in b "$h" "$topo" || return 1
        if ! in_h "$h" link show "vxlan$VNI" >/dev/null 2>&1; then
            note b "switchd in $h made no vxlan$VNI interface"; return 1
        fi
        # the tap switchd made: into the VM, as its eth0
        in_h "$h" link set vm1 netns "$vm" &&
            ip -n "$vm" link set vm1 name "$HOST_IF" &&
            vm_if "$vm" "$addr" || { note b "cannot move tap vm1 from $h into $vm"; return 1; }
    done
    R[b:vxlan_mtu]=$(in_h "$HNS1" -j link show "vxlan$VNI" | jq -r '.[0].mtu')
    [[ ${R[b:vxlan_mtu]} == "$VM_MTU" ]] ||
        note b "vxlan$VNI has MTU ${R[b:vxlan_mtu]}, the VMs $VM_MTU"
}

# ---------------------------------------------------------------------------------------------
# correctness

# dump_state SETUP: everything useful for finding out why VM1 cannot reach VM2, on stderr
dump_state() {
    local s=$1 h f
    log ""
    log "======== $s: state of the hosts ========"
    for h in "$HNS1" "$HNS2" "$NS1" "$NS2"; do
        log "---- $h: ip -d -s link"
        ip -n "$h" -d -s link show >&2 2>&1 || true
        log "---- $h: ip addr"
        ip -n "$h" -br addr show >&2 2>&1 || true
    done
    for h in "$HNS1" "$HNS2"; do
        log "---- $h: bridge fdb (vxlan)"
        bridge -n "$h" fdb show 2>&1 | grep -i vx >&2 || true
    done
    for f in "${SWITCHD_LOGS[@]}"; do
        [[ -f $f ]] || continue
        log "---- $f (last 40 lines)"
        tail -n 40 "$f" >&2
    done
    log "======== end of $s state ========"
}

# check_path SETUP: VM1 reaches VM2, also with full-size frames that must not be fragmented
check_path() {
    local s=$1 size=$((VM_MTU - 28))
    if ! wait_reachable; then
        note "$s" "VM1 cannot ping VM2 across the tunnel; not measured"
        return 1
    fi
    if ! in_ns "$NS1" ping -c 3 -i 0.2 -W 1 -M do -s "$size" "$IP2" >"$RUN/ping-mtu-$s.log" 2>&1; then
        note "$s" "VM1 reaches VM2 with small frames but not with $VM_MTU-byte packets (DF set); not measured"
        return 1
    fi
}

# ---------------------------------------------------------------------------------------------
# one setup

run_setup() {
    local s=$1 f
    log ""
    log "== $s: ${SETUP_NAME[$s]}"
    R[$s:load1]=$(cut -d' ' -f1 /proc/loadavg)
    SWITCH_DIED=0 SWITCHD_LOGS=()
    make_hosts
    if ! "setup_$s" || ! check_path "$s"; then
        [[ -n ${NOTES[$s]:-} ]] || note "$s" "setup failed (see the messages above)"
        R[$s:skipped]=1
        FAILED=1
        log "error: $s does not work: ${NOTES[$s]}"
        dump_state "$s"
        teardown
        return
    fi
    log "  ping";           measure_ping "$s"
    log "  TCP, 1 stream";  measure_tcp "$s" 1 tcp1
    if switch_alive "$s"; then log "  TCP, 4 streams"; measure_tcp "$s" 4 tcp4; fi
    if switch_alive "$s"; then measure_idle "$s"; measure_rss "$s"; fi
    teardown
    for f in "${SWITCHD_LOGS[@]}"; do SWITCHD_LOG=$f; switchd_drops "$s"; done
}

# ---------------------------------------------------------------------------------------------
# report

print_table() {
    local fmtstr="%-26s %-15s %-15s %-14s %6s %6s %7s %6s\n" s
    printf '\n'
    printf "$fmtstr" "setup" "TCP 1 Gbit/s" "TCP 4 Gbit/s" "ping us" "CPU%1" "CPU%4" "RSS MB" "idle%"
    for s in "${SELECTED[@]}"; do
        if [[ -n ${R[$s:skipped]:-} ]]; then
            printf "$fmtstr" "$s ${SETUP_NAME[$s]}" "not run" "" "" "" "" "" ""
            continue
        fi
        printf "$fmtstr" "$s ${SETUP_NAME[$s]}" "$(cell_rate "$s" tcp1 2)" "$(cell_rate "$s" tcp4 2)" \
            "$(cell_rate "$s" ping_us 0)" "$(fmt "${R[$s:cpu_tcp1]:-}" 0)" \
            "$(fmt "${R[$s:cpu_tcp4]:-}" 0)" "$(fmt "${R[$s:rss_mb]:-}" 1)" \
            "$(fmt "${R[$s:idle_cpu]:-}" 1)"
    done
    printf '\n'
    printf 'Ratios (in parentheses) are b/a, switchd to the kernel of this run; for ping, lower is better.\n'
    printf 'CPU%%1, CPU%%4: both switchd processes together over the 1- and 4-stream TCP runs (100 = one core);\n'
    printf 'idle%%: over %s s without traffic. RSS: both switchd processes, after the run.\n' "$IDLE_SECS"
    printf 'Underlay MTU %s, VM MTU %s; duration %s s per TCP test.\n' "$UNDERLAY_MTU" "$VM_MTU" "$DURATION"
    local any=0
    for s in "${SELECTED[@]}"; do
        [[ -n ${NOTES[$s]:-} ]] || continue
        ((any)) || printf '\nNotes:\n'
        any=1
        printf '  %s: %s\n' "$s" "${NOTES[$s]}"
    done
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
            --argjson ping "$(json_num "${R[$s:ping_us]:-}")" \
            --argjson cpu1 "$(json_num "${R[$s:cpu_tcp1]:-}")" \
            --argjson cpu4 "$(json_num "${R[$s:cpu_tcp4]:-}")" \
            --argjson rss "$(json_num "${R[$s:rss_mb]:-}")" \
            --argjson idle "$(json_num "${R[$s:idle_cpu]:-}")" \
            --argjson load1 "$(json_num "${R[$s:load1]:-}")" \
            --arg notes "${NOTES[$s]:-}" \
            '{id: $id, name: $name, measured: $measured,
              tcp_1_stream_gbps: $tcp1, tcp_1_stream_broken: $tcp1_broken,
              tcp_4_streams_gbps: $tcp4, tcp_4_streams_broken: $tcp4_broken,
              ping_rtt_avg_us: $ping,
              switch_cpu_pct_tcp_1_stream: $cpu1, switch_cpu_pct_tcp_4_streams: $cpu4,
              switch_rss_mb: $rss, switch_idle_cpu_pct: $idle, loadavg_1min_before: $load1,
              vxlan_by: (if $id == "a" then "kernel bridge" else "switchd" end),
              notes: $notes}')")
    done
    printf '%s\n' "${rows[@]}" | jq -s \
        --arg date "$START_DATE" --arg kernel "$(uname -r)" --arg cpu "$CPU_MODEL" \
        --argjson cores "$(nproc)" --argjson duration "$DURATION" --arg switchd "$SWITCHD_VERSION" \
        --arg commit "$COMMIT" --arg workers "${SWITCHD_WORKERS:-default}" --arg args "$SWITCHD_ARGS" \
        --argjson ul_mtu "$UNDERLAY_MTU" --argjson vm_mtu "$VM_MTU" \
        '(map(select(.id == "a" and .measured)) | first) as $k
         | def ratio($f): if $k == null or $k[$f] == null or $k[$f] == 0 or .[$f] == null
                          then null else .[$f] / $k[$f] end;
         {date: $date, kernel: $kernel, cpu: $cpu, cores: $cores, duration_s: $duration,
          underlay_mtu: $ul_mtu, vm_mtu: $vm_mtu,
          switchd: $switchd, switchd_workers: $workers, switchd_args: $args, commit: $commit,
          setups: map(. + {ratio_to_kernel: {
              tcp_1_stream: ratio("tcp_1_stream_gbps"), tcp_4_streams: ratio("tcp_4_streams_gbps"),
              ping_rtt: ratio("ping_rtt_avg_us")}})}' >"$JSON_OUT"
    log "results written to $JSON_OUT"
}

# ---------------------------------------------------------------------------------------------

main() {
    parse_args "$@"
    [[ $UNDERLAY_MTU =~ ^[0-9]+$ && $UNDERLAY_MTU -ge $((576 + VXLAN_OVERHEAD)) && $UNDERLAY_MTU -le 9000 ]] ||
        die "UNDERLAY_MTU must be a number from $((576 + VXLAN_OVERHEAD)) to 9000"
    VM_MTU=$((UNDERLAY_MTU - VXLAN_OVERHEAD))
    ((VM_MTU <= 1500)) || VM_MTU=1500 # taps and the VMs stay at Ethernet's 1500
    [[ $EUID -eq 0 ]] || die "run as root (sudo bench/vxlan.sh): namespaces, taps and veths need it"
    exec 9>"$LOCK"
    flock -n 9 || die "another bench/vxlan.sh is running"
    exec 8>"$E2E_LOCK"
    flock -n 8 || die "bench/e2e.sh or bench/vhost.sh is running; run one benchmark at a time"

    # the name matches /tmp/vlanswitch-bench.*, which remove_leftovers looks for
    RUN=$(mktemp -d /tmp/vlanswitch-bench.vxlan.XXXXXX)
    trap on_exit EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM

    need ip iproute2 || die "iproute2 is required"
    need bridge iproute2 || die "iproute2 is required"
    need iperf3 iperf3 || die "iperf3 is required"
    need ping iputils-ping || die "ping (iputils-ping) is required"
    need jq jq || die "jq is required"
    remove_leftovers

    SWITCHD_VERSION=""
    if want b; then
        [[ -x $SWITCHD_SRC ]] || die "no switchd binary at $SWITCHD_SRC (cargo build --release -p switchd, or set SWITCHD)"
        # a private copy: a rebuild during the run does not change the binary under test
        SWITCHD=$RUN/switchd
        cp "$SWITCHD_SRC" "$SWITCHD"
        SWITCHD_VERSION="$("$SWITCHD" --version 2>/dev/null | head -n 1 || true), built $(date -r "$SWITCHD_SRC" '+%F %T')"
    fi

    START_DATE=$(date -Iseconds)
    CPU_MODEL=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
    COMMIT=$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo unknown)
    printf 'vlanswitch VXLAN benchmark (VLAN %s as VNI %s between two hosts)\n' "$VLAN" "$VNI"
    printf 'date:    %s\n' "$START_DATE"
    printf 'kernel:  %s\n' "$(uname -r)"
    printf 'cpu:     %s (%s cores)\n' "$CPU_MODEL" "$(nproc)"
    printf 'load:    %s\n' "$(cut -d' ' -f1-3 /proc/loadavg)"
    printf 'mtu:     underlay %s, VMs %s\n' "$UNDERLAY_MTU" "$VM_MTU"
    [[ -z $SWITCHD_VERSION ]] || printf 'switchd: %s (repo at %s), workers: %s, options: %s\n' \
        "$SWITCHD_VERSION" "$COMMIT" "${SWITCHD_WORKERS:-default}" "${SWITCHD_ARGS:-none}"
    printf 'tools:   %s\n' "$(iperf3 --version | head -n 1)"
    printf 'duration: %s s per throughput test\n' "$DURATION"
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
