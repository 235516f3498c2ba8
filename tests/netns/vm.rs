//! QEMU guests for the VM tests: a tiny Linux guest (Debian's cloud kernel and busybox, built by
//! `tests/vm/build-guest.sh` and cached) booted under TCG, with one virtio-net NIC on a tap that
//! QEMU creates or on a vhost-user socket, and commands run over its serial console.
//!
//! The guest image is built once per test process (the script caches it across processes);
//! every [`Guest`] is one QEMU process, killed on drop. Without QEMU or the guest image the
//! tests fail loudly, never skip.

use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use sha2::{Digest, Sha256};

use crate::harness::{mac_string, Host};

/// QEMU's binary (Debian package `qemu-system-x86`).
pub const QEMU: &str = "qemu-system-x86_64";

/// How long a boot may take before it counts as failed. A boot takes 4-5 s under TCG on this
/// 2-core machine (about 3 s of it in the kernel), 11-15 s with testpmd polling a core; the
/// margin is for tests that boot guests in parallel with the rest of the suite.
const BOOT_TIMEOUT: Duration = Duration::from_secs(60);

/// The marker lines of the guest's /init (see build-guest.sh).
const READY: &str = "VSGUEST-READY";
const FAILED: &str = "VSGUEST-FAILED";

/// Guest RAM in MiB; also the size of the shared memory object for vhost-user.
const MEM_MB: u32 = 256;

/// The kernel and initramfs every guest boots.
pub struct GuestImage {
    pub kernel: PathBuf,
    pub initrd: PathBuf,
}

/// Builds the guest image (or finds it in the cache) once per test process; panics with the
/// builder's output if that fails.
pub fn guest_image() -> &'static GuestImage {
    static IMAGE: OnceLock<std::result::Result<GuestImage, String>> = OnceLock::new();
    let r = IMAGE.get_or_init(|| {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/vm/build-guest.sh");
        let out = Command::new("bash")
            .arg(&script)
            .output()
            .map_err(|e| format!("cannot run {}: {e}", script.display()))?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        if !out.status.success() {
            return Err(format!(
                "{} failed ({}):\n{}{}",
                script.display(),
                out.status,
                stdout,
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        let dir = PathBuf::from(stdout.lines().last().unwrap_or_default().trim());
        let image = GuestImage {
            kernel: dir.join("vmlinuz"),
            initrd: dir.join("initramfs.cpio.gz"),
        };
        for f in [&image.kernel, &image.initrd] {
            if !f.is_file() {
                return Err(format!("the guest builder left no {}", f.display()));
            }
        }
        Ok(image)
    });
    match r {
        Ok(image) => image,
        Err(e) => panic!("no guest image: {e}"),
    }
}

/// Where the guest's NIC goes.
#[derive(Clone, Debug)]
pub enum Nic {
    /// A tap that QEMU creates with this name (`-netdev tap,ifname=...`), removed when QEMU
    /// exits. Attach it to switchd as a `netdev` port.
    Tap { ifname: String },
    /// A vhost-user socket. `server: true`: QEMU listens on it (`server=on,wait=off`) and the
    /// backend connects; `false`: the backend listens and QEMU connects and reconnects
    /// (`reconnect=1`).
    VhostUser { socket: PathBuf, server: bool },
}

/// What a guest looks like.
#[derive(Clone, Debug)]
pub struct GuestConfig {
    /// Names the guest in errors and in its hostname.
    pub name: String,
    pub nic: Nic,
    pub mac: [u8; 6],
    /// Its address with prefix length, e.g. `198.18.0.11/24`; on `eth0.VID` with `vlan`.
    pub ip: String,
    /// Tag the guest's traffic itself: an 802.1Q subinterface `eth0.VID` carries the address.
    pub vlan: Option<u16>,
    /// `false`: the device offers the guest no receive offloads (`guest_tso4`, `guest_tso6`,
    /// `guest_ecn`, `guest_ufo`, `guest_csum` and `mrg_rxbuf` off), so everything it receives
    /// must be whole, checksummed frames.
    pub offloads: bool,
}

impl GuestConfig {
    /// A guest on a tap QEMU creates, offloads on, no VLAN.
    pub fn tap(name: &str, ifname: &str, mac: [u8; 6], ip: &str) -> GuestConfig {
        GuestConfig {
            name: name.to_string(),
            nic: Nic::Tap {
                ifname: ifname.to_string(),
            },
            mac,
            ip: ip.to_string(),
            vlan: None,
            offloads: true,
        }
    }

    /// A guest on a vhost-user socket, offloads on, no VLAN.
    pub fn vhost_user(
        name: &str,
        socket: impl Into<PathBuf>,
        server: bool,
        mac: [u8; 6],
        ip: &str,
    ) -> GuestConfig {
        GuestConfig {
            name: name.to_string(),
            nic: Nic::VhostUser {
                socket: socket.into(),
                server,
            },
            mac,
            ip: ip.to_string(),
            vlan: None,
            offloads: true,
        }
    }
}

/// What a command printed (stdout and stderr together) and its exit status.
#[derive(Debug)]
pub struct Output {
    pub status: i32,
    pub output: String,
}

/// Everything QEMU wrote to the serial console, and whether it is still running.
#[derive(Default)]
struct Console {
    text: Mutex<(String, bool)>,
    grew: Condvar,
}

impl Console {
    fn reader(self: Arc<Self>, mut from: impl Read) {
        let mut buf = [0u8; 4096];
        loop {
            let n = from.read(&mut buf).unwrap_or(0);
            let mut t = self.text.lock().unwrap();
            if n == 0 {
                t.1 = true;
                self.grew.notify_all();
                return;
            }
            t.0.push_str(&String::from_utf8_lossy(&buf[..n]));
            self.grew.notify_all();
        }
    }

    /// Waits until `done` finds what it looks for in the text (from byte `from`), the console
    /// closes, or `limit` passes. Returns what `done` found, or the reason it found nothing.
    fn wait_for<T>(
        &self,
        from: usize,
        limit: Duration,
        mut done: impl FnMut(&str) -> Option<T>,
    ) -> std::result::Result<T, &'static str> {
        let end = Instant::now() + limit;
        let mut t = self.text.lock().unwrap();
        loop {
            if let Some(v) = done(t.0.get(from..).unwrap_or_default()) {
                return Ok(v);
            }
            if t.1 {
                return Err("QEMU exited");
            }
            let now = Instant::now();
            if now >= end {
                return Err("timed out");
            }
            t = self.grew.wait_timeout(t, end - now).unwrap().0;
        }
    }

    fn len(&self) -> usize {
        self.text.lock().unwrap().0.len()
    }

    fn text(&self) -> String {
        self.text.lock().unwrap().0.clone()
    }
}

/// A running QEMU guest; killed (SIGKILL) on drop.
pub struct Guest {
    pub name: String,
    /// Its address, without the prefix length.
    pub addr: String,
    child: Child,
    stdin: Mutex<ChildStdin>,
    console: Arc<Console>,
    stderr: Arc<Mutex<String>>,
    next: AtomicU32,
    /// How long the boot took, from starting QEMU to the ready line.
    pub boot_time: Duration,
}

impl Guest {
    /// Starts QEMU (TCG, direct kernel boot, serial console on its stdin/stdout) and waits up
    /// to a minute for the guest's ready line. Fails with QEMU's stderr and the console so far.
    pub fn boot(cfg: GuestConfig) -> Result<Guest> {
        let image = guest_image();
        let mut cmdline = format!(
            "console=ttyS0 quiet loglevel=1 panic=-1 vs.name={} vs.ip={} vs.mac={}",
            cfg.name,
            cfg.ip,
            mac_string(cfg.mac)
        );
        if let Some(vid) = cfg.vlan {
            write!(cmdline, " vs.vlan={vid}").unwrap();
        }
        let mut device = format!("virtio-net-pci,netdev=n0,mac={}", mac_string(cfg.mac));
        if !cfg.offloads {
            device.push_str(
                ",guest_tso4=off,guest_tso6=off,guest_ecn=off,guest_ufo=off,guest_csum=off,\
                 mrg_rxbuf=off",
            );
        }
        let mut cmd = Command::new(QEMU);
        cmd.args(["-nodefaults", "-no-reboot", "-display", "none"])
            // qemu64 boots this kernel ~0.5-1 s faster under TCG than `max` (fewer features to
            // emulate and probe).
            .args(["-machine", "q35,accel=tcg", "-cpu", "qemu64", "-smp", "1"])
            .args(["-m", &MEM_MB.to_string()])
            .arg("-kernel")
            .arg(&image.kernel)
            .arg("-initrd")
            .arg(&image.initrd)
            .args(["-append", &cmdline])
            .args([
                "-chardev",
                "stdio,id=con,signal=off",
                "-serial",
                "chardev:con",
            ]);
        match &cfg.nic {
            Nic::Tap { ifname } => {
                cmd.args([
                    "-netdev",
                    &format!("tap,id=n0,ifname={ifname},script=no,downscript=no,vhost=off"),
                ]);
            }
            Nic::VhostUser { socket, server } => {
                let mode = if *server {
                    "server=on,wait=off"
                } else {
                    "reconnect=1"
                };
                // vhost-user needs the guest's memory shared with the backend; and under TCG,
                // QEMU 7.2 crashes when such a device uses MSI-X, hence vectors=0 (INTx).
                cmd.args([
                    "-object",
                    &format!("memory-backend-memfd,id=m,size={MEM_MB}M,share=on"),
                    "-numa",
                    "node,memdev=m",
                    "-chardev",
                    &format!("socket,id=c0,path={},{mode}", socket.display()),
                    "-netdev",
                    "vhost-user,id=n0,chardev=c0",
                ]);
                device.push_str(",vectors=0");
            }
        }
        cmd.args(["-device", &device]);
        let started = Instant::now();
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| {
                format!(
                    "guest {}: cannot start {QEMU} (install qemu-system-x86)",
                    cfg.name
                )
            })?;
        let console = Arc::new(Console::default());
        let out = child.stdout.take().expect("stdout");
        let c = console.clone();
        std::thread::spawn(move || c.reader(out));
        let stderr = Arc::new(Mutex::new(String::new()));
        let mut err = child.stderr.take().expect("stderr");
        let e = stderr.clone();
        std::thread::spawn(move || {
            let mut s = String::new();
            let _ = err.read_to_string(&mut s);
            e.lock().unwrap().push_str(&s);
        });
        let stdin = Mutex::new(child.stdin.take().expect("stdin"));
        let mut guest = Guest {
            name: cfg.name.clone(),
            addr: cfg.ip.split('/').next().unwrap_or_default().to_string(),
            child,
            stdin,
            console,
            stderr,
            next: AtomicU32::new(0),
            boot_time: Duration::ZERO,
        };
        let ready = guest.console.wait_for(0, BOOT_TIMEOUT, |t| {
            if t.contains(&format!("{READY} {}", cfg.name)) {
                Some(Ok(()))
            } else {
                t.find(FAILED)
                    .map(|at| Err(t[at..].lines().next().unwrap_or_default().to_string()))
            }
        });
        match ready {
            Ok(Ok(())) => {}
            Ok(Err(why)) => bail!(
                "guest {} failed to boot: {why}\n{}",
                cfg.name,
                guest.report()
            ),
            Err(why) => bail!(
                "guest {} not ready ({why}, {:?} after starting QEMU)\n{}",
                cfg.name,
                started.elapsed(),
                guest.report()
            ),
        }
        guest.boot_time = started.elapsed();
        Ok(guest)
    }

    /// Runs `script` with `sh` in the guest (stdin /dev/null, stderr into stdout) and returns
    /// its output and exit status. The guest kills its shell after `limit` (status 137, the
    /// output ends in `Killed`; processes it started in the background live on). Fails if no
    /// answer comes within `limit` plus a margin, or QEMU exits.
    pub fn exec(&self, script: &str, limit: Duration) -> Result<Output> {
        let id = format!("c{}", self.next.fetch_add(1, Ordering::Relaxed));
        let secs = limit.as_secs().max(1);
        let from = self.console.len();
        {
            let mut stdin = self.stdin.lock().unwrap();
            let line = format!("{id} {secs} {}\n", base64(script.as_bytes()));
            stdin
                .write_all(line.as_bytes())
                .and_then(|()| stdin.flush())
                .with_context(|| {
                    format!("guest {}: cannot send `{script}` to the console", self.name)
                })?;
        }
        let begin = format!("VSGUEST-BEGIN {id}\n");
        let end = format!("VSGUEST-END {id} ");
        let found = self.console.wait_for(
            from,
            Duration::from_secs(secs + 10),
            |t| -> Option<Result<Output>> {
                let b = t.find(&begin)? + begin.len();
                let e = b + t[b..].find(&end)?;
                let rest = &t[e + end.len()..];
                let status = rest.get(..rest.find('\n')?)?;
                Some(
                    status
                        .trim()
                        .parse()
                        .map(|status| Output {
                            status,
                            output: t[b..e].to_string(),
                        })
                        .map_err(|_| anyhow!("bad status line `{status}`")),
                )
            },
        );
        match found {
            Ok(r) => r.with_context(|| format!("guest {}: `{script}`", self.name)),
            Err(why) => Err(anyhow!(
                "guest {}: `{script}` gave no answer within {:?} ({why})\n{}",
                self.name,
                Duration::from_secs(secs + 10),
                self.report()
            )),
        }
    }

    /// Runs `script` in the guest (up to 60 s) and returns its output; fails unless it exits 0.
    pub fn run(&self, script: &str) -> Result<String> {
        let out = self.exec(script, Duration::from_secs(60))?;
        if out.status != 0 {
            bail!(
                "guest {}: `{script}` exited with status {}{}; output:\n{}",
                self.name,
                out.status,
                if out.status == 137 {
                    " (killed after 60 s)"
                } else {
                    ""
                },
                out.output
            );
        }
        Ok(out.output)
    }

    /// [`Guest::run`], panicking on failure.
    pub fn run_ok(&self, script: &str) -> String {
        self.run(script).unwrap_or_else(|e| panic!("{e:#}"))
    }

    /// True if `addr` answers a ping within 3 tries.
    pub fn reaches(&self, addr: &str) -> bool {
        self.exec(
            &format!("for i in 1 2 3; do ping -c 1 -W 1 {addr} && exit 0; done; exit 1"),
            Duration::from_secs(20),
        )
        .unwrap_or_else(|e| panic!("{e:#}"))
        .status
            == 0
    }

    /// True if `addr` answers none of 3 pings.
    pub fn cannot_reach(&self, addr: &str) -> bool {
        self.exec(&format!("ping -c 3 -W 1 {addr}"), Duration::from_secs(20))
            .unwrap_or_else(|e| panic!("{e:#}"))
            .status
            != 0
    }

    /// The features the guest's driver negotiated, as the kernel's bit string (bit 0 first).
    pub fn virtio_features(&self) -> String {
        self.run_ok("cat /sys/class/net/eth0/device/features")
            .trim()
            .to_string()
    }

    /// QEMU's stderr and the last lines of the console, for error messages.
    fn report(&self) -> String {
        let text = self.console.text();
        let lines: Vec<&str> = text.lines().collect();
        let tail = lines[lines.len().saturating_sub(30)..].join("\n");
        format!(
            "QEMU stderr:\n{}\nconsole (last 30 lines):\n{tail}",
            self.stderr.lock().unwrap().trim_end()
        )
    }
}

impl Drop for Guest {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Standard base64 with padding (the guest decodes it with busybox `base64 -d`).
fn base64(data: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut s = String::with_capacity(data.len().div_ceil(3) * 4);
    for c in data.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= c.len() {
                s.push(A[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                s.push('=');
            }
        }
    }
    s
}

fn hex(d: [u8; 32]) -> String {
    d.iter().map(|b| format!("{b:02x}")).collect()
}

/// The first SHA-256 (64 hex digits) in `text`, as `sha256sum` prints it.
fn sha_in(text: &str) -> Option<String> {
    text.split_whitespace()
        .find(|w| w.len() == 64 && w.bytes().all(|b| b.is_ascii_hexdigit()))
        .map(str::to_string)
}

/// How long a TCP transfer to or from a guest may take (TCG is slow: a few MB/s).
const TCP_DEADLINE: Duration = Duration::from_secs(120);

/// Sends `len` bytes of a pseudo-random stream over TCP from `host` to `guest` (port 5001;
/// `nc -l` in the guest, piped into `sha256sum`). Returns the SHA-256 of what was sent and of
/// what the guest received, as hex.
pub fn tcp_host_to_guest(host: &Host, guest: &Guest, len: usize) -> Result<(String, String)> {
    guest.run(
        "rm -f /tmp/rx.sha /tmp/rx.done
         (nc -l -p 5001 </dev/null | sha256sum >/tmp/rx.sha; echo $? >/tmp/rx.done) \
           >/dev/null 2>&1 &
         for i in $(seq 100); do netstat -ltn | grep -q ':5001 ' && exit 0; usleep 50000; done
         echo 'nc is not listening'; exit 1",
    )?;
    let to = format!("{}:5001", guest.addr);
    let sent = host.ns.run(|| -> Result<[u8; 32]> {
        let mut c = TcpStream::connect_timeout(&to.parse()?, Duration::from_secs(10))
            .with_context(|| format!("connect to guest {} at {to}", guest.name))?;
        c.set_write_timeout(Some(Duration::from_secs(30)))?;
        c.set_read_timeout(Some(Duration::from_secs(30)))?;
        let h = write_stream(&mut c, len)
            .with_context(|| format!("send {len} bytes to guest {}", guest.name))?;
        c.shutdown(Shutdown::Write)?;
        // The guest's nc exits when it has read everything: wait for its side to close.
        let _ = c.read(&mut [0u8; 64]);
        Ok(h)
    })?;
    let got = guest.run(
        "for i in $(seq 400); do [ -s /tmp/rx.done ] && break; usleep 50000; done
         cat /tmp/rx.sha",
    )?;
    let got = sha_in(&got).ok_or_else(|| {
        anyhow!(
            "guest {}: no checksum of the received stream: {got}",
            guest.name
        )
    })?;
    Ok((hex(sent), got))
}

/// Sends `len` bytes (rounded up to whole MiB) of `/dev/urandom` over TCP from `guest` to
/// `host` (port 5002; the guest's `nc` reads a file it made with `dd`). Returns the SHA-256 of
/// what the guest sent and of what the host received, as hex.
pub fn tcp_guest_to_host(guest: &Guest, host: &Host, len: usize) -> Result<(String, String)> {
    let mib = len.div_ceil(1 << 20);
    guest.run(&format!(
        "dd if=/dev/urandom of=/tmp/tx bs=1M count={mib} 2>/dev/null"
    ))?;
    let at = format!("{}:5002", host.addr);
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    std::thread::scope(|s| {
        let server = s.spawn(|| {
            host.ns.run(|| -> Result<([u8; 32], usize)> {
                let l = TcpListener::bind(&at).with_context(|| format!("bind {at}"))?;
                ready_tx.send(()).unwrap();
                l.set_nonblocking(true)?;
                let end = Instant::now() + Duration::from_secs(30);
                let mut c = loop {
                    match l.accept() {
                        Ok((c, _)) => break c,
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                            if Instant::now() > end {
                                bail!("no connection from guest {} to {at}", guest.name);
                            }
                            std::thread::sleep(Duration::from_millis(10));
                        }
                        Err(e) => return Err(e.into()),
                    }
                };
                c.set_nonblocking(false)?;
                c.set_read_timeout(Some(Duration::from_secs(30)))?;
                let mut h = Sha256::new();
                let mut buf = vec![0u8; 1 << 16];
                let mut total = 0;
                let end = Instant::now() + TCP_DEADLINE;
                loop {
                    let n = c.read(&mut buf).context("read from the guest (stalled?)")?;
                    if n == 0 {
                        break;
                    }
                    if Instant::now() > end {
                        bail!(
                            "transfer from guest {} not done in {TCP_DEADLINE:?}",
                            guest.name
                        );
                    }
                    total += n;
                    h.update(&buf[..n]);
                }
                Ok((h.finalize().into(), total))
            })
        });
        ready_rx
            .recv()
            .map_err(|_| anyhow!("the listener on {at} did not start"))?;
        let sent = guest.exec(
            &format!(
                "sha256sum /tmp/tx && nc {} 5002 </tmp/tx; r=$?; rm -f /tmp/tx; exit $r",
                host.addr
            ),
            TCP_DEADLINE,
        );
        let (got, total) = server.join().expect("listener thread")?;
        let sent = sent?;
        if sent.status != 0 {
            bail!(
                "guest {}: sending to {at} failed ({}): {}",
                guest.name,
                sent.status,
                sent.output
            );
        }
        if total != mib << 20 {
            bail!(
                "{total} bytes of {} arrived from guest {}",
                mib << 20,
                guest.name
            );
        }
        let sent = sha_in(&sent.output)
            .ok_or_else(|| anyhow!("guest {}: no checksum in {}", guest.name, sent.output))?;
        Ok((sent, hex(got)))
    })
}

/// Writes `len` bytes of a deterministic pseudo-random stream; returns its SHA-256.
fn write_stream(c: &mut TcpStream, len: usize) -> Result<[u8; 32]> {
    let mut h = Sha256::new();
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut buf = vec![0u8; 1 << 16];
    let mut left = len;
    let end = Instant::now() + TCP_DEADLINE;
    while left > 0 {
        if Instant::now() > end {
            bail!("not done within {TCP_DEADLINE:?}: {left} of {len} bytes left");
        }
        for w in buf.chunks_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            w.copy_from_slice(&x.to_le_bytes()[..w.len()]);
        }
        let n = left.min(buf.len());
        c.write_all(&buf[..n]).context("write (stalled?)")?;
        h.update(&buf[..n]);
        left -= n;
    }
    Ok(h.finalize().into())
}

#[test]
fn base64_matches_the_standard_alphabet_and_padding() {
    assert_eq!(base64(b""), "");
    assert_eq!(base64(b"f"), "Zg==");
    assert_eq!(base64(b"fo"), "Zm8=");
    assert_eq!(base64(b"foo"), "Zm9v");
    assert_eq!(base64(b"foob"), "Zm9vYg==");
    assert_eq!(
        base64(b"ip -o addr; echo '$x'\n"),
        "aXAgLW8gYWRkcjsgZWNobyAnJHgnCg=="
    );
}
