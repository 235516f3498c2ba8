//! The state file: the running configuration, written after every change ([`persist`]) and
//! read back when `switchd` starts ([`load`]).
//!
//! A state file is a topology file. Two rules keep it from ever wiping the configuration:
//!
//! - [`load`] refuses a file that holds no configuration at all (empty, only whitespace, only
//!   comments, or a document that is just `null` or `~`), as it refuses a corrupt one. Such a
//!   file is what a truncation leaves behind, never what [`persist`] writes, and taking it as
//!   an empty topology would start the switch with no ports and then write that back.
//! - [`persist`] replaces the file atomically, keeps its permission bits, and removes its
//!   temporary file when any step fails, leaving the old file as it was.

use std::fs::{self, File, Permissions};
use std::io::{self, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::controller::ControlError;
use crate::topology::{Topology, TopologyError};

/// Why a state file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// The file could not be read.
    #[error("cannot read state file {}", path.display())]
    Read {
        /// The state file.
        path: PathBuf,
        /// Why reading it failed.
        #[source]
        source: io::Error,
    },
    /// The file holds no configuration at all (see [`load`]).
    #[error(
        "state file {} is empty ({detail}): refusing to start from it, since that would wipe \
         the configuration; restore it from a backup, or delete it to start from --topology",
        path.display()
    )]
    Empty {
        /// The state file.
        path: PathBuf,
        /// What it holds, e.g. `0 bytes` or `12 bytes, only comments`.
        detail: String,
    },
    /// The file is not a valid topology.
    #[error(
        "state file {} is corrupt: refusing to start from it (restore it from a backup, or \
         delete it to start from --topology)",
        path.display()
    )]
    Corrupt {
        /// The state file.
        path: PathBuf,
        /// What is wrong with it.
        #[source]
        source: TopologyError,
    },
    /// A step of writing the file failed; the file is as it was before.
    #[error("cannot write state file {}: cannot {step}", path.display())]
    Write {
        /// The state file.
        path: PathBuf,
        /// The step that failed, e.g. `rename the temporary file over it`.
        step: &'static str,
        /// Why it failed.
        #[source]
        source: io::Error,
    },
}

impl StateError {
    /// The state file the error is about.
    pub fn path(&self) -> &Path {
        match self {
            StateError::Read { path, .. }
            | StateError::Empty { path, .. }
            | StateError::Corrupt { path, .. }
            | StateError::Write { path, .. } => path,
        }
    }
}

/// Reads the state file at `path`: the topology it holds, validated.
///
/// A file with no YAML content (0 bytes, only whitespace, only comments, or a document that
/// is just `null`, `~` or `---`) is [`StateError::Empty`], and a file whose top level is not
/// a mapping (as `[]`) is [`StateError::Corrupt`]: neither is ever taken as an empty topology.
/// The file is only read, never changed.
pub fn load(path: &Path) -> Result<Topology, StateError> {
    let bytes = fs::read(path).map_err(|source| StateError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let corrupt = |source| StateError::Corrupt {
        path: path.to_path_buf(),
        source,
    };
    let text = std::str::from_utf8(&bytes)
        .map_err(|e| corrupt(TopologyError::Parse(format!("not UTF-8 text: {e}"))))?;
    let empty = |detail| StateError::Empty {
        path: path.to_path_buf(),
        detail,
    };
    // Checked on the text first: YAML refuses some whitespace (a tab at the start of a line).
    if let Some(detail) = no_content(text) {
        return Err(empty(detail));
    }
    match serde_yaml_ng::from_str::<serde_yaml_ng::Value>(text) {
        Ok(serde_yaml_ng::Value::Null) => {
            return Err(empty(format!(
                "{} bytes, a document with no value",
                text.len()
            )))
        }
        Ok(serde_yaml_ng::Value::Mapping(_)) => {}
        Ok(other) => {
            let found = match other {
                serde_yaml_ng::Value::Sequence(_) => "a sequence",
                serde_yaml_ng::Value::Tagged(_) => "a tagged value",
                _ => "a single value",
            };
            return Err(corrupt(TopologyError::Parse(format!(
                "the document is {found}, not a mapping of topology fields"
            ))));
        }
        // Not YAML: the topology parser below says where and why.
        Err(_) => {}
    }
    Topology::from_yaml(text).map_err(corrupt)
}

/// What a file holds that has nothing but whitespace and comments, for [`StateError::Empty`];
/// `None` if it has more.
fn no_content(text: &str) -> Option<String> {
    let n = text.len();
    if n == 0 {
        Some("0 bytes".to_string())
    } else if text.trim().is_empty() {
        Some(format!("{n} bytes, only whitespace"))
    } else if text
        .lines()
        .all(|l| l.trim().is_empty() || l.trim_start().starts_with('#'))
    {
        Some(format!("{n} bytes, only comments"))
    } else {
        None
    }
}

/// Writes `topo` to `path` atomically: a temporary file `.NAME.tmp` beside it, fsync, rename
/// over `path`, fsync of the directory. A crash at any point leaves either the old or the new
/// file, whole.
///
/// The new file gets the permission bits of the file it replaces (a new file gets the
/// process's default, `0666` less the umask). When any step before the rename fails, the
/// temporary file is removed and `path` is as it was.
pub fn persist(path: &Path, topo: &Topology) -> Result<(), StateError> {
    let err = |step, source| StateError::Write {
        path: path.to_path_buf(),
        step,
        source,
    };
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let tmp = dir.join(format!(
        ".{}.tmp",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("state")
    ));
    let text = format!(
        "# vlanswitch state: written by switchd after every change; restored on start.\n{}",
        topo.to_yaml()
    );
    let mode = match fs::metadata(path) {
        Ok(m) if m.is_file() => Some(m.permissions().mode() & 0o7777),
        _ => None,
    };
    let mut f = File::create(&tmp).map_err(|e| err("create the temporary file", e))?;
    let guard = RemoveOnDrop(&tmp);
    if let Some(mode) = mode {
        // Set on the open file, so the umask (which applies at creation) does not change it.
        f.set_permissions(Permissions::from_mode(mode))
            .map_err(|e| err("give the temporary file the state file's mode", e))?;
    }
    f.write_all(text.as_bytes())
        .map_err(|e| err("write the temporary file", e))?;
    f.sync_all()
        .map_err(|e| err("flush the temporary file to disk (fsync)", e))?;
    drop(f);
    fs::rename(&tmp, path).map_err(|e| err("rename the temporary file over it", e))?;
    std::mem::forget(guard);
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| err("flush its directory to disk (fsync)", e))?;
    Ok(())
}

/// Removes a temporary file when a write fails before it was renamed.
struct RemoveOnDrop<'a>(&'a Path);

impl Drop for RemoveOnDrop<'_> {
    fn drop(&mut self) {
        let _ = fs::remove_file(self.0);
    }
}

impl From<StateError> for ControlError {
    /// A failed [`persist`] as the controller reports it: [`ControlError::Persist`], with the
    /// failed step in front of the OS error.
    fn from(e: StateError) -> Self {
        match e {
            StateError::Write { path, step, source } => ControlError::Persist {
                path,
                source: io::Error::new(source.kind(), format!("cannot {step}: {source}")),
            },
            // `persist` returns only `Write`; anything else is reported whole.
            other => ControlError::Persist {
                path: other.path().to_path_buf(),
                source: io::Error::other(other),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    /// A fresh directory under the system's temp dir, removed on drop.
    struct TestDir(PathBuf);

    impl TestDir {
        fn new() -> TestDir {
            static N: AtomicU32 = AtomicU32::new(0);
            let d = std::env::temp_dir().join(format!(
                "vlanswitch-state-unit-{}-{}",
                std::process::id(),
                N.fetch_add(1, Ordering::Relaxed)
            ));
            let _ = fs::remove_dir_all(&d);
            fs::create_dir(&d).unwrap();
            TestDir(d)
        }

        fn file(&self, name: &str) -> PathBuf {
            self.0.join(name)
        }

        fn names(&self) -> Vec<String> {
            let mut v: Vec<String> = fs::read_dir(&self.0)
                .unwrap()
                .map(|e| e.unwrap().file_name().into_string().unwrap())
                .collect();
            v.sort();
            v
        }
    }

    impl Drop for TestDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn topo() -> Topology {
        Topology::from_yaml(
            "vlans: [{ id: 10 }]\nports: [{ name: vm1, kind: tap, mode: access, vlan: 10 }]\n",
        )
        .unwrap()
    }

    fn mode(p: &Path) -> u32 {
        fs::metadata(p).unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn what_persist_writes_loads_back() {
        let d = TestDir::new();
        let p = d.file("state.yaml");
        persist(&p, &topo()).unwrap();
        assert_eq!(load(&p).unwrap(), topo());
        // An empty configuration is written with its fields: it is not an empty file.
        persist(&p, &Topology::default()).unwrap();
        assert_eq!(load(&p).unwrap(), Topology::default());
        assert_eq!(d.names(), ["state.yaml"], "a temporary file was left");
    }

    #[test]
    fn a_file_without_yaml_content_is_refused_and_left_as_it_is() {
        let d = TestDir::new();
        let p = d.file("state.yaml");
        let cases: &[(&[u8], &str)] = &[
            (b"", "0 bytes"),
            (b" \n\t\n", "4 bytes, only whitespace"),
            (b"# a comment\n\n  # another\n", "25 bytes, only comments"),
            (b"~\n", "2 bytes, a document with no value"),
            (b"null", "4 bytes, a document with no value"),
            (
                b"---\n# only a marker\n",
                "20 bytes, a document with no value",
            ),
        ];
        for (content, detail) in cases {
            fs::write(&p, content).unwrap();
            let e = load(&p).expect_err("refused");
            assert!(
                matches!(&e, StateError::Empty { detail: d, .. } if d == detail),
                "{content:?}: {e:?}"
            );
            assert_eq!(&fs::read(&p).unwrap(), content, "the file was changed");
        }
        fs::write(&p, b"").unwrap();
        assert_eq!(
            load(&p).unwrap_err().to_string(),
            format!(
                "state file {} is empty (0 bytes): refusing to start from it, since that \
                 would wipe the configuration; restore it from a backup, or delete it to \
                 start from --topology",
                p.display()
            )
        );
    }

    #[test]
    fn a_corrupt_file_is_refused_with_the_reason() {
        let d = TestDir::new();
        let p = d.file("state.yaml");
        for content in [
            &b"[]\n"[..],
            b"42\n",
            b"ports: [{ name: vm1 }\n",
            b"vlans: [{ id: 4095 }]\n",
            b"\xff\xfe\n",
        ] {
            fs::write(&p, content).unwrap();
            let e = load(&p).expect_err("refused");
            assert!(
                matches!(e, StateError::Corrupt { .. }),
                "{content:?}: {e:?}"
            );
            let msg = e.to_string();
            assert!(
                msg.contains(&p.display().to_string()) && msg.contains("delete it"),
                "{msg}"
            );
            assert_eq!(fs::read(&p).unwrap(), content);
        }
        let e = load(&d.file("missing.yaml")).expect_err("missing");
        assert!(matches!(e, StateError::Read { .. }), "{e:?}");
    }

    #[test]
    fn persist_keeps_the_files_mode() {
        let d = TestDir::new();
        let p = d.file("state.yaml");
        for m in [0o640, 0o600, 0o664] {
            fs::write(&p, "{}\n").unwrap();
            fs::set_permissions(&p, Permissions::from_mode(m)).unwrap();
            persist(&p, &topo()).unwrap();
            assert_eq!(mode(&p), m, "mode {m:o} not kept");
            persist(&p, &topo()).unwrap();
            assert_eq!(mode(&p), m, "mode {m:o} not kept on the second write");
        }
        assert_eq!(d.names(), ["state.yaml"]);
    }

    #[test]
    fn a_failed_write_removes_its_temporary_file() {
        let d = TestDir::new();
        // The rename fails: the state file's path is a directory.
        let p = d.file("state.yaml");
        fs::create_dir(&p).unwrap();
        let e = persist(&p, &topo()).expect_err("rename over a directory");
        assert!(
            matches!(&e, StateError::Write { step, .. } if step.starts_with("rename")),
            "{e:?}"
        );
        assert_eq!(d.names(), ["state.yaml"], "the temporary file was left");
        assert!(p.is_dir());

        // The same with a 0640 file next to it whose write fails: its own temp file is gone
        // and the file keeps its content and mode.
        let q = d.file("other.yaml");
        fs::write(&q, "{}\n").unwrap();
        fs::set_permissions(&q, Permissions::from_mode(0o640)).unwrap();
        // The temporary file's name is taken by a directory: creating it fails.
        fs::create_dir(d.file(".other.yaml.tmp")).unwrap();
        let e = persist(&q, &topo()).expect_err("create over a directory");
        assert!(
            matches!(&e, StateError::Write { step, .. } if step.starts_with("create")),
            "{e:?}"
        );
        assert_eq!(fs::read_to_string(&q).unwrap(), "{}\n");
        assert_eq!(mode(&q), 0o640);
        fs::remove_dir(d.file(".other.yaml.tmp")).unwrap();
        persist(&q, &topo()).unwrap();
        assert_eq!(mode(&q), 0o640);
        assert_eq!(d.names(), ["other.yaml", "state.yaml"]);
    }

    #[test]
    fn a_failed_persist_is_a_persist_error_of_the_controller() {
        let d = TestDir::new();
        let p = d.file("state.yaml");
        fs::create_dir(&p).unwrap();
        let e = ControlError::from(persist(&p, &topo()).unwrap_err());
        let ControlError::Persist { path, source } = &e else {
            panic!("{e:?}");
        };
        assert_eq!(path, &p);
        assert!(
            source
                .to_string()
                .starts_with("cannot rename the temporary file over it: "),
            "{source}"
        );
    }
}
