//! POSIX shared memory by name (`shm_open`), whole-file mappings read and
//! written with 8-byte atomics (plain slices only through `unsafe`), the
//! `unsafe` accessors of `SharedMemory` that hand out such slices, and the
//! process plumbing of the shared-memory tracker (a detached helper that
//! watches its creator through a pidfd).

use std::ffi::CString;
use std::io;
use std::ptr::NonNull;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::Relaxed;

use rustix::fd::{BorrowedFd, FromRawFd, OwnedFd, RawFd};
use rustix::mm::{MapFlags, ProtFlags};

/// What tells one file from another while both exist: device and inode.
/// A name in /dev/shm can be unlinked and created again; the inode says
/// whether it still names the same segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct FileId {
    pub(crate) dev: u64,
    pub(crate) ino: u64,
}

/// The identity and length of the file behind `fd` (`fstat`).
pub(crate) fn file_id(fd: BorrowedFd<'_>) -> io::Result<(FileId, u64)> {
    let st = rustix::fs::fstat(fd)?;
    Ok((FileId { dev: st.st_dev as u64, ino: st.st_ino as u64 }, st.st_size as u64))
}

/// Whether the raw fd number `fd` is open on the file `id`: for an fd
/// inherited over a `fork` that may or may not have been closed since
/// (its number may even belong to another file now).
pub(crate) fn raw_fd_is(fd: RawFd, id: FileId) -> bool {
    let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
    // SAFETY: `fstat` writes a whole `stat` into the buffer on success and
    // touches nothing else; a closed number only gives EBADF, since an fd
    // number is not memory.
    if unsafe { libc::fstat(fd, st.as_mut_ptr()) } != 0 {
        return false;
    }
    // SAFETY: `fstat` returned 0, so it initialised the buffer.
    let st = unsafe { st.assume_init() };
    st.st_dev == id.dev && st.st_ino == id.ino
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

/// `ftruncate(fd, len)`.
pub(crate) fn set_len(fd: BorrowedFd<'_>, len: u64) -> io::Result<()> {
    Ok(rustix::fs::ftruncate(fd, len)?)
}

/// The bytes still free on the file system of `fd` (`fstatvfs`), or `None`
/// if it reports no limit (a tmpfs mounted with `size=0`).
pub(crate) fn free_bytes(fd: BorrowedFd<'_>) -> io::Result<Option<u64>> {
    let st = rustix::fs::fstatvfs(fd)?;
    if st.f_blocks == 0 {
        return Ok(None);
    }
    Ok(Some(st.f_bavail.saturating_mul(st.f_frsize)))
}

/// A `MAP_SHARED` read-write mapping of the first `len` bytes of a file.
///
/// The bytes are shared with every other mapping of the file, in this
/// process or another, and any of them may write at any time. So the safe
/// accessors ([`read_at`](SharedMap::read_at),
/// [`write_at`](SharedMap::write_at), [`words`](SharedMap::words)) only
/// ever touch them through `AtomicU64`s, on 8-byte-aligned words (the
/// mapping starts on a page): a race between two of them, or with a write
/// from another process, is well defined (a copy may tear, it is never
/// undefined behaviour). One size for every access matters: under Rust's
/// memory model an atomic write racing with an atomic access of another
/// size is undefined, so the bytes are never handed out as `AtomicU8`s or
/// `AtomicU32`s. Plain slices come only from the `unsafe` accessors, whose
/// callers promise that nobody writes meanwhile.
#[derive(Debug)]
pub(crate) struct SharedMap {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: the mapping is memory that no thread-local state refers to; it
// may be unmapped from any thread. Through `&SharedMap` the bytes are only
// reached with atomic operations, or through the `unsafe` accessors whose
// callers rule out concurrent writes.
unsafe impl Send for SharedMap {}
// SAFETY: as above.
unsafe impl Sync for SharedMap {}

impl SharedMap {
    /// Maps the first `len` bytes (more than zero) of `fd`, read-write and
    /// shared. The file must be at least `len` bytes long, or touching the
    /// part past its end raises SIGBUS.
    pub(crate) fn new(fd: BorrowedFd<'_>, len: usize) -> io::Result<SharedMap> {
        if len == 0 {
            return Err(io::Error::from(io::ErrorKind::InvalidInput));
        }
        // SAFETY: a fresh mapping at an address the kernel picks; it
        // aliases no Rust object, and only `Drop` unmaps it.
        let ptr = unsafe {
            rustix::mm::mmap(std::ptr::null_mut(), len, ProtFlags::READ | ProtFlags::WRITE, MapFlags::SHARED, fd, 0)?
        };
        Ok(SharedMap { ptr: NonNull::new(ptr.cast()).expect("mmap never returns null on success"), len })
    }

    pub(crate) fn len(&self) -> usize {
        self.len
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
        // several threads (or processes) at once: through this slice the
        // bytes are only ever accessed atomically, as 8-byte words.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr().cast::<AtomicU64>(), self.len.div_ceil(8)) }
    }

    /// The whole 8-byte words inside the first `len` bytes (`len / 8` of
    /// them): word `i` is bytes `8 * i .. 8 * i + 8`, in native byte order.
    pub(crate) fn words(&self) -> &[AtomicU64] {
        &self.all_words()[..self.len / 8]
    }

    /// `Err(InvalidInput)` unless `offset .. offset + n` is inside the
    /// mapping.
    fn check_range(&self, offset: usize, n: usize) -> io::Result<()> {
        match offset.checked_add(n) {
            Some(end) if end <= self.len => Ok(()),
            _ => Err(io::Error::from(io::ErrorKind::InvalidInput)),
        }
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

    /// The mapped bytes, as a plain slice.
    ///
    /// # Safety
    ///
    /// Nothing may write the bytes while the slice lives: no other
    /// `SharedMap` of the same file (here or in another process), and no
    /// atomic access through this one.
    pub(crate) unsafe fn bytes(&self) -> &[u8] {
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
    /// other `SharedMap` of the same file (here or in another process).
    /// (`&mut self` already rules out this one.)
    pub(crate) unsafe fn bytes_mut(&mut self) -> &mut [u8] {
        // SAFETY: as for `bytes`; `&mut self` makes this the only access
        // through this mapping, and the caller promises there is no other.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

/// The accessors of [`SharedMemory`](crate::SharedMemory) that hand out
/// plain slices. They are here, not with the rest of the type, because
/// building such a slice needs an `unsafe` block and this module is the
/// only place that may have one.
impl crate::SharedMemory {
    /// The segment's bytes as a plain slice (Python's `buf`, read side),
    /// with no copy.
    ///
    /// Prefer [`read_at`](crate::SharedMemory::read_at), which is safe: a
    /// plain slice promises the compiler that its bytes do not change while
    /// it is borrowed, and shared memory cannot keep that promise by
    /// itself.
    ///
    /// # Safety
    ///
    /// While the slice lives, nobody may write these bytes: no other
    /// handle on the segment ([`try_clone`](crate::SharedMemory::try_clone),
    /// a second [`open`](crate::SharedMemory::open), a handle a child
    /// received), in this process or in any other, no
    /// [`write_at`](crate::SharedMemory::write_at) or atomic store, from
    /// any thread. Holding a [`Lock`](crate::Lock) that every writer takes
    /// first is the usual way to make sure; a program whose other processes
    /// only read, or have ended, is another.
    ///
    /// # Examples
    ///
    /// ```
    /// let shm = multiproc::SharedMemory::anonymous(3)?;
    /// shm.write_at(1, &[7])?;
    /// // SAFETY: no other handle on this segment exists, and nothing in
    /// // this thread writes while `bytes` is borrowed.
    /// let bytes = unsafe { shm.buf() };
    /// assert_eq!(bytes, [0, 7, 0]);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub unsafe fn buf(&self) -> &[u8] {
        // SAFETY: the caller promises that nobody writes the bytes while
        // the slice lives, which is all `SharedMap::bytes` asks.
        unsafe { self.shared_map().bytes() }
    }

    /// The segment's bytes as a plain writable slice (Python's `buf`,
    /// write side), with no copy.
    ///
    /// Prefer [`write_at`](crate::SharedMemory::write_at), which is safe.
    /// `&mut self` makes this the only access through this handle, but
    /// other handles on the same segment, here or in other processes, are
    /// not borrowed by it.
    ///
    /// # Safety
    ///
    /// While the slice lives, nobody else may read or write these bytes: no
    /// other handle on the segment, in this process or in any other, from
    /// any thread. Holding a [`Lock`](crate::Lock) that every other user of
    /// the segment takes first is the usual way to make sure.
    ///
    /// # Examples
    ///
    /// ```
    /// let mut shm = multiproc::SharedMemory::anonymous(8)?;
    /// // SAFETY: no other handle on this segment exists yet.
    /// let bytes = unsafe { shm.buf_mut() };
    /// bytes.copy_from_slice(&7u64.to_le_bytes());
    /// let mut back = [0; 8];
    /// shm.read_at(0, &mut back)?;
    /// assert_eq!(u64::from_le_bytes(back), 7);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub unsafe fn buf_mut(&mut self) -> &mut [u8] {
        // SAFETY: the caller promises that nobody else reads or writes the
        // bytes while the slice lives, which is all `SharedMap::bytes_mut`
        // asks.
        unsafe { self.shared_map_mut().bytes_mut() }
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

impl Drop for SharedMap {
    fn drop(&mut self) {
        // SAFETY: the mapping made by `new`, unmapped once; no slice of it
        // outlives `self`.
        let _ = unsafe { rustix::mm::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

/// A pidfd for this process's parent, if the parent is still `expected`.
///
/// The pidfd is opened first and the parent checked after: a live
/// process's pid cannot be reused, so if `expected` is still the parent
/// after the open, the pidfd refers to it. `None` means the parent has
/// already died.
pub(crate) fn parent_pidfd(expected: i32) -> io::Result<Option<OwnedFd>> {
    let parent = || rustix::process::getppid().map_or(0, |p| p.as_raw_nonzero().get());
    if parent() != expected {
        return Ok(None);
    }
    let fd = super::pidfd_open(expected)?;
    Ok((parent() == expected).then_some(fd))
}

/// Turns this freshly exec'd, single-threaded process into a detached
/// helper: it forks, and the original process exits (its parent reaps it
/// at once), so the helper is adopted by init (or the nearest subreaper),
/// which reaps it when it ends; no process that uses multiproc ever has it
/// as a child, so it can never be left a zombie there. Then, in the
/// helper: a new session (signals sent to the user's process group or
/// terminal do not reach it), SIGINT, SIGTERM, SIGHUP and SIGPIPE ignored,
/// stdin and stdout on /dev/null (so that it holds no pipe a caller reads
/// to its end), stderr kept for its warnings, and `/` as its directory.
pub(crate) fn detach() -> io::Result<()> {
    match super::fork()? {
        super::Forked::Parent(_) => super::exit_now(0),
        super::Forked::Child => {}
    }
    let _ = rustix::process::setsid();
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGPIPE] {
        // SAFETY: a fully initialised sigaction (zeroed, then SIG_IGN);
        // ignoring a signal has no memory-safety preconditions.
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = libc::SIG_IGN;
            libc::sigemptyset(&mut action.sa_mask);
            libc::sigaction(sig, &action, std::ptr::null_mut());
        }
    }
    let null = rustix::fs::open(
        "/dev/null",
        rustix::fs::OFlags::RDWR | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )?;
    rustix::stdio::dup2_stdin(&null)?;
    rustix::stdio::dup2_stdout(&null)?;
    let _ = rustix::process::chdir("/");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustix::fd::{AsFd, AsRawFd};

    fn unique(tag: &str) -> String {
        let mut r = [0u8; 6];
        super::super::random_bytes(&mut r).unwrap();
        let hex: String = r.iter().map(|b| format!("{b:02x}")).collect();
        format!("multiproc-unit-{tag}-{hex}")
    }

    #[test]
    fn a_named_segment_is_created_once_opened_shared_and_unlinked() {
        let name = unique("seg");
        let fd = shm_create(&name).unwrap();
        assert_eq!(shm_create(&name).unwrap_err().kind(), io::ErrorKind::AlreadyExists);
        set_len(fd.as_fd(), 4096).unwrap();
        let a = SharedMap::new(fd.as_fd(), 4096).unwrap();
        let other = shm_open(&name, true).unwrap();
        let (id, len) = file_id(other.as_fd()).unwrap();
        assert_eq!((id, len), file_id(fd.as_fd()).unwrap());
        assert!(raw_fd_is(other.as_raw_fd(), id));
        let b = SharedMap::new(other.as_fd(), 4096).unwrap();
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
    fn an_empty_mapping_is_refused() {
        let fd = super::super::memfd("test", 0).unwrap();
        assert!(SharedMap::new(fd.as_fd(), 0).is_err());
    }

    /// Every offset and length over the first words of a 45-byte mapping
    /// (not a multiple of 8), against a plain model.
    #[test]
    fn read_at_and_write_at_agree_with_a_plain_model_at_every_offset_and_length() {
        const LEN: usize = 45;
        let fd = super::super::memfd("test", LEN as u64).unwrap();
        let map = SharedMap::new(fd.as_fd(), LEN).unwrap();
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
        let fd = super::super::memfd("test", LEN as u64).unwrap();
        let maps = [SharedMap::new(fd.as_fd(), LEN).unwrap(), SharedMap::new(fd.as_fd(), LEN).unwrap()];
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
