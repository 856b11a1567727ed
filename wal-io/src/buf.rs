//! [`IoBuf`]: an owned buffer aligned for O_DIRECT, whose ownership passes to
//! the backend while a queued write is in flight.

use std::alloc::{self, Layout};
use std::ptr::NonNull;

/// Alignment of offsets, lengths and buffer addresses for files opened with
/// O_DIRECT, and the alignment of every [`IoBuf`]. 4096 bytes covers every
/// logical block size in common use (512 and 4096).
pub const DIRECT_IO_ALIGN: usize = 4096;

/// A heap buffer whose start is aligned to [`DIRECT_IO_ALIGN`] and whose
/// capacity is a multiple of it, so it can back an O_DIRECT write or read.
///
/// A queued write takes the buffer by value and hands it back in its
/// [`Completion`](crate::Completion): while the kernel may read it, nobody
/// else can touch, move or free it. Using a buffer after queueing it does not
/// compile:
///
/// ```compile_fail,E0382
/// # fn f(queue: &mut dyn wal_io::IoQueue, file: &wal_io::FileRef) -> Result<(), wal_io::IoError> {
/// let mut buf = wal_io::IoBuf::with_capacity(4096);
/// buf.extend_from_slice(&[1; 4096]);
/// queue.push_write(1, file, 0, buf, false)?;
/// buf.clear(); // error: the buffer was moved into the queue
/// # Ok(()) }
/// ```
pub struct IoBuf {
    ptr: NonNull<u8>,
    len: usize,
    capacity: usize,
}

// SAFETY: an `IoBuf` owns its allocation exclusively (no aliasing pointer
// escapes except through `&self`/`&mut self` borrows), like `Vec<u8>`.
unsafe impl Send for IoBuf {}
// SAFETY: shared access only hands out `&[u8]`, like `Vec<u8>`.
unsafe impl Sync for IoBuf {}

impl IoBuf {
    /// An empty buffer able to hold `capacity` bytes, rounded up to a
    /// multiple of [`DIRECT_IO_ALIGN`] (at least one block). The memory is zeroed.
    ///
    /// # Panics
    /// If the rounded capacity overflows `isize`, or on allocation failure
    /// (as `Vec` does).
    pub fn with_capacity(capacity: usize) -> Self {
        let capacity = capacity.max(1).div_ceil(DIRECT_IO_ALIGN) * DIRECT_IO_ALIGN;
        let ptr = if capacity >= MAPPED_BYTES_MIN {
            map_zeroed(capacity)
        } else {
            let layout = Self::layout(capacity);
            // SAFETY: `layout` has a non-zero size (at least DIRECT_IO_ALIGN).
            let raw = unsafe { alloc::alloc_zeroed(layout) };
            NonNull::new(raw).unwrap_or_else(|| alloc::handle_alloc_error(layout))
        };
        IoBuf {
            ptr,
            len: 0,
            capacity,
        }
    }

    fn layout(capacity: usize) -> Layout {
        match Layout::from_size_align(capacity, DIRECT_IO_ALIGN) {
            Ok(layout) => layout,
            Err(_) => panic!("IoBuf capacity {capacity} overflows isize"),
        }
    }

    /// Bytes in the buffer.
    #[inline]
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the buffer holds no bytes.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bytes the buffer can hold.
    #[inline]
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Bytes that can still be appended.
    #[inline]
    pub fn remaining(&self) -> usize {
        self.capacity - self.len
    }

    /// The bytes in the buffer.
    #[inline]
    pub fn as_slice(&self) -> &[u8] {
        // SAFETY: `ptr` is valid for `capacity` bytes, all initialised (the
        // allocation is zeroed), and `len <= capacity`; the borrow of `self`
        // keeps the allocation alive and unaliased by writers.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }

    /// The bytes in the buffer, mutably.
    #[inline]
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: as in `as_slice`, and `&mut self` makes the access exclusive.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }

    /// Appends `bytes`.
    ///
    /// # Panics
    /// If they do not fit in the remaining capacity: an `IoBuf` never
    /// reallocates, so the address handed to the kernel stays put.
    #[inline]
    pub fn extend_from_slice(&mut self, bytes: &[u8]) {
        assert!(
            bytes.len() <= self.remaining(),
            "IoBuf overflow: {} bytes into {} remaining",
            bytes.len(),
            self.remaining()
        );
        // Copied straight past the end: zeroing the bytes first, as `resize`
        // would, doubled the cost of filling a queued write's buffer.
        // SAFETY: `len + bytes.len() <= capacity` (asserted above), so the
        // destination lies within the allocation; `bytes` is a shared borrow
        // and `self` an exclusive one, so the two cannot overlap.
        unsafe {
            std::ptr::copy_nonoverlapping(
                bytes.as_ptr(),
                self.ptr.as_ptr().add(self.len),
                bytes.len(),
            );
        }
        self.len += bytes.len();
    }

    /// Sets the length to `new_len`, filling new bytes with `fill`.
    ///
    /// # Panics
    /// If `new_len` exceeds the capacity.
    pub fn resize(&mut self, new_len: usize, fill: u8) {
        assert!(
            new_len <= self.capacity,
            "IoBuf length {new_len} exceeds its capacity {}",
            self.capacity
        );
        if new_len > self.len {
            // SAFETY: `len..new_len` lies within the allocation (new_len <= capacity).
            unsafe {
                self.ptr
                    .as_ptr()
                    .add(self.len)
                    .write_bytes(fill, new_len - self.len);
            }
        }
        self.len = new_len;
    }

    /// Shortens the buffer to `len` bytes (no effect if it is shorter).
    #[inline]
    pub fn truncate(&mut self, len: usize) {
        self.len = self.len.min(len);
    }

    /// Empties the buffer, keeping its capacity.
    #[inline]
    pub fn clear(&mut self) {
        self.len = 0;
    }

    /// Pads the length with `fill` up to the next multiple of [`DIRECT_IO_ALIGN`].
    pub fn pad_to_alignment(&mut self, fill: u8) {
        let padded = self.len.div_ceil(DIRECT_IO_ALIGN) * DIRECT_IO_ALIGN;
        self.resize(padded, fill);
    }

    pub(crate) fn as_ptr(&self) -> *const u8 {
        self.ptr.as_ptr()
    }
}

impl Drop for IoBuf {
    fn drop(&mut self) {
        if self.capacity >= MAPPED_BYTES_MIN {
            // SAFETY: `ptr` was mapped in `map_zeroed` with exactly this
            // length (the capacity never changes) and is unmapped only here,
            // once; no borrow of the buffer outlives `self`.
            let unmapped = unsafe { rustix::mm::munmap(self.ptr.as_ptr().cast(), self.capacity) };
            debug_assert!(unmapped.is_ok(), "munmap of an IoBuf: {unmapped:?}");
        } else {
            // SAFETY: `ptr` was allocated in `with_capacity` with exactly this
            // layout and is freed only here, once.
            unsafe { alloc::dealloc(self.ptr.as_ptr(), Self::layout(self.capacity)) }
        }
    }
}

/// Buffers at least this large are mapped straight from the kernel: their
/// pages read as zero and cost nothing until written, so a buffer sized for
/// the largest batch costs only what the batches use. The allocator's
/// aligned zeroed allocation writes every byte up front instead: for the
/// log's write buffers, which grew 1, 2, 4, 8 MiB by copying, that was a
/// memset of each size and a fault on every page, in every process.
const MAPPED_BYTES_MIN: usize = 256 << 10;

/// `capacity` bytes of fresh anonymous memory, page-aligned (so aligned to
/// [`DIRECT_IO_ALIGN`]) and zero.
fn map_zeroed(capacity: usize) -> NonNull<u8> {
    // SAFETY: a private anonymous mapping at an address of the kernel's
    // choosing aliases no existing memory; a failure returns an error and
    // maps nothing.
    let mapped = unsafe {
        rustix::mm::mmap_anonymous(
            std::ptr::null_mut(),
            capacity,
            rustix::mm::ProtFlags::READ | rustix::mm::ProtFlags::WRITE,
            rustix::mm::MapFlags::PRIVATE,
        )
    };
    match mapped.ok().and_then(|p| NonNull::new(p.cast::<u8>())) {
        Some(ptr) => {
            debug_assert_eq!(ptr.as_ptr().align_offset(DIRECT_IO_ALIGN), 0);
            ptr
        }
        None => alloc::handle_alloc_error(IoBuf::layout(capacity)),
    }
}

/// Asks for huge pages behind the whole pages of `buf` when they are first
/// written (`MADV_HUGEPAGE`), without mapping anything in now: for a buffer
/// whose first part [`prefault`] maps in and whose rest a later use may
/// write. Returns whether huge pages may now back it: false where the
/// system's transparent huge pages are off (`never`), where the kernel
/// refuses the advice, and on other systems, so a caller can size what it
/// touches by the pages it will really get. The contents are unchanged; the
/// advice belongs to the memory range, as for [`prefault`].
pub fn advise_huge_pages(buf: &mut [u8]) -> bool {
    #[cfg(target_os = "linux")]
    {
        huge_pages_on_request() && advise(buf, rustix::mm::Advice::LinuxHugepage)
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = buf;
        false
    }
}

/// Gives `advice` for the whole pages inside `buf`; false if there are none
/// or the kernel refuses it. Only for advice that changes what backs the
/// memory, never what it holds.
#[cfg(target_os = "linux")]
fn advise(buf: &mut [u8], advice: rustix::mm::Advice) -> bool {
    let Some(pages) = whole_pages(buf) else {
        return false;
    };
    let (ptr, len) = (pages.as_mut_ptr().cast(), pages.len());
    // SAFETY: `pages` is whole pages inside `buf`, a live borrow, so the
    // call names no memory outside it. The callers give only
    // `MADV_HUGEPAGE` and `MADV_POPULATE_WRITE`, neither of which changes
    // what the memory holds: a huge page or a populated page reads back the
    // bytes it had (zero where never written), and a refusal leaves the
    // pages as they were.
    unsafe { rustix::mm::madvise(ptr, len, advice) }.is_ok()
}

/// Whether the kernel gives transparent huge pages to memory that asks
/// (mode `always` or `madvise`); read once. `MADV_HUGEPAGE` itself succeeds
/// under `never` too, so the advice's result cannot tell.
#[cfg(target_os = "linux")]
fn huge_pages_on_request() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| {
        std::fs::read_to_string("/sys/kernel/mm/transparent_hugepage/enabled")
            .is_ok_and(|mode| !mode.contains("[never]"))
    })
}

/// The whole pages inside `buf`, if there are any.
#[cfg(target_os = "linux")]
fn whole_pages(buf: &mut [u8]) -> Option<&mut [u8]> {
    let page = rustix::param::page_size();
    let start = buf.as_mut_ptr().align_offset(page);
    let whole = buf.len().saturating_sub(start);
    let len = whole - whole % page;
    buf.get_mut(start..start + len).filter(|p| !p.is_empty())
}

/// Maps in the whole pages of `buf` now, as huge pages where the system
/// gives them on request, instead of one 4 KiB page fault at a time as a
/// read first writes them: for fresh private anonymous memory that a read
/// is about to fill, such as a recovery part buffer. Returns whether the
/// kernel populated the pages (`MADV_POPULATE_WRITE`, Linux 5.14); where it
/// cannot (another system, an older kernel), nothing changes and the pages
/// fault in as before. The contents are unchanged.
///
/// The huge-page advice (`MADV_HUGEPAGE`) belongs to the memory range, not
/// to `buf`: if the allocator reuses the range after `buf` is freed (a
/// heap allocation rather than a mapping of its own), later allocations
/// there may be backed by huge pages too, which can hold a little more
/// memory resident. Not for a shared file mapping: populating for write
/// marks every page of one dirty, so the kernel would write it back.
pub fn prefault(buf: &mut [u8]) -> bool {
    #[cfg(target_os = "linux")]
    {
        // Refused where the kernel has no huge pages: they are 4 KiB.
        advise_huge_pages(buf);
        advise(buf, rustix::mm::Advice::LinuxPopulateWrite)
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = buf;
        false
    }
}

impl std::fmt::Debug for IoBuf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IoBuf")
            .field("len", &self.len)
            .field("capacity", &self.capacity)
            .finish()
    }
}

impl From<&[u8]> for IoBuf {
    fn from(bytes: &[u8]) -> Self {
        let mut buf = IoBuf::with_capacity(bytes.len());
        buf.extend_from_slice(bytes);
        buf
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_are_aligned_and_round_capacity_up() {
        // Allocated below MAPPED_BYTES_MIN, mapped from it on.
        let mapped = MAPPED_BYTES_MIN;
        for cap in [
            0,
            1,
            4095,
            4096,
            4097,
            mapped - 1,
            mapped,
            mapped + 1,
            1 << 20,
        ] {
            let mut buf = IoBuf::with_capacity(cap);
            assert_eq!(buf.as_ptr() as usize % DIRECT_IO_ALIGN, 0);
            assert_eq!(buf.capacity() % DIRECT_IO_ALIGN, 0);
            assert!(buf.capacity() >= cap.max(1));
            // Every byte up to the capacity is there to write and read.
            let full = buf.capacity();
            buf.resize(full, 0xa5);
            assert!(buf.as_slice().iter().all(|&b| b == 0xa5));
        }
    }

    #[test]
    fn contents_grow_pad_and_clear() {
        let mut buf = IoBuf::with_capacity(10);
        buf.extend_from_slice(b"abc");
        assert_eq!(buf.as_slice(), b"abc");
        buf.pad_to_alignment(0);
        assert_eq!(buf.len(), DIRECT_IO_ALIGN);
        assert_eq!(&buf.as_slice()[..4], b"abc\0");
        buf.truncate(2);
        assert_eq!(buf.as_slice(), b"ab");
        buf.clear();
        assert!(buf.is_empty());
        buf.resize(5, 7);
        assert_eq!(buf.as_slice(), [7; 5]);
    }

    #[test]
    #[should_panic(expected = "IoBuf overflow")]
    fn overflowing_panics_instead_of_moving() {
        let mut buf = IoBuf::with_capacity(DIRECT_IO_ALIGN);
        buf.extend_from_slice(&[0; DIRECT_IO_ALIGN + 1]);
    }
}
