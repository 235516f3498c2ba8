//! The control side: the vhost-user protocol for one frontend connection (through the `vhost`
//! crate's [`BackendReqHandler`]), the model of memory and rings it builds, and the
//! publication of snapshots to the workers.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::sync::Arc;

use vhost::vhost_user::message::{
    VhostTransferStateDirection, VhostTransferStatePhase, VhostUserConfigFlags, VhostUserInflight,
    VhostUserLog, VhostUserMemoryRegion, VhostUserProtocolFeatures, VhostUserShMemConfig,
    VhostUserSharedMsg, VhostUserSingleMemoryRegion, VhostUserVringAddrFlags, VhostUserVringState,
};
use vhost::vhost_user::{Backend, GpuBackend, VhostUserBackendReqHandlerMut};
use vhost::VhostUserMemoryRegionBase;

use crate::error::{ProtocolError, RingError};
use crate::features::{self, Negotiated, F_MAC, F_MTU, F_PROTOCOL_FEATURES, OFFERED_FEATURES};
use crate::memory::{map_region, GuestMem, MappedRegion, RegionSpec};
use crate::ring::{check_size, Ring, RingLayout, RingState};
use crate::shared::{ActiveQueue, Shared, Snapshot};
use crate::{KickHook, LinkState, QueueId};

type VResult<T> = vhost::vhost_user::Result<T>;

/// What the frontend told us about one queue.
#[derive(Default)]
struct QueueModel {
    size: Option<u16>,
    /// Frontend addresses: descriptor table, used ring, available ring.
    addr: Option<(u64, u64, u64)>,
    base: u16,
    kick: Option<Arc<File>>,
    call: Option<Arc<File>>,
    _err: Option<File>,
    started: bool,
    enabled: bool,
    /// Our indices while the ring is started (taken back from each retired snapshot).
    carried: Option<RingState>,
}

/// Device settings the protocol needs.
pub(crate) struct Settings {
    pub mac: Option<[u8; 6]>,
    pub mtu: Option<u16>,
}

/// The protocol state of one connection.
pub(crate) struct DeviceBackend {
    shared: Arc<Shared>,
    settings: Arc<Settings>,
    hook: Arc<dyn KickHook>,
    acked_features: u64,
    /// Whether `SET_FEATURES` has come on this connection (QEMU enables rings before it).
    features_set: bool,
    acked_protocol: u64,
    regions: Vec<MappedRegion>,
    mem: Option<Arc<GuestMem>>,
    queues: [QueueModel; 2],
    mac: Option<[u8; 6]>,
    /// Why the last request failed; the connection is closed with this reason.
    pub fatal: Option<String>,
}

impl DeviceBackend {
    /// A `SET_VRING_ENABLE` that came before `SET_FEATURES`: QEMU's virtio-net sends it when
    /// the guest driver sets its features, before it starts the device (and so before it acks
    /// `VHOST_USER_F_PROTOCOL_FEATURES`), and the `vhost` crate refuses it there. The ring
    /// state is recorded like any other enable; `None` once features are set (the crate
    /// handles the message then).
    pub(crate) fn early_vring_enable(&mut self, index: u32, num: u32) -> Option<VResult<()>> {
        if self.features_set {
            return None;
        }
        let enable = match num {
            0 => false,
            1 => true,
            _ => return Some(Err(vhost::vhost_user::Error::InvalidParam)),
        };
        Some(VhostUserBackendReqHandlerMut::set_vring_enable(
            self, index, enable,
        ))
    }
}

fn queue_index(msg: &'static str, index: u32) -> Result<usize, ProtocolError> {
    if index < 2 {
        Ok(index as usize)
    } else {
        Err(ProtocolError::BadQueueIndex { msg, index })
    }
}

fn offered_protocol() -> VhostUserProtocolFeatures {
    VhostUserProtocolFeatures::MQ
        | VhostUserProtocolFeatures::REPLY_ACK
        | VhostUserProtocolFeatures::CONFIG
        | VhostUserProtocolFeatures::CONFIGURE_MEM_SLOTS
}

impl DeviceBackend {
    pub fn new(shared: Arc<Shared>, settings: Arc<Settings>, hook: Arc<dyn KickHook>) -> Self {
        let mac = settings.mac;
        DeviceBackend {
            shared,
            settings,
            hook,
            acked_features: 0,
            features_set: false,
            acked_protocol: 0,
            regions: Vec::new(),
            mem: None,
            queues: Default::default(),
            mac,
            fatal: None,
        }
    }

    fn offered(&self) -> u64 {
        let mut f = OFFERED_FEATURES;
        if self.settings.mac.is_some() {
            f |= F_MAC;
        }
        if self.settings.mtu.is_some() {
            f |= F_MTU;
        }
        f
    }

    /// Records why a request is refused and turns it into the `vhost` crate's error.
    fn refuse(&mut self, e: ProtocolError) -> vhost::vhost_user::Error {
        let msg = error_chain(&e);
        self.fatal = Some(msg.clone());
        vhost::vhost_user::Error::ReqHandlerError(io::Error::other(msg))
    }

    fn lift<T>(&mut self, r: Result<T, ProtocolError>) -> VResult<T> {
        r.map_err(|e| self.refuse(e))
    }

    /// Retires the current snapshot (waiting for workers to leave its queues), keeps the
    /// indices they reached, and publishes one built from the model.
    fn publish(&mut self) -> Result<(), ProtocolError> {
        let old = self.shared.snap.load_full();
        if let Some(old) = &old {
            for (i, q) in old.queues.iter().enumerate() {
                if let Some(q) = q {
                    self.queues[i].carried = Some(q.retire());
                }
            }
        }
        let (new, result) = match self.build() {
            Ok(s) => (s.map(Arc::new), Ok(())),
            Err(e) => (None, Err(e)),
        };
        // The hook hears about kick fds before workers can see the new snapshot.
        for (i, queue) in [QueueId::GuestRx, QueueId::GuestTx].into_iter().enumerate() {
            let kick = |s: &Option<Arc<Snapshot>>| {
                s.as_ref()
                    .and_then(|s| s.queues[i].as_ref())
                    .and_then(|q| q.kick.clone())
            };
            let (o, n) = (kick(&old), kick(&new));
            let same = match (&o, &n) {
                (Some(a), Some(b)) => Arc::ptr_eq(a, b),
                (None, None) => true,
                _ => false,
            };
            if !same {
                if let Some(o) = o {
                    self.hook.unregister(queue, o.as_raw_fd());
                }
                if let Some(n) = n {
                    self.hook.register(queue, n.as_raw_fd());
                }
            }
        }
        let ready = new
            .as_ref()
            .is_some_and(|s| s.queues.iter().all(Option::is_some));
        tracing::debug!(device = %self.shared.name, ready, "snapshot published");
        // Kick the guest TX ring ourselves once the new snapshot is out: a guest kick that
        // came while the ring was retired for this change found no ring to read (the worker's
        // claim said not ready) and is gone, and with EVENT_IDX the guest does not kick again
        // for frames it already announced. The worker wakes, reads with the new snapshot and
        // turns kicks back on.
        let tx_kick = new
            .as_ref()
            .and_then(|s| s.queues[QueueId::GuestTx as usize].as_ref())
            .and_then(|q| q.kick.clone());
        self.shared.snap.store(new);
        if let Some(kick) = tx_kick {
            use std::io::Write;
            let _ = (&*kick).write(&1u64.to_ne_bytes());
        }
        self.set_link(if ready {
            LinkState::Up
        } else {
            LinkState::Connected
        });
        result
    }

    fn set_link(&self, link: LinkState) {
        let changed = {
            let Ok(mut st) = self.shared.status.lock() else {
                return;
            };
            let changed = st.link != link;
            st.link = link.clone();
            st.features = self.acked_features;
            st.protocol_features = self.acked_protocol;
            st.mac = self.mac;
            changed
        };
        if changed {
            tracing::info!(device = %self.shared.name, link = %link, "vhost-user link");
            self.hook.link_changed(&link);
        }
    }

    /// Logs (debug) where a ring stopped: our indices, and the available and used indices in
    /// guest memory, which tell what the guest had posted and what it was last shown.
    fn log_stopped_ring(&self, i: usize) {
        let q = &self.queues[i];
        let (Some(mem), Some(size), Some((d, u, a)), Some(st)) =
            (&self.mem, q.size, q.addr, q.carried)
        else {
            return;
        };
        let Ok(layout) = translate(mem, size, d, u, a) else {
            return;
        };
        let in_memory = crate::ring::indices_in_memory(mem, layout);
        tracing::debug!(device = %self.shared.name, queue = i, state = ?st, in_memory = ?in_memory,
            "ring stopped (avail, used in guest memory)");
    }

    fn build(&mut self) -> Result<Option<Snapshot>, ProtocolError> {
        let Some(mem) = self.mem.clone() else {
            return Ok(None);
        };
        let neg = Negotiated::new(self.acked_features);
        let proto = self.acked_features & F_PROTOCOL_FEATURES != 0;
        let mut queues: [Option<ActiveQueue>; 2] = [None, None];
        for (i, slot) in queues.iter_mut().enumerate() {
            let qm = &mut self.queues[i];
            let (Some(size), Some((d, u, a))) = (qm.size, qm.addr) else {
                continue;
            };
            // Without VHOST_USER_F_PROTOCOL_FEATURES a ring is enabled when it starts.
            let enabled = qm.enabled || !proto;
            if !qm.started || !enabled {
                continue;
            }
            let ring_err = |source| ProtocolError::Ring { queue: i, source };
            let layout = translate(&mem, size, d, u, a).map_err(ring_err)?;
            layout.validate(&mem).map_err(ring_err)?;
            let st = match qm.carried.take() {
                Some(st) => st,
                None => Ring::start(
                    &mem,
                    layout,
                    qm.base,
                    neg.event_idx,
                    i == QueueId::GuestTx as usize,
                )
                .map_err(ring_err)?,
            };
            tracing::debug!(device = %self.shared.name, queue = i, state = ?st, "ring in the new snapshot");
            *slot = Some(ActiveQueue::new(
                layout,
                st,
                qm.call.clone(),
                qm.kick.clone(),
            ));
        }
        Ok(Some(Snapshot { mem, neg, queues }))
    }

    /// Drops everything the connection set up: rings stop, workers are out, mappings go when
    /// the last snapshot does.
    pub fn teardown(&mut self) {
        for q in &mut self.queues {
            q.started = false;
        }
        self.mem = None;
        let _ = self.publish();
        self.regions.clear();
        self.queues = Default::default();
        self.acked_features = 0;
        self.acked_protocol = 0;
    }

    fn set_memory(&mut self, regions: Vec<MappedRegion>) -> Result<(), ProtocolError> {
        let mem = GuestMem::new(regions.clone())?;
        self.regions = regions;
        self.mem = Some(Arc::new(mem));
        self.publish()
    }
}

fn translate(mem: &GuestMem, size: u16, d: u64, u: u64, a: u64) -> Result<RingLayout, RingError> {
    let gpa = |part, addr, len| {
        mem.uaddr_to_gpa(addr, len)
            .ok_or(RingError::RingOutsideMemory { part, addr, len })
    };
    Ok(RingLayout {
        size,
        desc: gpa("descriptor", d, RingLayout::desc_bytes(size))?,
        used: gpa("used", u, RingLayout::used_bytes(size))?,
        avail: gpa("available", a, RingLayout::avail_bytes(size))?,
    })
}

/// An error and its sources, as one line.
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(c) = src {
        s.push_str(": ");
        s.push_str(&c.to_string());
        src = c.source();
    }
    s
}

fn set_nonblocking(f: &File) {
    let fd = f.as_raw_fd();
    // SAFETY: `fd` is an open descriptor owned by `f`; F_GETFL/F_SETFL take no pointers.
    unsafe {
        let fl = libc::fcntl(fd, libc::F_GETFL);
        if fl >= 0 {
            libc::fcntl(fd, libc::F_SETFL, fl | libc::O_NONBLOCK);
        }
    }
}

fn spec_of(r: &VhostUserMemoryRegion) -> RegionSpec {
    RegionSpec {
        gpa: r.guest_phys_addr,
        size: r.memory_size,
        uaddr: r.user_addr,
        mmap_offset: r.mmap_offset,
    }
}

impl VhostUserBackendReqHandlerMut for DeviceBackend {
    fn set_owner(&mut self) -> VResult<()> {
        Ok(())
    }

    fn reset_owner(&mut self) -> VResult<()> {
        self.teardown();
        Ok(())
    }

    fn reset_device(&mut self) -> VResult<()> {
        self.teardown();
        Ok(())
    }

    fn get_features(&mut self) -> VResult<u64> {
        Ok(self.offered())
    }

    fn set_features(&mut self, features: u64) -> VResult<()> {
        tracing::debug!(device = %self.shared.name, features = format_args!("{features:#x}"), "SET_FEATURES");
        let extra = features & !self.offered();
        if extra != 0 {
            return Err(self.refuse(ProtocolError::UnofferedFeatures(extra)));
        }
        self.acked_features = features;
        self.features_set = true;
        let r = self.publish();
        self.lift(r)
    }

    fn set_mem_table(
        &mut self,
        ctx: &[VhostUserMemoryRegion],
        files: Vec<File>,
        _postcopy: Option<bool>,
    ) -> VResult<Option<Vec<VhostUserMemoryRegionBase>>> {
        tracing::debug!(device = %self.shared.name, regions = ctx.len(), "SET_MEM_TABLE");
        let mut mapped = Vec::with_capacity(ctx.len());
        for (i, (r, f)) in ctx.iter().zip(files).enumerate() {
            let m = map_region(i, spec_of(r), f);
            mapped.push(self.lift(m)?);
        }
        let r = self.set_memory(mapped);
        self.lift(r)?;
        Ok(None)
    }

    fn set_vring_num(&mut self, index: u32, num: u32) -> VResult<()> {
        tracing::debug!(device = %self.shared.name, index, num, "SET_VRING_NUM");
        let i = self.lift(queue_index("SET_VRING_NUM", index))?;
        if self.queues[i].started {
            return Err(self.refuse(ProtocolError::RingStarted("SET_VRING_NUM")));
        }
        let size = check_size(num).map_err(|source| ProtocolError::Ring { queue: i, source });
        self.queues[i].size = Some(self.lift(size)?);
        Ok(())
    }

    fn set_vring_addr(
        &mut self,
        index: u32,
        _flags: VhostUserVringAddrFlags,
        descriptor: u64,
        used: u64,
        available: u64,
        _log: u64,
    ) -> VResult<()> {
        tracing::debug!(device = %self.shared.name, index, "SET_VRING_ADDR");
        let i = self.lift(queue_index("SET_VRING_ADDR", index))?;
        self.queues[i].addr = Some((descriptor, used, available));
        // Check against the current memory now, so a bad address fails its own message.
        if let (Some(mem), Some(size)) = (&self.mem, self.queues[i].size) {
            let r = translate(mem, size, descriptor, used, available)
                .and_then(|l| l.validate(mem))
                .map_err(|source| ProtocolError::Ring { queue: i, source });
            self.lift(r)?;
        }
        if self.queues[i].started {
            let r = self.publish();
            self.lift(r)?;
        }
        Ok(())
    }

    fn set_vring_base(&mut self, index: u32, base: u32) -> VResult<()> {
        tracing::debug!(device = %self.shared.name, index, base, "SET_VRING_BASE");
        let i = self.lift(queue_index("SET_VRING_BASE", index))?;
        if self.queues[i].started {
            return Err(self.refuse(ProtocolError::RingStarted("SET_VRING_BASE")));
        }
        let Ok(base) = u16::try_from(base) else {
            return Err(self.refuse(ProtocolError::Unsupported(
                "SET_VRING_BASE above 65535 (packed rings)",
            )));
        };
        self.queues[i].base = base;
        self.queues[i].carried = None;
        Ok(())
    }

    fn get_vring_base(&mut self, index: u32) -> VResult<VhostUserVringState> {
        tracing::debug!(device = %self.shared.name, index, "GET_VRING_BASE");
        let i = self.lift(queue_index("GET_VRING_BASE", index))?;
        self.queues[i].started = false;
        let r = self.publish();
        self.lift(r)?;
        if tracing::enabled!(tracing::Level::DEBUG) {
            self.log_stopped_ring(i);
        }
        let q = &mut self.queues[i];
        if let Some(st) = q.carried.take() {
            q.base = st.next_avail;
        }
        q.kick = None;
        Ok(VhostUserVringState::new(index, u32::from(q.base)))
    }

    fn set_vring_kick(&mut self, index: u8, fd: Option<File>) -> VResult<()> {
        tracing::debug!(device = %self.shared.name, index, fd = fd.is_some(), "SET_VRING_KICK");
        let i = self.lift(queue_index("SET_VRING_KICK", u32::from(index)))?;
        if let Some(f) = &fd {
            set_nonblocking(f);
        }
        self.queues[i].kick = fd.map(Arc::new);
        self.queues[i].started = true;
        let r = self.publish();
        self.lift(r)
    }

    fn set_vring_call(&mut self, index: u8, fd: Option<File>) -> VResult<()> {
        tracing::debug!(device = %self.shared.name, index, fd = fd.is_some(), "SET_VRING_CALL");
        let i = self.lift(queue_index("SET_VRING_CALL", u32::from(index)))?;
        self.queues[i].call = fd.map(Arc::new);
        if self.queues[i].started {
            let r = self.publish();
            self.lift(r)?;
        }
        Ok(())
    }

    fn set_vring_err(&mut self, index: u8, fd: Option<File>) -> VResult<()> {
        let i = self.lift(queue_index("SET_VRING_ERR", u32::from(index)))?;
        self.queues[i]._err = fd;
        Ok(())
    }

    fn get_protocol_features(&mut self) -> VResult<VhostUserProtocolFeatures> {
        Ok(offered_protocol())
    }

    fn set_protocol_features(&mut self, features: u64) -> VResult<()> {
        let extra = features & !offered_protocol().bits();
        if extra != 0 {
            return Err(self.refuse(ProtocolError::UnofferedProtocolFeatures(extra)));
        }
        self.acked_protocol = features;
        Ok(())
    }

    fn get_queue_num(&mut self) -> VResult<u64> {
        // Queue pairs, as QEMU and DPDK read it.
        Ok(1)
    }

    fn set_vring_enable(&mut self, index: u32, enable: bool) -> VResult<()> {
        tracing::debug!(device = %self.shared.name, index, enable, "SET_VRING_ENABLE");
        let i = self.lift(queue_index("SET_VRING_ENABLE", index))?;
        self.queues[i].enabled = enable;
        let r = self.publish();
        self.lift(r)
    }

    fn get_config(
        &mut self,
        offset: u32,
        size: u32,
        _flags: VhostUserConfigFlags,
    ) -> VResult<Vec<u8>> {
        let space = features::config_space(self.mac, self.settings.mtu);
        let (o, s) = (offset as usize, size as usize);
        match space.get(o..o.saturating_add(s)) {
            Some(b) => Ok(b.to_vec()),
            // The `vhost` crate answers with an empty payload; the connection stays.
            None => Err(vhost::vhost_user::Error::InvalidParam),
        }
    }

    fn set_config(&mut self, offset: u32, buf: &[u8], _flags: VhostUserConfigFlags) -> VResult<()> {
        // Only the MAC is writable (legacy drivers set it).
        if offset == 0 && buf.len() >= 6 {
            let mut mac = [0u8; 6];
            mac.copy_from_slice(&buf[..6]);
            self.mac = Some(mac);
            let link = self.shared.status.lock().map(|s| s.link.clone());
            if let Ok(link) = link {
                self.set_link(link);
            }
            return Ok(());
        }
        Err(self.refuse(ProtocolError::BadConfigAccess {
            offset,
            size: buf.len() as u32,
        }))
    }

    fn set_backend_req_fd(&mut self, _backend: Backend) {}

    fn set_gpu_socket(&mut self, _gpu_backend: GpuBackend) -> VResult<()> {
        Err(self.refuse(ProtocolError::Unsupported("GPU_SET_SOCKET")))
    }

    fn get_shared_object(&mut self, _uuid: VhostUserSharedMsg) -> VResult<File> {
        Err(self.refuse(ProtocolError::Unsupported("GET_SHARED_OBJECT")))
    }

    fn get_inflight_fd(&mut self, _i: &VhostUserInflight) -> VResult<(VhostUserInflight, File)> {
        Err(self.refuse(ProtocolError::Unsupported("GET_INFLIGHT_FD")))
    }

    fn set_inflight_fd(&mut self, _i: &VhostUserInflight, _file: File) -> VResult<()> {
        Err(self.refuse(ProtocolError::Unsupported("SET_INFLIGHT_FD")))
    }

    fn get_max_mem_slots(&mut self) -> VResult<u64> {
        Ok(crate::MAX_MEM_SLOTS as u64)
    }

    fn add_mem_region(
        &mut self,
        region: &VhostUserSingleMemoryRegion,
        fd: File,
        _postcopy: Option<bool>,
    ) -> VResult<Option<VhostUserMemoryRegionBase>> {
        let m = map_region(self.regions.len(), spec_of(region), fd);
        let m = self.lift(m)?;
        let mut regions = self.regions.clone();
        regions.push(m);
        let r = self.set_memory(regions);
        self.lift(r)?;
        Ok(None)
    }

    fn remove_mem_region(&mut self, region: &VhostUserSingleMemoryRegion) -> VResult<()> {
        let spec = spec_of(region);
        let mut regions = self.regions.clone();
        let Some(pos) = regions
            .iter()
            .position(|r| r.spec.gpa == spec.gpa && r.spec.size == spec.size)
        else {
            return Err(self.refuse(ProtocolError::NoSuchRegion(spec.gpa)));
        };
        regions.remove(pos);
        if regions.is_empty() {
            self.regions.clear();
            self.mem = None;
            let r = self.publish();
            return self.lift(r);
        }
        let r = self.set_memory(regions);
        self.lift(r)
    }

    fn set_device_state_fd(
        &mut self,
        _d: VhostTransferStateDirection,
        _p: VhostTransferStatePhase,
        _fd: File,
    ) -> VResult<Option<File>> {
        Err(self.refuse(ProtocolError::Unsupported("SET_DEVICE_STATE_FD")))
    }

    fn check_device_state(&mut self) -> VResult<()> {
        Err(self.refuse(ProtocolError::Unsupported("CHECK_DEVICE_STATE")))
    }

    fn get_shmem_config(&mut self) -> VResult<VhostUserShMemConfig> {
        Err(self.refuse(ProtocolError::Unsupported("GET_SHMEM_CONFIG")))
    }

    fn set_log_base(&mut self, _log: &VhostUserLog, _file: File) -> VResult<()> {
        Err(self.refuse(ProtocolError::Unsupported("SET_LOG_BASE")))
    }
}
