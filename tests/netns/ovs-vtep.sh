#!/bin/bash
# ovs-vtep.sh - run Open vSwitch (userspace/netdev datapath, no kernel module)
# as a VXLAN VTEP inside an existing network namespace.
#
#   ovs-vtep.sh up NS LOCAL_IP REMOTE_IP VNI HOST_NS HOST_ADDR UNDERLAY_IF
#   ovs-vtep.sh down NS
#
# NS          existing netns that owns UNDERLAY_IF (OVS runs inside it)
# LOCAL_IP    tunnel source; "ADDR" or "ADDR/PLEN" (v4 or v6). It is moved from
#             UNDERLAY_IF to the OVS bridge br-phy (userspace tunneling needs the
#             endpoint address on an OVS internal port, not on the physical port).
# REMOTE_IP   remote VTEP address
# VNI         VXLAN network identifier (UDP dst port 4789)
# HOST_NS     netns for the host behind the VTEP (created if missing)
# HOST_ADDR   address for the host, e.g. 198.18.10.2/24
# UNDERLAY_IF interface in NS facing the remote VTEP
#
# Env: OVS_VTEP_DIR (default /tmp/vlanswitch-ovs-vtep) - private db/run/log dirs live
#      in $OVS_VTEP_DIR/$NS.  OVS_VTEP_TIMEOUT (default 20 s).
# After "up", inspect with:  ovs-vtep.sh ctl NS ovs-appctl fdb/show br-int
set -euo pipefail

BASE=${OVS_VTEP_DIR:-/tmp/vlanswitch-ovs-vtep}
TMO=${OVS_VTEP_TIMEOUT:-20}
SCHEMA=${OVS_SCHEMA:-/usr/share/openvswitch/vswitch.ovsschema}
HOSTIF_OVS=vtep-host      # veth end in NS, port of br-int
HOSTIF=eth0               # veth end in HOST_NS

die() { echo "ovs-vtep: $*" >&2; exit 1; }

setenv() {   # all OVS tools pick their default sockets/pidfiles from these
    D=$BASE/$1
    export OVS_RUNDIR=$D OVS_DBDIR=$D OVS_LOGDIR=$D OVS_SYSCONFDIR=$D
}
vsctl()  { ovs-vsctl --db=unix:$D/db.sock --timeout=$TMO "$@"; }
appctl() { ovs-appctl -t $D/ovs-vswitchd.ctl "$@"; }
inns()   { ip netns exec "$NS" "$@"; }

wait_for() {  # wait_for SECONDS CMD...
    local t=$(( $1 * 10 )); shift
    while ! "$@" >/dev/null 2>&1; do
        t=$((t - 1)); [ $t -gt 0 ] || return 1; sleep 0.1
    done
}

up() {
    [ $# -eq 7 ] || die "usage: up NS LOCAL_IP REMOTE_IP VNI HOST_NS HOST_ADDR UNDERLAY_IF"
    NS=$1 LOCAL=$2 REMOTE=$3 VNI=$4 HNS=$5 HADDR=$6 UL=$7
    setenv "$NS"
    [ -e "$D/ovs-vswitchd.pid" ] && die "already up in $NS ($D)"
    ip netns pids "$NS" >/dev/null 2>&1 || die "no netns $NS"
    inns ip link show "$UL" >/dev/null || die "no $UL in $NS"

    local lip=${LOCAL%/*} plen fam=4 mtu=1450
    case $lip in *:*) fam=6 mtu=1430 ;; esac
    if [[ $LOCAL == */* ]]; then plen=${LOCAL#*/}
    else  # take prefix from the underlay if it already has the address
        plen=$(inns ip -o -$fam addr show dev "$UL" | awk -v a="$lip" '{split($4,x,"/"); if (x[1]==a) print x[2]}')
        [ -n "$plen" ] || plen=$([ $fam = 4 ] && echo 24 || echo 64)
    fi
    local ulmac; ulmac=$(inns cat /sys/class/net/"$UL"/address)

    rm -rf "$D"; mkdir -p "$D"
    local t0; t0=$(date +%s.%N)
    ovsdb-tool create "$D/conf.db" "$SCHEMA"
    inns ovsdb-server "$D/conf.db" --remote=punix:$D/db.sock \
        --pidfile=$D/ovsdb-server.pid --unixctl=$D/ovsdb-server.ctl \
        --log-file=$D/ovsdb-server.log --detach --no-chdir
    vsctl --no-wait init
    # extra settings read at vswitchd start, e.g. OVS_VTEP_OTHER_CONFIG="userspace-tso-enable=true"
    local kv; for kv in ${OVS_VTEP_OTHER_CONFIG:-}; do
        vsctl --no-wait set Open_vSwitch . other_config:"$kv"
    done
    # vswitchd must run inside NS: it uses AF_PACKET/tap devices and the
    # kernel routing table of the namespace it runs in.
    inns ovs-vswitchd unix:$D/db.sock --pidfile=$D/ovs-vswitchd.pid \
        --unixctl=$D/ovs-vswitchd.ctl --log-file=$D/ovs-vswitchd.log \
        --detach --no-chdir --disable-system -vconsole:off
    wait_for "$TMO" appctl version || die "ovs-vswitchd did not start"

    # Underlay: br-phy owns the tunnel endpoint IP, physical port inside it.
    inns ip link set "$UL" up
    vsctl add-br br-phy -- set bridge br-phy datapath_type=netdev \
              other_config:hwaddr=\"$ulmac\" \
          -- add-port br-phy "$UL"
    inns ip addr flush dev "$UL" scope global
    inns ip addr add "$lip/$plen" dev br-phy $([ $fam = 6 ] && echo nodad)
    inns ip link set br-phy up

    # Overlay: br-int with the VXLAN port and a veth to the host namespace.
    ip netns pids "$HNS" >/dev/null 2>&1 || { ip netns add "$HNS"; echo "$HNS" > "$D/created-hostns"; }
    ip -n "$HNS" link set lo up
    inns ip link add "$HOSTIF_OVS" type veth peer name "$HOSTIF" netns "$HNS"
    inns ip link set "$HOSTIF_OVS" up
    # OVS reads the veth with AF_PACKET and never completes CHECKSUM_PARTIAL
    # packets: the host must compute its own TCP/UDP checksums.
    ip netns exec "$HNS" ethtool -K "$HOSTIF" tx off >/dev/null
    ip -n "$HNS" link set "$HOSTIF" mtu $mtu
    ip -n "$HNS" addr add "$HADDR" dev "$HOSTIF"
    ip -n "$HNS" link set "$HOSTIF" up
    vsctl add-br br-int -- set bridge br-int datapath_type=netdev \
          -- add-port br-int vxlan0 -- set interface vxlan0 type=vxlan \
               options:remote_ip="$REMOTE" options:local_ip="$lip" \
               options:key="$VNI" options:dst_port=4789 \
          -- add-port br-int "$HOSTIF_OVS"
    # br-int's own internal port stays down so it does not chatter into the VNI
    echo "$UL $lip/$plen $HNS" > "$D/state"

    # Wait until the datapath has the tunnel port and a route to REMOTE.
    wait_for "$TMO" sh -c "ovs-appctl -t $D/ovs-vswitchd.ctl tnl/ports/show | grep -q vxlan_sys_4789" \
        || die "tunnel port not ready"
    wait_for "$TMO" sh -c "ovs-appctl -t $D/ovs-vswitchd.ctl ovs/route/lookup $REMOTE | grep -q br-phy" \
        || die "no OVS route to $REMOTE via br-phy"
    # Resolve the remote VTEP's MAC: the kernel ARPs/NDs from br-phy and OVS
    # snoops the reply into its tunnel neighbor cache (tnl/neigh/show).
    local i
    for i in $(seq 1 $((TMO * 2))); do
        inns ping -c1 -W1 "$REMOTE" >/dev/null 2>&1 || true
        appctl tnl/neigh/show | grep -qi "^$REMOTE " && break
        sleep 0.5
    done
    appctl tnl/neigh/show | grep -qi "^$REMOTE " || echo "ovs-vtep: warning: $REMOTE not in tnl/neigh cache yet" >&2
    echo "ovs-vtep: up in $NS after $(awk "BEGIN{printf \"%.2f\", $(date +%s.%N) - $t0}") s"
}

down() {
    [ $# -eq 1 ] || die "usage: down NS"
    NS=$1; setenv "$NS"
    [ -d "$D" ] || return 0
    local UL= ADDR= HNS=
    [ -f "$D/state" ] && read -r UL ADDR HNS < "$D/state"
    if [ -e "$D/ovs-vswitchd.pid" ]; then
        appctl exit --cleanup >/dev/null 2>&1 || true
        # the daemon deletes its pidfile on exit (kill -0 would see a zombie)
        local pid; pid=$(cat "$D/ovs-vswitchd.pid" 2>/dev/null || true)
        wait_for 5 test ! -e "$D/ovs-vswitchd.pid" || { [ -n "$pid" ] && kill -9 "$pid" 2>/dev/null; } || true
    fi
    if [ -e "$D/ovsdb-server.pid" ]; then
        kill "$(cat $D/ovsdb-server.pid)" 2>/dev/null || true
    fi
    if ip netns pids "$NS" >/dev/null 2>&1; then
        for l in br-int br-phy ovs-netdev "$HOSTIF_OVS"; do inns ip link del "$l" 2>/dev/null || true; done
        # give the tunnel address back to the underlay interface
        [ -n "$UL" ] && inns ip link show "$UL" >/dev/null 2>&1 && inns ip addr add "$ADDR" dev "$UL" 2>/dev/null || true
    fi
    [ -f "$D/created-hostns" ] && ip netns del "$(cat "$D/created-hostns")" 2>/dev/null || true
    rm -rf "$D"
}

ctl() {  # ctl NS ovs-vsctl|ovs-appctl|ovs-ofctl ARGS...
    NS=$1; shift; setenv "$NS"; cmd=$1; shift
    case $cmd in
        ovs-vsctl) vsctl "$@" ;;
        ovs-appctl) appctl "$@" ;;
        *) "$cmd" "$@" ;;
    esac
}

case ${1:-} in
    up|down|ctl) c=$1; shift; "$c" "$@" ;;
    *) die "usage: $0 up NS LOCAL_IP REMOTE_IP VNI HOST_NS HOST_ADDR UNDERLAY_IF | down NS | ctl NS CMD..." ;;
esac
