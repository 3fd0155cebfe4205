//! Shared memory: the files that hold it (a `memfd`, or a POSIX shared
//! memory object found by name) and [`Mapping`], the one owner of a
//! `MAP_SHARED` mapping of such a file (`mmap`, `mremap`, `munmap`).
//!
//! A mapping is shared with every other mapping of its file, in this
//! process or another, so how its bytes may be touched depends on who else
//! writes them, and the type says which discipline a user keeps:
//!
//! - [`Mapping`] itself gives **atomic access** ([`Mapping::u32_at`],
//!   [`Mapping::u64_at`], [`Mapping::words`], [`Mapping::read_at`],
//!   [`Mapping::write_at`]), sound whoever else writes, at any time. A
//!   range is accessed through atomics of one size only (mixing sizes on
//!   the same bytes is undefined under Rust's memory model), so
//!   `SharedMemory`'s bytes are always 8-byte words. Plain slices of it
//!   come only from the `unsafe` [`Mapping::as_slice`] and
//!   [`Mapping::as_mut_slice`], whose callers promise that nobody writes
//!   meanwhile.
//! - [`GuardedMapping`] is a `Mapping` whose plain bytes a process-shared
//!   lock of its user's protocol guards (a queue's ring, a `Value`'s data),
//!   and adds **plain access** for code that holds that lock
//!   ([`GuardedMapping::bytes`], [`GuardedMapping::write`],
//!   [`GuardedMapping::with_bytes_mut`], [`GuardedMapping::copy_within`]).
//!   Only such users make one; `SharedMemory`, whose bytes other processes
//!   write at any time, holds a plain `Mapping`.

use std::ffi::CString;
use std::io;
use std::mem::{align_of, size_of};
use std::ops::{Deref, DerefMut};
use std::ptr::NonNull;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::atomic::{AtomicU32, AtomicU64};

use rustix::fd::{AsFd, BorrowedFd, FromRawFd, OwnedFd};
use rustix::fs::MemfdFlags;
use rustix::mm::{MapFlags, MremapFlags, ProtFlags};

/// `memfd_create(name, MFD_CLOEXEC)` sized to `len` bytes (zero-filled;
/// pages are allocated only as they are touched).
#[doc(alias = "memfd_create")]
pub(crate) fn memfd(name: &str, len: u64) -> io::Result<OwnedFd> {
    let fd = rustix::fs::memfd_create(name, MemfdFlags::CLOEXEC)?;
    rustix::fs::ftruncate(&fd, len)?;
    Ok(fd)
}

/// `"/" + name`, as `shm_open` wants it. The caller has checked the name.
fn c_name(name: &str) -> io::Result<CString> {
    CString::new(format!("/{name}")).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))
}

fn shm_open_flags(name: &str, flags: libc::c_int) -> io::Result<OwnedFd> {
    let c = c_name(name)?;
    // SAFETY: `c` is a NUL-terminated string that outlives the call. glibc
    // adds O_NOFOLLOW and O_CLOEXEC; the result is a new fd or -1.
    let fd = unsafe { libc::shm_open(c.as_ptr(), flags, 0o600) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just returned by `shm_open`; nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `shm_open(name, O_RDWR | O_CREAT | O_EXCL, 0600)`: a new, empty segment;
/// `AlreadyExists` if the name is taken.
#[doc(alias = "shm_open")]
pub(crate) fn shm_create(name: &str) -> io::Result<OwnedFd> {
    shm_open_flags(name, libc::O_RDWR | libc::O_CREAT | libc::O_EXCL)
}

/// `shm_open(name, O_RDWR)` (or `O_RDONLY`) of an existing segment.
pub(crate) fn shm_open(name: &str, writable: bool) -> io::Result<OwnedFd> {
    shm_open_flags(name, if writable { libc::O_RDWR } else { libc::O_RDONLY })
}

/// `shm_unlink(name)`.
pub(crate) fn shm_unlink(name: &str) -> io::Result<()> {
    let c = c_name(name)?;
    // SAFETY: `c` is a NUL-terminated string that outlives the call.
    if unsafe { libc::shm_unlink(c.as_ptr()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The bytes still free on the file system of `fd` (`fstatvfs`), or `None`
/// if it reports no limit (a tmpfs mounted with `size=0`).
#[doc(alias = "fstatvfs")]
pub(crate) fn free_bytes(fd: BorrowedFd<'_>) -> io::Result<Option<u64>> {
    let st = rustix::fs::fstatvfs(fd)?;
    if st.f_blocks == 0 {
        return Ok(None);
    }
    Ok(Some(st.f_bavail.saturating_mul(st.f_frsize)))
}

/// A `MAP_SHARED` read-write mapping of part of a file: the one owner of
/// such a mapping in multiproc. Its bytes are reached with atomics, or as
/// plain slices through `unsafe` accessors (see the module documentation;
/// [`GuardedMapping`] adds plain access under a lock).
#[derive(Debug)]
pub(crate) struct Mapping {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: the mapping is memory that no thread-local state refers to; it
// may be unmapped from any thread. Through `&Mapping` the bytes are reached
// with atomics, or through the `unsafe` accessors whose callers rule out
// concurrent writes; through a `&GuardedMapping` also with copies made
// while the process-shared lock of its user's protocol is held (see the
// module documentation).
unsafe impl Send for Mapping {}
// SAFETY: as above.
unsafe impl Sync for Mapping {}

impl Mapping {
    /// `mmap(MAP_SHARED)` of `len` bytes of `fd` from `offset` (a multiple
    /// of the page size), read-write. The file must reach at least
    /// `offset + len`, or touching the part past its end raises SIGBUS.
    /// `InvalidInput` for a length of zero.
    #[doc(alias = "mmap")]
    pub(crate) fn new(fd: BorrowedFd<'_>, offset: u64, len: usize) -> io::Result<Mapping> {
        if len == 0 {
            return Err(io::Error::from(io::ErrorKind::InvalidInput));
        }
        // SAFETY: a fresh mapping at an address the kernel picks; it aliases
        // no Rust object, and it is unmapped only by `Drop`.
        let ptr = unsafe {
            rustix::mm::mmap(
                std::ptr::null_mut(),
                len,
                ProtFlags::READ | ProtFlags::WRITE,
                MapFlags::SHARED,
                fd,
                offset,
            )?
        };
        Ok(Mapping { ptr: NonNull::new(ptr.cast()).expect("mmap never returns null on success"), len })
    }

    /// `mremap`: grows (or shrinks) the mapping to `len` bytes; it may move,
    /// which `&mut self` makes safe: no reference into it is alive.
    #[doc(alias = "mremap")]
    pub(crate) fn resize(&mut self, len: usize) -> io::Result<()> {
        if len == self.len {
            return Ok(());
        }
        // SAFETY: `self.ptr`/`self.len` describe a live mapping made by
        // `Mapping::new`; `&mut self` guarantees that nothing borrows it.
        let ptr = unsafe { rustix::mm::mremap(self.ptr.as_ptr().cast(), self.len, len, MremapFlags::MAYMOVE)? };
        self.ptr = NonNull::new(ptr.cast()).expect("mremap never returns null on success");
        self.len = len;
        Ok(())
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// A pointer to the `T` at `offset`, after checking that it is inside
    /// the mapping and aligned for `T` (a bug in the caller's layout
    /// otherwise: it panics).
    #[inline]
    pub(super) fn at<T>(&self, offset: usize) -> *mut T {
        self.check::<T>(offset, size_of::<T>());
        // SAFETY: `offset` is inside the mapping (checked), so the result
        // stays in the same allocation.
        unsafe { self.ptr.as_ptr().add(offset).cast() }
    }

    #[inline]
    fn check<T>(&self, offset: usize, len: usize) {
        if offset.checked_add(len).is_none_or(|end| end > self.len) || !offset.is_multiple_of(align_of::<T>()) {
            self.bad_access::<T>(offset, len);
        }
    }

    #[cold]
    #[inline(never)]
    fn bad_access<T>(&self, offset: usize, len: usize) -> ! {
        if offset.is_multiple_of(align_of::<T>()) {
            panic!("shared-memory access out of bounds: {offset}+{len} > {}", self.len);
        }
        panic!("misaligned shared-memory access at {offset}");
    }

    /// `Err(InvalidInput)` unless `offset .. offset + n` is inside the
    /// mapping: for ranges that come from a user.
    fn check_range(&self, offset: usize, n: usize) -> io::Result<()> {
        match offset.checked_add(n) {
            Some(end) if end <= self.len => Ok(()),
            _ => Err(io::Error::from(io::ErrorKind::InvalidInput)),
        }
    }

    // Atomic access: sound whoever else writes.

    /// The `AtomicU32` at `offset`.
    #[inline]
    pub(crate) fn u32_at(&self, offset: usize) -> &AtomicU32 {
        // SAFETY: in bounds and aligned for an `AtomicU32` (checked by `at`);
        // the memory lives as long as `&self`, and an `AtomicU32` may be
        // shared between threads and processes.
        unsafe { AtomicU32::from_ptr(self.at::<AtomicU32>(offset).cast()) }
    }

    /// The `N` `AtomicU64`s from `offset` on, checked once: for a header
    /// whose words are used many times in a row.
    #[inline]
    pub(crate) fn u64_array<const N: usize>(&self, offset: usize) -> &[AtomicU64; N] {
        // SAFETY: the whole array is in bounds and aligned for `AtomicU64`
        // (checked by `at`, for `[AtomicU64; N]`, whose alignment is the
        // atomic's); as for `u64_at` otherwise: every bit pattern is a valid
        // `AtomicU64`, and atomics may be shared between processes.
        unsafe { &*self.at::<[AtomicU64; N]>(offset) }
    }

    /// The `AtomicU64` at `offset`.
    #[inline]
    pub(crate) fn u64_at(&self, offset: usize) -> &AtomicU64 {
        // SAFETY: in bounds and aligned for an `AtomicU64` (checked by `at`,
        // whose alignment is that of the atomic, not of `u64`); as for
        // `u32_at` otherwise.
        unsafe { AtomicU64::from_ptr(self.at::<AtomicU64>(offset).cast()) }
    }

    /// Every 8-byte word that holds some of the `len` bytes: the last one
    /// may run past `len`, into the rest of the mapping's last page (its
    /// bytes are never changed here, only written back as they are).
    fn all_words(&self) -> &[AtomicU64] {
        // SAFETY: `mmap` returned a page-aligned address and mapped whole
        // pages, so the `len.div_ceil(8)` words from `ptr` are aligned,
        // inside the mapping, and live until `self` drops (the borrow
        // keeps it). `AtomicU64` has the size and alignment of `u64`, every
        // bit pattern is valid, and atomics may be shared and written by
        // several threads (or processes) at once.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr().cast::<AtomicU64>(), self.len.div_ceil(8)) }
    }

    /// The whole 8-byte words inside the first `len` bytes (`len / 8` of
    /// them): word `i` is bytes `8 * i .. 8 * i + 8`, in native byte order.
    pub(crate) fn words(&self) -> &[AtomicU64] {
        &self.all_words()[..self.len / 8]
    }

    /// Copies the bytes at `offset ..` into `out`, one relaxed 8-byte
    /// atomic load per word. `InvalidInput` if the range is not inside the
    /// mapping.
    pub(crate) fn read_at(&self, offset: usize, out: &mut [u8]) -> io::Result<()> {
        self.check_range(offset, out.len())?;
        if out.is_empty() {
            return Ok(());
        }
        let words = &self.all_words()[offset / 8..(offset + out.len()).div_ceil(8)];
        let skip = offset % 8;
        let (first, words) = words.split_first().expect("at least one word");
        let head = out.len().min(8 - skip);
        out[..head].copy_from_slice(&first.load(Relaxed).to_ne_bytes()[skip..skip + head]);
        let whole = (out.len() - head) / 8 * 8;
        let (middle, tail) = out[head..].split_at_mut(whole);
        let mut words = words.iter();
        for (bytes, word) in middle.chunks_exact_mut(8).zip(words.by_ref()) {
            bytes.copy_from_slice(&word.load(Relaxed).to_ne_bytes());
        }
        if let Some(last) = words.next() {
            let n = tail.len();
            tail.copy_from_slice(&last.load(Relaxed).to_ne_bytes()[..n]);
        }
        Ok(())
    }

    /// Copies `bytes` to `offset ..`: one relaxed 8-byte atomic store per
    /// whole word, and a compare-exchange for a word the range covers only
    /// in part, so that its other bytes, which someone else may be
    /// writing, are kept. `InvalidInput` if the range is not inside the
    /// mapping.
    pub(crate) fn write_at(&self, offset: usize, bytes: &[u8]) -> io::Result<()> {
        self.check_range(offset, bytes.len())?;
        if bytes.is_empty() {
            return Ok(());
        }
        let words = &self.all_words()[offset / 8..(offset + bytes.len()).div_ceil(8)];
        let skip = offset % 8;
        let (first, words) = words.split_first().expect("at least one word");
        let head = bytes.len().min(8 - skip);
        if head == 8 {
            first.store(u64::from_ne_bytes(bytes[..8].try_into().expect("8 bytes")), Relaxed);
        } else {
            store_part(first, skip, &bytes[..head]);
        }
        let (middle, tail) = bytes[head..].split_at((bytes.len() - head) / 8 * 8);
        let mut words = words.iter();
        for (bytes, word) in middle.chunks_exact(8).zip(words.by_ref()) {
            word.store(u64::from_ne_bytes(bytes.try_into().expect("8 bytes")), Relaxed);
        }
        if let Some(last) = words.next() {
            store_part(last, 0, tail);
        }
        Ok(())
    }

    // Plain slices of the whole mapping, for callers that rule out writers.

    /// The mapped bytes, as a plain slice.
    ///
    /// # Safety
    ///
    /// Nothing may write the bytes while the slice lives: no other mapping
    /// of the same file (here or in another process), and no atomic access
    /// through this one.
    pub(crate) unsafe fn as_slice(&self) -> &[u8] {
        // SAFETY: `ptr..ptr + len` is a live mapping made by `new`, unmapped
        // only when `self` drops, which the borrow prevents; the caller
        // promises that nobody writes it while the slice lives.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }

    /// The mapped bytes, as a plain writable slice.
    ///
    /// # Safety
    ///
    /// Nothing else may read or write the bytes while the slice lives: no
    /// other mapping of the same file (here or in another process).
    /// (`&mut self` already rules out this one.)
    pub(crate) unsafe fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: as for `as_slice`; `&mut self` makes this the only access
        // through this mapping, and the caller promises there is no other.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

/// A [`Mapping`] whose plain bytes a process-shared lock of its user's
/// protocol guards: every read and write of a range through the methods
/// below happens while the caller holds that lock (a queue's ring under
/// the queue's mutex, a `Value`'s data under its lock), so no other
/// process or thread touches the range meanwhile. Atomics and the mutexes
/// themselves are reached through the `Mapping` (`Deref`).
#[derive(Debug)]
pub(crate) struct GuardedMapping(Mapping);

impl GuardedMapping {
    /// `mmap`, as [`Mapping::new`], for a user whose protocol guards the
    /// bytes with a lock.
    pub(crate) fn new(fd: BorrowedFd<'_>, offset: u64, len: usize) -> io::Result<GuardedMapping> {
        Mapping::new(fd, offset, len).map(GuardedMapping)
    }

    /// Copies `bytes` in at `offset`.
    pub(crate) fn write(&self, offset: usize, bytes: &[u8]) {
        self.0.check::<u8>(offset, bytes.len());
        // SAFETY: the destination is in bounds (checked) and cannot overlap
        // `bytes`, which is Rust memory outside any mapping we write; the
        // caller's lock keeps other readers and writers off the range.
        unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), self.0.ptr.as_ptr().add(offset), bytes.len()) }
    }

    /// The bytes at `offset..offset + len`, for reading while the caller's
    /// protocol keeps every writer away from them.
    pub(crate) fn bytes(&self, offset: usize, len: usize) -> &[u8] {
        self.0.check::<u8>(offset, len);
        // SAFETY: in bounds (checked), alive as long as `&self`; the
        // caller's lock keeps other writers off this range while it reads.
        unsafe { std::slice::from_raw_parts(self.0.ptr.as_ptr().add(offset), len) }
    }

    /// Lends the bytes at `offset..offset + len` to `f` for writing, while
    /// the caller's protocol (a held process-shared lock) keeps every other
    /// reader and writer in this process and others away from them.
    pub(crate) fn with_bytes_mut<R>(&self, offset: usize, len: usize, f: impl FnOnce(&mut [u8]) -> R) -> R {
        self.0.check::<u8>(offset, len);
        // SAFETY: in bounds (checked) and alive for the call; the slice does
        // not escape `f`, and the caller's lock makes this the only access
        // to the range meanwhile.
        f(unsafe { std::slice::from_raw_parts_mut(self.0.ptr.as_ptr().add(offset), len) })
    }

    /// Moves `len` bytes from `from` to `to` inside the mapping.
    pub(crate) fn copy_within(&self, from: usize, to: usize, len: usize) {
        self.0.check::<u8>(from, len);
        self.0.check::<u8>(to, len);
        // SAFETY: both ranges are in bounds (checked); `copy` allows
        // overlap; the caller's lock keeps others off both ranges.
        unsafe { std::ptr::copy(self.0.ptr.as_ptr().add(from), self.0.ptr.as_ptr().add(to), len) }
    }
}

impl Deref for GuardedMapping {
    type Target = Mapping;

    fn deref(&self) -> &Mapping {
        &self.0
    }
}

impl DerefMut for GuardedMapping {
    fn deref_mut(&mut self) -> &mut Mapping {
        &mut self.0
    }
}

/// A growable byte buffer in a file's pages, from `offset` on: a pool
/// worker's results, which must outlive the worker if it dies before
/// sending them.
///
/// Only this process reads or writes these pages while it lives; another
/// process reads them (with `pread`, not a mapping) only after this one has
/// ended. So here they are plain memory, lent out as slices; `&mut self`
/// is the only way to them. The file grows with the buffer (`ftruncate`,
/// then `mremap`).
#[derive(Debug)]
pub(crate) struct ShmVec {
    fd: OwnedFd,
    offset: u64,
    map: Mapping,
    len: usize,
}

impl ShmVec {
    /// A buffer of `capacity` bytes (at least a page) in `fd` from `offset`
    /// (a multiple of the page size), empty.
    pub(crate) fn new(fd: OwnedFd, offset: u64, capacity: usize) -> io::Result<ShmVec> {
        let capacity = capacity.max(super::page_size());
        super::grow_file(fd.as_fd(), offset + capacity as u64)?;
        let map = Mapping::new(fd.as_fd(), offset, capacity)?;
        Ok(ShmVec { fd, offset, map, len: 0 })
    }

    pub(crate) fn capacity(&self) -> usize {
        self.map.len()
    }

    /// The bytes written so far.
    pub(crate) fn as_slice(&self) -> &[u8] {
        // SAFETY: only this process touches the pages while it lives (see
        // the type's documentation), and `&self` rules out a `&mut` into
        // them here; `len` is within the mapping.
        unsafe { &self.map.as_slice()[..self.len] }
    }

    fn as_mut_slice(&mut self) -> &mut [u8] {
        let len = self.len;
        // SAFETY: only this process touches the pages while it lives, and
        // `&mut self` is the only access path to them here; `len` is within
        // the mapping.
        unsafe { &mut self.map.as_mut_slice()[..len] }
    }

    /// Room for `additional` more bytes: the file and the mapping double
    /// (at least) when they are full.
    ///
    /// # Panics
    ///
    /// If the system refuses the memory, as a `Vec` that cannot grow does
    /// (the encoder that writes here cannot return an error).
    #[inline]
    fn room(&mut self, additional: usize) {
        if additional <= self.capacity() - self.len {
            return;
        }
        self.grow(additional);
    }

    #[cold]
    fn grow(&mut self, additional: usize) {
        let need = self.len.checked_add(additional).expect("a result buffer beyond the address space");
        let page = super::page_size();
        let cap = need.max(self.capacity() * 2).next_multiple_of(page);
        let grown = super::grow_file(self.fd.as_fd(), self.offset + cap as u64).and_then(|()| self.map.resize(cap));
        if let Err(e) = grown {
            panic!("multiproc: could not grow a pool worker's result buffer to {cap} bytes: {e}");
        }
    }

    /// Gives memory back: shrinks the buffer to `capacity` bytes (at least a
    /// page) if it is empty and larger than that.
    pub(crate) fn shrink_when_empty(&mut self, capacity: usize) {
        let cap = capacity.max(super::page_size()).next_multiple_of(super::page_size());
        if self.len > 0 || self.capacity() <= cap {
            return;
        }
        if self.map.resize(cap).is_ok() {
            let _ = super::set_len(self.fd.as_fd(), self.offset + cap as u64);
        }
    }

    pub(crate) fn clear(&mut self) {
        self.len = 0;
    }
}

impl crate::codec::Sink for ShmVec {
    #[inline]
    fn len(&self) -> usize {
        self.len
    }

    #[inline]
    fn push(&mut self, byte: u8) {
        if self.len == self.capacity() {
            self.room(1);
        }
        // SAFETY: `len < capacity` (made so above), so the byte is inside the
        // mapping; only this process touches it (see the type's docs), and
        // `&mut self` is the only access path here.
        unsafe { self.map.ptr.as_ptr().add(self.len).write(byte) };
        self.len += 1;
    }

    // Always: a pool worker appends each item's few bytes here, and a
    // call for each (then `memmove` for the unknown length) cost more than
    // the copy.
    #[inline(always)]
    fn extend_from_slice(&mut self, bytes: &[u8]) {
        if bytes.len() > self.capacity() - self.len {
            self.room(bytes.len());
        }
        // SAFETY: `len + bytes.len() <= capacity` (made so above), so the
        // destination is inside the mapping and cannot overlap `bytes`,
        // which is not in it (nobody else holds a slice of it: `&mut
        // self`); only this process touches these pages.
        unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), self.map.ptr.as_ptr().add(self.len), bytes.len()) };
        self.len += bytes.len();
    }

    #[inline]
    fn truncate(&mut self, len: usize) {
        self.len = self.len.min(len);
    }

    #[inline]
    fn reserve(&mut self, additional: usize) {
        self.room(additional);
    }

    #[inline]
    fn written_mut(&mut self) -> &mut [u8] {
        self.as_mut_slice()
    }
}

/// Writes `bytes` into `word` from byte `at` on, keeping its other bytes:
/// a compare-exchange loop, so that a concurrent write of those bytes (by
/// another thread or process, through the same word) is not undone.
fn store_part(word: &AtomicU64, at: usize, bytes: &[u8]) {
    let mut current = word.load(Relaxed);
    loop {
        let mut new = current.to_ne_bytes();
        new[at..at + bytes.len()].copy_from_slice(bytes);
        let new = u64::from_ne_bytes(new);
        match word.compare_exchange_weak(current, new, Relaxed, Relaxed) {
            Ok(_) => return,
            Err(now) => current = now,
        }
    }
}

impl Drop for Mapping {
    /// `munmap`.
    fn drop(&mut self) {
        // SAFETY: the mapping made by `new`/`resize`, unmapped once; no
        // borrow of it outlives `self`.
        let _ = unsafe { rustix::mm::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

/// Has the allocator keep up to `bytes` that it frees for reuse, instead
/// of giving them back to the kernel at once (glibc's `M_TRIM_THRESHOLD`
/// and `M_MMAP_THRESHOLD`), for a process of ours that handles large
/// messages one after another (a manager's server): each would otherwise
/// fault its pages in anew, about 1 us per 4 KiB page here. Nothing on
/// other C libraries.
#[doc(alias = "mallopt")]
pub(crate) fn keep_freed_memory(bytes: usize) {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let value = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
        // SAFETY: `mallopt` only sets two numbers in the allocator's
        // configuration; it is called in a process of our own, whose
        // allocations stay valid whatever they are.
        unsafe {
            libc::mallopt(libc::M_TRIM_THRESHOLD, value);
            libc::mallopt(libc::M_MMAP_THRESHOLD, value);
        }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    let _ = bytes;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::{file_id, file_len, grow_file, random_bytes, raw_fd_is, set_len};
    use rustix::fd::{AsFd, AsRawFd};
    use std::sync::atomic::Ordering;

    fn unique(tag: &str) -> String {
        let mut r = [0u8; 6];
        random_bytes(&mut r).unwrap();
        let hex: String = r.iter().map(|b| format!("{b:02x}")).collect();
        format!("multiproc-unit-{tag}-{hex}")
    }

    #[test]
    fn two_mappings_of_one_memfd_share_bytes_and_grow() {
        let fd = memfd("test", 4096).unwrap();
        let a = GuardedMapping::new(fd.as_fd(), 0, 4096).unwrap();
        let mut b = GuardedMapping::new(fd.as_fd(), 0, 4096).unwrap();
        a.write(8, b"hello");
        assert_eq!(b.bytes(8, 5), b"hello");
        a.u64_at(16).store(7, Ordering::SeqCst);
        assert_eq!(b.u64_at(16).load(Ordering::SeqCst), 7);
        grow_file(fd.as_fd(), 3 * 4096).unwrap();
        b.resize(3 * 4096).unwrap();
        b.write(2 * 4096, b"far");
        b.copy_within(2 * 4096, 100, 3);
        assert_eq!(a.bytes(100, 3), b"far");
        assert_eq!(file_len(fd.as_fd()).unwrap(), 3 * 4096);
    }

    #[test]
    #[should_panic(expected = "out of bounds")]
    fn out_of_bounds_access_panics() {
        let fd = memfd("test", 4096).unwrap();
        let a = GuardedMapping::new(fd.as_fd(), 0, 4096).unwrap();
        a.write(4094, b"abc");
    }

    #[test]
    fn a_named_segment_is_created_once_opened_shared_and_unlinked() {
        let name = unique("seg");
        let fd = shm_create(&name).unwrap();
        assert_eq!(shm_create(&name).unwrap_err().kind(), io::ErrorKind::AlreadyExists);
        set_len(fd.as_fd(), 4096).unwrap();
        let a = Mapping::new(fd.as_fd(), 0, 4096).unwrap();
        let other = shm_open(&name, true).unwrap();
        let (id, len) = file_id(other.as_fd()).unwrap();
        assert_eq!((id, len), file_id(fd.as_fd()).unwrap());
        assert!(raw_fd_is(other.as_raw_fd(), id));
        let b = Mapping::new(other.as_fd(), 0, 4096).unwrap();
        a.write_at(10, b"abc").unwrap();
        let mut back = [0; 3];
        b.read_at(10, &mut back).unwrap();
        assert_eq!(&back, b"abc");
        assert_eq!(b.len(), 4096);
        shm_unlink(&name).unwrap();
        assert_eq!(shm_open(&name, false).unwrap_err().kind(), io::ErrorKind::NotFound);
        assert_eq!(shm_unlink(&name).unwrap_err().kind(), io::ErrorKind::NotFound);
        let raw = other.as_raw_fd();
        drop(other);
        assert!(!raw_fd_is(raw, id), "a closed number no longer names the segment");
        assert!(free_bytes(fd.as_fd()).is_ok());
    }

    #[test]
    fn a_shm_vec_grows_keeps_its_bytes_in_the_file_and_shrinks() {
        use crate::codec::Sink;
        let fd = memfd("test", 0).unwrap();
        let page = crate::sys::page_size();
        let mut v = ShmVec::new(fd.try_clone().unwrap(), page as u64, 16).unwrap();
        assert_eq!(v.capacity(), page);
        for i in 0..3 * page {
            v.push((i % 251) as u8);
        }
        v.extend_from_slice(b"tail");
        assert!(v.capacity() >= 3 * page + 4);
        assert_eq!(&v.as_slice()[3 * page..], b"tail");
        v.written_mut()[0] = 7;
        // Another process would read the file, not the mapping.
        let back = crate::sys::read_file_at(fd.as_fd(), page as u64, 3 * page + 4).unwrap();
        assert_eq!(back, v.as_slice());
        assert_eq!(back[0], 7);
        v.truncate(2);
        assert_eq!(v.as_slice(), [7, 1]);
        v.clear();
        v.shrink_when_empty(page);
        assert_eq!(v.capacity(), page);
        assert_eq!(file_len(fd.as_fd()).unwrap(), 2 * page as u64);
    }

    #[test]
    fn an_empty_mapping_is_refused() {
        let fd = memfd("test", 0).unwrap();
        assert_eq!(Mapping::new(fd.as_fd(), 0, 0).unwrap_err().kind(), io::ErrorKind::InvalidInput);
    }

    /// Every offset and length over the first words of a 45-byte mapping
    /// (not a multiple of 8), against a plain model.
    #[test]
    fn read_at_and_write_at_agree_with_a_plain_model_at_every_offset_and_length() {
        const LEN: usize = 45;
        let fd = memfd("test", LEN as u64).unwrap();
        let map = Mapping::new(fd.as_fd(), 0, LEN).unwrap();
        let mut model = [0u8; LEN];
        let mut counter = 0u8;
        for offset in 0..=LEN {
            for n in 0..=LEN - offset {
                let bytes: Vec<u8> = (0..n)
                    .map(|_| {
                        counter = counter.wrapping_add(1);
                        counter
                    })
                    .collect();
                map.write_at(offset, &bytes).unwrap();
                model[offset..offset + n].copy_from_slice(&bytes);
                let mut whole = [0u8; LEN];
                map.read_at(0, &mut whole).unwrap();
                assert_eq!(whole, model, "after writing {n} bytes at {offset}");
                let mut part = vec![0xAA; n];
                map.read_at(offset, &mut part).unwrap();
                assert_eq!(part, &model[offset..offset + n]);
            }
        }
        let words = map.words();
        assert_eq!(words.len(), LEN / 8);
        assert_eq!(words[1].load(Relaxed).to_ne_bytes(), model[8..16]);
        for (offset, n) in [(LEN, 1), (LEN - 1, 2), (0, LEN + 1), (usize::MAX, 1), (1, usize::MAX)] {
            let err = map.check_range(offset, n).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{offset} + {n}");
        }
        assert_eq!(map.write_at(LEN - 1, b"xy").unwrap_err().kind(), io::ErrorKind::InvalidInput);
        assert_eq!(map.read_at(LEN, &mut [0]).unwrap_err().kind(), io::ErrorKind::InvalidInput);
        assert!(map.read_at(LEN, &mut []).is_ok() && map.write_at(LEN, &[]).is_ok());
    }

    /// Threads writing bytes of the same words, through two mappings, never
    /// undo each other's bytes: a word written in part is merged, not
    /// overwritten.
    #[test]
    fn concurrent_writes_to_neighbouring_bytes_of_a_word_are_all_kept() {
        const LEN: usize = 64;
        let fd = memfd("test", LEN as u64).unwrap();
        let maps = [Mapping::new(fd.as_fd(), 0, LEN).unwrap(), Mapping::new(fd.as_fd(), 0, LEN).unwrap()];
        // Thread t owns the bytes i with i % 4 == t, written one at a time,
        // or in runs of one byte between others' bytes.
        std::thread::scope(|s| {
            for t in 0..4usize {
                let map = &maps[t % 2];
                s.spawn(move || {
                    for round in 1..=10_000u32 {
                        for i in (t..LEN).step_by(4) {
                            map.write_at(i, &[(round % 251) as u8 + t as u8]).unwrap();
                        }
                    }
                });
            }
        });
        let mut end = [0u8; LEN];
        maps[0].read_at(0, &mut end).unwrap();
        let expected: Vec<u8> = (0..LEN).map(|i| (10_000 % 251) as u8 + (i % 4) as u8).collect();
        assert_eq!(end.to_vec(), expected);
    }
}

/// A process-wide pointer to a word in a shared mapping, for code that
/// cannot hold a reference to it (a signal handler; a flag mirrored into a
/// status page). Its owner sets it while the word lives and clears it
/// before the word goes.
#[derive(Debug)]
pub(crate) struct WordSlot(std::sync::atomic::AtomicPtr<std::sync::atomic::AtomicU64>);

impl WordSlot {
    pub(crate) const fn new() -> WordSlot {
        WordSlot(std::sync::atomic::AtomicPtr::new(std::ptr::null_mut()))
    }

    /// Points at `word`, which must outlive the next [`clear`](WordSlot::clear).
    pub(crate) fn set(&self, word: &std::sync::atomic::AtomicU64) {
        self.0.store(std::ptr::from_ref(word).cast_mut(), std::sync::atomic::Ordering::Release);
    }

    pub(crate) fn clear(&self) {
        self.0.store(std::ptr::null_mut(), std::sync::atomic::Ordering::Release);
    }

    /// Stores `value` in the word, if one is set (async-signal-safe).
    pub(crate) fn store(&self, value: u64) {
        let word = self.0.load(std::sync::atomic::Ordering::Acquire);
        if !word.is_null() {
            // SAFETY: `set`'s caller keeps the word alive until `clear`.
            unsafe { (*word).store(value, std::sync::atomic::Ordering::Release) };
        }
    }

    /// Whether a word is set.
    pub(crate) fn is_set(&self) -> bool {
        !self.0.load(std::sync::atomic::Ordering::Acquire).is_null()
    }
}
