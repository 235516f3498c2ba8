//! vhost-user backend for vlanswitch: a virtio-net device whose rings the switch's worker
//! threads serve directly.
//!
//! (Design notes: see the sections below.)

mod control;
mod datapath;
mod device;
mod error;
pub mod features;
mod memory;
mod ring;
mod shared;

pub use datapath::{DataPath, RecvBatch, SendBatch};
pub use device::{
    Counters, DeviceConfig, DeviceStatus, DownReason, KickHook, LinkState, NoHook, QueueId,
    SocketMode, VhostUserDevice,
};
pub use error::{ClaimError, DeviceError, Offload, ProtocolError, RingError, SendError};
pub use features::VnetHdr;
pub use ring::MAX_QUEUE_SIZE;

/// Most memory regions a frontend may map (`GET_MAX_MEM_SLOTS`).
pub const MAX_MEM_SLOTS: usize = 32;
