//! The dataplane's system layer: thin, safe wrappers over the syscalls and CPU hints the rest
//! of the crate needs but must not make itself: epoll and eventfd (the workers' waiting),
//! huge-page table memory and cache prefetch (the FDB), and running code inside another
//! network namespace ([`in_netns`]; the taps' re-attach, and `switchd lab`'s hosts).
//!
//! With [`crate::port`] (the ports' own syscalls), this is the only place in the dataplane
//! where `unsafe` may appear; the pure modules forbid it (`#![forbid(unsafe_code)]`).

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// Converts a `-1` syscall return into the thread's `errno`.
pub(crate) fn cvt(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// Runs `f` on a new thread that has entered the network namespace `ns` (an open namespace
/// file: `/run/netns/NAME`, `/proc/PID/ns/net`) and returns what `f` returned. Sockets `f`
/// opens and interfaces it looks up are the namespace's, and stay so after the thread ends
/// (a socket keeps the namespace it was made in). The calling thread never leaves its own
/// namespace: the thread that entered `ns` ends with `f`.
///
/// An error if the namespace cannot be entered, or if `f` panicked (the panic message has
/// then been printed by the panic hook).
pub fn in_netns<T: Send>(ns: &File, f: impl FnOnce() -> T + Send) -> io::Result<T> {
    std::thread::scope(|s| {
        s.spawn(|| {
            // SAFETY: setns takes an open namespace fd and no pointers; it changes only this
            // thread's network namespace, and this scoped thread ends with `f`.
            cvt(unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) })?;
            Ok(f())
        })
        .join()
        .unwrap_or_else(|_| Err(io::Error::other("the thread in the namespace panicked")))
    })
}

/// An epoll instance; level-triggered registrations keyed by a `u64` token.
#[derive(Debug)]
pub struct Epoll(OwnedFd);

/// One readiness event: the token it was registered with.
pub type Event = libc::epoll_event;

impl Epoll {
    /// A new epoll instance (close-on-exec).
    pub fn new() -> io::Result<Self> {
        // SAFETY: epoll_create1 takes no pointers; the result is checked before use.
        let fd = cvt(unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) })?;
        // SAFETY: `fd` is a fresh descriptor that nothing else owns.
        Ok(Epoll(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    /// Watches `fd` for readability, reporting `token`.
    pub fn add(&self, fd: RawFd, token: u64) -> io::Result<()> {
        let mut ev = libc::epoll_event {
            events: libc::EPOLLIN as u32,
            u64: token,
        };
        // SAFETY: `ev` is a valid epoll_event that outlives the call; bad fds return EBADF.
        cvt(unsafe { libc::epoll_ctl(self.0.as_raw_fd(), libc::EPOLL_CTL_ADD, fd, &mut ev) })?;
        Ok(())
    }

    /// Watches `fd` edge-triggered (`EPOLLIN | EPOLLET`), reporting `token` once per change
    /// (per write, for an eventfd) rather than while it stays readable: for fds the reader
    /// never reads, such as a vhost-user guest's kick eventfd.
    pub fn add_edge(&self, fd: RawFd, token: u64) -> io::Result<()> {
        let mut ev = libc::epoll_event {
            events: (libc::EPOLLIN | libc::EPOLLET) as u32,
            u64: token,
        };
        // SAFETY: `ev` is a valid epoll_event that outlives the call; bad fds return EBADF.
        cvt(unsafe { libc::epoll_ctl(self.0.as_raw_fd(), libc::EPOLL_CTL_ADD, fd, &mut ev) })?;
        Ok(())
    }

    /// Stops watching `fd`.
    pub fn delete(&self, fd: RawFd) -> io::Result<()> {
        // SAFETY: a null event pointer is allowed for EPOLL_CTL_DEL since Linux 2.6.9.
        cvt(unsafe {
            libc::epoll_ctl(
                self.0.as_raw_fd(),
                libc::EPOLL_CTL_DEL,
                fd,
                std::ptr::null_mut(),
            )
        })?;
        Ok(())
    }

    /// Waits until at least one watched fd is ready (or `timeout_ms` passes; -1 waits forever)
    /// and fills `events`. Returns how many were filled; an interrupted wait returns 0.
    pub fn wait(&self, events: &mut [Event], timeout_ms: i32) -> io::Result<usize> {
        let max = events.len().min(i32::MAX as usize) as i32;
        // SAFETY: `events` is writable for `max` entries for the duration of the call.
        let n =
            unsafe { libc::epoll_wait(self.0.as_raw_fd(), events.as_mut_ptr(), max, timeout_ms) };
        match cvt(n) {
            Ok(n) => Ok(n as usize),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(0),
            Err(e) => Err(e),
        }
    }
}

/// An eventfd used to wake workers (stop, reconfiguration). Once signalled it stays readable.
#[derive(Debug)]
pub struct EventFd(OwnedFd);

impl EventFd {
    /// A new, unsignalled eventfd.
    pub fn new() -> io::Result<Self> {
        // SAFETY: eventfd takes no pointers; the result is checked before use.
        let fd = cvt(unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) })?;
        // SAFETY: `fd` is a fresh descriptor that nothing else owns.
        Ok(EventFd(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    /// Makes the eventfd readable for every epoll that watches it.
    pub fn signal(&self) -> io::Result<()> {
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a live u64, as eventfd requires.
        let n = unsafe {
            libc::write(
                self.0.as_raw_fd(),
                (&one as *const u64).cast(),
                std::mem::size_of::<u64>(),
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}

impl AsRawFd for EventFd {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_raw_fd()
    }
}

/// Types for which all-zero bytes are a valid value.
///
/// # Safety
/// Implement only for types whose all-zero bit pattern is a valid value and that need no drop.
pub unsafe trait Zeroable {}

// SAFETY: zero is a valid AtomicU64 (0) and it needs no drop.
unsafe impl Zeroable for std::sync::atomic::AtomicU64 {}

/// Two atomics side by side: one slot of a lock-free table (the FDB's key and value).
#[derive(Debug, Default)]
#[repr(C)]
pub struct AtomicPair {
    /// First word (the FDB's key).
    pub key: std::sync::atomic::AtomicU64,
    /// Second word (the FDB's value).
    pub val: std::sync::atomic::AtomicU64,
}

// SAFETY: two AtomicU64, each valid as zero; no drop.
unsafe impl Zeroable for AtomicPair {}

/// Asks the CPU to start loading the cache line of `r`. A hint only: it never faults and
/// changes nothing.
#[inline]
pub fn prefetch<T>(r: &T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch is a hint that never faults and has no effect on memory; the address
    // comes from a reference. SSE is part of the x86_64 baseline.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(
            (r as *const T).cast(),
        );
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = r;
}

/// A large table of zeroed `T`: a huge-page mapping when the OS gives one ([`ZeroedMap`]),
/// else a plain allocation.
pub enum LargeTable<T> {
    /// In its own mapping.
    Mapped(ZeroedMap<T>),
    /// On the heap.
    Boxed(Box<[T]>),
}

impl<T: Zeroable + Default> LargeTable<T> {
    /// `len` zeroed elements.
    pub fn new(len: usize) -> Self {
        match ZeroedMap::new(len) {
            Ok(m) => LargeTable::Mapped(m),
            Err(_) => LargeTable::Boxed((0..len).map(|_| T::default()).collect()),
        }
    }
}

impl<T> std::ops::Deref for LargeTable<T> {
    type Target = [T];
    #[inline]
    fn deref(&self) -> &[T] {
        match self {
            LargeTable::Mapped(m) => m,
            LargeTable::Boxed(b) => b,
        }
    }
}

/// A zero-filled array of `T` in its own anonymous mapping, with transparent huge pages
/// requested (`MADV_HUGEPAGE`): large tables touched at random (the FDB) then take far fewer
/// TLB misses, which are especially costly under virtualization.
///
/// Only for types whose all-zero bit pattern is a valid value ([`Zeroable`]).
pub struct ZeroedMap<T> {
    ptr: std::ptr::NonNull<T>,
    len: usize,
    bytes: usize,
}

// SAFETY: the mapping is owned exclusively by this value; sending or sharing it is as safe as
// sending or sharing a `Box<[T]>`.
unsafe impl<T: Send> Send for ZeroedMap<T> {}
// SAFETY: as above, `&ZeroedMap<T>` only hands out `&[T]`.
unsafe impl<T: Sync> Sync for ZeroedMap<T> {}

impl<T: Zeroable> ZeroedMap<T> {
    /// Maps `len` zeroed elements.
    pub fn new(len: usize) -> io::Result<Self> {
        const HUGE: usize = 2 << 20;
        let size = len
            .checked_mul(std::mem::size_of::<T>())
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "table too large"))?;
        let bytes = size.max(1).div_ceil(HUGE) * HUGE;
        // SAFETY: an anonymous private mapping with no address hint; the result is checked.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                bytes,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: advice on the mapping we just made; failure (no THP support) is harmless.
        unsafe { libc::madvise(p, bytes, libc::MADV_HUGEPAGE) };
        let ptr = std::ptr::NonNull::new(p.cast::<T>())
            .ok_or_else(|| io::Error::other("mmap returned null"))?;
        Ok(ZeroedMap { ptr, len, bytes })
    }
}

impl<T> std::ops::Deref for ZeroedMap<T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        // SAFETY: the mapping holds `len` zero-initialized `T`s (valid: `T: Zeroable`),
        // page-aligned (so aligned for `T`), and lives as long as `self`.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl<T> Drop for ZeroedMap<T> {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the mapping made in `new`; the elements need no drop (only
        // types valid as all-zero bytes are stored, and they are plain data).
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.bytes) };
    }
}

impl<T> std::fmt::Debug for ZeroedMap<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ZeroedMap").field("len", &self.len).finish()
    }
}
