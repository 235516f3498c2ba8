//! The lab sections of a topology file, `hosts:` and `expect:`, and the pure part of
//! `switchd lab`: their rules, the names of a lab's namespaces, the plan of what to build and
//! check, and the table of results.
//!
//! The switch itself never uses these sections: a topology's `hosts` and `expect` change
//! nothing it forwards, [`crate::diff`] does not look at them, the controller drops them from
//! the running configuration once they are validated ([`Topology::without_lab`]), and they are
//! not serialized (the exported running topology and the state file leave them out). They are validated with
//! the rest of the file, with the same field paths ([`crate::Topology::validate`]), so that
//! `switchd check`, `switchd --topology` and `switchd lab` agree on what a valid file is.
//!
//! A host is a network namespace whose NIC is the kernel side of one tap port. A trunk port's
//! host gets the frames the trunk carries as they are: its IP stack uses the untagged (native
//! VLAN) ones, since VLAN subinterfaces would need the kernel's `8021q` module, which labs do
//! not rely on (many machines, these tests' among them, lack it). So `vlans:` on a host is
//! refused, and a trunk host with addresses needs a `native_vlan`.
//!
//! Nothing here does I/O; `switchd/src/lab.rs` builds the namespaces and runs the checks.

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::topology::{MacAddr, PortKind, PortMode, Problems, Topology};

/// Prefix of every namespace a lab makes: `vslab-<lab id>-<host>`.
pub const NETNS_PREFIX: &str = "vslab-";
/// Longest lab id, in bytes.
pub const MAX_LAB_ID: usize = 24;
/// Longest host name, in bytes.
pub const MAX_HOST_NAME: usize = 15;
/// Default size of a `tcp` check, in MiB.
pub const DEFAULT_TCP_MB: u32 = 4;
/// Largest `mb` of a `tcp` check.
pub const MAX_TCP_MB: u32 = 1024;

/// A lab host: a network namespace whose NIC is the kernel side of tap port `port`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Host {
    /// The host's name; its namespace is `vslab-<lab id>-<name>`.
    pub name: String,
    /// The tap port whose kernel side becomes the host's NIC (it keeps the port's name).
    pub port: String,
    /// Addresses with their prefix length, IPv4 or IPv6 (`198.18.0.1/24`, `2001:db8::1/64`).
    #[serde(default)]
    pub addresses: Vec<String>,
    /// The NIC's MAC address; absent, the kernel's random one.
    #[serde(default)]
    pub mac: Option<MacAddr>,
    /// The NIC's MTU; absent, the kernel's default (1500).
    #[serde(default)]
    pub mtu: Option<u32>,
    /// Routes beyond the host's own subnets.
    #[serde(default)]
    pub routes: Vec<Route>,
    /// Refused with the reason: VLAN subinterfaces need the `8021q` module (module doc).
    #[serde(default)]
    pub vlans: Option<Vec<u16>>,
}

/// A route of a lab host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Route {
    /// `default`, or a destination with its prefix length.
    pub to: String,
    /// The gateway: an address in one of the host's subnets, of the destination's family.
    pub via: String,
}

/// One expectation of a lab: exactly one of `ping`, `no_ping` and `tcp`, from host `from`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    /// The host the check runs in.
    pub from: String,
    /// This host answers pings from `from`.
    #[serde(default)]
    pub ping: Option<String>,
    /// This host answers no ping from `from`.
    #[serde(default)]
    pub no_ping: Option<String>,
    /// A TCP transfer from `from` to this host arrives whole (same SHA-256 at both ends).
    #[serde(default)]
    pub tcp: Option<String>,
    /// `tcp` only: MiB to send (1-1024, default 4).
    #[serde(default)]
    pub mb: Option<u32>,
}

/// An address with its prefix length: `198.18.0.1/24`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    /// The address.
    pub addr: IpAddr,
    /// The prefix length: 0-32 (IPv4), 0-128 (IPv6).
    pub prefix: u8,
}

impl FromStr for Cidr {
    type Err = String;

    fn from_str(s: &str) -> Result<Cidr, String> {
        let bad = || {
            format!(
                "{s:?} is not an address with a prefix length (like 198.18.0.1/24 or 2001:db8::1/64)"
            )
        };
        let (a, p) = s.split_once('/').ok_or_else(bad)?;
        let addr: IpAddr = a.parse().map_err(|_| bad())?;
        let prefix: u8 = p.parse().map_err(|_| bad())?;
        let most = if addr.is_ipv4() { 32 } else { 128 };
        if prefix > most {
            return Err(format!("{s:?}: the prefix length is at most {most}"));
        }
        Ok(Cidr { addr, prefix })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl Cidr {
    /// Whether `a` is in this address's subnet.
    pub fn contains(&self, a: IpAddr) -> bool {
        match (self.addr, a) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(n) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(n) & mask == u128::from(a) & mask
            }
            _ => false,
        }
    }
}

impl Host {
    /// The host's addresses that parse (after validation: all of them).
    pub fn cidrs(&self) -> Vec<Cidr> {
        self.addresses
            .iter()
            .filter_map(|a| a.parse().ok())
            .collect()
    }

    /// The first address of the host of the same family as one of `other`'s: the one a
    /// check from `other` aims at.
    pub fn address_for(&self, other: &Host) -> Option<IpAddr> {
        let families: Vec<bool> = other.cidrs().iter().map(|c| c.addr.is_ipv4()).collect();
        self.cidrs()
            .into_iter()
            .map(|c| c.addr)
            .find(|a| families.contains(&a.is_ipv4()))
    }
}

/// What a check does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckKind {
    /// The target answers a ping (up to 3 tries).
    Ping,
    /// The target answers none of 3 pings.
    NoPing,
    /// A TCP transfer of this many MiB arrives whole.
    Tcp {
        /// MiB to send.
        mb: u32,
    },
}

impl Expect {
    /// The target host and what to do, if exactly one of `ping`, `no_ping`, `tcp` is set.
    pub fn kind(&self) -> Option<(&str, CheckKind)> {
        match (&self.ping, &self.no_ping, &self.tcp) {
            (Some(t), None, None) => Some((t, CheckKind::Ping)),
            (None, Some(t), None) => Some((t, CheckKind::NoPing)),
            (None, None, Some(t)) => Some((
                t,
                CheckKind::Tcp {
                    mb: self.mb.unwrap_or(DEFAULT_TCP_MB),
                },
            )),
            _ => None,
        }
    }
}

/// Checks the `hosts:` and `expect:` sections against the rest of the topology.
pub(crate) fn check(t: &Topology, problems: &mut Problems) {
    let mut names: HashMap<&str, usize> = HashMap::new();
    let mut ports: HashMap<&str, usize> = HashMap::new();
    let mut addresses: HashMap<IpAddr, usize> = HashMap::new();
    for (i, h) in t.hosts.iter().enumerate() {
        let at = |f: &str| format!("hosts[{i}].{f}");
        if let Some(reason) = host_name_problem(&h.name) {
            problems.push(at("name"), reason);
        } else if let Some(first) = names.insert(&h.name, i) {
            problems.push(
                at("name"),
                format!("{:?} is already used by hosts[{first}]", h.name),
            );
        }
        let port = t.port(&h.port);
        match port {
            None => problems.push(at("port"), format!("no port named {:?}", h.port)),
            Some(p) if p.kind != PortKind::Tap => problems.push(
                at("port"),
                format!(
                    "port {:?} is a {} port; a host needs a tap port (its kernel side becomes the host's NIC)",
                    p.name, p.kind
                ),
            ),
            Some(p) => {
                if let Some(first) = ports.insert(&p.name, i) {
                    problems.push(
                        at("port"),
                        format!("port {:?} is already the NIC of hosts[{first}]", p.name),
                    );
                }
            }
        }
        if h.vlans.is_some() {
            problems.push(
                at("vlans"),
                "VLAN subinterfaces need the kernel's 8021q module, which labs do not use; \
                 a host on a trunk port uses the native VLAN (untagged) and sees the tagged \
                 VLANs only as raw frames",
            );
        }
        let mut cidrs = Vec::new();
        for (j, a) in h.addresses.iter().enumerate() {
            let path = format!("hosts[{i}].addresses[{j}]");
            match a.parse::<Cidr>() {
                Err(reason) => problems.push(path, reason),
                Ok(c) => {
                    if let Some(first) = addresses.insert(c.addr, i) {
                        problems.push(
                            path,
                            format!("{} is already an address of hosts[{first}]", c.addr),
                        );
                    }
                    cidrs.push(c);
                }
            }
        }
        if let Some(p) = port {
            if p.mode == PortMode::Trunk && p.native_vlan.is_none() && !h.addresses.is_empty() {
                problems.push(
                    at("addresses"),
                    format!(
                        "port {:?} is a trunk without native_vlan: without VLAN subinterfaces \
                         (8021q) the host's addresses would be in no VLAN",
                        p.name
                    ),
                );
            }
        }
        if let Some(m) = h.mac {
            if m.is_multicast() || m.is_zero() {
                problems.push(at("mac"), format!("{m} is not a unicast address"));
            }
        }
        if let Some(mtu) = h.mtu {
            let least = if cidrs.iter().any(|c| c.addr.is_ipv6()) {
                1280
            } else {
                68
            };
            if !(least..=65535).contains(&mtu) {
                problems.push(
                    at("mtu"),
                    format!("must be between {least} and 65535 (IPv6 needs 1280)"),
                );
            }
        }
        for (k, r) in h.routes.iter().enumerate() {
            check_route(&format!("hosts[{i}].routes[{k}]"), r, &cidrs, problems);
        }
    }

    for (i, e) in t.expect.iter().enumerate() {
        let at = |f: &str| format!("expect[{i}].{f}");
        let from = t.hosts.iter().find(|h| h.name == e.from);
        if from.is_none() {
            problems.push(at("from"), format!("no host named {:?}", e.from));
        }
        let field = match (&e.ping, &e.no_ping, &e.tcp) {
            (Some(_), None, None) => "ping",
            (None, Some(_), None) => "no_ping",
            (None, None, Some(_)) => "tcp",
            _ => {
                problems.push(
                    format!("expect[{i}]"),
                    "needs exactly one of ping, no_ping and tcp",
                );
                continue;
            }
        };
        if let Some(mb) = e.mb {
            if field != "tcp" {
                problems.push(at("mb"), "only a tcp check has a size");
            } else if !(1..=MAX_TCP_MB).contains(&mb) {
                problems.push(at("mb"), format!("must be between 1 and {MAX_TCP_MB}"));
            }
        }
        let Some((target, _)) = e.kind() else {
            continue;
        };
        match t.hosts.iter().find(|h| h.name == target) {
            None => problems.push(at(field), format!("no host named {target:?}")),
            Some(_) if target == e.from => {
                problems.push(at(field), "a host checking itself proves nothing")
            }
            Some(to) => {
                if let Some(from) = from {
                    if to.address_for(from).is_none() {
                        problems.push(
                            at(field),
                            format!(
                                "host {target:?} has no address of a family host {:?} has",
                                e.from
                            ),
                        );
                    }
                }
            }
        }
    }
}

fn check_route(path: &str, r: &Route, cidrs: &[Cidr], problems: &mut Problems) {
    let to_v4 = if r.to == "default" {
        None
    } else {
        match r.to.parse::<Cidr>() {
            Ok(c) => Some(c.addr.is_ipv4()),
            Err(reason) => {
                problems.push(format!("{path}.to"), format!("{reason}, or default"));
                return;
            }
        }
    };
    let via: IpAddr = match r.via.parse() {
        Ok(v) => v,
        Err(_) => {
            problems.push(
                format!("{path}.via"),
                format!("{:?} is not an IP address", r.via),
            );
            return;
        }
    };
    if to_v4.is_some_and(|v4| v4 != via.is_ipv4()) {
        problems.push(
            format!("{path}.via"),
            format!("{via} is not of the destination's family"),
        );
    } else if !cidrs.iter().any(|c| c.contains(via)) {
        problems.push(
            format!("{path}.via"),
            format!("{via} is in none of the host's subnets"),
        );
    }
}

/// Why `name` cannot be a host name, if it cannot: 1-15 bytes of ASCII letters, digits, `_`
/// and `-`.
fn host_name_problem(name: &str) -> Option<String> {
    if name.is_empty() {
        return Some("must not be empty".into());
    }
    if name.len() > MAX_HOST_NAME {
        return Some(format!("{name:?} is longer than {MAX_HOST_NAME} bytes"));
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        return Some(format!(
            "{name:?}: a host name has ASCII letters, digits, '_' and '-' only"
        ));
    }
    None
}

/// Why a lab id cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LabIdError {
    /// `--name` has other characters than `a-z`, `0-9` and `_`, or is empty or too long.
    #[error("lab name {0:?}: use 1-{MAX_LAB_ID} of a-z, 0-9 and _")]
    Bad(String),
}

/// The lab id given with `--name`: 1-24 of `a-z`, `0-9` and `_` (no `-`, which separates it
/// from the host in a namespace's name).
pub fn lab_id(name: &str) -> Result<String, LabIdError> {
    let ok = !name.is_empty()
        && name.len() <= MAX_LAB_ID
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if ok {
        Ok(name.to_string())
    } else {
        Err(LabIdError::Bad(name.to_string()))
    }
}

/// The lab id of a file whose name (without its extension) is `stem`: lowercased, every
/// character other than `a-z` and `0-9` made `_`, cut to 24 bytes; `lab` if nothing is left.
/// `two-tenants.yaml` is the lab `two_tenants`.
pub fn lab_id_of_file(stem: &str) -> String {
    let id: String = stem
        .chars()
        .map(|c| c.to_ascii_lowercase())
        .map(|c| {
            if c.is_ascii_lowercase() || c.is_ascii_digit() {
                c
            } else {
                '_'
            }
        })
        .take(MAX_LAB_ID)
        .collect();
    if id.is_empty() {
        "lab".into()
    } else {
        id
    }
}

/// The namespace of host `host` in lab `id`: `vslab-<id>-<host>`.
pub fn namespace(id: &str, host: &str) -> String {
    format!("{NETNS_PREFIX}{id}-{host}")
}

/// The lab id of a namespace a lab made, if `ns` is one: the part between `vslab-` and the
/// next `-`.
pub fn lab_of_namespace(ns: &str) -> Option<&str> {
    let rest = ns.strip_prefix(NETNS_PREFIX)?;
    let (id, host) = rest.split_once('-')?;
    (lab_id(id).is_ok() && !host.is_empty()).then_some(id)
}

/// A host as the lab builds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPlan {
    /// The host's name.
    pub name: String,
    /// Its namespace.
    pub namespace: String,
    /// Its NIC: the tap port's name.
    pub nic: String,
    /// The port's VLANs for people: `VLAN 10`, `trunk 10,20 native 1`.
    pub vlans: String,
    /// Its addresses.
    pub addresses: Vec<Cidr>,
    /// Its MAC, if the file sets one.
    pub mac: Option<MacAddr>,
    /// Its MTU, if the file sets one.
    pub mtu: Option<u32>,
    /// Its routes: destination (`default` or a prefix) and gateway.
    pub routes: Vec<(String, IpAddr)>,
}

/// One check as the lab runs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    /// The host it runs in.
    pub from: String,
    /// The namespace of `from`.
    pub from_ns: String,
    /// The target host.
    pub to: String,
    /// The namespace of `to`.
    pub to_ns: String,
    /// The target's address it aims at.
    pub addr: IpAddr,
    /// What it does.
    pub kind: CheckKind,
}

impl Check {
    /// How the file says it: `vm1 ping vm2`, `vm1 tcp vm2 16 MiB`.
    pub fn label(&self) -> String {
        match self.kind {
            CheckKind::Ping => format!("{} ping {}", self.from, self.to),
            CheckKind::NoPing => format!("{} no_ping {}", self.from, self.to),
            CheckKind::Tcp { mb } => format!("{} tcp {} {mb} MiB", self.from, self.to),
        }
    }

    /// The command that tries a ping check by hand; `None` for other checks.
    pub fn try_command(&self) -> Option<String> {
        let comment = match self.kind {
            CheckKind::Ping => "replies",
            CheckKind::NoPing => "no reply",
            CheckKind::Tcp { .. } => return None,
        };
        Some(format!(
            "ip netns exec {} ping -c 3 {}   # {}: {comment}",
            self.from_ns, self.addr, self.to
        ))
    }
}

/// What a lab builds and checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// The lab id.
    pub id: String,
    /// The hosts, in file order.
    pub hosts: Vec<HostPlan>,
    /// The checks, in file order.
    pub checks: Vec<Check>,
}

/// The plan of lab `id` for `t`, which has passed [`Topology::validate`] (entries that break
/// a rule are left out).
pub fn plan(t: &Topology, id: &str) -> Plan {
    let hosts = t
        .hosts
        .iter()
        .filter_map(|h| {
            let p = t.port(&h.port)?;
            let vlans = match p.mode {
                PortMode::Access => format!("VLAN {}", p.vlan.unwrap_or_default()),
                PortMode::Trunk => {
                    let tagged: Vec<String> =
                        p.vlans.iter().flatten().map(u16::to_string).collect();
                    let mut s = format!("trunk {}", tagged.join(","));
                    if let Some(n) = p.native_vlan {
                        s.push_str(&format!(" native {n}"));
                    }
                    s
                }
            };
            Some(HostPlan {
                name: h.name.clone(),
                namespace: namespace(id, &h.name),
                nic: p.name.clone(),
                vlans,
                addresses: h.cidrs(),
                mac: h.mac,
                mtu: h.mtu,
                routes: h
                    .routes
                    .iter()
                    .filter_map(|r| Some((r.to.clone(), r.via.parse().ok()?)))
                    .collect(),
            })
        })
        .collect();
    let checks = t
        .expect
        .iter()
        .filter_map(|e| {
            let (to, kind) = e.kind()?;
            let from_h = t.hosts.iter().find(|h| h.name == e.from)?;
            let to_h = t.hosts.iter().find(|h| h.name == to)?;
            Some(Check {
                from: e.from.clone(),
                from_ns: namespace(id, &e.from),
                to: to.to_string(),
                to_ns: namespace(id, to),
                addr: to_h.address_for(from_h)?,
                kind,
            })
        })
        .collect();
    Plan {
        id: id.to_string(),
        hosts,
        checks,
    }
}

impl Plan {
    /// The hosts as a table: host, namespace, NIC, VLANs, addresses.
    pub fn hosts_table(&self) -> String {
        let rows: Vec<[String; 5]> = self
            .hosts
            .iter()
            .map(|h| {
                let addrs: Vec<String> = h.addresses.iter().map(Cidr::to_string).collect();
                [
                    h.name.clone(),
                    h.namespace.clone(),
                    h.nic.clone(),
                    h.vlans.clone(),
                    if addrs.is_empty() {
                        "-".into()
                    } else {
                        addrs.join(" ")
                    },
                ]
            })
            .collect();
        table(["HOST", "NAMESPACE", "NIC", "PORT", "ADDRESSES"], &rows)
    }
}

/// How a check came out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// Whether the expectation holds.
    pub pass: bool,
    /// What was seen, for people: `198.18.0.2 answered`, `sha256 differs`.
    pub detail: String,
}

/// The results as a table (`EXPECT`, `RESULT`, `DETAIL`), then a line saying how many held.
pub fn results_table(results: &[(Check, Outcome)]) -> String {
    let rows: Vec<[String; 3]> = results
        .iter()
        .map(|(c, o)| {
            [
                c.label(),
                if o.pass { "ok" } else { "FAILED" }.to_string(),
                o.detail.clone(),
            ]
        })
        .collect();
    let held = results.iter().filter(|(_, o)| o.pass).count();
    format!(
        "{}{held} of {} expectations hold\n",
        table(["EXPECT", "RESULT", "DETAIL"], &rows),
        results.len()
    )
}

/// Left-aligned columns two spaces apart, the last one not padded.
fn table<const N: usize>(head: [&str; N], rows: &[[String; N]]) -> String {
    let mut width = head.map(str::len);
    for r in rows {
        for (w, c) in width.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    let head = head.map(String::from);
    for r in std::iter::once(&head).chain(rows) {
        let mut line = String::new();
        for (k, (c, w)) in r.iter().zip(width).enumerate() {
            if k + 1 == N {
                line.push_str(c);
            } else {
                line.push_str(&format!("{c:<w$}  "));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::TopologyError;

    const LAB: &str = "\
vlans: [{ id: 10 }, { id: 20 }]
ports:
  - { name: vm1, kind: tap, mode: access, vlan: 10 }
  - { name: vm2, kind: tap, mode: access, vlan: 10 }
  - { name: vm3, kind: tap, mode: access, vlan: 20 }
  - { name: tr0, kind: tap, mode: trunk, vlans: [10, 20], native_vlan: 1 }
  - { name: up0, kind: netdev, mode: trunk, vlans: [10] }
  - { name: vm9, kind: tap, mode: access, vlan: 10 }
hosts:
  - { name: vm1, port: vm1, addresses: [198.18.0.1/24, 2001:db8::1/64], mtu: 1400 }
  - { name: vm2, port: vm2, addresses: [198.18.0.2/24], mac: '02:00:00:00:00:02' }
  - name: vm3
    port: vm3
    addresses: [198.18.1.3/24]
    routes: [{ to: default, via: 198.18.1.1 }, { to: 198.51.100.0/24, via: 198.18.1.254 }]
  - { name: tr, port: tr0 }
expect:
  - { from: vm1, ping: vm2 }
  - { from: vm1, no_ping: vm3 }
  - { from: vm2, tcp: vm1, mb: 16 }
";

    fn problems(yaml: &str) -> Vec<String> {
        match Topology::from_yaml(yaml) {
            Ok(_) => Vec::new(),
            Err(TopologyError::Invalid(e)) => e.iter().map(ToString::to_string).collect(),
            Err(other) => vec![other.to_string()],
        }
    }

    #[test]
    fn a_valid_lab_plans_its_hosts_and_checks() {
        let t = Topology::from_yaml(LAB).expect("valid");
        let p = plan(&t, "x");
        assert_eq!(p.hosts.len(), 4);
        assert_eq!(p.hosts[0].namespace, "vslab-x-vm1");
        assert_eq!(p.hosts[0].nic, "vm1");
        assert_eq!(p.hosts[0].vlans, "VLAN 10");
        assert_eq!(p.hosts[3].vlans, "trunk 10,20 native 1");
        assert_eq!(p.hosts[3].addresses, []);
        assert_eq!(
            p.hosts[2].routes[0],
            ("default".into(), "198.18.1.1".parse().unwrap())
        );
        let labels: Vec<String> = p.checks.iter().map(Check::label).collect();
        assert_eq!(
            labels,
            ["vm1 ping vm2", "vm1 no_ping vm3", "vm2 tcp vm1 16 MiB"]
        );
        // vm2 has IPv4 only: the check aims at vm1's IPv4 address.
        assert_eq!(p.checks[2].addr, "198.18.0.1".parse::<IpAddr>().unwrap());
        assert_eq!(p.checks[2].to_ns, "vslab-x-vm1");
        assert_eq!(
            p.checks[1].try_command().as_deref(),
            Some("ip netns exec vslab-x-vm1 ping -c 3 198.18.1.3   # vm3: no reply")
        );
        assert_eq!(p.checks[2].try_command(), None);
    }

    #[test]
    fn labs_are_not_exported_and_not_a_change() {
        let t = Topology::from_yaml(LAB).expect("valid");
        let yaml = t.to_yaml();
        assert!(
            !yaml.contains("hosts") && !yaml.contains("expect"),
            "{yaml}"
        );
        let bare = Topology::from_yaml(&yaml).expect("valid");
        assert!(bare.hosts.is_empty() && bare.expect.is_empty());
        assert_eq!(crate::diff::diff(&bare, &t), []);
        assert_eq!(crate::diff::diff(&t, &bare), []);
        // What the controller keeps: the lab sections dropped, nothing else.
        assert_eq!(t.clone().without_lab(), bare);
        // Without them, a port a host was on can go.
        let mut rest = t.without_lab();
        rest.ports.retain(|p| p.name != "vm1");
        assert_eq!(rest.validate().ok(), Some(()));
    }

    #[test]
    fn each_host_and_expect_rule_reports_its_field() {
        let cases: &[(&str, &str, &str)] = &[
            ("  - { name: vm1, port: vm9 }\n", "", "hosts[4].name: \"vm1\" is already used by hosts[0]"),
            ("  - { name: 'a b', port: vm9 }\n", "", "hosts[4].name: \"a b\": a host name has ASCII letters, digits, '_' and '-' only"),
            ("  - { name: a-very-long-host-name, port: vm9 }\n", "", "hosts[4].name: \"a-very-long-host-name\" is longer than 15 bytes"),
            ("  - { name: h, port: ghost }\n", "", "hosts[4].port: no port named \"ghost\""),
            ("  - { name: h, port: up0 }\n", "", "hosts[4].port: port \"up0\" is a netdev port; a host needs a tap port (its kernel side becomes the host's NIC)"),
            ("  - { name: h, port: vm2 }\n", "", "hosts[4].port: port \"vm2\" is already the NIC of hosts[1]"),
            ("  - { name: h, port: vm9, vlans: [10] }\n", "", "hosts[4].vlans: VLAN subinterfaces need the kernel's 8021q module"),
            ("  - { name: h, port: vm9, addresses: [198.18.0.300/24] }\n", "", "hosts[4].addresses[0]: \"198.18.0.300/24\" is not an address with a prefix length"),
            ("  - { name: h, port: vm9, addresses: [198.18.0.9] }\n", "", "hosts[4].addresses[0]: \"198.18.0.9\" is not an address"),
            ("  - { name: h, port: vm9, addresses: [198.18.0.9/33] }\n", "", "hosts[4].addresses[0]: \"198.18.0.9/33\": the prefix length is at most 32"),
            ("  - { name: h, port: vm9, addresses: [198.18.0.2/24] }\n", "", "hosts[4].addresses[0]: 198.18.0.2 is already an address of hosts[1]"),
            ("  - { name: h, port: vm9, mac: '01:00:5e:00:00:01' }\n", "", "hosts[4].mac: 01:00:5e:00:00:01 is not a unicast address"),
            ("  - { name: h, port: vm9, mtu: 60 }\n", "", "hosts[4].mtu: must be between 68 and 65535"),
            ("  - { name: h, port: vm9, mtu: 1000, addresses: ['2001:db8::9/64'] }\n", "", "hosts[4].mtu: must be between 1280 and 65535"),
            ("  - { name: h, port: vm9, addresses: [198.18.0.9/24], routes: [{ to: default, via: 198.51.100.1 }] }\n", "", "hosts[4].routes[0].via: 198.51.100.1 is in none of the host's subnets"),
            ("  - { name: h, port: vm9, addresses: [198.18.0.9/24], routes: [{ to: '2001:db8::/32', via: 198.18.0.1 }] }\n", "", "hosts[4].routes[0].via: 198.18.0.1 is not of the destination's family"),
            ("  - { name: h, port: vm9, routes: [{ to: somewhere, via: 198.18.0.1 }] }\n", "", "hosts[4].routes[0].to: \"somewhere\" is not an address with a prefix length"),
            ("", "  - { from: ghost, ping: vm2 }\n", "expect[3].from: no host named \"ghost\""),
            ("", "  - { from: vm1, ping: ghost }\n", "expect[3].ping: no host named \"ghost\""),
            ("", "  - { from: vm1, ping: vm1 }\n", "expect[3].ping: a host checking itself proves nothing"),
            ("", "  - { from: vm1 }\n", "expect[3]: needs exactly one of ping, no_ping and tcp"),
            ("", "  - { from: vm1, ping: vm2, tcp: vm2 }\n", "expect[3]: needs exactly one of ping, no_ping and tcp"),
            ("", "  - { from: vm1, ping: vm2, mb: 3 }\n", "expect[3].mb: only a tcp check has a size"),
            ("", "  - { from: vm1, tcp: vm2, mb: 0 }\n", "expect[3].mb: must be between 1 and 1024"),
            ("", "  - { from: vm1, no_ping: tr }\n", "expect[3].no_ping: host \"tr\" has no address of a family host \"vm1\" has"),
        ];
        assert_eq!(problems(LAB), Vec::<String>::new());
        for (host, expect, want) in cases {
            let (h, rest) = LAB.split_once("expect:\n").unwrap();
            let yaml = format!("{h}{host}expect:\n{rest}{expect}");
            let got = problems(&yaml);
            assert_eq!(got.len(), 1, "{yaml}\n{got:?}");
            assert!(
                got[0].starts_with(want),
                "{got:?} does not start with {want}"
            );
        }
    }

    #[test]
    fn a_trunk_host_with_addresses_needs_a_native_vlan() {
        let yaml =
            "vlans: [{ id: 10 }]\nports: [{ name: t, kind: tap, mode: trunk, vlans: [10] }]\n\
                    hosts: [{ name: t, port: t, addresses: [198.18.0.1/24] }]\n";
        assert_eq!(
            problems(yaml),
            [
                "hosts[0].addresses: port \"t\" is a trunk without native_vlan: without VLAN \
              subinterfaces (8021q) the host's addresses would be in no VLAN"
            ]
        );
        // Without addresses (a host for raw frames), it is fine.
        let yaml = yaml.replace(", addresses: [198.18.0.1/24]", "");
        assert_eq!(problems(&yaml), Vec::<String>::new());
    }

    #[test]
    fn unknown_host_and_expect_fields_name_their_path() {
        let e = problems("ports: [{ name: a, kind: tap, mode: access, vlan: 1 }]\nhosts: [{ name: a, port: a, ip: x }]\n");
        assert!(e[0].contains("hosts[0]: unknown field `ip`"), "{e:?}");
        let e = problems("expect: [{ from: a, pong: b }]\n");
        assert!(e[0].contains("expect[0]: unknown field `pong`"), "{e:?}");
    }

    #[test]
    fn cidrs_contain_their_subnet() {
        let c: Cidr = "198.18.0.1/24".parse().unwrap();
        assert!(c.contains("198.18.0.254".parse().unwrap()));
        assert!(!c.contains("198.18.1.1".parse().unwrap()));
        assert!(!c.contains("2001:db8::1".parse().unwrap()));
        let all: Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains("203.0.113.9".parse().unwrap()));
        let v6: Cidr = "2001:db8::1/64".parse().unwrap();
        assert!(v6.contains("2001:db8::ffff".parse().unwrap()));
        assert!(!v6.contains("2001:db9::1".parse().unwrap()));
        assert_eq!(v6.to_string(), "2001:db8::1/64");
    }

    #[test]
    fn lab_ids_and_namespaces() {
        assert_eq!(lab_id_of_file("two-tenants"), "two_tenants");
        assert_eq!(lab_id_of_file("Lab.V2"), "lab_v2");
        assert_eq!(lab_id_of_file(""), "lab");
        assert_eq!(lab_id_of_file(&"x".repeat(40)).len(), MAX_LAB_ID);
        assert_eq!(lab_id("demo"), Ok("demo".into()));
        for bad in ["", "a-b", "A", "a b", &"x".repeat(25)] {
            assert!(lab_id(bad).is_err(), "{bad:?}");
        }
        assert_eq!(namespace("two_tenants", "vm-1"), "vslab-two_tenants-vm-1");
        assert_eq!(
            lab_of_namespace("vslab-two_tenants-vm-1"),
            Some("two_tenants")
        );
        assert_eq!(lab_of_namespace("vslab-demo-"), None);
        assert_eq!(lab_of_namespace("vs-1234a1"), None);
        assert_eq!(lab_of_namespace("vslab-Bad-x"), None);
    }

    #[test]
    fn the_results_table_says_what_held() {
        let t = Topology::from_yaml(LAB).expect("valid");
        let p = plan(&t, "x");
        let results: Vec<(Check, Outcome)> = p
            .checks
            .iter()
            .cloned()
            .zip([
                Outcome {
                    pass: true,
                    detail: "198.18.0.2 answered".into(),
                },
                Outcome {
                    pass: false,
                    detail: "198.18.1.3 answered".into(),
                },
                Outcome {
                    pass: true,
                    detail: "16 MiB, SHA-256 equal".into(),
                },
            ])
            .collect();
        assert_eq!(
            results_table(&results),
            "\
EXPECT              RESULT  DETAIL
vm1 ping vm2        ok      198.18.0.2 answered
vm1 no_ping vm3     FAILED  198.18.1.3 answered
vm2 tcp vm1 16 MiB  ok      16 MiB, SHA-256 equal
2 of 3 expectations hold
"
        );
        assert_eq!(
            p.hosts_table().lines().next(),
            Some("HOST  NAMESPACE    NIC  PORT                  ADDRESSES")
        );
    }
}
