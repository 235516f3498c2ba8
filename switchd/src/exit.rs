//! How `switchd` exits: codes in the style of BSD's `sysexits.h`, so that scripts and systemd
//! can tell a wrong command line from a bad configuration file from a host that cannot run the
//! switch. The README's table is this enum.

use std::process::ExitCode;

/// Why `switchd` stopped, as its exit status. 0 is a clean stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Exit {
    /// The command line is wrong: an unknown option, a value out of range, a `--listen`
    /// address that does not parse (64, `EX_USAGE`).
    Usage = 64,
    /// `switchd lab --check`: the lab ran, but an expectation of its file does not hold
    /// (65, `EX_DATAERR`).
    DataErr = 65,
    /// A file named on the command line does not exist or cannot be read (66, `EX_NOINPUT`).
    NoInput = 66,
    /// The host cannot run the switch as configured: a port cannot be made or opened, the API
    /// address is taken (69, `EX_UNAVAILABLE`).
    Unavailable = 69,
    /// Anything else: a failure switchd does not expect (70, `EX_SOFTWARE`).
    Software = 70,
    /// An operating-system facility failed: signal handlers, rtnetlink (71, `EX_OSERR`).
    OsError = 71,
    /// The state file cannot be written (74, `EX_IOERR`).
    IoError = 74,
    /// Not allowed: switchd needs root, or `CAP_NET_ADMIN` and access to `/dev/net/tun`
    /// (77, `EX_NOPERM`). Any failure whose cause is "permission denied" exits with this.
    NoPermission = 77,
    /// A configuration file is invalid: the topology, the state file, the token file; also
    /// `switchd check` finding a problem (78, `EX_CONFIG`).
    Config = 78,
}

impl From<Exit> for ExitCode {
    fn from(e: Exit) -> ExitCode {
        ExitCode::from(e as u8)
    }
}

/// An error and the status `switchd` exits with for it.
#[derive(Debug)]
pub struct Failure {
    /// The exit status.
    pub code: Exit,
    /// What went wrong.
    pub error: anyhow::Error,
}

impl Failure {
    /// `error` exits with `code`, or with [`Exit::NoPermission`] if its cause is a
    /// permission error.
    pub fn new(code: Exit, error: anyhow::Error) -> Failure {
        let denied = error.chain().any(|e| {
            e.downcast_ref::<std::io::Error>()
                .is_some_and(|io| io.kind() == std::io::ErrorKind::PermissionDenied)
        });
        let code = if denied { Exit::NoPermission } else { code };
        Failure { code, error }
    }
}

/// Whether some cause of `error` is an I/O error (a file, a socket), as opposed to a rule.
pub fn is_io(error: &anyhow::Error) -> bool {
    error
        .chain()
        .any(|e| e.downcast_ref::<std::io::Error>().is_some())
}

/// Attaches an exit status to an error.
pub trait OrExit<T> {
    /// On error, exit with `code` ([`Failure::new`]).
    fn or_exit(self, code: Exit) -> Result<T, Failure>;
}

impl<T, E: Into<anyhow::Error>> OrExit<T> for Result<T, E> {
    fn or_exit(self, code: Exit) -> Result<T, Failure> {
        self.map_err(|e| Failure::new(code, e.into()))
    }
}

/// An error with no status of its own exits with [`Exit::Software`].
impl From<anyhow::Error> for Failure {
    fn from(error: anyhow::Error) -> Failure {
        Failure::new(Exit::Software, error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_permission_error_anywhere_in_the_chain_is_no_permission() {
        let io = std::io::Error::from(std::io::ErrorKind::PermissionDenied);
        let e = anyhow::Error::new(io).context("cannot open /dev/net/tun");
        assert_eq!(Failure::new(Exit::Unavailable, e).code, Exit::NoPermission);
        let e = anyhow::anyhow!("interface vm1 does not exist");
        assert_eq!(Failure::new(Exit::Unavailable, e).code, Exit::Unavailable);
    }

    #[test]
    fn codes_are_sysexits() {
        let codes = [
            (Exit::Usage, 64),
            (Exit::DataErr, 65),
            (Exit::NoInput, 66),
            (Exit::Unavailable, 69),
            (Exit::Software, 70),
            (Exit::OsError, 71),
            (Exit::IoError, 74),
            (Exit::NoPermission, 77),
            (Exit::Config, 78),
        ];
        for (e, n) in codes {
            assert_eq!(e as u8, n, "{e:?}");
        }
    }
}
