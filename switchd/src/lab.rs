//! `switchd lab FILE` (and `switchd demo`): the switch from a topology file, run by the
//! daemon's own code path ([`daemon::run_with`]), with a network namespace for each host of the
//! file's `hosts:` section; with `--check`, the file's `expect:` list run and reported.
//!
//! This module is the I/O: the lock that marks a lab as running, the removal of a killed
//! lab's leftovers, the namespaces (`ip netns`, `ip link`, `ip addr`, `ip route`), the pings
//! (`ping` in the namespace) and the TCP transfers (sockets opened in the namespaces with
//! [`dataplane::sys::in_netns`]). What to build, the names and the results table are
//! [`control_api::lab`]'s (pure, unit-tested).
//!
//! Everything a lab makes carries its id: namespaces `vslab-<id>-<host>`, the lock file
//! `/run/vlanswitch/lab-<id>.lock`. A lab holds its lock (`flock`) while it runs, so the
//! namespaces of a lab whose lock nobody holds are leftovers of one that was killed: every
//! lab run removes those first, and says so.

use std::fs::File;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use control_api::lab::{self as plan, Check, CheckKind, HostPlan, Outcome, Plan};
use control_api::Topology;
use dataplane::switch::Workers;
use sha2::{Digest, Sha256};

use crate::daemon;
use crate::exit::{Exit, Failure, OrExit};

/// Where lab lock files live.
const LOCK_DIR: &str = "/run/vlanswitch";
/// Where `ip netns` keeps named namespaces.
const NETNS_DIR: &str = "/run/netns";
/// How long a TCP check may make no progress.
const STALL: Duration = Duration::from_secs(15);

/// Where a lab's topology comes from.
pub enum Source {
    /// A file named on the command line.
    File(PathBuf),
    /// A topology built into the binary (the demo), with its default lab id.
    Embedded {
        /// The default lab id.
        id: &'static str,
        /// The topology.
        text: &'static str,
    },
}

/// The options of `switchd lab` and `switchd demo`.
pub struct Options {
    /// Run the `expect:` list and stop, instead of running until a signal.
    pub check: bool,
    /// The lab id (`--name`).
    pub name: Option<String>,
    /// Where the API listens.
    pub listen: String,
    /// The state file, if any.
    pub state: Option<PathBuf>,
    /// The switch's worker threads.
    pub workers: Workers,
}

/// Runs a lab: see the module documentation.
pub fn run(source: Source, o: Options) -> Result<ExitCode, Failure> {
    let (topo, file, default_id) = match source {
        Source::File(path) => {
            let t = daemon::read_topology(&path)?;
            let stem = path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            (t, Some(path), plan::lab_id_of_file(&stem))
        }
        Source::Embedded { id, text } => {
            let t = Topology::from_yaml(text)
                .context("the built-in topology")
                .or_exit(Exit::Software)?;
            (t, None, id.to_string())
        }
    };
    let id = match &o.name {
        Some(n) => plan::lab_id(n).or_exit(Exit::Usage)?,
        None => default_id,
    };
    if o.check && topo.expect.is_empty() {
        return Err(Failure::new(
            Exit::Config,
            anyhow::anyhow!("the lab's file has no expect: list; --check has nothing to check"),
        ));
    }
    let plan = plan::plan(&topo, &id);
    let _lock = Lock::take(&id)?;
    remove_leftovers(&id).or_exit(Exit::OsError)?;
    // Namespaces first, so that a problem is reported before any tap exists.
    let mut namespaces = Vec::new();
    for h in &plan.hosts {
        namespaces.push(Netns::create(&h.namespace).or_exit(Exit::Unavailable)?);
    }
    let mut lab = Lab {
        plan: &plan,
        check: o.check,
    };
    let result = daemon::run_with(
        daemon::RunOptions {
            topology: file,
            initial: Some(topo),
            state: o.state,
            workers: o.workers,
            listen: o.listen,
            token_file: None,
        },
        Some(&mut lab),
    );
    let names: Vec<String> = namespaces.iter().map(|n| n.0.clone()).collect();
    drop(namespaces);
    if !names.is_empty() {
        println!("lab {id}: removed the namespaces {}", names.join(", "));
    }
    result
}

/// The running lab, told by the daemon when the switch is up.
struct Lab<'a> {
    plan: &'a Plan,
    check: bool,
}

impl daemon::Beside for Lab<'_> {
    fn ready(&mut self, api: &str) -> Result<Option<ExitCode>, Failure> {
        for h in &self.plan.hosts {
            build_host(h)
                .with_context(|| format!("building host {}", h.name))
                .or_exit(Exit::Unavailable)?;
        }
        let p = self.plan;
        println!(
            "lab {} is up: each host is a network namespace whose NIC is a tap port; REST API on {api}.\n",
            p.id
        );
        print!("{}", p.hosts_table());
        if self.check {
            println!();
            let results: Vec<(Check, Outcome)> =
                p.checks.iter().map(|c| (c.clone(), run_check(c))).collect();
            print!("{}", plan::results_table(&results));
            let _ = std::io::stdout().flush();
            let all = results.iter().all(|(_, o)| o.pass);
            return Ok(Some(if all {
                ExitCode::SUCCESS
            } else {
                Exit::DataErr.into()
            }));
        }
        let tries: Vec<String> = p.checks.iter().filter_map(Check::try_command).collect();
        if !tries.is_empty() {
            println!("\nTry, in another terminal:");
            for t in tries {
                println!("  {t}");
            }
        }
        println!("\nPress Ctrl-C to stop; the taps and namespaces are removed.");
        let _ = std::io::stdout().flush();
        Ok(None)
    }
}

/// Moves the host's tap into its namespace and configures it there.
fn build_host(h: &HostPlan) -> Result<()> {
    let ns = h.namespace.as_str();
    let nic = h.nic.as_str();
    ip(&["link", "set", nic, "netns", ns])?;
    if let Some(mac) = h.mac {
        ip(&["-n", ns, "link", "set", nic, "address", &mac.to_string()])?;
    }
    if let Some(mtu) = h.mtu {
        ip(&["-n", ns, "link", "set", nic, "mtu", &mtu.to_string()])?;
    }
    for a in &h.addresses {
        let a = a.to_string();
        // No duplicate address detection: the lab's addresses are unique by its rules, and
        // the checks start at once.
        ip(&["-n", ns, "addr", "add", &a, "dev", nic, "nodad"])?;
    }
    ip(&["-n", ns, "link", "set", nic, "up"])?;
    ip(&["-n", ns, "link", "set", "lo", "up"])?;
    for (to, via) in &h.routes {
        ip(&["-n", ns, "route", "add", to, "via", &via.to_string()])?;
    }
    Ok(())
}

/// Runs one check.
fn run_check(c: &Check) -> Outcome {
    let ping = |count: &str| {
        Command::new("ip")
            .args(["netns", "exec", &c.from_ns, "ping", "-c", count])
            .args(["-i", "0.2", "-W", "1", &c.addr.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    let answered = |pass: bool| Outcome {
        pass,
        detail: format!("{} answered", c.addr),
    };
    let silent = |pass: bool| Outcome {
        pass,
        detail: format!("{}: no answer to 3 pings", c.addr),
    };
    match c.kind {
        // Up to 3 tries of one ping: the first may wait for ARP.
        CheckKind::Ping if (0..3).any(|_| ping("1")) => answered(true),
        CheckKind::Ping => silent(false),
        CheckKind::NoPing if ping("3") => answered(false),
        CheckKind::NoPing => silent(true),
        CheckKind::Tcp { mb } => match tcp_transfer(c, mb) {
            Ok(o) => o,
            Err(e) => Outcome {
                pass: false,
                detail: format!("{e:#}"),
            },
        },
    }
}

/// Sends `mb` MiB of a pseudo-random stream over TCP from `c.from` to `c.addr` and compares
/// the SHA-256 of what was sent with that of what arrived.
fn tcp_transfer(c: &Check, mb: u32) -> Result<Outcome> {
    let len = usize::try_from(mb)? << 20;
    let from = File::open(Path::new(NETNS_DIR).join(&c.from_ns))
        .with_context(|| format!("opening namespace {}", c.from_ns))?;
    let to = File::open(Path::new(NETNS_DIR).join(&c.to_ns))
        .with_context(|| format!("opening namespace {}", c.to_ns))?;
    // Bound in the target's namespace before the sender starts, so it cannot connect early.
    let listener = dataplane::sys::in_netns(&to, || TcpListener::bind((c.addr, 0)))
        .context("entering the target's namespace")?
        .with_context(|| format!("listening on {}", c.addr))?;
    let target = listener.local_addr()?;
    let start = Instant::now();
    std::thread::scope(|s| {
        let receiver = s.spawn(|| receive(&listener));
        let sent = dataplane::sys::in_netns(&from, || send(target, len))
            .context("entering the source's namespace")?;
        let received = receiver
            .join()
            .map_err(|_| anyhow::anyhow!("the receiver panicked"))?;
        let secs = start.elapsed().as_secs_f64();
        let (sent, (got, got_hash)) = (sent?, received?);
        if got != len {
            return Ok(Outcome {
                pass: false,
                detail: format!("sent {len} bytes, {got} arrived"),
            });
        }
        if sent != got_hash {
            return Ok(Outcome {
                pass: false,
                detail: format!("{mb} MiB arrived, but its SHA-256 differs"),
            });
        }
        Ok(Outcome {
            pass: true,
            detail: format!(
                "{mb} MiB to {}, SHA-256 equal, {:.2} Gbit/s",
                c.addr,
                (len * 8) as f64 / secs / 1e9
            ),
        })
    })
}

/// Writes `len` bytes of a deterministic stream to `to`; returns their SHA-256.
fn send(to: SocketAddr, len: usize) -> Result<[u8; 32]> {
    let mut c =
        TcpStream::connect_timeout(&to, STALL).with_context(|| format!("connecting to {to}"))?;
    c.set_write_timeout(Some(STALL))?;
    let mut h = Sha256::new();
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut buf = vec![0u8; 1 << 16];
    let mut left = len;
    while left > 0 {
        for w in buf.chunks_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            w.copy_from_slice(&x.to_le_bytes()[..w.len()]);
        }
        let n = left.min(buf.len());
        c.write_all(&buf[..n]).context("sending (stalled?)")?;
        h.update(&buf[..n]);
        left -= n;
    }
    Ok(h.finalize().into())
}

/// Accepts one connection on `l` and reads it to the end; returns the bytes and their
/// SHA-256.
fn receive(l: &TcpListener) -> Result<(usize, [u8; 32])> {
    l.set_nonblocking(true)?;
    let deadline = Instant::now() + STALL;
    let mut c = loop {
        match l.accept() {
            Ok((c, _)) => break c,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if Instant::now() >= deadline {
                    bail!("no connection within {STALL:?}");
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => return Err(e).context("accepting"),
        }
    };
    c.set_nonblocking(false)?;
    c.set_read_timeout(Some(STALL))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut total = 0;
    loop {
        let n = c.read(&mut buf).context("receiving (stalled?)")?;
        if n == 0 {
            break;
        }
        total += n;
        h.update(&buf[..n]);
    }
    Ok((total, h.finalize().into()))
}

/// A lab's lock: held (`flock`) while the lab runs; released by the kernel when the process
/// ends, however it ends. A lab that stops cleanly also removes the file; a killed lab's stays
/// until the next lab of its id takes it over.
struct Lock {
    path: PathBuf,
    // Closed after `drop` removed the file: the lock is held until then.
    _file: File,
}

impl Lock {
    fn path(id: &str) -> PathBuf {
        Path::new(LOCK_DIR).join(format!("lab-{id}.lock"))
    }

    /// Takes lab `id`'s lock, or fails with [`Exit::Unavailable`] if a lab of that id runs.
    fn take(id: &str) -> Result<Lock, Failure> {
        std::fs::create_dir_all(LOCK_DIR)
            .with_context(|| format!("creating {LOCK_DIR}"))
            .or_exit(Exit::OsError)?;
        let path = Lock::path(id);
        loop {
            let f = File::options()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&path)
                .with_context(|| format!("opening {}", path.display()))
                .or_exit(Exit::OsError)?;
            if !try_lock(&f).or_exit(Exit::OsError)? {
                return Err(Failure::new(
                    Exit::Unavailable,
                    anyhow::anyhow!(
                        "lab {id} is already running (it holds {}); stop it, or give this one \
                         another --name (its port names must differ too)",
                        path.display()
                    ),
                ));
            }
            // A lab of this id that stopped between our open and our lock removed the file
            // we hold: a lock on it would keep no one out. Take the new file's instead.
            if same_file(&f, &path) {
                return Ok(Lock { path, _file: f });
            }
        }
    }
}

impl Drop for Lock {
    fn drop(&mut self) {
        // Removed while still held (the file closes after this), so that a lab that opens it
        // after we let go finds it gone and makes a new one.
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Whether the open file `f` is the one at `path` now.
fn same_file(f: &File, path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (f.metadata(), std::fs::metadata(path)) {
        (Ok(a), Ok(b)) => (a.dev(), a.ino()) == (b.dev(), b.ino()),
        _ => false,
    }
}

/// Takes an exclusive `flock` on `f` without waiting: whether it was free.
fn try_lock(f: &File) -> Result<bool> {
    // SAFETY: flock takes an open fd and no pointers.
    if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
        return Ok(true);
    }
    let e = std::io::Error::last_os_error();
    if e.kind() == std::io::ErrorKind::WouldBlock {
        Ok(false)
    } else {
        Err(e).context("locking")
    }
}

/// Removes the namespaces of labs that are not running: lab `id`'s (whose lock we hold), and
/// any other lab's whose lock is free. Says what it removed.
fn remove_leftovers(id: &str) -> Result<()> {
    let Ok(entries) = std::fs::read_dir(NETNS_DIR) else {
        return Ok(());
    };
    let mut names: Vec<String> = entries
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    for ns in names {
        let Some(owner) = plan::lab_of_namespace(&ns) else {
            continue;
        };
        let gone = owner == id
            || match File::open(Lock::path(owner)) {
                Err(_) => true,
                // Held for as long as we look; released when `f` closes.
                Ok(f) => try_lock(&f)?,
            };
        if gone {
            match ip(&["netns", "del", &ns]) {
                Ok(()) => println!(
                    "lab {id}: removed namespace {ns}, left over from lab {owner}, which is not running"
                ),
                // Its lab was stopping just then, and removed it itself.
                Err(_) if !Path::new(NETNS_DIR).join(&ns).exists() => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(())
}

/// A network namespace made by a lab; deleted on drop.
struct Netns(String);

impl Netns {
    fn create(name: &str) -> Result<Netns> {
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

/// Runs `ip args...`; an error with its stderr if it fails.
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
