//! `switchctl vxlan` and `switchctl vlan set`: the switch as a VXLAN tunnel endpoint, its
//! flood lists, and a VLAN's VNI.

use std::net::IpAddr;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use control_api::api::{RemoteRequest, VlanView, VxlanView};
use control_api::edit::VlanPatch;
use control_api::topology::Vxlan;

use crate::{enc, query, table, Ctx};

#[derive(Debug, Subcommand)]
pub enum VxlanCmd {
    /// The tunnel endpoint and each VLAN's tunnel: its VNI, MTU, flood list and link.
    Show,
    /// Make the switch a VXLAN tunnel endpoint, or change its endpoint (the tunnels are made
    /// anew). Writes the whole section from its options; the static remote MACs are kept.
    Set(SetArgs),
    /// Stop being a VXLAN tunnel endpoint (refused while a VLAN has a VNI: `vlan set ID
    /// --no-vni` first).
    Del,
    /// Remote VTEPs that tunnels flood to: add, del.
    #[command(subcommand)]
    Remote(RemoteCmd),
}

#[derive(Debug, Args)]
pub struct SetArgs {
    /// This host's tunnel address (IPv4 or IPv6).
    #[arg(long)]
    local: IpAddr,
    /// The UDP port of the tunnels (default 4789).
    #[arg(long)]
    dstport: Option<u16>,
    /// A remote VTEP every VNI floods to (repeat for more).
    #[arg(long = "remote", value_name = "IP")]
    remotes: Vec<IpAddr>,
    /// The underlay interface (default: the one that holds --local).
    #[arg(long, value_name = "IF")]
    underlay: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum RemoteCmd {
    /// Add a remote VTEP to the switch-wide flood list, or to one VLAN's (which, if it had no
    /// list of its own, starts from the switch-wide one).
    Add {
        address: IpAddr,
        #[arg(long)]
        vlan: Option<u16>,
    },
    /// Remove a remote VTEP from the switch-wide flood list, or from one VLAN's (which, if it
    /// had no list of its own, starts from the switch-wide one).
    Del {
        address: IpAddr,
        #[arg(long)]
        vlan: Option<u16>,
    },
}

/// The options of `vlan set`.
#[derive(Debug, Args)]
pub struct VlanSetArgs {
    pub id: u16,
    /// Carry the VLAN to other hosts with this VXLAN network identifier (1-16777215).
    #[arg(long, value_name = "N", conflicts_with = "no_vni")]
    vni: Option<u32>,
    /// Keep the VLAN on this host: its tunnel, own flood list and static remote MACs go.
    #[arg(long)]
    no_vni: bool,
    /// A label; an empty one removes it.
    #[arg(long)]
    name: Option<String>,
}

/// The section `vxlan set` writes: its options, with the static remote MACs of `current`.
pub fn section_of(a: &SetArgs, current: Option<&Vxlan>) -> Vxlan {
    Vxlan {
        local: a.local,
        dstport: a.dstport,
        remotes: a.remotes.clone(),
        underlay: a.underlay.clone(),
        fdb: current.map(|x| x.fdb.clone()).unwrap_or_default(),
    }
}

/// The `PATCH /api/v1/vlans/{id}` body of `vlan set`; an error when it would change nothing.
pub fn vlan_patch_of(a: &VlanSetArgs) -> Result<VlanPatch> {
    let mut p = VlanPatch::default();
    if let Some(vni) = a.vni {
        p.vni = Some(Some(vni));
    }
    if a.no_vni {
        p.vni = Some(None);
    }
    if let Some(name) = &a.name {
        p.name = Some((!name.is_empty()).then(|| name.clone()));
    }
    if p == VlanPatch::default() {
        bail!("nothing to set: give --vni, --no-vni or --name");
    }
    Ok(p)
}

/// Runs a `vxlan` subcommand.
pub fn run(ctx: &Ctx, cmd: VxlanCmd) -> Result<()> {
    match cmd {
        VxlanCmd::Show => {
            let v = ctx.client.call("GET", "/api/v1/vxlan", None)?;
            ctx.show(v, |x: VxlanView| table::vxlan(&x))
        }
        VxlanCmd::Set(a) => {
            let now: VxlanView =
                serde_json::from_value(ctx.client.call("GET", "/api/v1/vxlan", None)?)
                    .context("the server's reply has an unexpected shape")?;
            let x = section_of(&a, now.vxlan.as_ref());
            let v = ctx
                .client
                .json("PUT", "/api/v1/vxlan", &serde_json::to_value(&x)?)?;
            ctx.show(v, |x: VxlanView| table::vxlan(&x))
        }
        VxlanCmd::Del => {
            ctx.client.call("DELETE", "/api/v1/vxlan", None)?;
            Ok(())
        }
        VxlanCmd::Remote(RemoteCmd::Add { address, vlan }) => {
            let r = RemoteRequest {
                address: address.to_string(),
                vlan,
            };
            let v = ctx
                .client
                .json("POST", "/api/v1/vxlan/remotes", &serde_json::to_value(&r)?)?;
            ctx.json_only(&v);
            Ok(())
        }
        VxlanCmd::Remote(RemoteCmd::Del { address, vlan }) => {
            let q = query(&[("vlan", vlan.map(|v| v.to_string()))]);
            let path = format!("/api/v1/vxlan/remotes/{}{q}", enc(&address.to_string()));
            ctx.client.call("DELETE", &path, None)?;
            Ok(())
        }
    }
}

/// `vlan set`.
pub fn vlan_set(ctx: &Ctx, a: VlanSetArgs) -> Result<()> {
    let patch = vlan_patch_of(&a)?;
    let v = ctx.client.json(
        "PATCH",
        &format!("/api/v1/vlans/{}", a.id),
        &serde_json::to_value(&patch)?,
    )?;
    ctx.show(v, |v: VlanView| table::vlans(&[v]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct T {
        #[command(subcommand)]
        cmd: Sub,
    }

    #[derive(Debug, Subcommand)]
    enum Sub {
        #[command(subcommand)]
        Vxlan(VxlanCmd),
        Set(VlanSetArgs),
    }

    fn parse(args: &[&str]) -> Result<Sub, clap::Error> {
        T::try_parse_from(std::iter::once("t").chain(args.iter().copied())).map(|t| t.cmd)
    }

    fn vlan_set(args: &[&str]) -> Result<VlanPatch> {
        match parse(&[&["set"], args].concat())? {
            Sub::Set(a) => vlan_patch_of(&a),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn vlan_set_patches_only_what_it_is_given() {
        let p = vlan_set(&["10", "--vni", "1010"]).unwrap();
        assert_eq!(serde_json::to_string(&p).unwrap(), r#"{"vni":1010}"#);
        let p = vlan_set(&["10", "--no-vni", "--name", ""]).unwrap();
        assert_eq!(
            serde_json::to_string(&p).unwrap(),
            r#"{"name":null,"vni":null}"#
        );
        let p = vlan_set(&["10", "--name", "red"]).unwrap();
        assert_eq!((p.name, p.vni), (Some(Some("red".into())), None));
        assert!(vlan_set(&["10"]).is_err(), "nothing to set");
        assert!(vlan_set(&["10", "--vni", "1", "--no-vni"]).is_err());
    }

    #[test]
    fn vxlan_set_writes_its_options_and_keeps_the_static_remote_macs() {
        let Sub::Vxlan(VxlanCmd::Set(a)) = parse(&[
            "vxlan",
            "set",
            "--local",
            "192.0.2.1",
            "--remote",
            "192.0.2.2",
            "--remote",
            "192.0.2.3",
            "--dstport",
            "8472",
        ])
        .unwrap() else {
            panic!("not vxlan set");
        };
        let current: Vxlan = serde_json::from_str(
            r#"{"local":"192.0.2.9","underlay":"eth1","remotes":["192.0.2.8"],
                "fdb":[{"vlan":10,"mac":"02:00:00:00:00:01","remote":"192.0.2.2"}]}"#,
        )
        .unwrap();
        let x = section_of(&a, Some(&current));
        assert_eq!(x.local.to_string(), "192.0.2.1");
        assert_eq!(x.dstport, Some(8472));
        assert_eq!(x.remotes.len(), 2);
        assert_eq!(x.underlay, None, "what is not given is the default");
        assert_eq!(x.fdb, current.fdb);
        assert!(section_of(&a, None).fdb.is_empty());
        assert!(parse(&["vxlan", "set", "--local", "nope"]).is_err());
        assert!(parse(&["vxlan", "remote", "add", "nope"]).is_err());
    }
}
