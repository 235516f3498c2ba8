//! Every example topology file in `topologies/` loads and validates.

use std::path::{Path, PathBuf};

use control_api::{PortKind, Topology};

fn topologies_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../topologies")
}

fn yaml_files() -> Vec<PathBuf> {
    let dir = topologies_dir();
    let entries =
        std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()));
    let mut files: Vec<PathBuf> = entries
        .map(|entry| entry.expect("directory entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "yaml"))
        .collect();
    files.sort();
    files
}

#[test]
fn every_example_topology_validates() {
    let files = yaml_files();
    assert!(
        !files.is_empty(),
        "no *.yaml files in {}",
        topologies_dir().display()
    );
    let failures: Vec<String> = files
        .iter()
        .filter_map(|path| {
            Topology::from_path(path)
                .err()
                .map(|e| format!("{}: {e}", path.display()))
        })
        .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn demo_topology_needs_only_taps() {
    let t = Topology::from_path(topologies_dir().join("two-tenants.yaml")).expect("valid");
    assert!(t.ports.iter().all(|p| p.kind == PortKind::Tap));
    let members = |vid: u16| {
        t.ports
            .iter()
            .filter(|p| p.member_vlans() == [vid])
            .map(|p| p.name.as_str())
            .collect::<Vec<_>>()
    };
    assert_eq!(members(10), ["vm1", "vm2"]);
    assert_eq!(members(20), ["vm3", "vm4"]);
    // The demo is the lab of this file: a host on each port.
    let hosts: Vec<&str> = t.hosts.iter().map(|h| h.port.as_str()).collect();
    assert_eq!(hosts, ["vm1", "vm2", "vm3", "vm4"]);
    assert!(!t.expect.is_empty());
}
