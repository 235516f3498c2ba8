#!/usr/bin/env bash
# Builds the Debian package of vlanswitch from the workspace, with dpkg-deb (no other tool):
# both binaries, the systemd unit, the man pages and bash/zsh/fish completions generated from
# the command-line definitions, the QEMU and libvirt hooks (/usr/libexec/vlanswitch),
# /etc/default/vlanswitch, and the example topologies.
#
#   dist/deb/build-deb.sh [OUTDIR]      # default target/debian; prints the .deb's path
#
# Install it with `dpkg -i OUTDIR/vlanswitch_VERSION_ARCH.deb`. The service is not started
# or enabled by the package: `systemctl enable --now vlanswitch`.
set -euo pipefail
cd "$(dirname "$0")/../.."
out=${1:-target/debian}
mkdir -p "$out"

cargo build --release --quiet -p switchd --bins
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n1)
arch=$(dpkg --print-architecture)
[ -n "$version" ] || { echo "build-deb: no version in Cargo.toml" >&2; exit 1; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
root=$work/root
gen=$work/gen
target/release/switchd generate-docs "$gen/switchd"
target/release/switchctl generate-docs "$gen/switchctl"

install -D -m 0755 target/release/switchd "$root/usr/bin/switchd"
install -D -m 0755 target/release/switchctl "$root/usr/bin/switchctl"
install -D -m 0644 dist/systemd/vlanswitch.service "$root/lib/systemd/system/vlanswitch.service"
install -d "$root/usr/share/man/man8" "$root/usr/share/man/man1"
gzip -9n <"$gen/switchd/switchd.8" >"$root/usr/share/man/man8/switchd.8.gz"
gzip -9n <"$gen/switchctl/switchctl.1" >"$root/usr/share/man/man1/switchctl.1.gz"
for b in switchd switchctl; do
  install -D -m 0644 "$gen/$b/bash/$b" "$root/usr/share/bash-completion/completions/$b"
  install -D -m 0644 "$gen/$b/zsh/_$b" "$root/usr/share/zsh/vendor-completions/_$b"
  install -D -m 0644 "$gen/$b/fish/$b.fish" "$root/usr/share/fish/vendor_completions.d/$b.fish"
done
for h in qemu-ifup qemu-ifdown libvirt-qemu; do
  install -D -m 0755 "dist/hooks/$h" "$root/usr/libexec/vlanswitch/$h"
done
doc=$root/usr/share/doc/vlanswitch
install -D -m 0644 README.md "$doc/README.md"
install -D -m 0644 docs/plugging-in-vms.md "$doc/plugging-in-vms.md"
install -d "$doc/examples"
install -m 0644 topologies/*.yaml "$doc/examples/"
cat >"$doc/copyright" <<COPY
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: vlanswitch

Files: *
License: Apache-2.0
 On Debian systems, the full text of the Apache License 2.0 is in
 /usr/share/common-licenses/Apache-2.0.
COPY
install -D -m 0644 /dev/stdin "$root/etc/default/vlanswitch" <<'DEFAULTS'
# Options for switchd when run by systemd (vlanswitch.service). The state file is
# /var/lib/vlanswitch/state.yaml; to start from a topology file the first time, and to let
# `systemctl reload vlanswitch` re-read it:
#SWITCHD_OPTS="--topology /etc/vlanswitch/topology.yaml"
SWITCHD_OPTS=""
DEFAULTS

install -d "$root/DEBIAN"
size=$(du -sk --exclude=DEBIAN "$root" | cut -f1)
cat >"$root/DEBIAN/control" <<CONTROL
Package: vlanswitch
Version: $version
Architecture: $arch
Maintainer: vlanswitch developers <dev@vlanswitch.invalid>
Installed-Size: $size
Depends: libc6 (>= 2.34), libgcc-s1
Recommends: iproute2
Section: net
Priority: optional
Homepage: https://vlanswitch.invalid/
Description: userspace 802.1Q VLAN switch for VMs and containers
 switchd plugs taps, existing interfaces and vhost-user VMs into isolated
 VLANs, learns MAC addresses per VLAN, and is configured through a REST API,
 the switchctl client and declarative topology files.
CONTROL
echo /etc/default/vlanswitch >"$root/DEBIAN/conffiles"
cat >"$root/DEBIAN/postinst" <<'POSTINST'
#!/bin/sh
set -e
if [ -d /run/systemd/system ]; then
  systemctl daemon-reload >/dev/null || true
fi
POSTINST
cp "$root/DEBIAN/postinst" "$root/DEBIAN/postrm"
chmod 0755 "$root/DEBIAN/postinst" "$root/DEBIAN/postrm"

deb=$out/vlanswitch_${version}_${arch}.deb
dpkg-deb --build --root-owner-group "$root" "$deb" >/dev/null
echo "$deb"
