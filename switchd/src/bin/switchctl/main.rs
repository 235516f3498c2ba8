//! `switchctl`: the command-line client of switchd's REST API, with the vocabulary of
//! `ovs-vsctl` and `bridge`. Tables for people, `--json` for scripts; on an error it prints the
//! server's reason and exits non-zero.

#[path = "../../docs.rs"]
mod docs;
mod events;
mod hook;
mod http;
mod table;
mod vxlan;

use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use control_api::api::{ApplyResult, FdbEntryView, PortView, Removed, Stats, VlanView};
use control_api::edit::PortPatch;
use control_api::topology::{MacAddr, Port, PortMode, StaticMac, Vlan};
use serde::de::DeserializeOwned;
use serde_json::Value;

#[derive(Debug, Parser)]
#[command(name = "switchctl", version, about = "Configure a running switchd")]
struct Cli {
    /// switchd's API: http://HOST:PORT, HOST:PORT, HOST (port 7380) or unix:/PATH.
    #[arg(
        long,
        env = "SWITCHCTL_SERVER",
        default_value = "127.0.0.1:7380",
        value_parser = http::server_address,
        global = true
    )]
    server: String,
    /// File with the bearer token (for a non-loopback API).
    #[arg(long, env = "SWITCHCTL_TOKEN_FILE", global = true)]
    token_file: Option<std::path::PathBuf>,
    /// Print the server's JSON instead of a table.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Ports: add, set, del, list, show.
    #[command(subcommand)]
    Port(PortCmd),
    /// VLANs: add, set, del, list.
    #[command(subcommand)]
    Vlan(VlanCmd),
    /// The MAC table: show, add, del, flush.
    #[command(subcommand)]
    Fdb(FdbCmd),
    /// Port mirrors (SPAN): add, del, list.
    #[command(subcommand)]
    Mirror(MirrorCmd),
    /// The switch as a VXLAN tunnel endpoint: show, set, del, remote add/del.
    #[command(subcommand)]
    Vxlan(vxlan::VxlanCmd),
    /// The whole configuration: apply, export.
    #[command(subcommand)]
    Topology(TopoCmd),
    /// Per-port and per-VLAN counters.
    Stats,
    /// The whole switch at a glance: each VLAN with its ports, their links and MAC counts.
    Show,
    /// Capture a port's frames as pcapng: `switchctl capture vm1 -c 100 | tcpdump -nr -`.
    Capture(CaptureArgs),
    /// Why a frame goes where it goes: the switch's decision for a frame arriving on PORT, step
    /// by step (nothing is learned or counted unless --learn).
    Trace(TraceArgs),
    /// Follow the switch's events (MACs learned, moved and aged, links, changes, port errors,
    /// drops) as they happen: one line each, or one JSON object a line with --json.
    Events {
        /// Only these types (comma-separated), e.g. mac_moved,link.
        #[arg(long, value_name = "TYPES")]
        types: Option<String>,
        /// Stop after this many events.
        #[arg(long, short = 'n', value_name = "N")]
        count: Option<u64>,
    },
    /// VM plug-in hooks for QEMU (`script=`/`downscript=`) and libvirt (`hooks/qemu`).
    #[command(subcommand)]
    Hook(HookCmd),
    /// Write the man page and shell completions into DIR (for packaging).
    #[command(hide = true)]
    GenerateDocs { dir: std::path::PathBuf },
}

#[derive(Debug, Args)]
struct CaptureArgs {
    /// The port.
    port: String,
    /// Stop after this many frames.
    #[arg(short = 'c', long)]
    count: Option<u64>,
    /// Stop after this many seconds.
    #[arg(long)]
    seconds: Option<u64>,
    /// Bytes kept of each frame (default: whole frames).
    #[arg(short = 's', long)]
    snaplen: Option<u32>,
    /// Which frames: rx (the port receives), tx (it sends) or both.
    #[arg(long, value_enum, default_value = "both")]
    direction: CaptureDir,
    /// Write to FILE instead of standard output.
    #[arg(short = 'w', long, value_name = "FILE")]
    write: Option<std::path::PathBuf>,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum CaptureDir {
    Rx,
    Tx,
    Both,
}

#[derive(Debug, Args)]
struct TraceArgs {
    /// The ingress port.
    port: String,
    /// Source MAC (with --live: only frames from it).
    #[arg(long, required_unless_present_any = ["hex", "live"])]
    src: Option<MacAddr>,
    /// Destination MAC (with --live: only frames to it).
    #[arg(long, required_unless_present_any = ["hex", "live"])]
    dst: Option<MacAddr>,
    /// An 802.1Q tag with this VID (0: a priority tag); twice for two tags, outermost first.
    #[arg(long = "vlan")]
    vlans: Vec<u16>,
    /// EtherType after the tags, like 0x0806 (default: IPv4/IPv6 with addresses, else 0x88b5).
    #[arg(long, value_parser = parse_ethertype)]
    ethertype: Option<u16>,
    /// Source IP address (IPv4 or IPv6).
    #[arg(long, requires = "dst_ip")]
    src_ip: Option<std::net::IpAddr>,
    /// Destination IP address.
    #[arg(long, requires = "src_ip")]
    dst_ip: Option<std::net::IpAddr>,
    /// The whole frame in hex instead (from the destination MAC on; spaces and colons allowed).
    #[arg(long, conflicts_with_all = ["src", "dst", "vlans", "ethertype", "src_ip", "dst_ip"])]
    hex: Option<String>,
    /// Learn the source MAC as the switch would (default: only say what learning would do).
    #[arg(long)]
    learn: bool,
    /// Instead of a made-up frame: record the next N real frames arriving on PORT (only those
    /// matching --src, --dst and one --vlan) and show what the switch did with each.
    #[arg(long, value_name = "N", conflicts_with_all = ["hex", "ethertype", "src_ip", "dst_ip", "learn"])]
    live: Option<usize>,
    /// With --live: wait up to this many seconds for the frames.
    #[arg(long, requires = "live", default_value_t = 10)]
    wait: u64,
}

fn parse_ethertype(s: &str) -> Result<u16, String> {
    let digits = s.strip_prefix("0x").unwrap_or(s);
    u16::from_str_radix(digits, 16).map_err(|_| format!("{s:?} is not a hex EtherType like 0x0800"))
}

#[derive(Debug, Subcommand)]
enum HookCmd {
    /// QEMU `script=`: add the VM's tap IFNAME as a netdev port, in the VLANs of
    /// VLANSWITCH_VLAN (access) or VLANSWITCH_TRUNK (and VLANSWITCH_NATIVE).
    QemuIfup { ifname: String },
    /// QEMU `downscript=`: remove the port of the tap IFNAME.
    QemuIfdown { ifname: String },
    /// libvirt's `/etc/libvirt/hooks/qemu`, with the domain XML on stdin: when a domain has
    /// started, add each interface its vlanswitch metadata names as a netdev port; when it
    /// stops, remove them; before it starts, remove stale ports of those names.
    Libvirt {
        domain: String,
        operation: String,
        #[arg(default_value = "-")]
        sub_operation: String,
        #[arg(default_value = "-")]
        extra: String,
    },
}

#[derive(Debug, Args)]
struct ModeArgs {
    /// Access port in this VLAN.
    #[arg(long, value_name = "VID", conflicts_with = "trunk")]
    access: Option<u16>,
    /// Trunk carrying these VLANs tagged (comma-separated).
    #[arg(long, value_name = "VIDS", value_delimiter = ',')]
    trunk: Option<Vec<u16>>,
    /// Native (untagged) VLAN of a trunk; `none` removes it.
    #[arg(long, value_name = "VID|none")]
    native: Option<String>,
}

/// Port security options of `port add` and `port set`.
#[derive(Debug, Args)]
struct SecurityArgs {
    /// Most MACs the port learns at once; `default` for the switch's default.
    #[arg(long, value_name = "N|default")]
    max_macs: Option<String>,
    /// What a frame from a new source beyond a MAC limit gets: flood (forwarded, not
    /// learned), drop, or shutdown (the port is shut down until `port enable`).
    #[arg(long, value_name = "flood|drop|shutdown")]
    limit_action: Option<String>,
    /// Only these source MACs may enter (comma-separated); `any` removes the list.
    #[arg(long, value_name = "MACS|any")]
    allow_macs: Option<String>,
}

/// A word the API takes (a limit action, a port kind, a socket mode), checked here so that a
/// typo is named with its flag.
fn word<T: DeserializeOwned>(flag: &str, v: &str) -> Result<T> {
    serde_json::from_value(Value::String(v.to_string()))
        .map_err(|e| anyhow::anyhow!("{flag} {v:?}: {e}"))
}

/// The `PATCH /api/v1/ports/{name}` body the mode and security options ask for (also the
/// fields of `port add`).
fn patch_of(m: &ModeArgs, a: &SecurityArgs) -> Result<PortPatch> {
    let mut p = PortPatch::default();
    if let Some(v) = m.access {
        p.mode = Some(PortMode::Access);
        p.vlan = Some(Some(v));
    }
    if let Some(v) = &m.trunk {
        p.mode = Some(PortMode::Trunk);
        p.vlans = Some(Some(v.clone()));
    }
    p.native_vlan = set_or_clear(m.native.as_deref(), "none", |n| {
        n.parse::<u16>()
            .with_context(|| format!("--native {n:?}: not a VLAN id"))
    })?;
    if matches!(p.native_vlan, Some(Some(_))) {
        p.mode.get_or_insert(PortMode::Trunk);
    }
    p.max_macs = set_or_clear(a.max_macs.as_deref(), "default", |n| {
        n.parse::<u32>()
            .with_context(|| format!("--max-macs {n:?}: not a number"))
    })?;
    if let Some(a) = &a.limit_action {
        p.mac_limit_action = Some(Some(word("--limit-action", a)?));
    }
    p.allowed_macs = set_or_clear(a.allow_macs.as_deref(), "any", |list| {
        list.split(',')
            .map(|m| m.trim().parse::<MacAddr>())
            .collect::<Result<Vec<_>, _>>()
            .context("--allow-macs")
    })?;
    Ok(p)
}

/// A PATCH field from a flag that sets a value or, given the word `clear`, removes it:
/// `None` when the flag is absent, `Some(None)` to clear, `Some(Some(v))` to set.
fn set_or_clear<T>(
    v: Option<&str>,
    clear: &str,
    parse: impl FnOnce(&str) -> Result<T>,
) -> Result<Option<Option<T>>> {
    match v {
        None => Ok(None),
        Some(v) if v == clear => Ok(Some(None)),
        Some(v) => parse(v).map(|t| Some(Some(t))),
    }
}

/// A vhost-user port's socket.
#[derive(Debug, clap::Args)]
struct VhostArgs {
    /// vhost-user only: the socket's absolute path.
    #[arg(long)]
    socket: Option<String>,
    /// vhost-user only: server (switchd listens; the default) or client (the VM listens).
    #[arg(long)]
    socket_mode: Option<String>,
}

#[derive(Debug, Subcommand)]
enum PortCmd {
    /// Add a port: `port add vm1 --kind tap --access 10`.
    Add {
        name: String,
        /// tap (the switch creates it), netdev (an existing interface) or vhost-user (a VM
        /// sharing its memory over --socket).
        #[arg(long, default_value = "tap")]
        kind: String,
        #[command(flatten)]
        mode: ModeArgs,
        /// Set the interface up when attaching.
        #[arg(long)]
        admin_up: bool,
        #[command(flatten)]
        vhost: VhostArgs,
        #[command(flatten)]
        security: SecurityArgs,
    },
    /// Change a port's mode, VLANs, admin state or port security:
    /// `port set vm1 --trunk 10,20 --native 1`.
    Set {
        name: String,
        #[command(flatten)]
        mode: ModeArgs,
        /// Whether switchd sets the interface up when it attaches it (netdev ports): true,
        /// false, or `default` to leave it to the interface's owner.
        #[arg(long, value_name = "true|false|default")]
        admin_up: Option<String>,
        #[command(flatten)]
        security: SecurityArgs,
    },
    /// Enable a port again after port security shut it down.
    Enable { name: String },
    /// Remove a port.
    Del { name: String },
    /// List ports.
    List,
    /// Show one port.
    Show { name: String },
}

#[derive(Debug, Subcommand)]
enum VlanCmd {
    /// Declare a VLAN.
    Add {
        id: u16,
        #[arg(long)]
        name: Option<String>,
    },
    /// Change a VLAN: give it a VNI (a tunnel to other hosts) or take it away, rename it.
    Set(vxlan::VlanSetArgs),
    /// Remove a VLAN (refused while ports use it).
    Del { id: u16 },
    /// List VLANs.
    List,
}

#[derive(Debug, Subcommand)]
enum FdbCmd {
    /// Show MAC table entries.
    Show {
        #[arg(long)]
        vlan: Option<u16>,
        #[arg(long)]
        port: Option<String>,
        /// Only this MAC address.
        #[arg(long)]
        mac: Option<MacAddr>,
        /// Learned (dynamic) or configured (static) entries.
        #[arg(long = "type", value_enum)]
        kind: Option<FdbKind>,
    },
    /// Add a static entry.
    Add {
        mac: String,
        #[arg(long)]
        vlan: u16,
        #[arg(long)]
        port: String,
    },
    /// Remove one entry.
    Del {
        mac: String,
        #[arg(long)]
        vlan: u16,
    },
    /// Flush entries (dynamic only, unless --static).
    Flush {
        #[arg(long)]
        vlan: Option<u16>,
        #[arg(long)]
        port: Option<String>,
        /// Only dynamic entries (the default).
        #[arg(long, conflicts_with = "static_")]
        dynamic: bool,
        /// Static entries (removes them from the configuration).
        #[arg(long = "static")]
        static_: bool,
    },
}

#[derive(Debug, Subcommand)]
enum MirrorCmd {
    /// Copy the frames of source ports and/or VLANs to an output port (which then carries
    /// nothing else and drops what it receives).
    Add {
        name: String,
        /// The port that gets the copies.
        #[arg(long)]
        output: String,
        /// A source port (repeat for more).
        #[arg(long = "port")]
        ports: Vec<String>,
        /// A source VLAN: every frame entering it (repeat for more).
        #[arg(long = "vlan")]
        vlans: Vec<u16>,
        /// Which frames of the source ports: rx, tx or both.
        #[arg(long, value_enum, default_value = "both")]
        direction: CaptureDir,
        /// Tag the copies with this VID on the output port (in place of their own tag).
        #[arg(long, value_name = "VID")]
        tag: Option<u16>,
    },
    /// Remove a mirror.
    Del { name: String },
    /// List mirrors.
    List,
}

#[derive(Debug, Subcommand)]
enum TopoCmd {
    /// Apply a topology file: only what differs changes.
    Apply {
        file: std::path::PathBuf,
        /// Show the changes without making them.
        #[arg(long)]
        dry_run: bool,
    },
    /// Print the running configuration as a topology file.
    Export,
}

/// An error answer of the API: its reason for people, and the problem document as it came
/// (printed as is with `--json`).
#[derive(Debug)]
struct Problem {
    reason: String,
    status: u16,
    body: String,
}

impl Problem {
    /// The problem an error answer carries (its `detail`, prefixed with its `field`).
    fn of(r: http::Response) -> Problem {
        let reason = serde_json::from_str::<Value>(&r.body)
            .ok()
            .and_then(|v| {
                let detail = v.get("detail")?.as_str()?.to_string();
                Some(match v.get("field").and_then(|f| f.as_str()) {
                    Some(f) if !detail.starts_with(f) => format!("{f}: {detail}"),
                    _ => detail,
                })
            })
            .unwrap_or_else(|| r.body.trim().to_string());
        Problem {
            reason,
            status: r.status,
            body: r.body,
        }
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (HTTP {})", self.reason, self.status)
    }
}

impl std::error::Error for Problem {}

struct Client {
    server: String,
    token: Option<String>,
}

impl Client {
    fn call(&self, method: &str, path: &str, body: Option<(&str, Vec<u8>)>) -> Result<Value> {
        let r = http::request(
            &self.server,
            self.token.as_deref(),
            method,
            path,
            body.as_ref().map(|(c, b)| (*c, b.as_slice())),
        )?;
        if !(200..300).contains(&r.status) {
            return Err(Problem::of(r).into());
        }
        if r.body.trim().is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_str(&r.body).context("the server's reply is not JSON")
    }

    /// Follows the stream at `path` ([`http::stream`]), handing its bytes to `on_data`.
    fn stream(
        &self,
        path: &str,
        accept: &str,
        on_data: impl FnMut(&[u8]) -> Result<bool>,
    ) -> Result<()> {
        match http::stream(
            &self.server,
            self.token.as_deref(),
            path,
            accept,
            None,
            on_data,
        )? {
            None => Ok(()),
            Some(r) => Err(Problem::of(r).into()),
        }
    }

    fn json(&self, method: &str, path: &str, v: &Value) -> Result<Value> {
        self.call(
            method,
            path,
            Some(("application/json", v.to_string().into_bytes())),
        )
    }
}

/// Percent-encodes one path segment or query value (interface names may hold any byte but
/// '/', NUL and whitespace).
fn enc(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for b in v.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~:".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn query(pairs: &[(&str, Option<String>)]) -> String {
    let q: Vec<String> = pairs
        .iter()
        .filter_map(|(k, v)| v.as_ref().map(|v| format!("{k}={}", enc(v))))
        .collect();
    if q.is_empty() {
        String::new()
    } else {
        format!("?{}", q.join("&"))
    }
}

/// What every subcommand needs: the client and whether to print JSON.
struct Ctx {
    client: Client,
    json: bool,
}

impl Ctx {
    /// Prints the server's answer: its JSON as it came with `--json`, else read into `T` (the
    /// server's own response type) and shown by `table`. An answer that does not have the
    /// shape of `T` is an error, not a table of `-`.
    fn show<T: DeserializeOwned>(&self, v: Value, table: impl FnOnce(T)) -> Result<()> {
        if self.json {
            print_json(&v);
        } else {
            table(serde_json::from_value(v).context("the server's reply has an unexpected shape")?);
        }
        Ok(())
    }

    /// Prints the server's JSON with `--json`, nothing otherwise.
    fn json_only(&self, v: &Value) {
        if self.json {
            print_json(v)
        }
    }
}

fn print_json(v: &Value) {
    println!("{}", serde_json::to_string_pretty(v).unwrap_or_default())
}

fn port_add(
    ctx: &Ctx,
    name: String,
    kind: String,
    mode: ModeArgs,
    admin_up: bool,
    vhost: VhostArgs,
    security: SecurityArgs,
) -> Result<()> {
    let p = patch_of(&mode, &security)?;
    let Some(mode) = p.mode else {
        bail!("give --access VID or --trunk VIDS");
    };
    // `default` and `any` mean "not set" for a new port.
    let port = Port {
        name,
        kind: word("--kind", &kind)?,
        mode,
        vlan: p.vlan.flatten(),
        vlans: p.vlans.flatten(),
        native_vlan: p.native_vlan.flatten(),
        admin_up: admin_up.then_some(true),
        max_macs: p.max_macs.flatten(),
        mac_limit_action: p.mac_limit_action.flatten(),
        allowed_macs: p.allowed_macs.flatten(),
        socket: vhost.socket,
        socket_mode: vhost
            .socket_mode
            .map(|m| word("--socket-mode", &m))
            .transpose()?,
    };
    let v = ctx
        .client
        .json("POST", "/api/v1/ports", &serde_json::to_value(&port)?)?;
    ctx.show(v, |p: PortView| table::ports(&[p]))
}

/// Whether a port named `name` exists.
fn port_exists(ctx: &Ctx, name: &str) -> Result<bool> {
    match ctx
        .client
        .call("GET", &format!("/api/v1/ports/{}", enc(name)), None)
    {
        Ok(_) => Ok(true),
        Err(e) if e.downcast_ref::<Problem>().is_some_and(|p| p.status == 404) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Adds the VM's tap `dev` as a netdev port (set up by the switch) in `m`'s VLANs; a port of
/// that name (left from an earlier VM) is replaced.
fn plug(ctx: &Ctx, dev: &str, m: &hook::Membership) -> Result<()> {
    let (mode, vlan, vlans, native_vlan) = match m {
        hook::Membership::Access(v) => (PortMode::Access, Some(*v), None, None),
        hook::Membership::Trunk { vlans, native } => {
            (PortMode::Trunk, None, Some(vlans.clone()), *native)
        }
    };
    // A port that is already what the VM asks for (libvirtd restarted: `reconnect`) is left
    // alone, with its MACs and counters; any other port of that name is replaced.
    if let Ok(v) = ctx
        .client
        .call("GET", &format!("/api/v1/ports/{}", enc(dev)), None)
    {
        if let Ok(p) = serde_json::from_value::<PortView>(v) {
            let c = &p.config;
            if c.kind == control_api::topology::PortKind::Netdev
                && c.mode == mode
                && c.vlan == vlan
                && c.vlans == vlans
                && c.native_vlan == native_vlan
            {
                return Ok(());
            }
        }
    }
    unplug(ctx, dev)?;
    let port = Port {
        name: dev.to_string(),
        kind: control_api::topology::PortKind::Netdev,
        mode,
        vlan,
        vlans,
        native_vlan,
        admin_up: Some(true),
        max_macs: None,
        mac_limit_action: None,
        allowed_macs: None,
        socket: None,
        socket_mode: None,
    };
    ctx.client
        .json("POST", "/api/v1/ports", &serde_json::to_value(&port)?)
        .with_context(|| format!("adding port {dev}"))?;
    println!("plugged {dev} into the switch");
    Ok(())
}

/// Removes the port `dev`, if there is one.
fn unplug(ctx: &Ctx, dev: &str) -> Result<()> {
    if port_exists(ctx, dev)? {
        ctx.client
            .call("DELETE", &format!("/api/v1/ports/{}", enc(dev)), None)
            .with_context(|| format!("removing port {dev}"))?;
        println!("unplugged {dev} from the switch");
    }
    Ok(())
}

/// libvirt's qemu hook: `prepare` removes stale ports of the domain's (fixed) tap names,
/// `started` and `reconnect` (libvirtd restarted) plug every interface the metadata names,
/// `stopped` and `release` unplug them; other operations do nothing.
fn libvirt_hook(ctx: &Ctx, domain: &str, operation: &str) -> Result<()> {
    if !matches!(
        operation,
        "prepare" | "started" | "reconnect" | "stopped" | "release"
    ) {
        return Ok(());
    }
    let mut xml = String::new();
    std::io::Read::read_to_string(&mut std::io::stdin(), &mut xml)
        .context("reading the domain XML on stdin")?;
    let plugs = hook::plugs(&xml).with_context(|| format!("domain {domain}"))?;
    for p in &plugs {
        match operation {
            "started" | "reconnect" => plug(ctx, &p.dev, &p.membership)?,
            _ => unplug(ctx, &p.dev)?,
        }
    }
    Ok(())
}

fn port_set(
    ctx: &Ctx,
    name: String,
    mode: ModeArgs,
    admin_up: Option<String>,
    security: SecurityArgs,
) -> Result<()> {
    let mut patch = patch_of(&mode, &security)?;
    patch.admin_up = set_or_clear(admin_up.as_deref(), "default", |v| {
        v.parse::<bool>()
            .with_context(|| format!("--admin-up {v:?}: true, false or default"))
    })?;
    if patch == PortPatch::default() {
        bail!(
            "nothing to set: give --access, --trunk, --native, --admin-up, --max-macs, \
             --limit-action or --allow-macs"
        );
    }
    let path = format!("/api/v1/ports/{}", enc(&name));
    let v = ctx
        .client
        .json("PATCH", &path, &serde_json::to_value(&patch)?)?;
    ctx.show(v, |p: PortView| table::ports(&[p]))
}

fn port_enable(ctx: &Ctx, name: String) -> Result<()> {
    let path = format!("/api/v1/ports/{}/enable", enc(&name));
    let v = ctx.client.call("POST", &path, None)?;
    ctx.show(v, |p: PortView| table::ports(&[p]))
}

fn port_del(ctx: &Ctx, name: String) -> Result<()> {
    let path = format!("/api/v1/ports/{}", enc(&name));
    ctx.client.call("DELETE", &path, None)?;
    Ok(())
}

fn port_list(ctx: &Ctx) -> Result<()> {
    let v = ctx.client.call("GET", "/api/v1/ports", None)?;
    ctx.show(v, |ports: Vec<PortView>| table::ports(&ports))
}

fn port_show(ctx: &Ctx, name: String) -> Result<()> {
    let v = ctx
        .client
        .call("GET", &format!("/api/v1/ports/{}", enc(&name)), None)?;
    ctx.show(v, |p: PortView| {
        table::detail(&serde_json::to_value(&p).unwrap_or_default())
    })
}

fn vlan_add(ctx: &Ctx, id: u16, name: Option<String>) -> Result<()> {
    let vlan = Vlan {
        id,
        name,
        max_macs: None,
        vni: None,
        remotes: None,
    };
    let v = ctx
        .client
        .json("POST", "/api/v1/vlans", &serde_json::to_value(&vlan)?)?;
    ctx.json_only(&v);
    Ok(())
}

fn vlan_del(ctx: &Ctx, id: u16) -> Result<()> {
    ctx.client
        .call("DELETE", &format!("/api/v1/vlans/{id}"), None)?;
    Ok(())
}

fn vlan_list(ctx: &Ctx) -> Result<()> {
    let v = ctx.client.call("GET", "/api/v1/vlans", None)?;
    ctx.show(v, |vlans: Vec<VlanView>| table::vlans(&vlans))
}

/// `fdb show --type`: the API's words, and `learned` for dynamic entries.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum FdbKind {
    /// Learned entries.
    #[value(alias = "learned")]
    Dynamic,
    /// Configured entries.
    Static,
}

fn fdb_show(
    ctx: &Ctx,
    vlan: Option<u16>,
    port: Option<String>,
    mac: Option<MacAddr>,
    kind: Option<FdbKind>,
) -> Result<()> {
    let kind = kind.map(|k| match k {
        FdbKind::Dynamic => "dynamic".to_string(),
        FdbKind::Static => "static".to_string(),
    });
    let q = query(&[
        ("vlan", vlan.map(|v| v.to_string())),
        ("port", port),
        ("type", kind),
    ]);
    let mut v = ctx.client.call("GET", &format!("/api/v1/fdb{q}"), None)?;
    if let (Some(mac), Value::Array(entries)) = (mac, &mut v) {
        // The API has no MAC filter: one MAC is a handful of entries (one per VLAN).
        entries.retain(|e| {
            e.get("mac")
                .and_then(Value::as_str)
                .and_then(|m| m.parse::<MacAddr>().ok())
                == Some(mac)
        });
    }
    ctx.show(v, |entries: Vec<FdbEntryView>| table::fdb(&entries))
}

fn fdb_add(ctx: &Ctx, mac: String, vlan: u16, port: String) -> Result<()> {
    let entry = StaticMac {
        vlan,
        mac: mac.parse().context("the MAC")?,
        port,
    };
    let v = ctx
        .client
        .json("POST", "/api/v1/fdb", &serde_json::to_value(&entry)?)?;
    ctx.json_only(&v);
    Ok(())
}

fn fdb_del(ctx: &Ctx, mac: String, vlan: u16) -> Result<()> {
    let path = format!("/api/v1/fdb/{vlan}/{}", enc(&mac));
    ctx.client.call("DELETE", &path, None)?;
    Ok(())
}

fn fdb_flush(ctx: &Ctx, vlan: Option<u16>, port: Option<String>, static_: bool) -> Result<()> {
    let q = query(&[
        ("vlan", vlan.map(|v| v.to_string())),
        ("port", port),
        (
            "type",
            Some(if static_ { "static" } else { "dynamic" }.into()),
        ),
    ]);
    let v = ctx
        .client
        .call("DELETE", &format!("/api/v1/fdb{q}"), None)?;
    ctx.show(v, |r: Removed| {
        let s = if r.removed == 1 { "entry" } else { "entries" };
        println!("removed {} {s}", r.removed)
    })
}

fn topology_apply(ctx: &Ctx, file: std::path::PathBuf, dry_run: bool) -> Result<()> {
    let text = std::fs::read(&file).with_context(|| format!("cannot read {}", file.display()))?;
    // The running configuration and the file, to show each change's old and new values. If
    // either cannot be had here, the changes are shown as the server names them.
    let before: Option<control_api::Topology> = ctx
        .client
        .call("GET", "/api/v1/topology", None)
        .ok()
        .and_then(|v| serde_json::from_value(v).ok());
    let after = std::str::from_utf8(&text)
        .ok()
        .and_then(|t| control_api::Topology::from_yaml(t).ok());
    let path = format!(
        "/api/v1/topology{}",
        if dry_run { "?dry_run=true" } else { "" }
    );
    let v = ctx
        .client
        .call("PUT", &path, Some(("application/yaml", text)))?;
    ctx.show(v, |r: ApplyResult| {
        if r.changes.is_empty() {
            println!("no changes");
        }
        let verb = if dry_run { "would" } else { "did" };
        for ch in r.changes {
            // `op` names the change; then what it touched, old -> new.
            let mut v = serde_json::to_value(&ch).unwrap_or_default();
            let op = v
                .as_object_mut()
                .and_then(|o| o.remove("op"))
                .and_then(|op| op.as_str().map(str::to_string))
                .unwrap_or_else(|| "?".into());
            let (Some(old), Some(new)) = (&before, &after) else {
                println!("{verb} {op} {v}");
                continue;
            };
            for t in control_api::diff::touched(&ch, old, new) {
                let mut line = format!("{verb} {op}");
                if let Some(p) = &t.port {
                    line.push_str(&format!(" port={p}"));
                }
                if let Some(id) = t.vlan {
                    line.push_str(&format!(" vlan={id}"));
                }
                println!("{line} {}: {} -> {}", t.field, t.from, t.to);
            }
        }
    })
}

fn topology_export(ctx: &Ctx) -> Result<()> {
    let v = ctx.client.call("GET", "/api/v1/topology", None)?;
    if ctx.json {
        print_json(&v);
        return Ok(());
    }
    let t: control_api::Topology =
        serde_json::from_value(v).context("the server's topology does not parse")?;
    print!("{}", t.to_yaml());
    Ok(())
}

fn stats(ctx: &Ctx) -> Result<()> {
    let v = ctx.client.call("GET", "/api/v1/stats", None)?;
    ctx.show(v, |s: Stats| table::stats(&s))
}

fn trace(ctx: &Ctx, t: TraceArgs) -> Result<()> {
    let body = match &t.hex {
        Some(hex) => serde_json::json!({ "port": t.port, "hex": hex, "learn": t.learn }),
        None => serde_json::json!({
            "port": t.port,
            "learn": t.learn,
            "frame": {
                "src": t.src.map(|m| m.to_string()),
                "dst": t.dst.map(|m| m.to_string()),
                "vlans": t.vlans,
                "ethertype": t.ethertype,
                "src_ip": t.src_ip,
                "dst_ip": t.dst_ip,
            }
        }),
    };
    let v = ctx.client.json("POST", "/api/v1/trace", &body)?;
    ctx.show(v, |t: dataplane::trace::Trace| table::trace(&t))
}

/// Arms a live trace, waits for its frames (or `--wait`), disarms it and prints them.
fn live_trace(ctx: &Ctx, t: TraceArgs) -> Result<()> {
    if t.vlans.len() > 1 {
        bail!("--live matches one --vlan");
    }
    let path = format!("/api/v1/ports/{}/trace", enc(&t.port));
    let q = query(&[
        ("count", t.live.map(|n| n.to_string())),
        ("src", t.src.map(|m| m.to_string())),
        ("dst", t.dst.map(|m| m.to_string())),
        ("vlan", t.vlans.first().map(|v| v.to_string())),
    ]);
    ctx.client.call("POST", &format!("{path}{q}"), None)?;
    let until = std::time::Instant::now() + std::time::Duration::from_secs(t.wait);
    loop {
        // Whole seconds left, rounded up: the server waits in whole seconds.
        let left = until.saturating_duration_since(std::time::Instant::now());
        let wait = left.as_millis().div_ceil(1000) as u64;
        let wait = wait.min(control_api::api::MAX_WAIT_SECS);
        let v = ctx
            .client
            .call("GET", &format!("{path}?wait_secs={wait}"), None)?;
        if v["armed"] != Value::Bool(true) || std::time::Instant::now() >= until {
            break;
        }
    }
    let v = ctx.client.call("DELETE", &path, None)?;
    ctx.show(v, |l: control_api::api::LiveTraceView| {
        for (i, r) in l.records.iter().enumerate() {
            let ns = r.at_unix_ns;
            let (s, n) = (ns / 1_000_000_000 % 86_400, ns % 1_000_000_000);
            let at = format!("{:02}:{:02}:{:02}.{n:09}", s / 3600, s / 60 % 60, s % 60);
            println!("frame {} at {at} UTC", i + 1);
            table::trace(&r.trace);
            println!();
        }
        println!(
            "{} of {} frames recorded on {}",
            l.records.len(),
            l.count,
            l.port
        );
    })
}

/// Streams a capture to standard output (or `--write`), then says on standard error how many
/// frames came and how many the switch could not capture.
fn capture(ctx: &Ctx, c: CaptureArgs) -> Result<()> {
    use std::io::{IsTerminal, Write};
    let dir = match c.direction {
        CaptureDir::Rx => "rx",
        CaptureDir::Tx => "tx",
        CaptureDir::Both => "both",
    };
    let q = query(&[
        ("count", c.count.map(|n| n.to_string())),
        ("seconds", c.seconds.map(|n| n.to_string())),
        ("snaplen", c.snaplen.map(|n| n.to_string())),
        ("direction", Some(dir.to_string())),
    ]);
    let mut out: Box<dyn Write> = match &c.write {
        Some(path) => Box::new(
            std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?,
        ),
        None if std::io::stdout().is_terminal() => {
            bail!("a capture is binary pcapng: pipe it (| tcpdump -nr -) or give -w FILE")
        }
        None => Box::new(std::io::stdout().lock()),
    };
    let (mut pending, mut frames, mut lost, mut reader_gone) = (Vec::new(), 0u64, 0u64, false);
    let path = format!("/api/v1/ports/{}/capture{q}", enc(&c.port));
    ctx.client.stream(&path, control_api::api::PCAPNG, |data| {
        if out.write_all(data).and_then(|()| out.flush()).is_err() {
            // The reader (tcpdump -c N, head) has had enough.
            reader_gone = true;
            return Ok(false);
        }
        pending.extend_from_slice(data);
        let used = control_api::pcapng::blocks(&pending, |kind, body| match kind {
            6 => frames += 1,
            5 => lost += control_api::pcapng::dropped_of(body).unwrap_or(0),
            _ => {}
        })
        .map_err(anyhow::Error::msg)?;
        pending.drain(..used);
        Ok(true)
    })?;
    if !reader_gone {
        eprintln!(
            "switchctl: {frames} frames captured on {}, {lost} lost",
            c.port
        );
    }
    Ok(())
}

fn show(ctx: &Ctx) -> Result<()> {
    let vlans = ctx.client.call("GET", "/api/v1/vlans", None)?;
    let ports = ctx.client.call("GET", "/api/v1/ports", None)?;
    let stats = ctx.client.call("GET", "/api/v1/stats", None)?;
    if ctx.json {
        print_json(&serde_json::json!({ "vlans": vlans, "ports": ports, "stats": stats }));
        return Ok(());
    }
    let shape = "the server's reply has an unexpected shape";
    let vlans: Vec<VlanView> = serde_json::from_value(vlans).context(shape)?;
    let ports: Vec<PortView> = serde_json::from_value(ports).context(shape)?;
    let stats: Stats = serde_json::from_value(stats).context(shape)?;
    table::switch(&ctx.client.server, &vlans, &ports, &stats);
    Ok(())
}

fn run(cli: Cli) -> Result<()> {
    if let Cmd::GenerateDocs { dir } = &cli.cmd {
        use clap::CommandFactory;
        return docs::write(Cli::command(), "1", dir)
            .with_context(|| format!("writing into {}", dir.display()));
    }
    let token = match &cli.token_file {
        Some(p) => Some(
            std::fs::read_to_string(p)
                .with_context(|| format!("cannot read token file {}", p.display()))?
                .trim()
                .to_string(),
        ),
        None => None,
    };
    let ctx = Ctx {
        client: Client {
            server: cli.server.clone(),
            token,
        },
        json: cli.json,
    };
    match cli.cmd {
        Cmd::Port(PortCmd::Add {
            name,
            kind,
            mode,
            admin_up,
            vhost,
            security,
        }) => port_add(&ctx, name, kind, mode, admin_up, vhost, security),
        Cmd::Port(PortCmd::Set {
            name,
            mode,
            admin_up,
            security,
        }) => port_set(&ctx, name, mode, admin_up, security),
        Cmd::Port(PortCmd::Enable { name }) => port_enable(&ctx, name),
        Cmd::Port(PortCmd::Del { name }) => port_del(&ctx, name),
        Cmd::Port(PortCmd::List) => port_list(&ctx),
        Cmd::Port(PortCmd::Show { name }) => port_show(&ctx, name),
        Cmd::Vlan(VlanCmd::Add { id, name }) => vlan_add(&ctx, id, name),
        Cmd::Vlan(VlanCmd::Set(a)) => vxlan::vlan_set(&ctx, a),
        Cmd::Vlan(VlanCmd::Del { id }) => vlan_del(&ctx, id),
        Cmd::Vxlan(cmd) => vxlan::run(&ctx, cmd),
        Cmd::Vlan(VlanCmd::List) => vlan_list(&ctx),
        Cmd::Fdb(FdbCmd::Show {
            vlan,
            port,
            mac,
            kind,
        }) => fdb_show(&ctx, vlan, port, mac, kind),
        Cmd::Fdb(FdbCmd::Add { mac, vlan, port }) => fdb_add(&ctx, mac, vlan, port),
        Cmd::Fdb(FdbCmd::Del { mac, vlan }) => fdb_del(&ctx, mac, vlan),
        Cmd::Fdb(FdbCmd::Flush {
            vlan,
            port,
            dynamic: _,
            static_,
        }) => fdb_flush(&ctx, vlan, port, static_),
        Cmd::Topology(TopoCmd::Apply { file, dry_run }) => topology_apply(&ctx, file, dry_run),
        Cmd::Topology(TopoCmd::Export) => topology_export(&ctx),
        Cmd::Stats => stats(&ctx),
        Cmd::Show => show(&ctx),
        Cmd::Trace(t) if t.live.is_some() => live_trace(&ctx, t),
        Cmd::Trace(t) => trace(&ctx, t),
        Cmd::Capture(c) => capture(&ctx, c),
        Cmd::Mirror(MirrorCmd::Add {
            name,
            output,
            ports,
            vlans,
            direction,
            tag,
        }) => {
            let m = control_api::Mirror {
                name,
                output,
                ports,
                vlans,
                direction: Some(match direction {
                    CaptureDir::Rx => control_api::MirrorDirection::Rx,
                    CaptureDir::Tx => control_api::MirrorDirection::Tx,
                    CaptureDir::Both => control_api::MirrorDirection::Both,
                }),
                vlan: tag,
            };
            let v = ctx
                .client
                .json("POST", "/api/v1/mirrors", &serde_json::to_value(&m)?)?;
            ctx.show(v, |m: control_api::Mirror| table::mirrors(&[m]))
        }
        Cmd::Mirror(MirrorCmd::Del { name }) => {
            let v = ctx
                .client
                .call("DELETE", &format!("/api/v1/mirrors/{}", enc(&name)), None)?;
            ctx.json_only(&v);
            Ok(())
        }
        Cmd::Mirror(MirrorCmd::List) => {
            let v = ctx.client.call("GET", "/api/v1/mirrors", None)?;
            ctx.show(v, |m: Vec<control_api::Mirror>| table::mirrors(&m))
        }
        Cmd::Events { types, count } => events::follow(&ctx, types, count),
        Cmd::Hook(HookCmd::QemuIfup { ifname }) => {
            let env = |k: &str| std::env::var(k).ok();
            let m = hook::Membership::from_settings(
                "the environment",
                env("VLANSWITCH_VLAN").as_deref(),
                env("VLANSWITCH_TRUNK").as_deref(),
                env("VLANSWITCH_NATIVE").as_deref(),
            )?
            .context("set VLANSWITCH_VLAN=VID or VLANSWITCH_TRUNK=VIDS for the VM's QEMU")?;
            plug(&ctx, &ifname, &m)
        }
        Cmd::Hook(HookCmd::QemuIfdown { ifname }) => unplug(&ctx, &ifname),
        Cmd::Hook(HookCmd::Libvirt {
            domain, operation, ..
        }) => libvirt_hook(&ctx, &domain, &operation),
        Cmd::GenerateDocs { .. } => unreachable!("handled first"),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let json = cli.json;
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            match e.downcast_ref::<Problem>() {
                // With --json, errors are JSON too: the server's problem document, or one made
                // here for a mistake found before asking it.
                Some(p) if json && serde_json::from_str::<Value>(&p.body).is_ok() => {
                    eprintln!("{}", p.body.trim())
                }
                Some(p) if json => eprintln!(
                    "{}",
                    serde_json::json!({ "title": "error", "status": p.status, "detail": p.reason })
                ),
                _ if json => eprintln!(
                    "{}",
                    serde_json::json!({ "title": "switchctl error", "detail": format!("{e:#}") })
                ),
                _ => eprintln!("switchctl: {e:#}"),
            }
            ExitCode::FAILURE
        }
    }
}
