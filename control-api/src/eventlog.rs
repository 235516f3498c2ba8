//! Turns the workers' learning and port-security events into log lines, rate-limited.
//!
//! The workers only record events (see `dataplane::events`); this is where they become words.
//! MAC moves are logged at info with the MAC, the VLAN and the old and new port; flapping,
//! damping, MAC limits, disallowed sources and shutdowns at warn; new MACs not at all (they are
//! streamed, see [`crate::events`]). A flood of events (a host sending from 200 000 random
//! MACs) must not become a flood of lines: each subject (a MAC in a VLAN for moves, a port or
//! VLAN for limits) is logged at most once per [`HOLD`], with the number of events folded into
//! it since, and at most [`MAX_LINES`] lines come out of one call.
//! Time is an argument, so the rules are tested without a clock.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use dataplane::events::{Event, EventKind};
use dataplane::Snapshot;

use crate::topology::Topology;

/// A subject is logged at most once per this long.
pub const HOLD: Duration = Duration::from_secs(10);
/// Most lines one call writes; the rest are summed up in one line.
pub const MAX_LINES: usize = 50;

/// What a line is about: one rate-limit bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Subject {
    /// Moves, or flaps, or damping of one MAC in one VLAN (one bucket each, so that a flap
    /// right after a logged move still gets its warning).
    Mac(EventKind, u16, u64),
    /// A port's limit, allow list or shutdown.
    Port(EventKind, u16),
    /// A VLAN's limit.
    Vlan(u16),
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    logged: Instant,
    /// Events of this subject not logged since `logged`.
    folded: u64,
}

/// One line to log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    /// `true`: warn; `false`: info.
    pub warn: bool,
    /// The message.
    pub message: &'static str,
    /// Its fields, in order.
    pub fields: Vec<(&'static str, String)>,
}

/// The rate limiter's memory.
#[derive(Debug, Default)]
pub struct EventLog {
    buckets: HashMap<Subject, Bucket>,
}

impl EventLog {
    /// The lines for `events` at `now`: names from `snap`, limits from `topo`. `lost` events
    /// were overwritten in the rings before they could be read.
    pub fn lines(
        &mut self,
        events: &[Event],
        lost: u64,
        now: Instant,
        snap: &Snapshot,
        topo: &Topology,
    ) -> Vec<Line> {
        // A subject quiet for two holds is forgotten (its events are in the counters anyway).
        self.buckets
            .retain(|_, b| now.duration_since(b.logged) < 2 * HOLD);
        let name = |id: u16| {
            snap.port(id)
                .map_or_else(|| format!("#{id}"), |p| p.name.clone())
        };
        let mut out = Vec::new();
        let mut suppressed = 0u64;
        for e in events {
            let subject = match e.kind {
                // New MACs are for the event stream; the log would drown in them.
                EventKind::Learned => continue,
                EventKind::Moved | EventKind::Flapping | EventKind::Damped => {
                    Subject::Mac(e.kind, e.vlan, e.mac.to_u64())
                }
                EventKind::PortLimit | EventKind::NotAllowed | EventKind::Shutdown => {
                    Subject::Port(e.kind, e.port)
                }
                EventKind::VlanLimit => Subject::Vlan(e.vlan),
            };
            // A shutdown is always worth a line; anything else once per subject and HOLD.
            let due = match self.buckets.get(&subject) {
                _ if e.kind == EventKind::Shutdown => true,
                Some(b) => now.duration_since(b.logged) >= HOLD,
                None => true,
            };
            if !due || out.len() >= MAX_LINES {
                if due {
                    suppressed += 1;
                }
                self.buckets
                    .entry(subject)
                    .or_insert(Bucket {
                        logged: now,
                        folded: 0,
                    })
                    .folded += 1;
                continue;
            }
            let folded = self
                .buckets
                .insert(
                    subject,
                    Bucket {
                        logged: now,
                        folded: 0,
                    },
                )
                .map_or(0, |b| b.folded);
            let mut fields = vec![("vlan", e.vlan.to_string()), ("mac", e.mac.to_string())];
            let (warn, message) = match e.kind {
                EventKind::Learned => continue, // not logged, see above
                EventKind::Moved => {
                    fields.push(("from", name(e.other)));
                    fields.push(("to", name(e.port)));
                    (false, "MAC moved")
                }
                EventKind::Flapping => {
                    fields.push(("from", name(e.other)));
                    fields.push(("to", name(e.port)));
                    let f = topo.mac_flap();
                    fields.push(("rule", format!("{} moves in {} s", f.moves, f.window_secs)));
                    (true, "MAC is flapping between ports")
                }
                EventKind::Damped => {
                    fields.push(("stays_on", name(e.other)));
                    fields.push(("seen_on", name(e.port)));
                    fields.push(("damp_secs", topo.mac_flap().damp_secs.to_string()));
                    (true, "flapping MAC held on its port (damped)")
                }
                EventKind::PortLimit => {
                    fields.push(("port", name(e.port)));
                    let limit = topo.port(&name(e.port)).map(|p| {
                        (
                            topo.port_max_macs(p),
                            p.mac_limit_action.unwrap_or_default().as_str(),
                        )
                    });
                    if let Some((max, action)) = limit {
                        fields.push(("max_macs", max.to_string()));
                        fields.push(("action", action.to_string()));
                    }
                    (true, "port reached its MAC limit; new source not learned")
                }
                EventKind::VlanLimit => {
                    fields.push(("port", name(e.port)));
                    fields.push(("max_macs", topo.vlan_max_macs(e.vlan).to_string()));
                    (true, "VLAN reached its MAC limit; new source not learned")
                }
                EventKind::NotAllowed => {
                    fields.push(("port", name(e.port)));
                    (true, "frame from a MAC not allowed on the port dropped")
                }
                EventKind::Shutdown => {
                    fields.push(("port", name(e.port)));
                    (
                        true,
                        "port shut down by port security (MAC limit reached, action shutdown); \
                         enable it with `switchctl port enable PORT` \
                         (POST /api/v1/ports/PORT/enable)",
                    )
                }
            };
            if folded > 0 {
                fields.push(("more_since_last_line", folded.to_string()));
            }
            out.push(Line {
                warn,
                message,
                fields,
            });
        }
        if suppressed > 0 || lost > 0 {
            out.push(Line {
                warn: true,
                message: "more learning events than the log takes; counted, not logged",
                fields: vec![
                    ("not_logged", suppressed.to_string()),
                    ("lost", lost.to_string()),
                ],
            });
        }
        out
    }

    /// Writes the lines for `events` to the log (see [`EventLog::lines`]).
    pub fn log(
        &mut self,
        events: &[Event],
        lost: u64,
        now: Instant,
        snap: &Snapshot,
        topo: &Topology,
    ) {
        for l in self.lines(events, lost, now, snap, topo) {
            let fields = l
                .fields
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(" ");
            if l.warn {
                tracing::warn!(target: "vlanswitch::learning", "{} {fields}", l.message);
            } else {
                tracing::info!(target: "vlanswitch::learning", "{} {fields}", l.message);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dataplane::wire::MacAddr;
    use dataplane::{PortEntry, PortMode};

    fn snap() -> Snapshot {
        let e = |n: &str| {
            let port =
                std::sync::Arc::new(dataplane::Port::detached(n, "test", Default::default()));
            Some(PortEntry::new(n, PortMode::Access { vlan: 10 }, port))
        };
        Snapshot::new(vec![e("vm1"), e("vm2")], 300)
    }

    fn ev(kind: EventKind, mac: u64, port: u16, other: u16) -> Event {
        Event {
            kind,
            vlan: 10,
            mac: MacAddr::from_u64(0x0200_0000_0000 | mac),
            port,
            other,
            at: 0,
        }
    }

    fn field<'a>(l: &'a Line, k: &str) -> &'a str {
        l.fields
            .iter()
            .find(|(n, _)| *n == k)
            .map_or("", |(_, v)| v.as_str())
    }

    #[test]
    fn a_move_names_the_mac_the_vlan_and_both_ports() {
        let mut log = EventLog::default();
        let t = Topology::default();
        let lines = log.lines(
            &[ev(EventKind::Moved, 1, 1, 0)],
            0,
            Instant::now(),
            &snap(),
            &t,
        );
        assert_eq!(lines.len(), 1);
        let l = &lines[0];
        assert!(!l.warn);
        assert_eq!(l.message, "MAC moved");
        assert_eq!(
            (
                field(l, "mac"),
                field(l, "vlan"),
                field(l, "from"),
                field(l, "to")
            ),
            ("02:00:00:00:00:01", "10", "vm1", "vm2")
        );
    }

    #[test]
    fn a_flood_of_events_becomes_a_few_lines() {
        let mut log = EventLog::default();
        let t = Topology::default();
        let t0 = Instant::now();
        // 10 000 sources beyond vm1's limit: one line for the port, not 10 000
        let flood: Vec<Event> = (0..10_000)
            .map(|i| ev(EventKind::PortLimit, i, 0, 0))
            .collect();
        let lines = log.lines(&flood, 0, t0, &snap(), &t);
        assert_eq!(lines.len(), 1, "{lines:#?}");
        assert!(lines[0].warn);
        assert_eq!(field(&lines[0], "port"), "vm1");
        assert_eq!(field(&lines[0], "max_macs"), "");
        // within the hold time: nothing new; after it: one line saying how many were folded
        assert!(log
            .lines(&flood[..5], 0, t0 + Duration::from_secs(1), &snap(), &t)
            .is_empty());
        let later = log.lines(&flood[..1], 0, t0 + HOLD, &snap(), &t);
        assert_eq!(later.len(), 1);
        assert_eq!(field(&later[0], "more_since_last_line"), "10004");
        // many subjects at once: at most MAX_LINES, then one summary line
        let moves: Vec<Event> = (0..500).map(|i| ev(EventKind::Moved, i, 1, 0)).collect();
        let lines = log.lines(&moves, 7, t0 + HOLD, &snap(), &t);
        assert_eq!(lines.len(), MAX_LINES + 1);
        let last = lines.last().unwrap();
        assert_eq!(field(last, "not_logged"), "450");
        assert_eq!(field(last, "lost"), "7");
    }

    #[test]
    fn a_flap_right_after_a_move_still_gets_its_warning() {
        let mut log = EventLog::default();
        let t = Topology::default();
        let now = Instant::now();
        let events = [
            ev(EventKind::Moved, 1, 1, 0),
            ev(EventKind::Moved, 1, 0, 1),
            ev(EventKind::Flapping, 1, 1, 0),
            ev(EventKind::Damped, 1, 0, 1),
        ];
        let lines = log.lines(&events, 0, now, &snap(), &t);
        let messages: Vec<&str> = lines.iter().map(|l| l.message).collect();
        assert_eq!(
            messages,
            [
                "MAC moved",
                "MAC is flapping between ports",
                "flapping MAC held on its port (damped)"
            ]
        );
    }

    #[test]
    fn every_shutdown_is_logged() {
        let mut log = EventLog::default();
        let t = Topology::default();
        let now = Instant::now();
        let shut = [
            ev(EventKind::Shutdown, 1, 0, 0),
            ev(EventKind::Shutdown, 2, 0, 0),
        ];
        let lines = log.lines(&shut, 0, now, &snap(), &t);
        assert_eq!(lines.len(), 2);
        assert!(lines
            .iter()
            .all(|l| l.warn && l.message.contains("shut down")));
    }
}
