//! The split virtqueue as the device side sees it: validated layout, our indices, chain
//! walking with loop and bounds checks, the used ring, and notification suppression.
//!
//! Every access goes through the bounds-checked accessors of the snapshot's memory table
//! ([`GuestMem`]); nothing here keeps a host pointer. Ring layout (v1.0 spec, 2.7):
//! descriptor table 16 bytes × size (align 16); available ring: flags, idx, ring\[size\],
//! used_event (align 2); used ring: flags, idx, {id, len}\[size\], avail_event (align 4).

use std::sync::atomic::{fence, Ordering};

use crate::error::RingError;
use crate::memory::GuestMem;

/// Largest queue size the virtio spec allows for split rings.
pub const MAX_QUEUE_SIZE: u32 = 32768;

const DESC_F_NEXT: u16 = 1;
const DESC_F_WRITE: u16 = 2;
const DESC_F_INDIRECT: u16 = 4;
const USED_F_NO_NOTIFY: u16 = 1;
const AVAIL_F_NO_INTERRUPT: u16 = 1;
/// Largest indirect table accepted (65536 descriptors).
const MAX_INDIRECT_LEN: u32 = 1 << 20;

/// A descriptor, decoded from the 16 little-endian bytes it has in guest memory.
#[derive(Clone, Copy, Default, Debug)]
pub(crate) struct Desc {
    pub addr: u64,
    pub len: u32,
    pub flags: u16,
    pub next: u16,
}

impl Desc {
    /// The descriptor in the 16 little-endian bytes of the guest's table.
    fn from_le_bytes(b: &[u8; 16]) -> Self {
        let u64_at = |o: usize| u64::from_le_bytes(b[o..o + 8].try_into().expect("8 bytes"));
        Desc {
            addr: u64_at(0),
            len: u32::from_le_bytes([b[8], b[9], b[10], b[11]]),
            flags: u16::from_le_bytes([b[12], b[13]]),
            next: u16::from_le_bytes([b[14], b[15]]),
        }
    }

    /// The buffer is for the device to write (a guest RX buffer).
    pub fn is_write(&self) -> bool {
        self.flags & DESC_F_WRITE != 0
    }
}

/// Checks a size given by `SET_VRING_NUM`.
pub(crate) fn check_size(num: u32) -> Result<u16, RingError> {
    if num == 0 || num > MAX_QUEUE_SIZE || !num.is_power_of_two() {
        return Err(RingError::BadQueueSize(num));
    }
    Ok(num as u16)
}

/// Where a ring lies, in guest-physical addresses, checked against one memory table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RingLayout {
    pub size: u16,
    pub desc: u64,
    pub avail: u64,
    pub used: u64,
}

impl RingLayout {
    pub fn desc_bytes(size: u16) -> u64 {
        16 * u64::from(size)
    }
    pub fn avail_bytes(size: u16) -> u64 {
        6 + 2 * u64::from(size)
    }
    pub fn used_bytes(size: u16) -> u64 {
        6 + 8 * u64::from(size)
    }

    /// Checks alignment and that each part lies in guest memory.
    pub fn validate(&self, mem: &GuestMem) -> Result<(), RingError> {
        let parts = [
            ("descriptor", self.desc, Self::desc_bytes(self.size), 16),
            ("available", self.avail, Self::avail_bytes(self.size), 2),
            ("used", self.used, Self::used_bytes(self.size), 4),
        ];
        for (part, addr, len, align) in parts {
            if addr % align != 0 {
                return Err(RingError::Misaligned { part, addr, align });
            }
            if !mem.contains(addr, len as usize) {
                return Err(RingError::RingOutsideMemory { part, addr, len });
            }
        }
        Ok(())
    }
}

/// Our side of one ring: everything a worker changes. Only the holder of the queue's claim
/// touches it (see `crate::shared`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct RingState {
    /// Next available-ring slot to take.
    pub next_avail: u16,
    /// Next used-ring slot to fill (published at the end of a batch).
    pub next_used: u16,
    /// Last available index read from the guest.
    pub shadow_avail: u16,
    /// Used index at the last notification decision.
    pub signalled_used: u16,
    /// Whether we currently ask the guest for kicks.
    pub notify_enabled: bool,
}

/// One ring with its memory table and our state, for the duration of a batch.
pub(crate) struct Ring<'a> {
    pub mem: &'a GuestMem,
    pub layout: RingLayout,
    pub st: &'a mut RingState,
    pub event_idx: bool,
    pub indirect: bool,
}

fn oob(what: &'static str, addr: u64, len: u64) -> RingError {
    RingError::OutsideMemory { what, addr, len }
}

impl Ring<'_> {
    fn load_u16(&self, addr: u64, what: &'static str, order: Ordering) -> Result<u16, RingError> {
        self.mem
            .load_u16(addr, order)
            .map_err(|()| oob(what, addr, 2))
    }

    fn store_u16(&self, addr: u64, v: u16, what: &'static str) -> Result<(), RingError> {
        self.mem
            .store_u16(addr, v, Ordering::Release)
            .map_err(|()| oob(what, addr, 2))
    }

    /// Chains the guest has made available and we have not taken, re-reading the guest's index
    /// only when the last one we read is used up.
    pub fn avail_count(&mut self) -> Result<u16, RingError> {
        if self.st.shadow_avail == self.st.next_avail {
            self.refresh_avail()?;
        }
        Ok(self.st.shadow_avail.wrapping_sub(self.st.next_avail))
    }

    fn refresh_avail(&mut self) -> Result<(), RingError> {
        let avail = self.load_u16(self.layout.avail + 2, "available ring", Ordering::Acquire)?;
        if avail.wrapping_sub(self.st.next_avail) > self.layout.size {
            return Err(RingError::AvailIndexRunaway {
                avail,
                next: self.st.next_avail,
                size: self.layout.size,
            });
        }
        self.st.shadow_avail = avail;
        Ok(())
    }

    /// The chain head `i` slots after the next one to take.
    pub fn avail_head(&self, i: u16) -> Result<u16, RingError> {
        let slot = self.st.next_avail.wrapping_add(i) % self.layout.size;
        let addr = self.layout.avail + 4 + 2 * u64::from(slot);
        let head = self.load_u16(addr, "available ring", Ordering::Relaxed)?;
        if head >= self.layout.size {
            return Err(RingError::HeadOutOfRange {
                head,
                size: self.layout.size,
            });
        }
        Ok(head)
    }

    /// Starts loading what the chain `ahead` slots after the next one will need, so that the
    /// guest's lines (which its core just wrote) arrive while earlier frames are copied:
    /// its descriptor, and with `buffer` (when the descriptor was asked for a frame earlier)
    /// its first buffer as well. Only chains the guest has made available are looked at; a
    /// bad value is ignored here (nothing is read but hints) and reported when the chain is
    /// really taken.
    #[inline]
    pub fn prefetch(&self, ahead: u16, buffer: bool) {
        if ahead >= self.st.shadow_avail.wrapping_sub(self.st.next_avail) {
            return;
        }
        let Ok(head) = self.avail_head(ahead) else {
            return;
        };
        let at = self.layout.desc + 16 * u64::from(head);
        if !buffer {
            self.mem.prefetch(at);
            return;
        }
        if let Ok(raw) = self.mem.read_array::<16>(at) {
            let d = Desc::from_le_bytes(&raw);
            if d.flags & DESC_F_INDIRECT == 0 {
                self.mem.prefetch(d.addr);
            }
        }
    }

    /// Walks the chain that starts at `head`.
    pub fn chain(&self, head: u16) -> Chain<'_> {
        Chain {
            mem: self.mem,
            table: self.layout.desc,
            table_len: u32::from(self.layout.size),
            next: head,
            ttl: u32::from(self.layout.size),
            in_indirect: false,
            first: true,
            indirect_ok: self.indirect,
            done: false,
        }
    }

    /// Fills the next used slot; [`Ring::publish_used`] makes it visible.
    pub fn push_used(&mut self, id: u16, len: u32) -> Result<(), RingError> {
        let slot = self.st.next_used % self.layout.size;
        let addr = self.layout.used + 4 + 8 * u64::from(slot);
        let elem = (u64::from(len) << 32 | u64::from(id)).to_le_bytes();
        self.mem
            .write_array(addr, elem)
            .map_err(|()| oob("used ring", addr, 8))?;
        self.st.next_used = self.st.next_used.wrapping_add(1);
        Ok(())
    }

    /// Publishes the used index (release: the elements and the buffers written before it are
    /// visible to the guest first).
    pub fn publish_used(&mut self) -> Result<(), RingError> {
        fence(Ordering::Release);
        self.store_u16(self.layout.used + 2, self.st.next_used, "used ring")
    }

    /// Whether the guest wants an interrupt for what was published since the last decision
    /// (EVENT_IDX: `used_event`; otherwise `VRING_AVAIL_F_NO_INTERRUPT`, with NOTIFY_ON_EMPTY
    /// overriding it when the ring ran empty).
    pub fn needs_signal(&mut self, notify_on_empty: bool) -> Result<bool, RingError> {
        // The guest's used_event / flags must be read after our used index is visible.
        fence(Ordering::SeqCst);
        let old = self.st.signalled_used;
        let new = self.st.next_used;
        if old == new {
            return Ok(false);
        }
        self.st.signalled_used = new;
        if self.event_idx {
            let addr = self.layout.avail + 4 + 2 * u64::from(self.layout.size);
            let event = self.load_u16(addr, "available ring", Ordering::Relaxed)?;
            // vring_need_event(): did new pass event since old?
            return Ok(new.wrapping_sub(event).wrapping_sub(1) < new.wrapping_sub(old));
        }
        let flags = self.load_u16(self.layout.avail, "available ring", Ordering::Relaxed)?;
        if flags & AVAIL_F_NO_INTERRUPT == 0 {
            return Ok(true);
        }
        Ok(notify_on_empty && self.avail_count()? == 0)
    }

    /// Asks the guest not to kick (no-op under EVENT_IDX, where not moving `avail_event` is
    /// enough: the guest kicks once when it passes the old value, then not again).
    pub fn disable_notify(&mut self) -> Result<(), RingError> {
        if !self.st.notify_enabled {
            return Ok(());
        }
        self.st.notify_enabled = false;
        if !self.event_idx {
            self.store_u16(self.layout.used, USED_F_NO_NOTIFY, "used ring")?;
        }
        Ok(())
    }

    /// Asks the guest to kick for new buffers, then checks whether some arrived before it could
    /// see the request (the standard race): `true` means "more work, do not sleep".
    pub fn enable_notify(&mut self) -> Result<bool, RingError> {
        self.st.notify_enabled = true;
        if self.event_idx {
            let addr = self.layout.used + 4 + 8 * u64::from(self.layout.size);
            self.store_u16(addr, self.st.next_avail, "used ring")?;
        } else {
            self.store_u16(self.layout.used, 0, "used ring")?;
        }
        fence(Ordering::SeqCst);
        self.refresh_avail()?;
        Ok(self.st.shadow_avail != self.st.next_avail)
    }

    /// Sets up a ring that starts now: our indices from `base` (or from the used index in
    /// memory if they differ, as DPDK's vhost library does: without in-flight tracking the used
    /// index is where we really are), notification state written to the used ring.
    pub fn start(
        mem: &GuestMem,
        layout: RingLayout,
        base: u16,
        event_idx: bool,
        notify: bool,
    ) -> Result<RingState, RingError> {
        let used_idx = mem
            .load_u16(layout.used + 2, Ordering::Acquire)
            .map_err(|()| oob("used ring", layout.used + 2, 2))?;
        let idx = if used_idx != base {
            tracing::warn!(
                base,
                used_idx,
                "ring base differs from the used index; using the used index"
            );
            used_idx
        } else {
            base
        };
        let mut st = RingState {
            next_avail: idx,
            next_used: idx,
            shadow_avail: idx,
            signalled_used: idx,
            notify_enabled: !notify,
        };
        let mut ring = Ring {
            mem,
            layout,
            st: &mut st,
            event_idx,
            indirect: false,
        };
        if notify {
            ring.enable_notify()?;
        } else {
            ring.disable_notify()?;
        }
        // A fresh start has not looked at the guest's index yet.
        st.shadow_avail = st.next_avail;
        Ok(st)
    }
}

/// A descriptor chain being walked: follows `next`, enters an indirect table at the head, and
/// stops with an error on a loop, an index out of range or a malformed indirect table.
pub(crate) struct Chain<'a> {
    mem: &'a GuestMem,
    table: u64,
    table_len: u32,
    next: u16,
    ttl: u32,
    in_indirect: bool,
    first: bool,
    indirect_ok: bool,
    done: bool,
}

impl Chain<'_> {
    /// The next descriptor, or `None` after the last one.
    pub fn next_desc(&mut self) -> Result<Option<Desc>, RingError> {
        loop {
            if self.done {
                return Ok(None);
            }
            if self.ttl == 0 {
                return Err(RingError::ChainLoop(self.table_len));
            }
            self.ttl -= 1;
            let addr = self.table + 16 * u64::from(self.next);
            let raw = self
                .mem
                .read_array::<16>(addr)
                .map_err(|()| oob("descriptor", addr, 16))?;
            let d = Desc::from_le_bytes(&raw);
            let first = std::mem::replace(&mut self.first, false);
            if d.flags & DESC_F_INDIRECT != 0 {
                if !self.indirect_ok {
                    return Err(RingError::IndirectNotNegotiated);
                }
                if self.in_indirect {
                    return Err(RingError::IndirectMisplaced("inside an indirect table"));
                }
                if !first {
                    return Err(RingError::IndirectMisplaced("in the middle of a chain"));
                }
                if d.flags & DESC_F_NEXT != 0 {
                    return Err(RingError::IndirectMisplaced("with VRING_DESC_F_NEXT set"));
                }
                if d.len == 0 || d.len % 16 != 0 || d.len > MAX_INDIRECT_LEN {
                    return Err(RingError::IndirectBadLength(d.len));
                }
                self.table = d.addr;
                self.table_len = d.len / 16;
                self.ttl = self.table_len;
                self.next = 0;
                self.in_indirect = true;
                continue;
            }
            if d.flags & DESC_F_NEXT != 0 {
                if u32::from(d.next) >= self.table_len {
                    return Err(RingError::NextOutOfRange {
                        next: d.next,
                        len: self.table_len,
                    });
                }
                self.next = d.next;
            } else {
                self.done = true;
            }
            return Ok(Some(d));
        }
    }
}

/// The guest's available index and our used index as they are in guest memory now, for a
/// ring laid out as `layout` (the debug log: what the guest had posted and was last shown).
pub(crate) fn indices_in_memory(
    mem: &GuestMem,
    layout: RingLayout,
) -> Result<(u16, u16), RingError> {
    let load = |addr: u64, what| {
        mem.load_u16(addr, Ordering::Acquire)
            .map_err(|()| oob(what, addr, 2))
    };
    Ok((
        load(layout.avail + 2, "available ring")?,
        load(layout.used + 2, "used ring")?,
    ))
}
