//! `switchctl`: the command-line client of switchd's REST API, with the vocabulary of
//! `ovs-vsctl` and `bridge`. Tables for people, `--json` for scripts; on an error it prints the
//! server's reason and exits non-zero.

mod http;

use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use serde_json::{json, Value};

#[derive(Debug, Parser)]
#[command(version, about = "Configure a running switchd")]
struct Cli {
    /// switchd's API: HOST:PORT or unix:/PATH.
    #[arg(
        long,
        env = "SWITCHCTL_SERVER",
        default_value = "127.0.0.1:7380",
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
    /// VLANs: add, del, list.
    #[command(subcommand)]
    Vlan(VlanCmd),
    /// The MAC table: show, add, del, flush.
    #[command(subcommand)]
    Fdb(FdbCmd),
    /// The whole configuration: apply, export.
    #[command(subcommand)]
    Topology(TopoCmd),
    /// Per-port and per-VLAN counters.
    Stats,
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

fn security_json(a: &SecurityArgs, body: &mut serde_json::Map<String, Value>) -> Result<()> {
    match a.max_macs.as_deref() {
        None => {}
        Some("default") => {
            body.insert("max_macs".into(), Value::Null);
        }
        Some(n) => {
            let n: u32 = n
                .parse()
                .with_context(|| format!("--max-macs {n:?}: not a number"))?;
            body.insert("max_macs".into(), json!(n));
        }
    }
    if let Some(a) = &a.limit_action {
        body.insert("mac_limit_action".into(), json!(a));
    }
    match a.allow_macs.as_deref() {
        None => {}
        Some("any") => {
            body.insert("allowed_macs".into(), Value::Null);
        }
        Some(list) => {
            let macs: Vec<&str> = list.split(',').map(str::trim).collect();
            body.insert("allowed_macs".into(), json!(macs));
        }
    }
    Ok(())
}

#[derive(Debug, Subcommand)]
enum PortCmd {
    /// Add a port: `port add vm1 --kind tap --access 10`.
    Add {
        name: String,
        /// tap (the switch creates it) or netdev (an existing interface).
        #[arg(long, default_value = "tap")]
        kind: String,
        #[command(flatten)]
        mode: ModeArgs,
        /// Set the interface up when attaching.
        #[arg(long)]
        admin_up: bool,
        #[command(flatten)]
        security: SecurityArgs,
    },
    /// Change a port's mode, VLANs or port security: `port set vm1 --trunk 10,20 --native 1`.
    Set {
        name: String,
        #[command(flatten)]
        mode: ModeArgs,
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
        /// dynamic or static.
        #[arg(long = "type")]
        kind: Option<String>,
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
            bail!("{reason} (HTTP {})", r.status);
        }
        if r.body.trim().is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_str(&r.body).context("the server's reply is not JSON")
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

fn mode_json(m: &ModeArgs, body: &mut serde_json::Map<String, Value>) -> Result<()> {
    if let Some(v) = m.access {
        body.insert("mode".into(), json!("access"));
        body.insert("vlan".into(), json!(v));
    }
    if let Some(v) = &m.trunk {
        body.insert("mode".into(), json!("trunk"));
        body.insert("vlans".into(), json!(v));
    }
    match m.native.as_deref() {
        None => {}
        Some("none") => {
            body.insert("native_vlan".into(), Value::Null);
        }
        Some(n) => {
            let n: u16 = n
                .parse()
                .with_context(|| format!("--native {n:?}: not a VLAN id"))?;
            body.insert("native_vlan".into(), json!(n));
            body.entry("mode").or_insert(json!("trunk"));
        }
    }
    Ok(())
}

/// Prints rows as aligned columns.
fn table(header: &[&str], rows: Vec<Vec<String>>) {
    let mut w: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in &rows {
        for (i, c) in r.iter().enumerate() {
            w[i] = w[i].max(c.len());
        }
    }
    let line = |cells: Vec<String>| {
        let s: Vec<String> = cells
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<width$}", width = w[i]))
            .collect();
        println!("{}", s.join("  ").trim_end());
    };
    line(header.iter().map(|s| s.to_string()).collect());
    for r in rows {
        line(r);
    }
}

fn s(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        Value::Array(a) => a.iter().map(s).collect::<Vec<_>>().join(","),
        other => other.to_string(),
    }
}

/// One table row per element of the JSON array `v`, with the given fields.
fn rows_of(v: &Value, fields: &[&str]) -> Vec<Vec<String>> {
    v.as_array()
        .map_or(&[][..], |a| a)
        .iter()
        .map(|e| fields.iter().map(|f| s(&e[*f])).collect())
        .collect()
}

fn port_rows(ports: &[Value]) -> Vec<Vec<String>> {
    ports
        .iter()
        .map(|p| {
            let vlans = if p["mode"] == "access" {
                s(&p["vlan"])
            } else {
                let mut t = s(&p["vlans"]);
                if !p["native_vlan"].is_null() {
                    t = format!("{t} native {}", s(&p["native_vlan"]));
                }
                t
            };
            vec![
                s(&p["name"]),
                s(&p["kind"]),
                s(&p["mode"]),
                vlans,
                s(&p["state"]["link"]),
                s(&p["state"]["learned_macs"]),
                s(&p["state"]["counters"]["rx_packets"]),
                s(&p["state"]["counters"]["tx_packets"]),
            ]
        })
        .collect()
}

const PORT_HEADER: [&str; 8] = ["NAME", "KIND", "MODE", "VLANS", "LINK", "MACS", "RX", "TX"];

fn run(cli: Cli) -> Result<()> {
    let token = match &cli.token_file {
        Some(p) => Some(
            std::fs::read_to_string(p)
                .with_context(|| format!("cannot read token file {}", p.display()))?
                .trim()
                .to_string(),
        ),
        None => None,
    };
    let c = Client {
        server: cli.server.clone(),
        token,
    };
    let print = |v: &Value| println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
    match cli.cmd {
        Cmd::Port(PortCmd::Add {
            name,
            kind,
            mode,
            admin_up,
            security,
        }) => {
            let mut body = serde_json::Map::new();
            body.insert("name".into(), json!(name));
            body.insert("kind".into(), json!(kind));
            mode_json(&mode, &mut body)?;
            security_json(&security, &mut body)?;
            // `default` and `any` mean "not set" for a new port.
            body.retain(|_, v| !v.is_null());
            if !body.contains_key("mode") {
                bail!("give --access VID or --trunk VIDS");
            }
            if admin_up {
                body.insert("admin_up".into(), json!(true));
            }
            let v = c.json("POST", "/api/v1/ports", &Value::Object(body))?;
            if cli.json {
                print(&v)
            } else {
                table(&PORT_HEADER, port_rows(&[v]))
            }
        }
        Cmd::Port(PortCmd::Set {
            name,
            mode,
            security,
        }) => {
            let mut body = serde_json::Map::new();
            mode_json(&mode, &mut body)?;
            security_json(&security, &mut body)?;
            if body.is_empty() {
                bail!(
                    "nothing to set: give --access, --trunk, --native, --max-macs, \
                     --limit-action or --allow-macs"
                );
            }
            let v = c.json(
                "PATCH",
                &format!("/api/v1/ports/{}", enc(&name)),
                &Value::Object(body),
            )?;
            if cli.json {
                print(&v)
            } else {
                table(&PORT_HEADER, port_rows(&[v]))
            }
        }
        Cmd::Port(PortCmd::Enable { name }) => {
            let v = c.call(
                "POST",
                &format!("/api/v1/ports/{}/enable", enc(&name)),
                None,
            )?;
            if cli.json {
                print(&v)
            } else {
                table(&PORT_HEADER, port_rows(&[v]))
            }
        }
        Cmd::Port(PortCmd::Del { name }) => {
            c.call("DELETE", &format!("/api/v1/ports/{}", enc(&name)), None)?;
        }
        Cmd::Port(PortCmd::List) => {
            let v = c.call("GET", "/api/v1/ports", None)?;
            if cli.json {
                print(&v)
            } else {
                table(&PORT_HEADER, port_rows(v.as_array().map_or(&[], |a| a)))
            }
        }
        Cmd::Port(PortCmd::Show { name }) => {
            let v = c.call("GET", &format!("/api/v1/ports/{}", enc(&name)), None)?;
            print(&v)
        }
        Cmd::Vlan(VlanCmd::Add { id, name }) => {
            let mut body = json!({ "id": id });
            if let Some(n) = name {
                body["name"] = json!(n);
            }
            let v = c.json("POST", "/api/v1/vlans", &body)?;
            if cli.json {
                print(&v)
            }
        }
        Cmd::Vlan(VlanCmd::Del { id }) => {
            c.call("DELETE", &format!("/api/v1/vlans/{id}"), None)?;
        }
        Cmd::Vlan(VlanCmd::List) => {
            let v = c.call("GET", "/api/v1/vlans", None)?;
            if cli.json {
                print(&v)
            } else {
                table(
                    &["VLAN", "NAME", "PORTS"],
                    rows_of(&v, &["id", "name", "ports"]),
                )
            }
        }
        Cmd::Fdb(FdbCmd::Show { vlan, port, kind }) => {
            let q = query(&[
                ("vlan", vlan.map(|v| v.to_string())),
                ("port", port),
                ("type", kind),
            ]);
            let v = c.call("GET", &format!("/api/v1/fdb{q}"), None)?;
            if cli.json {
                print(&v)
            } else {
                let rows = rows_of(&v, &["vlan", "mac", "port", "type", "age_secs"]);
                table(&["VLAN", "MAC", "PORT", "TYPE", "AGE"], rows)
            }
        }
        Cmd::Fdb(FdbCmd::Add { mac, vlan, port }) => {
            let v = c.json(
                "POST",
                "/api/v1/fdb",
                &json!({ "vlan": vlan, "mac": mac, "port": port }),
            )?;
            if cli.json {
                print(&v)
            }
        }
        Cmd::Fdb(FdbCmd::Del { mac, vlan }) => {
            c.call("DELETE", &format!("/api/v1/fdb/{vlan}/{}", enc(&mac)), None)?;
        }
        Cmd::Fdb(FdbCmd::Flush {
            vlan,
            port,
            dynamic: _,
            static_,
        }) => {
            let q = query(&[
                ("vlan", vlan.map(|v| v.to_string())),
                ("port", port),
                (
                    "type",
                    Some(if static_ { "static" } else { "dynamic" }.into()),
                ),
            ]);
            let v = c.call("DELETE", &format!("/api/v1/fdb{q}"), None)?;
            if cli.json {
                print(&v)
            } else {
                println!("removed {} entries", s(&v["removed"]));
            }
        }
        Cmd::Topology(TopoCmd::Apply { file, dry_run }) => {
            let text =
                std::fs::read(&file).with_context(|| format!("cannot read {}", file.display()))?;
            let v = c.call(
                "PUT",
                &format!(
                    "/api/v1/topology{}",
                    if dry_run { "?dry_run=true" } else { "" }
                ),
                Some(("application/yaml", text)),
            )?;
            if cli.json {
                print(&v)
            } else {
                let changes = v["changes"].as_array().cloned().unwrap_or_default();
                if changes.is_empty() {
                    println!("no changes");
                }
                for ch in changes {
                    let mut ch = ch.clone();
                    let op = ch["op"].as_str().unwrap_or("?").to_string();
                    if let Some(o) = ch.as_object_mut() {
                        o.remove("op");
                    }
                    let verb = if dry_run { "would" } else { "did" };
                    println!("{verb} {op} {ch}");
                }
            }
        }
        Cmd::Topology(TopoCmd::Export) => {
            let v = c.call("GET", "/api/v1/topology", None)?;
            if cli.json {
                print(&v)
            } else {
                let t: control_api::Topology =
                    serde_json::from_value(v).context("the server's topology does not parse")?;
                print!("{}", t.to_yaml());
            }
        }
        Cmd::Stats => {
            let v = c.call("GET", "/api/v1/stats", None)?;
            if cli.json {
                print(&v)
            } else {
                let empty = serde_json::Map::new();
                let ports = v["ports"].as_object().unwrap_or(&empty);
                let rows = ports
                    .iter()
                    .map(|(n, c)| {
                        let drops: u64 = c["drops"]
                            .as_object()
                            .map_or(0, |d| d.values().filter_map(|x| x.as_u64()).sum());
                        vec![
                            n.clone(),
                            s(&c["rx_packets"]),
                            s(&c["rx_bytes"]),
                            s(&c["tx_packets"]),
                            s(&c["tx_bytes"]),
                            drops.to_string(),
                        ]
                    })
                    .collect();
                table(
                    &[
                        "PORT", "RX_PKTS", "RX_BYTES", "TX_PKTS", "TX_BYTES", "DROPS",
                    ],
                    rows,
                );
                println!();
                let rows = rows_of(
                    &v["vlans"],
                    &["id", "packets", "bytes", "flooded", "learned_macs"],
                );
                table(&["VLAN", "PACKETS", "BYTES", "FLOODED", "MACS"], rows);
            }
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("switchctl: {e:#}");
            ExitCode::FAILURE
        }
    }
}
