#!/usr/bin/env bash
# Request/response latency through switchd, for choosing the adaptive-polling window.
#
#   kernel: two network namespaces on two tap ports (or two netdev ports on veths) in VLAN 10;
#           `sockperf ping-pong` (64-byte UDP) from one to the other for DURATION s.
#   vhost:  a namespace on a tap port pings DPDK testpmd in icmpecho mode on a vhost-user port
#           (`ping -i 0.005 -c 1000`); switchd --workers 1 on SWITCH_CPU, testpmd on GEN_CPU.
#
# Prints the latency summary and switchd's CPU time over the measurement (ticks of 10 ms).
#
# Usage: sudo bench/latency.sh tap|netdev|vhost [switchd options, e.g. --poll-us 0]
# Environment: SWITCHD (binary, default target/release/switchd), DURATION (s, default 8),
#              GEN_CPU (default 0), SWITCH_CPU (default 1).
# Packages: sockperf (tap, netdev); dpdk-dev and librte-net-virtio23 (vhost).
#
# Traffic stays between the namespaces (198.18.0.0/24) and the processes this script starts.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SWITCHD=${SWITCHD:-$REPO/target/release/switchd}
DURATION=${DURATION:-8}
GEN_CPU=${GEN_CPU:-0}
SWITCH_CPU=${SWITCH_CPU:-1}
KIND=${1:?usage: bench/latency.sh tap|netdev|vhost [switchd options]}
shift
# Every name this script creates starts with "vsl" (vlanswitch latency).
RUN=$(mktemp -d /tmp/vlanswitch-latency.XXXXXX)
PIDS=()

cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    for i in 1 2; do ip netns del "vsl$i" 2>/dev/null || true; ip link del "vsl$i" 2>/dev/null || true; done
    rm -rf /var/run/dpdk/vsl-gen "$RUN"
}
trap cleanup EXIT

[[ $EUID -eq 0 ]] || { echo "run as root: namespaces, taps and DPDK need it" >&2; exit 1; }
[[ -x $SWITCHD ]] || { echo "no switchd at $SWITCHD (cargo build --release)" >&2; exit 1; }

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

start_switchd() { # start_switchd TOPOLOGY_YAML [taskset CPU]
    printf '%s\n' "$1" >"$RUN/topology.yaml"
    local pin=()
    [[ -n ${2:-} ]] && pin=(taskset -c "$2")
    RUST_LOG=info "${pin[@]}" "$SWITCHD" --topology "$RUN/topology.yaml" \
        --listen "unix:$RUN/api.sock" "${SWITCHD_OPTS[@]}" 2>"$RUN/switchd.log" &
    SW=$!
    PIDS+=("$SW")
    for _ in $(seq 50); do grep -q "switch ready" "$RUN/switchd.log" 2>/dev/null && return; sleep 0.1; done
    echo "switchd did not start:" >&2; cat "$RUN/switchd.log" >&2; exit 1
}

SWITCHD_OPTS=("$@")
echo "switchd: $("$SWITCHD" --version) options: ${SWITCHD_OPTS[*]:-none}; $KIND; $(date -u +%FT%TZ)"
case $KIND in
tap | netdev)
    command -v sockperf >/dev/null || { echo "sockperf missing (apt-get install sockperf)" >&2; exit 1; }
    if [[ $KIND == netdev ]]; then
        for i in 1 2; do ip netns add "vsl$i"; ip link add "vsl$i" type veth peer name eth0 netns "vsl$i"; done
        extra=", admin_up: true"
    else
        extra=""
    fi
    start_switchd "vlans: [{id: 10}]
ports:
  - {name: vsl1, kind: $KIND, mode: access, vlan: 10$extra}
  - {name: vsl2, kind: $KIND, mode: access, vlan: 10$extra}"
    for i in 1 2; do
        if [[ $KIND == tap ]]; then ip netns add "vsl$i"; ip link set "vsl$i" netns "vsl$i"; dev=vsl$i; else dev=eth0; fi
        ip -n "vsl$i" addr add "198.18.0.$i/24" dev "$dev"
        ip -n "vsl$i" link set "$dev" up
        ip -n "vsl$i" link set lo up
    done
    ip netns exec vsl2 sockperf server -i 198.18.0.2 >/dev/null 2>&1 &
    PIDS+=($!)
    sleep 0.5
    ip netns exec vsl1 ping -c 2 -q 198.18.0.2 >/dev/null
    t0=$(cpu_ticks "$SW")
    ip netns exec vsl1 sockperf ping-pong -i 198.18.0.2 -t "$DURATION" --msg-size 64 2>&1 |
        sed 's/\x1b\[[0-9;]*m//g' | grep -E "avg-latency|percentile (50|99)\.000"
    echo "switchd CPU: $(($(cpu_ticks "$SW") - t0)) ticks"
    ;;
vhost)
    command -v dpdk-testpmd >/dev/null || { echo "dpdk-testpmd missing (dpdk-dev, librte-net-virtio23)" >&2; exit 1; }
    SWITCHD_OPTS=(--workers 1 "$@")
    start_switchd "vlans: [{id: 10}]
ports:
  - {name: vsl1, kind: tap, mode: access, vlan: 10}
  - {name: vslg, kind: vhost-user, socket: $RUN/g.sock, mode: access, vlan: 10}" "$SWITCH_CPU"
    ip netns add vsl1
    ip link set vsl1 netns vsl1
    ip -n vsl1 addr add 198.18.0.1/24 dev vsl1
    ip -n vsl1 link set vsl1 up
    mkfifo "$RUN/gen.in"
    taskset -c "$GEN_CPU" dpdk-testpmd --lcores "0@$GEN_CPU,1@$GEN_CPU" --no-huge -m 1024 --no-pci \
        --file-prefix vsl-gen \
        --vdev "net_virtio_user0,path=$RUN/g.sock,queues=1,server=0,mac=02:00:00:00:0e:01" \
        -- -i --forward-mode=icmpecho --nb-cores=1 --auto-start <"$RUN/gen.in" >"$RUN/testpmd.log" 2>&1 &
    PIDS+=($!)
    exec {GEN_FD}>"$RUN/gen.in"
    sleep 4
    ip netns exec vsl1 ping -c 5 -q 198.18.0.9 >/dev/null || { echo "testpmd does not answer" >&2; exit 1; }
    t0=$(cpu_ticks "$SW")
    ip netns exec vsl1 ping -i 0.005 -c 1000 -q 198.18.0.9 | tail -n 1
    echo "switchd CPU: $(($(cpu_ticks "$SW") - t0)) ticks"
    echo quit >&"$GEN_FD"
    ;;
*)
    echo "usage: bench/latency.sh tap|netdev|vhost [switchd options]" >&2
    exit 2
    ;;
esac
