//! Guest memory as one immutable table: the frontend's regions mapped with `vm-memory`, plus
//! the frontend-virtual to guest-physical translation that ring addresses need.
//!
//! A [`GuestMem`] never changes. A new memory table (`SET_MEM_TABLE`, `ADD_MEM_REG`,
//! `REM_MEM_REG`) builds a new one that shares the unchanged regions' mappings (`Arc`); a
//! mapping is unmapped when the last table holding it is dropped, which is after the last
//! worker holding a snapshot with that table let go of it.

use std::fs::File;
use std::os::unix::fs::FileTypeExt;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::Arc;

use vm_memory::{
    FileOffset, GuestAddress, GuestMemory, GuestMemoryMmap, GuestRegionMmap, MmapRegion,
};

use crate::error::ProtocolError;

/// One region as the frontend described it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RegionSpec {
    pub gpa: u64,
    pub size: u64,
    pub uaddr: u64,
    pub mmap_offset: u64,
}

/// A mapped region and its description.
#[derive(Debug, Clone)]
pub(crate) struct MappedRegion {
    pub spec: RegionSpec,
    pub region: Arc<GuestRegionMmap>,
}

/// Guest memory of one frontend connection at one point in time.
#[derive(Debug)]
pub(crate) struct GuestMem {
    pub mem: GuestMemoryMmap,
    pub regions: Vec<MappedRegion>,
    /// Where each region is mapped here, for the per-frame accessors below: one short scan
    /// and one bounds check instead of `vm-memory`'s lookup and its piecewise copy. The
    /// addresses stay valid while this table lives: it holds the mappings (`regions`).
    host: Vec<HostRegion>,
}

/// One region's guest-physical range and the address of its mapping here (as an integer, so
/// that the table stays `Send + Sync`; it is turned back into a pointer only after a bounds
/// check against `len`).
#[derive(Debug, Clone, Copy)]
struct HostRegion {
    gpa: u64,
    len: u64,
    host: usize,
}

impl GuestMem {
    /// Builds a table from mapped regions, checking that neither their guest-physical nor their
    /// frontend-virtual ranges overlap.
    pub fn new(regions: Vec<MappedRegion>) -> Result<Self, ProtocolError> {
        if regions.len() > crate::MAX_MEM_SLOTS {
            return Err(ProtocolError::TooManyRegions(regions.len()));
        }
        for (i, a) in regions.iter().enumerate() {
            for b in &regions[..i] {
                let overlap = |s1: u64, s2: u64| {
                    s1 < s2.saturating_add(b.spec.size) && s2 < s1.saturating_add(a.spec.size)
                };
                let reason = if overlap(a.spec.gpa, b.spec.gpa) {
                    Some("overlaps another region's guest addresses")
                } else if overlap(a.spec.uaddr, b.spec.uaddr) {
                    Some("overlaps another region's frontend addresses")
                } else {
                    None
                };
                if let Some(reason) = reason {
                    return Err(bad(i, &a.spec, reason));
                }
            }
        }
        let mem = GuestMemoryMmap::from_arc_regions(
            regions.iter().map(|r| Arc::clone(&r.region)).collect(),
        )
        .map_err(|_| {
            bad(
                0,
                &regions[0].spec,
                "rejected by vm-memory (overlap or order)",
            )
        })?;
        let host = regions
            .iter()
            .map(|r| HostRegion {
                gpa: r.spec.gpa,
                len: r.spec.size,
                host: r.region.as_ptr() as usize,
            })
            .collect();
        Ok(GuestMem { mem, regions, host })
    }

    /// The guest-physical address of `len` bytes at frontend address `uaddr`, if they lie in
    /// one region.
    pub fn uaddr_to_gpa(&self, uaddr: u64, len: u64) -> Option<u64> {
        self.regions.iter().find_map(|r| {
            let off = uaddr.checked_sub(r.spec.uaddr)?;
            (off.checked_add(len)? <= r.spec.size).then_some(r.spec.gpa + off)
        })
    }
}

fn bad(index: usize, s: &RegionSpec, reason: &'static str) -> ProtocolError {
    ProtocolError::BadMemoryRegion {
        index,
        gpa: s.gpa,
        size: s.size,
        uaddr: s.uaddr,
        reason,
    }
}

/// Maps one region after checking it: non-empty, no address wrap-around, page-aligned offset,
/// and inside its file (touching a mapping past the end of a file raises SIGBUS).
pub(crate) fn map_region(
    index: usize,
    spec: RegionSpec,
    file: File,
) -> Result<MappedRegion, ProtocolError> {
    if spec.size == 0 {
        return Err(bad(index, &spec, "is empty"));
    }
    let end_ok =
        spec.gpa.checked_add(spec.size).is_some() && spec.uaddr.checked_add(spec.size).is_some();
    if !end_ok {
        return Err(bad(index, &spec, "wraps around the address space"));
    }
    let Ok(size) = usize::try_from(spec.size) else {
        return Err(bad(index, &spec, "is larger than the address space"));
    };
    if spec.mmap_offset % 4096 != 0 {
        return Err(bad(index, &spec, "mmap offset is not page aligned"));
    }
    let meta = file
        .metadata()
        .map_err(|source| ProtocolError::Mmap { index, source })?;
    let ft = meta.file_type();
    if ft.is_dir() || ft.is_fifo() || ft.is_socket() || ft.is_char_device() {
        return Err(bad(index, &spec, "its fd is not a memory file"));
    }
    // Files in hugetlbfs and memfds report their size; a block device reports 0 and is refused.
    if spec
        .mmap_offset
        .checked_add(spec.size)
        .is_none_or(|end| end > meta.len())
    {
        return Err(bad(index, &spec, "extends past the end of its file"));
    }
    let mapping =
        MmapRegion::from_file(FileOffset::new(file, spec.mmap_offset), size).map_err(|e| {
            ProtocolError::Mmap {
                index,
                source: std::io::Error::other(e.to_string()),
            }
        })?;
    let region = GuestRegionMmap::new(mapping, GuestAddress(spec.gpa))
        .ok_or_else(|| bad(index, &spec, "does not fit the guest address space"))?;
    Ok(MappedRegion {
        spec,
        region: Arc::new(region),
    })
}

impl GuestMem {
    /// Where `len` bytes at guest address `addr` are in our mapping, if they lie inside one
    /// region: the region is found and the whole range checked against its length first.
    #[inline]
    fn host_range(&self, addr: u64, len: usize) -> Option<*mut u8> {
        for r in &self.host {
            let Some(off) = addr.checked_sub(r.gpa) else {
                continue;
            };
            if off >= r.len {
                continue;
            }
            let end = off.checked_add(len as u64)?;
            if end > r.len {
                return None;
            }
            // `off < r.len`, and a mapping's length fits in `usize`.
            return Some((r.host + off as usize) as *mut u8);
        }
        None
    }

    /// Whether `len` bytes at `addr` are guest memory (in one region, or in adjacent ones).
    pub fn contains(&self, addr: u64, len: usize) -> bool {
        self.host_range(addr, len).is_some()
            || self
                .mem
                .check_range(GuestAddress(addr), len, vm_memory::Permissions::ReadWrite)
    }

    /// Copies `src` into guest memory at `addr`. One region lookup and one `memcpy` when the
    /// range lies inside one region (the common case); otherwise `vm-memory`'s piecewise copy,
    /// which also reports a range outside guest memory. Err: some byte is outside guest memory.
    #[inline]
    pub fn write(&self, addr: u64, src: &[u8]) -> Result<(), ()> {
        if let Some(dst) = self.host_range(addr, src.len()) {
            // SAFETY: `dst..dst + src.len()` lies inside one region's live mapping (checked in
            // `host_range` against the region's length; `self` holds the mapping). Guest
            // memory is shared with the frontend, which may touch it at any time: we only copy
            // bytes into it and never hold a reference into it, so a racing guest can only
            // garble its own buffer, which the ring protocol says it must not touch now anyway.
            unsafe { std::ptr::copy_nonoverlapping(src.as_ptr(), dst, src.len()) };
            return Ok(());
        }
        vm_memory::Bytes::write_slice(&self.mem, src, GuestAddress(addr)).map_err(|_| ())
    }

    /// Asks the CPU to start loading the cache line of guest address `addr`, if it is guest
    /// memory. A hint only: nothing is read, and an address outside guest memory is ignored.
    #[inline]
    pub fn prefetch(&self, addr: u64) {
        let Some(p) = self.host_range(addr, 1) else {
            return;
        };
        #[cfg(target_arch = "x86_64")]
        // SAFETY: a prefetch is a hint that never faults and has no effect on memory; the
        // address lies inside a live mapping anyway. SSE is part of the x86_64 baseline.
        unsafe {
            std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(
                p.cast_const().cast(),
            );
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = p;
    }

    /// Copies `pieces`, one after the other, into guest memory at `addr`, where `room`
    /// bytes are the caller's to write: one region lookup for the whole frame. Err: the
    /// pieces do not fit in `room`, or some byte is outside guest memory.
    #[inline]
    pub fn write_gather(&self, addr: u64, room: usize, pieces: &[&[u8]]) -> Result<(), ()> {
        let total: usize = pieces.iter().map(|p| p.len()).sum();
        if total > room {
            return Err(());
        }
        if let Some(dst) = self.host_range(addr, total) {
            let mut off = 0;
            for p in pieces {
                // SAFETY: `dst..dst + total` lies inside one region's live mapping (checked in
                // `host_range`), and `off + p.len() <= total` because `total` is the sum of
                // the pieces' lengths; the rest is as in `write`.
                unsafe { std::ptr::copy_nonoverlapping(p.as_ptr(), dst.add(off), p.len()) };
                off += p.len();
            }
            return Ok(());
        }
        let mut at = addr;
        for p in pieces {
            self.write(at, p)?;
            at = at.checked_add(p.len() as u64).ok_or(())?;
        }
        Ok(())
    }

    /// Copies guest memory at `addr` into `dst`, like [`GuestMem::write`] the other way.
    #[inline]
    pub fn read(&self, addr: u64, dst: &mut [u8]) -> Result<(), ()> {
        if let Some(src) = self.host_range(addr, dst.len()) {
            // SAFETY: `src..src + dst.len()` lies inside one region's live mapping (checked in
            // `host_range`); `dst` is our own buffer, so the ranges do not overlap. A guest
            // writing its buffer meanwhile gives us garbled bytes of its own frame, never an
            // out-of-bounds access.
            unsafe { std::ptr::copy_nonoverlapping(src, dst.as_mut_ptr(), dst.len()) };
            return Ok(());
        }
        vm_memory::Bytes::read_slice(&self.mem, dst, GuestAddress(addr)).map_err(|_| ())
    }

    /// `N` bytes of guest memory at `addr` (a descriptor, a header): a copy of a size known
    /// here, which compiles to a few loads rather than a call to `memcpy`.
    #[inline]
    pub fn read_array<const N: usize>(&self, addr: u64) -> Result<[u8; N], ()> {
        if let Some(src) = self.host_range(addr, N) {
            // SAFETY: `src..src + N` lies inside one region's live mapping (checked in
            // `host_range`); an unaligned read of plain bytes; a racing guest garbles only
            // its own data, which the caller checks like any other guest value.
            return Ok(unsafe { std::ptr::read_unaligned(src.cast::<[u8; N]>()) });
        }
        let mut b = [0u8; N];
        vm_memory::Bytes::read_slice(&self.mem, &mut b, GuestAddress(addr)).map_err(|_| ())?;
        Ok(b)
    }

    /// Writes `N` bytes at `addr` (a used-ring element), like [`GuestMem::read_array`].
    #[inline]
    pub fn write_array<const N: usize>(&self, addr: u64, v: [u8; N]) -> Result<(), ()> {
        if let Some(dst) = self.host_range(addr, N) {
            // SAFETY: `dst..dst + N` lies inside one region's live mapping (checked in
            // `host_range`); an unaligned write of plain bytes into memory we never hold a
            // reference into.
            unsafe { std::ptr::write_unaligned(dst.cast::<[u8; N]>(), v) };
            return Ok(());
        }
        vm_memory::Bytes::write_slice(&self.mem, &v, GuestAddress(addr)).map_err(|_| ())
    }

    /// The ring index at `addr` (little-endian, 2-aligned: ring layouts are checked
    /// aligned), loaded atomically with `order`. Err: outside guest memory or misaligned.
    #[inline]
    pub fn load_u16(&self, addr: u64, order: Ordering) -> Result<u16, ()> {
        let p = self.host_range(addr, 2).ok_or(())?;
        if p as usize % 2 != 0 {
            return Err(());
        }
        // SAFETY: `p..p + 2` lies inside one region's live mapping and is 2-aligned (checked
        // above); the guest and other threads access it only atomically or through the ring
        // protocol, and the mapping outlives this call.
        let a = unsafe { AtomicU16::from_ptr(p.cast::<u16>()) };
        Ok(u16::from_le(a.load(order)))
    }

    /// Stores a ring index at `addr` (little-endian, 2-aligned), like [`GuestMem::load_u16`].
    #[inline]
    pub fn store_u16(&self, addr: u64, v: u16, order: Ordering) -> Result<(), ()> {
        let p = self.host_range(addr, 2).ok_or(())?;
        if p as usize % 2 != 0 {
            return Err(());
        }
        // SAFETY: as in `load_u16`.
        let a = unsafe { AtomicU16::from_ptr(p.cast::<u16>()) };
        a.store(v.to_le(), order);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SIZE: u64 = 64 * 1024;

    /// A table of two adjacent regions (guest 0..64 KiB and 64..128 KiB), each backed by a
    /// file of its own, and the files' paths (removed by the caller).
    fn two_regions(name: &str) -> (GuestMem, Vec<std::path::PathBuf>) {
        let mut regions = Vec::new();
        let mut paths = Vec::new();
        for i in 0..2u64 {
            let path = std::env::temp_dir()
                .join(format!("vhost-port-mem-{name}-{}-{i}", std::process::id()));
            let f = File::options()
                .read(true)
                .write(true)
                .create(true)
                .truncate(true)
                .open(&path)
                .unwrap();
            f.set_len(SIZE).unwrap();
            let spec = RegionSpec {
                gpa: i * SIZE,
                size: SIZE,
                uaddr: 0x7f00_0000_0000 + i * SIZE,
                mmap_offset: 0,
            };
            regions.push(map_region(i as usize, spec, f).unwrap());
            paths.push(path);
        }
        (GuestMem::new(regions).unwrap(), paths)
    }

    fn cleanup(paths: Vec<std::path::PathBuf>) {
        for p in paths {
            let _ = std::fs::remove_file(p);
        }
    }

    #[test]
    fn accesses_stay_inside_guest_memory() {
        let (m, paths) = two_regions("bounds");
        let end = 2 * SIZE;
        // Inside one region: the fast path; across the boundary: vm-memory's piecewise copy.
        assert!(m.write(SIZE - 4, &[1, 2, 3, 4, 5, 6, 7, 8]).is_ok());
        let mut b = [0u8; 8];
        assert!(m.read(SIZE - 4, &mut b).is_ok());
        assert_eq!(b, [1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(m.read_array::<8>(SIZE - 4), Ok([1, 2, 3, 4, 5, 6, 7, 8]));
        // Up to the last byte, and not one byte past it.
        assert!(m.write(end - 8, &[9; 8]).is_ok());
        assert!(m.write(end - 7, &[9; 8]).is_err());
        assert!(m.read_array::<16>(end - 16).is_ok());
        assert!(m.read_array::<16>(end - 15).is_err());
        assert!(m.write_array(end - 7, [0u8; 8]).is_err());
        assert!(!m.contains(end - 1, 2));
        assert!(m.contains(0, end as usize));
        // Addresses where an addition would wrap.
        for addr in [u64::MAX, u64::MAX - 3, end] {
            assert!(m.read(addr, &mut b).is_err(), "{addr:#x}");
            assert!(m.read_array::<16>(addr).is_err(), "{addr:#x}");
            assert!(m.load_u16(addr, Ordering::Relaxed).is_err(), "{addr:#x}");
            assert!(!m.contains(addr, 8), "{addr:#x}");
            m.prefetch(addr);
        }
        // Ring indices: aligned only.
        assert!(m.store_u16(0x100, 0xbeef, Ordering::Release).is_ok());
        assert_eq!(m.load_u16(0x100, Ordering::Acquire), Ok(0xbeef));
        assert!(m.load_u16(0x101, Ordering::Relaxed).is_err());
        assert!(m.store_u16(end - 1, 1, Ordering::Relaxed).is_err());
        cleanup(paths);
    }

    #[test]
    fn a_gathered_write_fits_its_room_or_writes_nothing() {
        let (m, paths) = two_regions("gather");
        let pieces: [&[u8]; 3] = [&[1; 12], &[2; 12], &[3; 40]];
        assert!(
            m.write_gather(0x200, 63, &pieces).is_err(),
            "64 bytes into 63"
        );
        assert_eq!(m.read_array::<4>(0x200), Ok([0; 4]), "nothing written");
        assert!(m.write_gather(0x200, 64, &pieces).is_ok());
        let mut b = [0u8; 64];
        m.read(0x200, &mut b).unwrap();
        assert_eq!(&b[..12], &[1; 12]);
        assert_eq!(&b[12..24], &[2; 12]);
        assert_eq!(&b[24..], &[3; 40]);
        // Across the two regions, and past the end of guest memory.
        assert!(m.write_gather(SIZE - 10, 64, &pieces).is_ok());
        assert!(m.write_gather(2 * SIZE - 10, 64, &pieces).is_err());
        cleanup(paths);
    }
}
