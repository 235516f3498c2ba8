//! What the switch tells a watcher, as it happens: the events of `GET /api/v1/events`.
//!
//! - [`Event`] and [`EventType`]: each event with its JSON fields, declared once; the stream,
//!   the OpenAPI text and `switchctl events` take their names from here.
//! - [`EventHub`]: the fan-out. The control side publishes ([`EventHub::publish`]); every open
//!   stream has its own receiver of one bounded `tokio::sync::broadcast` channel. Publishing
//!   never waits: a stream that falls more than [`HUB_CAPACITY`] events behind skips what it
//!   missed and is told how many (in a `summary`'s `lost`). With no stream open, publishing
//!   costs nothing but a check.
//! - [`Limiter`]: the per-stream bound, pure (time is an argument): at most
//!   [`MAX_PER_SECOND`] events in each second of a stream; the rest of that second are counted
//!   by type and sent as one `summary` when the second ends, together with the events lost on
//!   the way (overwritten in a worker's ring before the control side read them, or skipped by
//!   a lagging stream). Nothing is dropped silently.
//! - [`sse`]: one event as a server-sent-events message.
//!
//! Where events come from: the workers' rings (`dataplane::events`: learned, moved, limits,
//! port-security), read by [`crate::Controller::observe`]; the controller itself (links and
//! port errors it watches, configuration changes it applies, FDB entries it ages, drop
//! counters it reads, see [`crate::droplog`]). The per-frame path only pushes into its ring.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use dataplane::wire::MacAddr;
use serde::Serialize;
use tokio::sync::{broadcast, watch};

use crate::diff::Touched;

/// Most events one stream sends in one second; the rest of that second go into a `summary`.
pub const MAX_PER_SECOND: u32 = 100;
/// How often a stream sends the comment `: keepalive` (so that proxies keep it open).
pub const KEEPALIVE: Duration = Duration::from_secs(15);
/// Events a stream may fall behind before it skips the oldest (and reports them as lost).
pub const HUB_CAPACITY: usize = 4096;
/// Most streams open at once; one more is answered 503.
pub const MAX_STREAMS: usize = 16;

/// Declares [`EventType`] once: variant, the name on the wire, and what it means.
macro_rules! event_types {
    ($($(#[doc = $doc:literal])+ $variant:ident => $name:literal,)+) => {
        /// The type of an event: its SSE `event:` name and the `types` filter's word.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum EventType {
            $($(#[doc = $doc])+ $variant,)+
        }

        impl EventType {
            /// Every type, in the order the documentation lists them.
            pub const ALL: [EventType; [$($name),+].len()] = [$(EventType::$variant),+];

            /// Its name on the wire (`mac_moved`).
            pub fn name(self) -> &'static str {
                match self {
                    $(EventType::$variant => $name,)+
                }
            }

            /// What it means, for people (its doc comment, as one line).
            pub fn meaning(self) -> &'static str {
                match self {
                    $(EventType::$variant => concat!($($doc),+).trim_ascii(),)+
                }
            }

            /// The type named `name`, if there is one.
            pub fn parse(name: &str) -> Option<EventType> {
                EventType::ALL.into_iter().find(|t| t.name() == name)
            }
        }
    };
}

event_types! {
    /// A MAC was learned on a port: `{vlan, mac, port}`.
    MacLearned => "mac_learned",
    /// A MAC moved to another port of its VLAN: `{vlan, mac, from, to, flapping}`
    /// (`flapping`: the move made it count as flapping).
    MacMoved => "mac_moved",
    /// A learned MAC aged out of the table: `{vlan, mac, port}`.
    MacAged => "mac_aged",
    /// A new source was not learned: its port or VLAN is at its MAC limit: `{vlan, mac, port}`.
    MacLimit => "mac_limit",
    /// A frame from a MAC not in the port's `allowed_macs` was dropped: `{vlan, mac, port}`.
    MacNotAllowed => "mac_not_allowed",
    /// Port security shut the port down because of a frame from `mac`: `{vlan, mac, port}`.
    PortShutdown => "port_shutdown",
    /// A port's link went up or down (its interface or frontend came or went, it was added or
    /// removed, shut down or enabled): `{port, up}`.
    Link => "link",
    /// A configuration change was applied: `{changes: [{what, name, field, old, new}]}`, one
    /// entry per value changed (`what`: `port`, `vlan` or `switch`; `name`: the port's name or
    /// the VLAN id; `old`/`new`: `-` for none).
    ConfigApplied => "config_applied",
    /// A port cannot carry frames, and why: `{port, reason}` (its interface is gone, receiving
    /// failed, its vhost-user frontend left or was refused).
    PortError => "port_error",
    /// Frames a port dropped for one reason in the last 5 s: `{port, reason, frames}`.
    Drops => "drops",
    /// What this stream did not send: `{suppressed: {type: count}, lost}`: events over the
    /// rate bound in the second that just ended, by type, and events lost on the way.
    Summary => "summary",
}

/// One event, with the fields its JSON `data` carries.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Event {
    /// See [`EventType::MacLearned`].
    MacLearned {
        /// The VLAN.
        vlan: u16,
        /// The MAC.
        mac: MacAddr,
        /// The port it was learned on.
        port: String,
    },
    /// See [`EventType::MacMoved`].
    MacMoved {
        /// The VLAN.
        vlan: u16,
        /// The MAC.
        mac: MacAddr,
        /// The port it was on.
        from: String,
        /// The port it is on now.
        to: String,
        /// Whether this move made it count as flapping.
        flapping: bool,
    },
    /// See [`EventType::MacAged`].
    MacAged {
        /// The VLAN.
        vlan: u16,
        /// The MAC.
        mac: MacAddr,
        /// The port it was on.
        port: String,
    },
    /// See [`EventType::MacLimit`].
    MacLimit {
        /// The VLAN.
        vlan: u16,
        /// The source not learned.
        mac: MacAddr,
        /// The port it came in on.
        port: String,
    },
    /// See [`EventType::MacNotAllowed`].
    MacNotAllowed {
        /// The VLAN.
        vlan: u16,
        /// The source refused.
        mac: MacAddr,
        /// The port it came in on.
        port: String,
    },
    /// See [`EventType::PortShutdown`].
    PortShutdown {
        /// The VLAN.
        vlan: u16,
        /// The source whose frame shut the port down.
        mac: MacAddr,
        /// The port shut down.
        port: String,
    },
    /// See [`EventType::Link`].
    Link {
        /// The port.
        port: String,
        /// Whether its link is up now.
        up: bool,
    },
    /// See [`EventType::ConfigApplied`].
    ConfigApplied {
        /// What changed, as the controller logs it ([`crate::diff::touched`]).
        changes: Vec<Touched>,
    },
    /// See [`EventType::PortError`].
    PortError {
        /// The port.
        port: String,
        /// Why it cannot carry frames.
        reason: String,
    },
    /// See [`EventType::Drops`].
    Drops {
        /// The port.
        port: String,
        /// The drop reason (`tagged_on_access`: the names of the counters).
        reason: &'static str,
        /// Frames dropped for it since the last `drops` of this port and reason.
        frames: u64,
    },
    /// See [`EventType::Summary`].
    Summary {
        /// Events not sent because of the rate bound, by type.
        suppressed: BTreeMap<&'static str, u64>,
        /// Events lost before they reached this stream.
        lost: u64,
    },
}

impl Event {
    /// Its type.
    pub fn kind(&self) -> EventType {
        match self {
            Event::MacLearned { .. } => EventType::MacLearned,
            Event::MacMoved { .. } => EventType::MacMoved,
            Event::MacAged { .. } => EventType::MacAged,
            Event::MacLimit { .. } => EventType::MacLimit,
            Event::MacNotAllowed { .. } => EventType::MacNotAllowed,
            Event::PortShutdown { .. } => EventType::PortShutdown,
            Event::Link { .. } => EventType::Link,
            Event::ConfigApplied { .. } => EventType::ConfigApplied,
            Event::PortError { .. } => EventType::PortError,
            Event::Drops { .. } => EventType::Drops,
            Event::Summary { .. } => EventType::Summary,
        }
    }

    /// Its JSON `data`, on one line.
    pub fn data(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|_| "{}".into())
    }
}

/// The stream's event for `e`, an event of a worker's ring, with port names from `name`.
/// `None` for what the stream does not carry (a damped move: the MAC stayed where it was).
pub fn from_worker(
    e: &dataplane::events::Event,
    name: impl Fn(dataplane::PortId) -> String,
) -> Option<Event> {
    use dataplane::events::EventKind as K;
    let (vlan, mac, port) = (e.vlan, e.mac, name(e.port));
    Some(match e.kind {
        K::Learned => Event::MacLearned { vlan, mac, port },
        K::Moved | K::Flapping => Event::MacMoved {
            vlan,
            mac,
            from: name(e.other),
            to: port,
            flapping: e.kind == K::Flapping,
        },
        K::Damped => return None,
        K::PortLimit | K::VlanLimit => Event::MacLimit { vlan, mac, port },
        K::NotAllowed => Event::MacNotAllowed { vlan, mac, port },
        K::Shutdown => Event::PortShutdown { vlan, mac, port },
    })
}

/// A change in the stream as `{what, name, field, old, new}`: the very [`Touched`] the
/// controller logs, under the stream's names.
impl Serialize for Touched {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let (what, name) = match (&self.port, self.vlan) {
            (Some(p), _) => ("port", p.clone()),
            (None, Some(v)) => ("vlan", v.to_string()),
            (None, None) => ("switch", String::new()),
        };
        let mut m = s.serialize_map(Some(5))?;
        m.serialize_entry("what", what)?;
        m.serialize_entry("name", &name)?;
        m.serialize_entry("field", &self.field)?;
        m.serialize_entry("old", &self.from)?;
        m.serialize_entry("new", &self.to)?;
        m.end()
    }
}

// A filter is one bit per type.
const _: () = assert!(EventType::ALL.len() <= 32);

/// The types a stream sends (`?types=`); all by default.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TypeFilter(u32);

impl Default for TypeFilter {
    fn default() -> Self {
        TypeFilter(u32::MAX)
    }
}

impl TypeFilter {
    /// The filter of `types=a,b,c`; an empty list means every type. An unknown name is an
    /// error naming it.
    pub fn parse(list: &str) -> Result<TypeFilter, String> {
        let mut bits = 0;
        for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            let t = EventType::parse(name).ok_or_else(|| name.to_string())?;
            bits |= 1 << t as u32;
        }
        Ok(if bits == 0 {
            TypeFilter::default()
        } else {
            TypeFilter(bits)
        })
    }

    /// Whether events of type `t` pass.
    pub fn allows(self, t: EventType) -> bool {
        self.0 & (1 << t as u32) != 0
    }
}

/// An event as published: its type and its JSON, serialized once for every stream.
#[derive(Debug)]
pub struct Published {
    /// Its type.
    pub kind: EventType,
    /// Its JSON `data`.
    pub data: String,
}

/// What the hub carries to the streams.
#[derive(Debug, Clone)]
pub enum Message {
    /// An event.
    Event(Arc<Published>),
    /// Events lost before publishing (overwritten in a worker's ring).
    Lost(u64),
}

/// The fan-out from the control side to every open stream (cheap to clone).
#[derive(Debug, Clone)]
pub struct EventHub {
    tx: broadcast::Sender<Message>,
    closed: Arc<watch::Sender<bool>>,
}

impl Default for EventHub {
    fn default() -> Self {
        EventHub {
            tx: broadcast::channel(HUB_CAPACITY).0,
            closed: Arc::new(watch::channel(false).0),
        }
    }
}

/// One stream's end of the hub.
#[derive(Debug)]
pub struct Subscription {
    /// The events.
    pub events: broadcast::Receiver<Message>,
    /// Becomes `true` when the hub closes (switchd stops): the stream ends.
    pub closed: watch::Receiver<bool>,
}

impl EventHub {
    /// Sends `e` to every open stream; never waits. Does nothing when none is open.
    pub fn publish(&self, e: &Event) {
        if self.tx.receiver_count() == 0 {
            return;
        }
        let p = Published {
            kind: e.kind(),
            data: e.data(),
        };
        let _ = self.tx.send(Message::Event(Arc::new(p)));
    }

    /// Tells every open stream that `n` events were lost before they could be published.
    pub fn lost(&self, n: u64) {
        if n > 0 && self.tx.receiver_count() > 0 {
            let _ = self.tx.send(Message::Lost(n));
        }
    }

    /// Whether any stream is open (publishers can skip work when none is).
    pub fn has_streams(&self) -> bool {
        self.tx.receiver_count() > 0
    }

    /// Streams open now.
    pub fn streams(&self) -> usize {
        self.tx.receiver_count()
    }

    /// A new stream's receiver; `None` once the hub is closed.
    pub fn subscribe(&self) -> Option<Subscription> {
        let closed = self.closed.subscribe();
        if *closed.borrow() {
            return None;
        }
        Some(Subscription {
            events: self.tx.subscribe(),
            closed,
        })
    }

    /// Ends every stream, now and from now on (when switchd stops, so that open streams do
    /// not hold the API's shutdown).
    pub fn close(&self) {
        self.closed.send_replace(true);
    }
}

/// The rate bound of one stream (pure: time is an argument). Seconds are counted from the
/// stream's start.
#[derive(Debug)]
pub struct Limiter {
    start: Instant,
    /// The second the counts below are of.
    second: u64,
    /// Events sent in it.
    sent: u32,
    /// Events not sent in it, by type.
    suppressed: BTreeMap<EventType, u64>,
    /// Events lost since the last summary.
    lost: u64,
}

impl Limiter {
    /// A limiter for a stream that starts at `start`.
    pub fn new(start: Instant) -> Limiter {
        Limiter {
            start,
            second: 0,
            sent: 0,
            suppressed: BTreeMap::new(),
            lost: 0,
        }
    }

    /// An event of type `t` at `now`: whether to send it, after the summary of a second that
    /// has ended meanwhile (send that first).
    pub fn offer(&mut self, t: EventType, now: Instant) -> (Option<Event>, bool) {
        let summary = self.poll(now);
        if self.sent < MAX_PER_SECOND {
            self.sent += 1;
            (summary, true)
        } else {
            *self.suppressed.entry(t).or_default() += 1;
            (summary, false)
        }
    }

    /// `n` events were lost at `now`; they go into the summary of this second. Returns the
    /// summary of a second that has ended meanwhile.
    pub fn lose(&mut self, n: u64, now: Instant) -> Option<Event> {
        let summary = self.poll(now);
        self.lost += n;
        summary
    }

    /// When the summary pending for this second is due (its end), if one is.
    pub fn due(&self) -> Option<Instant> {
        (!self.suppressed.is_empty() || self.lost > 0)
            .then(|| self.start + Duration::from_secs(self.second + 1))
    }

    /// The summary of the second that has ended by `now`, if anything was left out in it; and
    /// moves on to `now`'s second.
    pub fn poll(&mut self, now: Instant) -> Option<Event> {
        let second = now.saturating_duration_since(self.start).as_secs();
        if second <= self.second {
            return None;
        }
        self.second = second;
        self.sent = 0;
        if self.suppressed.is_empty() && self.lost == 0 {
            return None;
        }
        let suppressed = std::mem::take(&mut self.suppressed)
            .into_iter()
            .map(|(t, n)| (t.name(), n))
            .collect();
        Some(Event::Summary {
            suppressed,
            lost: std::mem::take(&mut self.lost),
        })
    }
}

/// Event `kind` with JSON `data` as a server-sent-events message numbered `id`.
pub fn sse(id: u64, kind: EventType, data: &str) -> String {
    format!("id: {id}\nevent: {}\ndata: {data}\n\n", kind.name())
}

/// The comment a stream sends every [`KEEPALIVE`].
pub const SSE_KEEPALIVE: &str = ": keepalive\n\n";

#[cfg(test)]
mod tests {
    use super::*;

    fn mac(i: u64) -> MacAddr {
        MacAddr::from_u64(0x0200_0000_0000 | i)
    }

    #[test]
    fn each_type_has_the_fields_of_the_contract() {
        let cases = [
            (
                Event::MacLearned {
                    vlan: 10,
                    mac: mac(1),
                    port: "vm1".into(),
                },
                r#"{"vlan":10,"mac":"02:00:00:00:00:01","port":"vm1"}"#,
            ),
            (
                Event::MacMoved {
                    vlan: 10,
                    mac: mac(1),
                    from: "vm1".into(),
                    to: "vm2".into(),
                    flapping: false,
                },
                r#"{"vlan":10,"mac":"02:00:00:00:00:01","from":"vm1","to":"vm2","flapping":false}"#,
            ),
            (
                Event::Link {
                    port: "vm1".into(),
                    up: true,
                },
                r#"{"port":"vm1","up":true}"#,
            ),
            (
                Event::ConfigApplied {
                    changes: vec![Touched {
                        port: Some("vm1".into()),
                        vlan: None,
                        field: "vlan".into(),
                        from: "10".into(),
                        to: "20".into(),
                    }],
                },
                r#"{"changes":[{"what":"port","name":"vm1","field":"vlan","old":"10","new":"20"}]}"#,
            ),
            (
                Event::Drops {
                    port: "vm1".into(),
                    reason: "tagged_on_access",
                    frames: 5,
                },
                r#"{"port":"vm1","reason":"tagged_on_access","frames":5}"#,
            ),
            (
                Event::Summary {
                    suppressed: [("mac_learned", 1900)].into(),
                    lost: 3,
                },
                r#"{"suppressed":{"mac_learned":1900},"lost":3}"#,
            ),
        ];
        for (e, json) in cases {
            assert_eq!(e.data(), json, "{:?}", e.kind());
        }
        assert_eq!(
            sse(7, EventType::Link, r#"{"port":"vm1","up":true}"#),
            "id: 7\nevent: link\ndata: {\"port\":\"vm1\",\"up\":true}\n\n"
        );
    }

    #[test]
    fn type_names_round_trip_and_filters_name_the_unknown() {
        for t in EventType::ALL {
            assert_eq!(EventType::parse(t.name()), Some(t));
            assert!(!t.meaning().is_empty());
        }
        let f = TypeFilter::parse("mac_moved, link").unwrap();
        assert!(f.allows(EventType::MacMoved) && f.allows(EventType::Link));
        assert!(!f.allows(EventType::MacLearned));
        assert!(TypeFilter::parse("").unwrap().allows(EventType::Drops));
        assert_eq!(TypeFilter::parse("link,bogus"), Err("bogus".to_string()));
    }

    #[test]
    fn a_flood_is_bounded_per_second_and_summed_up_when_the_second_ends() {
        let t0 = Instant::now();
        let mut l = Limiter::new(t0);
        let mut sent = 0;
        // 2000 events within the first second: 100 sent, the rest counted
        for i in 0..2000u64 {
            let (s, send) = l.offer(EventType::MacLearned, t0 + Duration::from_micros(i * 400));
            assert!(s.is_none());
            sent += u32::from(send);
        }
        assert_eq!(sent, MAX_PER_SECOND);
        assert_eq!(l.lose(5, t0 + Duration::from_millis(900)), None);
        assert_eq!(l.due(), Some(t0 + Duration::from_secs(1)));
        // not before the second ends
        assert_eq!(l.poll(t0 + Duration::from_millis(999)), None);
        let s = l.poll(t0 + Duration::from_secs(1)).expect("a summary");
        assert_eq!(
            s,
            Event::Summary {
                suppressed: [("mac_learned", 1900)].into(),
                lost: 5
            }
        );
        assert_eq!(l.due(), None);
        // a new second: events flow again, and a quiet second has no summary
        assert_eq!(
            l.offer(EventType::Link, t0 + Duration::from_millis(1500)),
            (None, true)
        );
        assert_eq!(l.poll(t0 + Duration::from_secs(3)), None);
    }

    #[test]
    fn an_event_after_a_busy_second_comes_after_its_summary() {
        let t0 = Instant::now();
        let mut l = Limiter::new(t0);
        for _ in 0..=MAX_PER_SECOND {
            l.offer(EventType::MacMoved, t0);
        }
        let (s, send) = l.offer(EventType::Link, t0 + Duration::from_secs(2));
        assert!(send);
        assert_eq!(
            s,
            Some(Event::Summary {
                suppressed: [("mac_moved", 1)].into(),
                lost: 0
            })
        );
    }

    #[test]
    fn lost_events_alone_make_a_summary() {
        let t0 = Instant::now();
        let mut l = Limiter::new(t0);
        assert_eq!(l.lose(42, t0 + Duration::from_millis(10)), None);
        assert_eq!(
            l.poll(t0 + Duration::from_millis(1010)),
            Some(Event::Summary {
                suppressed: BTreeMap::new(),
                lost: 42
            })
        );
    }

    #[test]
    fn the_hub_fans_out_and_a_lagging_stream_learns_how_many_it_missed() {
        let hub = EventHub::default();
        // no stream: nothing is serialized or kept
        hub.publish(&Event::Link {
            port: "a".into(),
            up: true,
        });
        let mut a = hub.subscribe().unwrap();
        let mut b = hub.subscribe().unwrap();
        assert_eq!(hub.streams(), 2);
        for _ in 0..HUB_CAPACITY + 3 {
            hub.publish(&Event::Link {
                port: "a".into(),
                up: true,
            });
        }
        match a.events.try_recv() {
            Err(broadcast::error::TryRecvError::Lagged(n)) => assert_eq!(n, 3),
            other => panic!("{other:?}"),
        }
        match b.events.try_recv() {
            Err(broadcast::error::TryRecvError::Lagged(3)) => {}
            other => panic!("{other:?}"),
        }
        match a.events.try_recv() {
            Ok(Message::Event(p)) => {
                assert_eq!(p.kind, EventType::Link);
                assert_eq!(p.data, r#"{"port":"a","up":true}"#);
            }
            other => panic!("{other:?}"),
        }
        hub.close();
        assert!(*a.closed.borrow_and_update());
        assert!(hub.subscribe().is_none());
    }
}
