//! `switchd demo`: the embedded two-tenant topology with one network namespace per VM tap.

use std::process::{Command, ExitCode};

use anyhow::{bail, Context, Result};
use control_api::{PortKind, Topology};

use crate::daemon;

/// The demo topology, embedded so that the demo needs no file.
pub const TOPOLOGY: &str = include_str!("../../topologies/two-tenants.yaml");

/// Prefix of the demo's addresses: 198.18.0.0/15 is reserved for network benchmarking
/// (RFC 2544), so it never collides with a real network.
const SUBNET: &str = "198.18.0";

/// A network namespace made by the demo; deleted on drop.
struct Netns(String);

impl Netns {
    fn create(name: &str) -> Result<Netns> {
        if std::path::Path::new("/run/netns").join(name).exists() {
            bail!(
                "network namespace {name} already exists (left over from an earlier demo?); \
                 remove it with `ip netns del {name}` and try again"
            );
        }
        ip(&["netns", "add", name])?;
        Ok(Netns(name.to_string()))
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        if let Err(e) = ip(&["netns", "del", &self.0]) {
            tracing::warn!(netns = %self.0, error = %format!("{e:#}"), "cannot remove namespace");
        }
    }
}

fn ip(args: &[&str]) -> Result<()> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .context("cannot run `ip` (install iproute2)")?;
    if !out.status.success() {
        bail!(
            "`ip {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// Runs the demo until SIGINT/SIGTERM, then removes everything it made.
pub fn run(workers: u16) -> Result<ExitCode> {
    let topo = Topology::from_yaml(TOPOLOGY).context("the embedded demo topology")?;
    let hosts: Vec<_> = topo
        .ports
        .iter()
        .filter(|p| p.kind == PortKind::Tap)
        .enumerate()
        .map(|(i, p)| (p, format!("{SUBNET}.{}", i + 1)))
        .collect();
    let signals = daemon::install_signal_handlers()?;
    // Namespaces first, so a clash is reported before any tap exists.
    let mut namespaces = Vec::new();
    for (p, _) in &hosts {
        namespaces.push(Netns::create(&p.name)?);
    }
    let switch = daemon::start(topo.clone(), workers)?;
    let setup = || -> Result<()> {
        for (p, addr) in &hosts {
            let n = p.name.as_str();
            ip(&["link", "set", n, "netns", n])?;
            ip(&["-n", n, "addr", "add", &format!("{addr}/24"), "dev", n])?;
            ip(&["-n", n, "link", "set", n, "up"])?;
            ip(&["-n", n, "link", "set", "lo", "up"])?;
        }
        Ok(())
    };
    if let Err(e) = setup() {
        daemon::shutdown(switch);
        return Err(e);
    }
    println!("vlanswitch demo is running: each VM is a network namespace whose NIC is a tap port.");
    println!("All VMs share one IP subnet; only the VLAN decides who reaches whom.\n");
    for (p, addr) in &hosts {
        let vlan = p
            .vlan
            .map_or_else(|| "trunk".to_string(), |v| v.to_string());
        println!(
            "  {:<5} VLAN {:<4} {addr}/24   (namespace {})",
            p.name, vlan, p.name
        );
    }
    let addr_of = |n: &str| {
        hosts
            .iter()
            .find(|(p, _)| p.name == n)
            .map(|(_, a)| a.as_str())
    };
    if let (Some(vm2), Some(vm3)) = (addr_of("vm2"), addr_of("vm3")) {
        println!("\nTry, in another terminal:");
        println!("  ip netns exec vm1 ping -c 3 {vm2}   # same VLAN (10): replies");
        println!("  ip netns exec vm1 ping -c 3 {vm3}   # VLAN 10 -> VLAN 20: no reply");
        println!(
            "  ip netns exec vm3 ping -c 3 {}   # same VLAN (20): replies",
            addr_of("vm4").unwrap_or("?")
        );
    }
    println!("\nPress Ctrl-C to stop; the taps and namespaces are removed.");
    let ctl = std::sync::Mutex::new(switch);
    let waited = daemon::wait_for_stop(&ctl, &signals, None, &crate::notify::Notifier::from_env());
    daemon::shutdown(ctl.into_inner().unwrap_or_else(|e| e.into_inner()));
    waited?;
    drop(namespaces);
    Ok(ExitCode::SUCCESS)
}
