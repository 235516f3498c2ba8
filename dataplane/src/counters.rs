//! Per-port counters: atomics shared by all workers, read by the control side.
#![forbid(unsafe_code)]

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Declares [`DropReason`] once: each reason's doc comment is also its [`DropReason::meaning`]
/// (the drop log's words), and its snake_case name is the one logs, metrics and the API use.
macro_rules! drop_reasons {
    ($($(#[doc = $doc:literal])+ $variant:ident => $name:literal,)+) => {
        /// Why a frame was dropped.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum DropReason {
            $($(#[doc = $doc])+ $variant,)+
        }

        impl DropReason {
            /// All reasons, in counter order.
            pub const ALL: [DropReason; [$($name),+].len()] = [$(DropReason::$variant),+];

            /// A stable snake_case name for logs and metrics.
            pub fn name(self) -> &'static str {
                match self {
                    $(DropReason::$variant => $name,)+
                }
            }

            /// What the reason means, for people (its doc comment, as one line).
            pub fn meaning(self) -> &'static str {
                match self {
                    $(DropReason::$variant => concat!($($doc),+).trim_ascii(),)+
                }
            }
        }
    };
}

drop_reasons! {
    /// Too short to be an Ethernet (or 802.1Q) frame.
    BadFrame => "bad_frame",
    /// The frame's VLAN is not carried by the ingress port (untagged on a trunk without a native
    /// VLAN, or a VID not in the trunk's list).
    VlanNotAllowed => "vlan_not_allowed",
    /// A tagged frame (VID 1-4095) on an access port.
    TaggedOnAccess => "tagged_on_access",
    /// Writing to the egress port failed (its queue was full, or it refused the frame).
    TxError => "tx_error",
    /// The ingress port was removed from the configuration while the frame was in flight.
    NoSuchPort => "no_such_port",
    /// The egress port's link was down: its interface is missing (a netdev port waiting for
    /// it), or not up and running yet (the kernel said `ENETDOWN`).
    LinkDown => "link_down",
    /// The kernel dropped the frame before switchd read it: a netdev port's receive ring (or
    /// socket buffer) was full because switchd fell behind.
    RxOverrun => "rx_overrun",
    /// The ingress port or its VLAN has reached its MAC limit and the port's limit action is
    /// `drop` or `shutdown`: a frame from a source beyond the limit was dropped. (With `flood`
    /// the frame is forwarded and [`MacEvent::LimitNotLearned`] counts it.)
    MacLimit => "mac_limit",
    /// The source MAC is not in the ingress port's `allowed_macs`: dropped.
    MacNotAllowed => "mac_not_allowed",
    /// The port is shut down by port security (limit action `shutdown`): frames from it and
    /// copies for it are dropped until it is enabled again.
    PortDisabled => "port_disabled",
    /// A vhost-user guest had no free receive buffer for the frame (its RX ring was full: the
    /// guest is not keeping up, or not reading at all). Other ports are not slowed.
    GuestRingFull => "guest_ring_full",
    /// Another worker held the vhost-user guest's RX ring for longer than a frame may wait.
    GuestBusy => "guest_busy",
    /// The egress port cannot take the frame as it is (a GSO super-frame or a partial
    /// checksum for a vhost-user guest that did not negotiate the offload).
    NoOffload => "no_offload",
    /// The port is a mirror's output: it carries the mirror's copies only, and what it
    /// receives is dropped.
    MirrorOutput => "mirror_output",
}

/// Learning events counted per port (the port a MAC moved to).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MacEvent {
    /// A MAC learned on another port of the same VLAN moved to this port.
    Moved,
    /// A move to this port made the MAC count as flapping.
    Flapping,
    /// A move to this port was refused: the MAC is flapping and damped.
    Damped,
    /// A source MAC on this port was not learned: the MAC table was full. The frame itself
    /// was still forwarded; a learning failure is not a drop.
    NoRoom,
    /// A source MAC on this port was not learned because the port or its VLAN is at its MAC
    /// limit, and the port's limit action `flood` forwarded the frame anyway: a learning
    /// failure, not a drop.
    LimitNotLearned,
}

impl MacEvent {
    /// All events, in counter order.
    pub const ALL: [MacEvent; 5] = [
        MacEvent::Moved,
        MacEvent::Flapping,
        MacEvent::Damped,
        MacEvent::NoRoom,
        MacEvent::LimitNotLearned,
    ];

    /// A stable snake_case name for logs and metrics.
    pub fn name(self) -> &'static str {
        match self {
            MacEvent::Moved => "mac_moves",
            MacEvent::Flapping => "mac_flaps",
            MacEvent::Damped => "mac_damped",
            MacEvent::NoRoom => "fdb_no_room",
            MacEvent::LimitNotLearned => "mac_limit_not_learned",
        }
    }
}

/// A pair of packet and byte counters on a cache line of its own.
#[derive(Debug, Default)]
#[repr(align(64))]
struct Traffic {
    packets: AtomicU64,
    bytes: AtomicU64,
}

/// Counters of one port. All updates are `Relaxed` atomic adds. Receive counters are written
/// by the worker that owns the port, transmit counters by any worker: they sit on separate
/// cache lines so that the two do not bounce one line between cores.
#[derive(Debug, Default)]
pub struct PortCounters {
    rx: Traffic,
    tx: Traffic,
    drops: [AtomicU64; DropReason::ALL.len()],
    events: [AtomicU64; MacEvent::ALL.len()],
}

/// A plain copy of [`PortCounters`] at one instant.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CounterValues {
    /// Frames received.
    pub rx_packets: u64,
    /// Bytes received.
    pub rx_bytes: u64,
    /// Frames sent.
    pub tx_packets: u64,
    /// Bytes sent.
    pub tx_bytes: u64,
    /// Drops, indexed like [`DropReason::ALL`].
    pub drops: [u64; DropReason::ALL.len()],
    /// Learning events, indexed like [`MacEvent::ALL`].
    pub events: [u64; MacEvent::ALL.len()],
}

impl CounterValues {
    /// The drop count for `r`.
    pub fn drop_count(&self, r: DropReason) -> u64 {
        self.drops[r as usize]
    }

    /// The count of event `e`.
    pub fn event_count(&self, e: MacEvent) -> u64 {
        self.events[e as usize]
    }
}

impl std::fmt::Display for CounterValues {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "rx_packets={} rx_bytes={} tx_packets={} tx_bytes={}",
            self.rx_packets, self.rx_bytes, self.tx_packets, self.tx_bytes
        )?;
        for r in DropReason::ALL {
            write!(f, " drop_{}={}", r.name(), self.drop_count(r))?;
        }
        for e in MacEvent::ALL {
            write!(f, " {}={}", e.name(), self.event_count(e))?;
        }
        Ok(())
    }
}

impl PortCounters {
    /// Counts one received frame of `bytes` bytes.
    #[inline]
    pub fn rx(&self, bytes: usize) {
        self.rx_n(1, bytes as u64);
    }

    /// Counts `frames` received frames of `bytes` bytes in all (a batch at once: the worker
    /// adds up a batch before it touches the shared counters).
    #[inline]
    pub fn rx_n(&self, frames: u64, bytes: u64) {
        self.rx.packets.fetch_add(frames, Relaxed);
        self.rx.bytes.fetch_add(bytes, Relaxed);
    }

    /// Counts one sent frame of `bytes` bytes.
    #[inline]
    pub fn tx(&self, bytes: usize) {
        self.tx_n(1, bytes as u64);
    }

    /// Counts `frames` sent frames of `bytes` bytes in all.
    #[inline]
    pub fn tx_n(&self, frames: u64, bytes: u64) {
        self.tx.packets.fetch_add(frames, Relaxed);
        self.tx.bytes.fetch_add(bytes, Relaxed);
    }

    /// Counts one drop.
    #[inline]
    pub fn count_drop(&self, r: DropReason) {
        self.count_drops(r, 1);
    }

    /// Counts `n` drops for reason `r`.
    #[inline]
    pub fn count_drops(&self, r: DropReason, n: u64) {
        self.drops[r as usize].fetch_add(n, Relaxed);
    }

    /// Counts one learning event.
    #[inline]
    pub fn count_event(&self, e: MacEvent) {
        self.events[e as usize].fetch_add(1, Relaxed);
    }

    /// Reads all counters.
    pub fn values(&self) -> CounterValues {
        let mut drops = [0; DropReason::ALL.len()];
        for (d, a) in drops.iter_mut().zip(&self.drops) {
            *d = a.load(Relaxed);
        }
        let mut events = [0; MacEvent::ALL.len()];
        for (d, a) in events.iter_mut().zip(&self.events) {
            *d = a.load(Relaxed);
        }
        CounterValues {
            rx_packets: self.rx.packets.load(Relaxed),
            rx_bytes: self.rx.bytes.load(Relaxed),
            tx_packets: self.tx.packets.load(Relaxed),
            tx_bytes: self.tx.bytes.load(Relaxed),
            drops,
            events,
        }
    }
}

/// Traffic of one VLAN as seen by one worker.
#[derive(Debug, Default)]
pub struct VlanCounter {
    packets: AtomicU64,
    bytes: AtomicU64,
    flooded: AtomicU64,
}

/// Per-VLAN counters owned by one worker: a single writer, so an update is a plain load and
/// store (no locked instruction); readers add up all workers' tables.
#[derive(Debug)]
pub struct VlanCounters(Box<[VlanCounter]>);

impl Default for VlanCounters {
    fn default() -> Self {
        VlanCounters((0..4096).map(|_| VlanCounter::default()).collect())
    }
}

/// Totals for one VLAN.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct VlanValues {
    /// Frames classified into the VLAN (after ingress checks).
    pub packets: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Of those, frames flooded (unknown unicast, broadcast, multicast).
    pub flooded: u64,
}

impl VlanCounters {
    /// Counts a frame of `bytes` in `vlan`. Only the owning worker may call this.
    #[inline]
    pub fn count(&self, vlan: u16, bytes: usize, flooded: bool) {
        let c = &self.0[(vlan & 0x0fff) as usize];
        let bump = |a: &AtomicU64, n: u64| a.store(a.load(Relaxed).wrapping_add(n), Relaxed);
        bump(&c.packets, 1);
        bump(&c.bytes, bytes as u64);
        if flooded {
            bump(&c.flooded, 1);
        }
    }

    /// This table's counts for `vlan`.
    pub fn values(&self, vlan: u16) -> VlanValues {
        let c = &self.0[(vlan & 0x0fff) as usize];
        VlanValues {
            packets: c.packets.load(Relaxed),
            bytes: c.bytes.load(Relaxed),
            flooded: c.flooded.load(Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_reason_says_what_it_means_in_one_line() {
        assert_eq!(
            DropReason::TaggedOnAccess.meaning(),
            "A tagged frame (VID 1-4095) on an access port."
        );
        // a doc comment of two lines is one line, its words apart
        assert!(DropReason::VlanNotAllowed
            .meaning()
            .contains("without a native VLAN, or a VID"));
        for r in DropReason::ALL {
            assert!(!r.meaning().contains('\n') && !r.meaning().starts_with(' '));
        }
    }

    #[test]
    fn counts_and_formats() {
        let c = PortCounters::default();
        c.rx(60);
        c.rx(1500);
        c.tx(64);
        c.count_drop(DropReason::TaggedOnAccess);
        let v = c.values();
        assert_eq!((v.rx_packets, v.rx_bytes, v.tx_packets), (2, 1560, 1));
        assert_eq!(v.drop_count(DropReason::TaggedOnAccess), 1);
        assert_eq!(v.drop_count(DropReason::BadFrame), 0);
        assert!(v.to_string().contains("drop_tagged_on_access=1"));
    }

    #[test]
    fn vlan_counters() {
        let v = VlanCounters::default();
        v.count(10, 60, true);
        v.count(10, 1500, false);
        assert_eq!(
            v.values(10),
            VlanValues {
                packets: 2,
                bytes: 1560,
                flooded: 1
            }
        );
        assert_eq!(v.values(20), VlanValues::default());
    }
}
