//! Drops, told in words: the drop log and the stream's periodic `drops` events, both from the
//! per-port drop counters the workers already keep (`dataplane::counters`). The control side
//! reads the counters a few times a second; the per-frame path does nothing more than count.
//!
//! - The first drop of each reason on each port is logged at once (warn), with the port, the
//!   reason, how many frames, and what the reason means ([`DropReason::meaning`]).
//! - After that, a port gets at most one summary line per [`SUMMARY_EVERY`], with the frames
//!   dropped per reason since its last line.
//! - Every [`DROPS_EVERY`], the per-port, per-reason counts that grew become `drops` events.
//!
//! Time is an argument ([`DropWatch::observe`]), so the rules are tested without a clock.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use dataplane::counters::{CounterValues, DropReason};

use crate::events::Event;

/// A port's summary line comes at most this often.
pub const SUMMARY_EVERY: Duration = Duration::from_secs(60);
/// How often the counts that grew become `drops` events.
pub const DROPS_EVERY: Duration = Duration::from_secs(5);

const REASONS: usize = DropReason::ALL.len();

/// A line for the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DropLine {
    /// The first drop of `reason` on `port` (`frames` of them since the last look).
    First {
        /// The port.
        port: String,
        /// The reason.
        reason: DropReason,
        /// Frames dropped for it.
        frames: u64,
    },
    /// Drops on `port` since its last line, per reason (only the reasons that grew).
    Summary {
        /// The port.
        port: String,
        /// Frames per reason.
        counts: Vec<(DropReason, u64)>,
    },
}

/// What one look at the counters found.
#[derive(Debug, Default)]
pub struct Observed {
    /// Lines to log.
    pub lines: Vec<DropLine>,
    /// `drops` events to publish.
    pub events: Vec<Event>,
}

#[derive(Debug, Default)]
struct PortDrops {
    /// The counters at the last look.
    last: [u64; REASONS],
    /// The counters at the last `drops` events.
    at_events: [u64; REASONS],
    /// Reasons whose first drop was logged.
    told: [bool; REASONS],
    /// Frames dropped since the port's last line, for the next summary.
    since_line: [u64; REASONS],
    /// When the port's last line was written.
    last_line: Option<Instant>,
}

/// The drop log's and the `drops` events' memory, per port.
#[derive(Debug, Default)]
pub struct DropWatch {
    ports: HashMap<String, PortDrops>,
    last_events: Option<Instant>,
}

/// How much a counter grew from `before` to `now`; a counter that went back (its port was made
/// anew) counts from zero.
fn grew(now: u64, before: u64) -> u64 {
    now.checked_sub(before).unwrap_or(now)
}

impl DropWatch {
    /// Looks at `counters` (every port's, by name) at `now`.
    pub fn observe(&mut self, now: Instant, counters: &[(String, CounterValues)]) -> Observed {
        let mut out = Observed::default();
        self.ports
            .retain(|name, _| counters.iter().any(|(n, _)| n == name));
        let events_due = match self.last_events {
            None => {
                self.last_events = Some(now);
                false
            }
            Some(t) => now.duration_since(t) >= DROPS_EVERY,
        };
        if events_due {
            self.last_events = Some(now);
        }
        for (name, values) in counters {
            let p = self.ports.entry(name.clone()).or_default();
            let mut first_line = false;
            for (i, r) in DropReason::ALL.into_iter().enumerate() {
                let now_count = values.drop_count(r);
                let d = grew(now_count, p.last[i]);
                p.last[i] = now_count;
                if d > 0 {
                    if p.told[i] {
                        p.since_line[i] += d;
                    } else {
                        p.told[i] = true;
                        first_line = true;
                        out.lines.push(DropLine::First {
                            port: name.clone(),
                            reason: r,
                            frames: d,
                        });
                    }
                }
                if events_due {
                    let e = grew(now_count, p.at_events[i]);
                    p.at_events[i] = now_count;
                    if e > 0 {
                        out.events.push(Event::Drops {
                            port: name.clone(),
                            reason: r.name(),
                            frames: e,
                        });
                    }
                }
            }
            if first_line {
                p.last_line = Some(now);
            }
            let summary_due = p
                .last_line
                .is_none_or(|t| now.duration_since(t) >= SUMMARY_EVERY);
            if summary_due && p.since_line.iter().any(|&n| n > 0) {
                let counts = DropReason::ALL
                    .into_iter()
                    .zip(std::mem::take(&mut p.since_line))
                    .filter(|&(_, n)| n > 0)
                    .collect();
                p.last_line = Some(now);
                out.lines.push(DropLine::Summary {
                    port: name.clone(),
                    counts,
                });
            }
        }
        out
    }

    /// Writes `lines` to the log (target `vlanswitch::drops`).
    pub fn log(lines: &[DropLine]) {
        for l in lines {
            match l {
                DropLine::First {
                    port,
                    reason,
                    frames,
                } => tracing::warn!(
                    target: "vlanswitch::drops",
                    port = %port,
                    reason = reason.name(),
                    frames,
                    meaning = reason.meaning(),
                    "first drop of this reason on the port"
                ),
                DropLine::Summary { port, counts } => {
                    let drops = counts
                        .iter()
                        .map(|(r, n)| format!("{}={n}", r.name()))
                        .collect::<Vec<_>>()
                        .join(",");
                    tracing::info!(
                        target: "vlanswitch::drops",
                        port = %port,
                        drops = %drops,
                        "drops on the port since its last drop line"
                    );
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(drops: &[(DropReason, u64)]) -> CounterValues {
        let mut v = CounterValues::default();
        for &(r, n) in drops {
            v.drops[r as usize] = n;
        }
        v
    }

    fn look(w: &mut DropWatch, at: Instant, ports: &[(&str, &[(DropReason, u64)])]) -> Observed {
        let c: Vec<(String, CounterValues)> = ports
            .iter()
            .map(|(n, d)| (n.to_string(), values(d)))
            .collect();
        w.observe(at, &c)
    }

    const TAGGED: DropReason = DropReason::TaggedOnAccess;
    const VLAN: DropReason = DropReason::VlanNotAllowed;

    #[test]
    fn the_first_drop_of_each_reason_is_told_at_once_then_a_summary_a_minute() {
        let mut w = DropWatch::default();
        let t0 = Instant::now();
        let s = |n| t0 + Duration::from_secs(n);
        assert!(look(&mut w, t0, &[("vm1", &[])]).lines.is_empty());
        let o = look(&mut w, s(1), &[("vm1", &[(TAGGED, 5)])]);
        assert_eq!(
            o.lines,
            [DropLine::First {
                port: "vm1".into(),
                reason: TAGGED,
                frames: 5
            }]
        );
        // more of the same: held for the summary; a new reason: told at once
        assert!(look(&mut w, s(2), &[("vm1", &[(TAGGED, 8)])])
            .lines
            .is_empty());
        let o = look(&mut w, s(3), &[("vm1", &[(TAGGED, 9), (VLAN, 2)])]);
        assert_eq!(
            o.lines,
            [DropLine::First {
                port: "vm1".into(),
                reason: VLAN,
                frames: 2
            }]
        );
        // drops every second for two minutes: one summary line a minute, with the counts
        let mut summaries = Vec::new();
        for i in 4..=124 {
            let o = look(
                &mut w,
                s(i),
                &[("vm1", &[(TAGGED, 9 + (i - 3)), (VLAN, 2)])],
            );
            for l in o.lines {
                match l {
                    DropLine::Summary { counts, .. } => summaries.push((i, counts)),
                    first => panic!("{first:?}"),
                }
            }
        }
        assert_eq!(
            summaries,
            // the first: 4 held since the first line, and one a second for 60 s
            [(63, vec![(TAGGED, 4 + 60)]), (123, vec![(TAGGED, 60)])]
        );
        // what was held is told when its minute is up, even with no new drops; then a quiet
        // port writes nothing
        let quiet: &[(&str, &[(DropReason, u64)])] = &[("vm1", &[(TAGGED, 9 + 121), (VLAN, 2)])];
        assert_eq!(
            look(&mut w, s(183), quiet).lines,
            [DropLine::Summary {
                port: "vm1".into(),
                counts: vec![(TAGGED, 1)]
            }]
        );
        assert!(look(&mut w, s(300), quiet).lines.is_empty());
    }

    #[test]
    fn drops_events_every_five_seconds_with_what_grew() {
        let mut w = DropWatch::default();
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        assert!(look(&mut w, t0, &[("a", &[]), ("b", &[])])
            .events
            .is_empty());
        assert!(look(&mut w, ms(1000), &[("a", &[(TAGGED, 3)]), ("b", &[])])
            .events
            .is_empty());
        let o = look(
            &mut w,
            ms(5000),
            &[("a", &[(TAGGED, 4)]), ("b", &[(VLAN, 1)])],
        );
        assert_eq!(
            o.events,
            [
                Event::Drops {
                    port: "a".into(),
                    reason: "tagged_on_access",
                    frames: 4
                },
                Event::Drops {
                    port: "b".into(),
                    reason: "vlan_not_allowed",
                    frames: 1
                }
            ]
        );
        // nothing grew: no events; a port made anew counts from zero
        assert!(look(&mut w, ms(10_000), &[("a", &[(TAGGED, 4)])])
            .events
            .is_empty());
        let o = look(&mut w, ms(15_000), &[("a", &[(TAGGED, 2)])]);
        assert_eq!(
            o.events,
            [Event::Drops {
                port: "a".into(),
                reason: "tagged_on_access",
                frames: 2
            }]
        );
    }
}
