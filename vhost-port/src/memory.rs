//! Guest memory as one immutable table: the frontend's regions mapped with `vm-memory`, plus
//! the frontend-virtual to guest-physical translation that ring addresses need.
//!
//! A [`GuestMem`] never changes. A new memory table (`SET_MEM_TABLE`, `ADD_MEM_REG`,
//! `REM_MEM_REG`) builds a new one that shares the unchanged regions' mappings (`Arc`); a
//! mapping is unmapped when the last table holding it is dropped, which is after the last
//! worker holding a snapshot with that table let go of it.

use std::fs::File;
use std::os::unix::fs::FileTypeExt;
use std::sync::Arc;

use vm_memory::{FileOffset, GuestAddress, GuestMemoryMmap, GuestRegionMmap, MmapRegion};

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
        Ok(GuestMem { mem, regions })
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

/// Where `len` bytes at guest address `addr` are in our mapping, if they lie inside one
/// region: the region is looked up and the whole range checked against its length first.
fn host_range(mem: &GuestMemoryMmap, addr: u64, len: usize) -> Option<*mut u8> {
    use vm_memory::{GuestMemoryBackend, GuestMemoryRegion, MemoryRegionAddress};
    let region = mem.find_region(GuestAddress(addr))?;
    let off = addr.checked_sub(region.start_addr().0)?;
    let end = off.checked_add(len as u64)?;
    if end > region.len() {
        return None;
    }
    region.get_host_address(MemoryRegionAddress(off)).ok()
}

/// Copies `src` into guest memory at `addr`. One region lookup and one `memcpy` when the range
/// lies inside one region (the common case); otherwise `vm-memory`'s piecewise copy, which
/// also reports a range outside guest memory. Err: some byte is outside guest memory.
pub(crate) fn write_guest(mem: &GuestMemoryMmap, addr: u64, src: &[u8]) -> Result<(), ()> {
    if let Some(dst) = host_range(mem, addr, src.len()) {
        // SAFETY: `dst..dst + src.len()` lies inside one region's live mapping (checked in
        // `host_range` against the region's length; `mem` borrows the mapping for this call).
        // Guest memory is shared with the frontend, which may touch it at any time: we only
        // copy bytes into it and never hold a reference into it, so a racing guest can only
        // garble its own buffer, which the ring protocol says it must not touch now anyway.
        unsafe { std::ptr::copy_nonoverlapping(src.as_ptr(), dst, src.len()) };
        return Ok(());
    }
    vm_memory::Bytes::write_slice(mem, src, GuestAddress(addr)).map_err(|_| ())
}

/// Copies guest memory at `addr` into `dst`, like [`write_guest`] the other way.
pub(crate) fn read_guest(mem: &GuestMemoryMmap, addr: u64, dst: &mut [u8]) -> Result<(), ()> {
    if let Some(src) = host_range(mem, addr, dst.len()) {
        // SAFETY: `src..src + dst.len()` lies inside one region's live mapping (checked in
        // `host_range`); `dst` is our own buffer, so the ranges do not overlap. A guest writing
        // its buffer meanwhile gives us garbled bytes of its own frame, never an out-of-bounds
        // access.
        unsafe { std::ptr::copy_nonoverlapping(src, dst.as_mut_ptr(), dst.len()) };
        return Ok(());
    }
    vm_memory::Bytes::read_slice(mem, dst, GuestAddress(addr)).map_err(|_| ())
}
