#!/usr/bin/env bash
# Builds the tiny test guest for the VM tests: Debian's cloud kernel (vmlinuz) and an initramfs
# with busybox-static, the kernel modules for virtio-net and 802.1Q, and an /init that configures
# the NIC from the kernel command line and then serves commands on the serial console.
#
# Output (printed as the last line): the cache directory, holding vmlinuz and initramfs.cpio.gz.
# Cache: $VLANSWITCH_GUEST_DIR, default <repo>/target/vm-guest. Idempotent: nothing is rebuilt
# while both files exist and were made by this version of the script (its SHA-256 is the stamp);
# the downloaded kernel package is kept, so a changed script only repacks the initramfs.
# Needs: apt-get with Debian's mirrors (for `apt-get download`, the first time), dpkg-deb,
# busybox-static (also packs the cpio archive), gzip, flock. Runs as any user who may write $out.
#
# Kernel command line understood by /init (all optional):
#   vs.ip=ADDR/LEN   address of the guest's NIC (on eth0, or on eth0.VID with vs.vlan)
#   vs.mac=MAC       set eth0's MAC (QEMU's mac= already does; this overrides it)
#   vs.vlan=VID      create eth0.VID (8021q) and put the address there; eth0 stays untagged-up
#   vs.name=NAME     hostname, shown in the ready line
# Console protocol (see tests/netns/vm.rs): /init prints `VSGUEST-READY <name>`, then reads lines
# `<id> <timeout-secs> <base64 of a shell script>` and answers
# `VSGUEST-BEGIN <id>`, the script's output (stdout and stderr), `VSGUEST-END <id> <status>`.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
out=${VLANSWITCH_GUEST_DIR:-$repo/target/vm-guest}
meta_pkg=linux-image-cloud-amd64
# Modules the guest loads, in order (dependencies first). All are modules (=m) in Debian 12's
# cloud kernel; the script checks each file's own `depends=` against this list.
modules="virtio_ring virtio virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci
failover net_failover virtio_net llc stp garp mrp 8021q"

die() { echo "build-guest: FATAL: $*" >&2; exit 1; }

mkdir -p "$out"
out=$(cd "$out" && pwd)
exec 9>"$out/.lock"
flock 9

stamp=$(sha256sum "$0" | cut -d' ' -f1)
if [ -s "$out/vmlinuz" ] && [ -s "$out/initramfs.cpio.gz" ] &&
  [ "$(cat "$out/stamp" 2>/dev/null)" = "$stamp" ]; then
  echo "$out"
  exit 0
fi

command -v dpkg-deb >/dev/null || die "dpkg-deb missing (Debian/Ubuntu host needed)"
bb=/bin/busybox
dpkg -s busybox-static >/dev/null 2>&1 && [ -x "$bb" ] ||
  die "busybox-static is not installed (apt-get install busybox-static)"

# 1. The kernel: the meta package names the real one (linux-image-6.1.0-NN-cloud-amd64),
# which holds vmlinuz and the modules. Downloaded once, kept in $out/kernel.
kdir="$out/kernel"
if [ ! -s "$kdir/vmlinuz" ]; then
  rm -rf "$out/dl" "$kdir.tmp"
  mkdir -p "$out/dl"
  (cd "$out/dl" && apt-get download "$meta_pkg" >/dev/null 2>&1) ||
    die "apt-get download $meta_pkg failed (run apt-get update? no mirror?)"
  real=$(dpkg-deb -f "$out"/dl/${meta_pkg}_*.deb Depends | tr ',' '\n' |
    sed -n 's/^ *\(linux-image-[0-9][^ ]*\).*/\1/p' | head -n1)
  [ -n "$real" ] || die "cannot tell the kernel package from $meta_pkg's Depends"
  (cd "$out/dl" && apt-get download "$real" >/dev/null 2>&1) || die "apt-get download $real failed"
  dpkg-deb -x "$out"/dl/${real}_*.deb "$kdir.tmp"
  kver=$(ls "$kdir.tmp/lib/modules" | head -n1)
  [ -n "$kver" ] || die "no modules in $real"
  cp "$kdir.tmp/boot/vmlinuz-$kver" "$kdir.tmp/vmlinuz"
  echo "$kver" >"$kdir.tmp/version"
  echo "$real" >"$kdir.tmp/package"
  rm -rf "$kdir" "$out/dl"
  mv "$kdir.tmp" "$kdir"
fi
kver=$(cat "$kdir/version")
moddir="$kdir/lib/modules/$kver/kernel"

# 2. The initramfs.
root=$(mktemp -d "$out/root.XXXXXX")
trap 'rm -rf "$root"' EXIT
mkdir -p "$root"/{bin,sbin,dev,proc,sys,tmp,etc,lib/modules,root}
cp "$bb" "$root/bin/busybox"
: >"$root/etc/modules"
loaded=" "
for m in $modules; do
  f=$(find "$moddir" -name "$m.ko" -o -name "$m.ko.xz" | head -n1)
  if [ -z "$f" ]; then
    # Not a module: it must be built in.
    grep -q "/$m.ko\$" "$kdir/lib/modules/$kver/modules.builtin" ||
      die "$m is neither a module nor built into $kver"
    continue
  fi
  case "$f" in *.xz) xz -dc "$f" >"$root/lib/modules/$m.ko" ;; *) cp "$f" "$root/lib/modules/$m.ko" ;; esac
  deps=$(tr '\0' '\n' <"$root/lib/modules/$m.ko" | sed -n 's/^depends=//p' | tr ',' ' ')
  for d in $deps; do
    case "$loaded" in *" $d "*) ;; *) die "$m needs $d, which is not loaded before it" ;; esac
  done
  echo "$m" >>"$root/etc/modules"
  loaded="$loaded$m "
done

cat >"$root/init" <<'INIT'
#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
mount -t tmpfs tmp /tmp
echo 1 >/proc/sys/kernel/printk
say() { echo "$*" >/dev/ttyS0; }
fail() { say "VSGUEST-FAILED $*"; sleep 1; poweroff -f; }
for m in $(cat /etc/modules); do
  insmod "/lib/modules/$m.ko" || fail "insmod $m"
done
ip=; mac=; vlan=; name=guest
for a in $(cat /proc/cmdline); do
  case "$a" in
    vs.ip=*) ip=${a#vs.ip=} ;;
    vs.mac=*) mac=${a#vs.mac=} ;;
    vs.vlan=*) vlan=${a#vs.vlan=} ;;
    vs.name=*) name=${a#vs.name=} ;;
  esac
done
hostname "$name"
ip link set lo up
# The NIC appears once virtio_net has probed it.
n=0
while [ ! -e /sys/class/net/eth0 ]; do
  n=$((n + 1)); [ $n -gt 100 ] && fail "no eth0"
  usleep 50000
done
[ -n "$mac" ] && { ip link set eth0 address "$mac" || fail "mac $mac"; }
# No IPv6 chatter (DAD, router solicitations): the switch sees only what the tests send.
echo 1 >/proc/sys/net/ipv6/conf/all/disable_ipv6
echo 1 >/proc/sys/net/ipv6/conf/default/disable_ipv6
ip link set eth0 up || fail "eth0 up"
dev=eth0
if [ -n "$vlan" ]; then
  dev=eth0.$vlan
  ip link add link eth0 name "$dev" type vlan id "$vlan" || vconfig add eth0 "$vlan" || fail "vlan $vlan"
  ip link set "$dev" up || fail "$dev up"
fi
[ -n "$ip" ] && { ip addr add "$ip" dev "$dev" || fail "addr $ip"; }
stty -F /dev/ttyS0 raw -echo
say "VSGUEST-READY $name"
# Command loop: one line per command, the script in base64 so that any text goes through.
while read -r id secs b64; do
  [ -n "$id" ] || continue
  echo "$b64" | base64 -d >/tmp/cmd.sh 2>/dev/null
  echo "VSGUEST-BEGIN $id"
  timeout -s KILL "$secs" sh /tmp/cmd.sh </dev/null 2>&1
  echo "VSGUEST-END $id $?"
done </dev/ttyS0 >/dev/ttyS0 2>&1
fail "console closed"
INIT
chmod 755 "$root/init"

(cd "$root" && find . | sort | "$bb" cpio -o -H newc 2>/dev/null | gzip -1) >"$out/initramfs.cpio.gz.tmp"
mv "$out/initramfs.cpio.gz.tmp" "$out/initramfs.cpio.gz"
cp "$kdir/vmlinuz" "$out/vmlinuz.tmp"
mv "$out/vmlinuz.tmp" "$out/vmlinuz"
echo "$stamp" >"$out/stamp"
echo "build-guest: kernel $(cat "$kdir/package") ($kver), modules: $(tr '\n' ' ' <"$root/etc/modules")" >&2
echo "$out"
