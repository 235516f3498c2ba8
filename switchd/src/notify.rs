//! systemd's readiness protocol (`sd_notify`, `Type=notify`): a datagram to the unix socket
//! named by `$NOTIFY_SOCKET` (a path, or an abstract name written `@name`). Without that
//! variable (not started by systemd) every call does nothing.

use std::os::unix::net::UnixDatagram;

/// Where to send state changes, if systemd asked for them.
pub struct Notifier {
    target: Option<std::os::unix::net::SocketAddr>,
}

impl Notifier {
    /// Reads `$NOTIFY_SOCKET`. A value that is not a usable address is logged and ignored.
    pub fn from_env() -> Notifier {
        let Some(name) = std::env::var_os("NOTIFY_SOCKET") else {
            return Notifier { target: None };
        };
        let name = name.to_string_lossy().into_owned();
        let addr = match name.strip_prefix('@') {
            Some(abstract_name) => {
                use std::os::linux::net::SocketAddrExt;
                std::os::unix::net::SocketAddr::from_abstract_name(abstract_name.as_bytes())
            }
            None => std::os::unix::net::SocketAddr::from_pathname(&name),
        };
        match addr {
            Ok(a) => Notifier { target: Some(a) },
            Err(e) => {
                tracing::warn!(notify_socket = %name, error = %e, "NOTIFY_SOCKET is not a socket address; not notifying systemd");
                Notifier { target: None }
            }
        }
    }

    /// Sends `state` (newline-separated `KEY=VALUE` lines, e.g. `READY=1`). A failure is
    /// logged: the switch runs on either way.
    pub fn notify(&self, state: &str) {
        let Some(target) = &self.target else { return };
        let sent = UnixDatagram::unbound().and_then(|s| s.send_to_addr(state.as_bytes(), target));
        if let Err(e) = sent {
            tracing::warn!(error = %e, state, "cannot notify systemd");
        }
    }

    /// The switch is up: ports attached, API bound.
    pub fn ready(&self, status: &str) {
        self.notify(&format!(
            "READY=1\nSTATUS={status}\nMAINPID={}",
            std::process::id()
        ));
    }

    /// SIGHUP: the topology file is being re-read ([`Notifier::ready`] follows).
    pub fn reloading(&self) {
        self.notify("RELOADING=1\nSTATUS=re-reading the topology file");
    }

    /// The switch is stopping.
    pub fn stopping(&self) {
        self.notify("STOPPING=1\nSTATUS=stopping");
    }
}
