//! `switchd lab`: every lab file in `topologies/` passes its own `--check`; a failing
//! expectation fails the run with the table; a killed lab's namespaces are removed by the next.
//!
//! The files' port names are fixed (`vm1` ... `vm4` in two-tenants.yaml, as in `switchd
//! demo`), so these tests and the demo test take turns ([`lab_turn`]). The same turn keeps a
//! lab's sweep of leftovers from removing the namespaces of the killed lab a test looks at.

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use control_api::Topology;

use crate::harness::{lab_turn, link_exists, require_privileges, unique_id, SWITCHD};

/// The topology files with a `hosts:` section.
fn lab_files() -> Vec<(PathBuf, Topology)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../topologies");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("topologies/")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let t = Topology::from_path(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            (p, t)
        })
        .filter(|(_, t)| !t.hosts.is_empty())
        .collect()
}

/// The namespaces of lab `id` that exist now.
fn namespaces_of(id: &str) -> Vec<String> {
    let prefix = format!("vslab-{id}-");
    std::fs::read_dir("/run/netns")
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with(&prefix))
                .collect()
        })
        .unwrap_or_default()
}

fn lab(file: &Path, extra: &[&str]) -> Output {
    Command::new(SWITCHD)
        .arg("lab")
        .arg(file)
        .args(["--listen", "127.0.0.1:0", "--workers", "2"])
        .args(extra)
        .stdin(Stdio::null())
        .output()
        .expect("run switchd lab")
}

#[test]
fn every_lab_file_passes_its_check() {
    require_privileges();
    let _turn = lab_turn();
    let files = lab_files();
    assert!(
        files.iter().any(|(p, _)| p.ends_with("two-tenants.yaml")),
        "two-tenants.yaml has hosts: it is the demo's lab"
    );
    for (path, t) in files {
        let out = lab(&path, &["--check"]);
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success(),
            "{}: {:?}\n{stdout}\n{stderr}",
            path.display(),
            out.status
        );
        let n = t.expect.len();
        assert!(
            stdout.contains(&format!("{n} of {n} expectations hold")),
            "{}:\n{stdout}",
            path.display()
        );
        let id = control_api::lab::lab_id_of_file(&path.file_stem().unwrap().to_string_lossy());
        assert_eq!(namespaces_of(&id), Vec::<String>::new(), "left behind");
        for p in &t.ports {
            assert!(!link_exists(&p.name), "tap {} left behind", p.name);
        }
    }
}

/// A lab of two hosts on VLANs 10 and 20 with unique port names, written to a temporary file.
struct TempLab {
    path: PathBuf,
    id: String,
}

impl TempLab {
    fn new(expect: &str) -> TempLab {
        let id = unique_id();
        let (a, b) = (format!("{id}la"), format!("{id}lb"));
        let path = std::env::temp_dir().join(format!("vlanswitch-test-{id}.yaml"));
        std::fs::write(
            &path,
            format!(
                "vlans: [{{ id: 10 }}, {{ id: 20 }}]\nports:\n\
                 \x20 - {{ name: {a}, kind: tap, mode: access, vlan: 10 }}\n\
                 \x20 - {{ name: {b}, kind: tap, mode: access, vlan: 20 }}\n\
                 hosts:\n\
                 \x20 - {{ name: a, port: {a}, addresses: [198.18.5.1/24], mac: '02:00:00:00:05:01', mtu: 1400 }}\n\
                 \x20 - {{ name: b, port: {b}, addresses: [198.18.5.2/24] }}\n\
                 expect:\n{expect}"
            ),
        )
        .unwrap();
        TempLab {
            path,
            id: format!("t{id}"),
        }
    }
}

impl Drop for TempLab {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

#[test]
fn a_failing_expectation_fails_the_check_with_its_row() {
    require_privileges();
    let _turn = lab_turn();
    let l = TempLab::new("  - { from: a, no_ping: b }\n  - { from: a, ping: b }\n");
    let out = lab(&l.path, &["--check", "--name", &l.id]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(65), "{stdout}");
    let row = |label: &str| {
        stdout
            .lines()
            .find(|r| r.starts_with(label))
            .unwrap_or_else(|| panic!("no row {label}:\n{stdout}"))
            .split_whitespace()
            .skip(3)
            .collect::<Vec<_>>()
            .join(" ")
    };
    assert_eq!(row("a no_ping b"), "ok 198.18.5.2: no answer to 3 pings");
    assert_eq!(row("a ping b"), "FAILED 198.18.5.2: no answer to 3 pings");
    assert!(stdout.contains("1 of 2 expectations hold"), "{stdout}");
    assert_eq!(namespaces_of(&l.id), Vec::<String>::new(), "left behind");
}

/// Starts lab `l` to run until a signal (`switchd lab FILE --name ID`, one worker), with its
/// standard output to read.
fn run_lab(
    l: &TempLab,
) -> (
    std::process::Child,
    std::io::BufReader<std::process::ChildStdout>,
) {
    let mut child = Command::new(SWITCHD)
        .arg("lab")
        .arg(&l.path)
        .args(["--name", &l.id, "--listen", "127.0.0.1:0", "--workers", "1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let out = std::io::BufReader::new(child.stdout.take().unwrap());
    (child, out)
}

#[test]
fn a_killed_labs_namespaces_are_removed_by_the_next_run() {
    require_privileges();
    let _turn = lab_turn();
    let l = TempLab::new("  - { from: a, no_ping: b }\n");
    let (mut child, mut out) = run_lab(&l);
    let mut text = String::new();
    let mut line = String::new();
    while out.read_line(&mut line).unwrap() > 0 {
        text.push_str(&line);
        if line.contains("Press Ctrl-C") {
            break;
        }
        line.clear();
    }
    assert!(text.contains("Press Ctrl-C"), "{text}");
    // The host is as the file says.
    let ns = format!("vslab-{}-a", l.id);
    let link = Command::new("ip")
        .args(["-n", &ns, "link", "show"])
        .output()
        .unwrap();
    let link = String::from_utf8_lossy(&link.stdout);
    assert!(
        link.contains("mtu 1400") && link.contains("02:00:00:00:05:01"),
        "{link}"
    );
    // The API is on, and the running configuration has no hosts: the port of host b can go
    // (a host would otherwise make the change invalid), and the export has no lab sections.
    let api = text
        .split("REST API on ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .map(|a| a.trim_end_matches('.').to_string())
        .unwrap_or_else(|| panic!("no API address in {text}"));
    let ctl = |args: &[&str]| {
        Command::new(crate::harness::SWITCHCTL)
            .args(["--server", &api])
            .args(args)
            .output()
            .unwrap()
    };
    let b_port = format!("{}lb", &l.id[1..]);
    let del = ctl(&["port", "del", &b_port]);
    assert!(
        del.status.success(),
        "{}",
        String::from_utf8_lossy(&del.stderr)
    );
    let export = ctl(&["topology", "export"]);
    let export = String::from_utf8_lossy(&export.stdout);
    assert!(
        export.contains("ports:") && !export.contains("hosts") && !export.contains("expect"),
        "{export}"
    );
    child.kill().unwrap();
    child.wait().unwrap();
    let mut left = namespaces_of(&l.id);
    left.sort();
    assert_eq!(left, [ns.clone(), format!("vslab-{}-b", l.id)]);

    let out = lab(&l.path, &["--check", "--name", &l.id]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(
        stdout.contains(&format!(
            "lab {id}: removed namespace {ns}, left over from lab {id}, which is not running",
            id = l.id
        )),
        "{stdout}"
    );
    assert_eq!(namespaces_of(&l.id), Vec::<String>::new(), "left behind");
}

#[test]
fn a_second_lab_of_the_same_name_is_refused() {
    require_privileges();
    let _turn = lab_turn();
    let l = TempLab::new("  - { from: a, no_ping: b }\n");
    let (mut first, mut out) = run_lab(&l);
    let mut line = String::new();
    while out.read_line(&mut line).unwrap() > 0 && !line.contains("Press Ctrl-C") {
        line.clear();
    }
    let second = lab(&l.path, &["--check", "--name", &l.id]);
    // SAFETY: kill with the pid of a child we spawned and have not reaped.
    unsafe { libc::kill(first.id() as libc::pid_t, libc::SIGTERM) };
    let status = first.wait().unwrap();
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert_eq!(second.status.code(), Some(69), "{stderr}");
    assert!(
        stderr.contains(&format!("lab {} is already running", l.id)),
        "{stderr}"
    );
    assert!(status.success(), "the first lab: {status:?}");
    assert_eq!(namespaces_of(&l.id), Vec::<String>::new(), "left behind");
}

#[test]
fn two_labs_run_side_by_side() {
    require_privileges();
    let _turn = lab_turn();
    let files = lab_files();
    let file = |name: &str| {
        files
            .iter()
            .map(|(p, _)| p.clone())
            .find(|p| p.ends_with(name))
            .unwrap_or_else(|| panic!("no lab file {name}"))
    };
    let (a, b) = (file("two-tenants.yaml"), file("lab-dual-stack.yaml"));
    let (out_a, out_b) = std::thread::scope(|s| {
        let a = s.spawn(|| lab(&a, &["--check"]));
        let b = s.spawn(|| lab(&b, &["--check"]));
        (a.join().unwrap(), b.join().unwrap())
    });
    for (out, id) in [(out_a, "two_tenants"), (out_b, "lab_dual_stack")] {
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{id}: {:?}\n{stdout}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            !stdout.contains("left over"),
            "one lab removed the other's namespaces:\n{stdout}"
        );
        assert_eq!(namespaces_of(id), Vec::<String>::new(), "left behind");
    }
}
