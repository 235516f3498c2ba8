//! VM plug-in hooks: QEMU's `script=`/`downscript=` and libvirt's `qemu` hook. They add a
//! VM's tap as a netdev port, in the VLANs the VM's configuration names, when the VM starts,
//! and remove the port when it stops, so that no port outlives its VM (a stale port named
//! `vnet0` would otherwise attach whichever VM gets `vnet0` next).
//!
//! - `switchctl hook qemu-ifup IFNAME` / `qemu-ifdown IFNAME` (QEMU passes the tap's name):
//!   the VLANs come from the environment QEMU was started with: `VLANSWITCH_VLAN=10` (access),
//!   or `VLANSWITCH_TRUNK=10,20` with an optional `VLANSWITCH_NATIVE=1`.
//! - `switchctl hook libvirt DOMAIN OPERATION SUBOPERATION EXTRA`, with the domain XML on
//!   stdin (what libvirt passes to `/etc/libvirt/hooks/qemu`): the VLANs come from the
//!   domain's metadata, one element per interface, matched by MAC address (see [`XMLNS`]).

use anyhow::{bail, Context, Result};

/// The namespace of the domain metadata the libvirt hook reads:
///
/// ```xml
/// <metadata>
///   <vlanswitch:interfaces xmlns:vlanswitch="https://vlanswitch.invalid/xmlns/libvirt/1">
///     <vlanswitch:interface mac="52:54:00:00:00:01" vlan="10"/>
///     <vlanswitch:interface mac="52:54:00:00:00:02" trunk="10,20" native="1"/>
///   </vlanswitch:interfaces>
/// </metadata>
/// ```
pub const XMLNS: &str = "https://vlanswitch.invalid/xmlns/libvirt/1";

/// The VLANs of one VM interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Membership {
    /// An access port in this VLAN.
    Access(u16),
    /// A trunk carrying these VLANs tagged, and optionally a native VLAN.
    Trunk {
        /// Tagged VLANs.
        vlans: Vec<u16>,
        /// The untagged VLAN, if any.
        native: Option<u16>,
    },
}

impl Membership {
    /// From the `vlan`, `trunk` and `native` settings (attributes or environment), named
    /// `what` in errors. `None` when none is given (the interface is not the switch's).
    pub fn from_settings(
        what: &str,
        vlan: Option<&str>,
        trunk: Option<&str>,
        native: Option<&str>,
    ) -> Result<Option<Membership>> {
        let vid = |name: &str, v: &str| -> Result<u16> {
            v.trim()
                .parse::<u16>()
                .with_context(|| format!("{what}: {name}={v:?} is not a VLAN id"))
        };
        match (vlan, trunk) {
            (Some(_), Some(_)) => bail!("{what}: give vlan (access) or trunk, not both"),
            (Some(v), None) => {
                if native.is_some() {
                    bail!("{what}: native goes with trunk, not with vlan");
                }
                Ok(Some(Membership::Access(vid("vlan", v)?)))
            }
            (None, Some(t)) => Ok(Some(Membership::Trunk {
                vlans: t
                    .split(',')
                    .map(|v| vid("trunk", v))
                    .collect::<Result<_>>()?,
                native: native.map(|n| vid("native", n)).transpose()?,
            })),
            (None, None) if native.is_some() => bail!("{what}: native needs trunk"),
            (None, None) => Ok(None),
        }
    }
}

/// One VM interface to plug in: its tap and its VLANs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plug {
    /// The tap's name (`<target dev=...>`), the port's name.
    pub dev: String,
    /// Its VLANs.
    pub membership: Membership,
}

/// The interfaces of a libvirt domain XML that its vlanswitch metadata names, matched by MAC
/// address. An interface without a `<target dev>` yet (before libvirt made its tap) is left
/// out; one the metadata does not name is not the switch's.
pub fn plugs(xml: &str) -> Result<Vec<Plug>> {
    let doc = roxmltree::Document::parse(xml).context("the domain XML does not parse")?;
    let root = doc.root_element();
    let mut wanted = Vec::new();
    for e in root
        .descendants()
        .filter(|n| n.has_tag_name((XMLNS, "interface")))
    {
        let mac = e
            .attribute("mac")
            .context("a vlanswitch:interface without its mac attribute")?;
        let mac: control_api::topology::MacAddr = mac
            .parse()
            .with_context(|| format!("vlanswitch:interface mac={mac:?}"))?;
        let what = format!("vlanswitch:interface {mac}");
        let m = Membership::from_settings(
            &what,
            e.attribute("vlan"),
            e.attribute("trunk"),
            e.attribute("native"),
        )?
        .with_context(|| format!("{what}: give vlan=\"VID\" or trunk=\"VIDS\""))?;
        wanted.push((mac, m));
    }
    let mut out = Vec::new();
    for iface in root
        .descendants()
        .filter(|n| n.has_tag_name("interface") && n.tag_name().namespace().is_none())
    {
        let child = |tag: &str, attr: &str| {
            iface
                .children()
                .find(|c| c.has_tag_name(tag))
                .and_then(|c| c.attribute(attr))
        };
        let (Some(mac), Some(dev)) = (child("mac", "address"), child("target", "dev")) else {
            continue;
        };
        let Ok(mac) = mac.parse::<control_api::topology::MacAddr>() else {
            continue;
        };
        if let Some((_, m)) = wanted.iter().find(|(w, _)| *w == mac) {
            out.push(Plug {
                dev: dev.to_string(),
                membership: m.clone(),
            });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn domain(interfaces: &str, metadata: &str) -> String {
        format!(
            "<domain type='kvm'><name>vm</name><metadata>\
             <vs:interfaces xmlns:vs='{XMLNS}'>{metadata}</vs:interfaces>\
             <other:thing xmlns:other='urn:x'><other:interface mac='52:54:00:00:00:09' vlan='99'/></other:thing>\
             </metadata><devices>{interfaces}</devices></domain>"
        )
    }

    #[test]
    fn interfaces_are_matched_by_mac() {
        let xml = domain(
            "<interface type='ethernet'><mac address='52:54:00:00:00:01'/><target dev='vnet0'/></interface>\
             <interface type='ethernet'><mac address='52:54:00:00:00:02'/><target dev='vnet1'/></interface>\
             <interface type='network'><mac address='52:54:00:00:00:03'/><target dev='vnet2'/></interface>\
             <interface type='ethernet'><mac address='52:54:00:00:00:04'/></interface>",
            "<vs:interface mac='52:54:00:00:00:01' vlan='10'/>\
             <vs:interface mac='52-54-00-00-00-02' trunk='10, 20' native='1'/>\
             <vs:interface mac='52:54:00:00:00:04' vlan='30'/>",
        );
        assert_eq!(
            plugs(&xml).unwrap(),
            [
                Plug {
                    dev: "vnet0".into(),
                    membership: Membership::Access(10)
                },
                Plug {
                    dev: "vnet1".into(),
                    membership: Membership::Trunk {
                        vlans: vec![10, 20],
                        native: Some(1)
                    }
                },
            ]
        );
    }

    #[test]
    fn bad_metadata_is_named() {
        let iface =
            "<interface type='ethernet'><mac address='52:54:00:00:00:01'/><target dev='vnet0'/></interface>";
        for (meta, says) in [
            (
                "<vs:interface mac='52:54:00:00:00:01' vlan='ten'/>",
                "vlan=\"ten\" is not a VLAN id",
            ),
            (
                "<vs:interface mac='52:54:00:00:00:01'/>",
                "give vlan=\"VID\" or trunk=\"VIDS\"",
            ),
            ("<vs:interface vlan='10'/>", "without its mac"),
            (
                "<vs:interface mac='52:54:00:00:00:01' vlan='10' trunk='20'/>",
                "not both",
            ),
            ("<vs:interface mac='nope' vlan='10'/>", "mac=\"nope\""),
        ] {
            let e = format!("{:#}", plugs(&domain(iface, meta)).unwrap_err());
            assert!(e.contains(says), "{meta}: {e}");
        }
        assert!(plugs("<domain>").is_err());
        assert_eq!(plugs(&domain(iface, "")).unwrap(), []);
    }
}
