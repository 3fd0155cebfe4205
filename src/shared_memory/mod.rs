//! Blocks of memory shared by name between processes: Python's
//! `multiprocessing.shared_memory.SharedMemory`.

mod buf;
mod checks;
mod tracker;

pub(crate) use tracker::serve as serve_tracker;

use std::fmt;
use std::io;
use std::sync::atomic::AtomicU64;

use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::codec::{FdHandle, FdIn, FdOut};
use crate::error::{Error, ErrorKind, Result};
use crate::sys::{self, AsFd, BorrowedFd, FileId, Mapping, OwnedFd};
use checks::{check_room, check_size, create_error, open_error, unlink_error, valid_name};
use tracker::Unlinked;

/// The prefix of generated names, as in Python.
const NAME_PREFIX: &str = "psm_";

/// A block of memory shared between processes, found by name (Python's
/// `multiprocessing.shared_memory.SharedMemory`).
///
/// [`create`](SharedMemory::create) makes a POSIX shared memory segment (a
/// file in `/dev/shm`, mode 0600) and maps it; any process of the same
/// user may [`open`](SharedMemory::open) it by its [`name`](SharedMemory::name),
/// Python processes included, or receive the handle itself as (part of)
/// the argument of [`Process::new`](crate::Process::new) or of a pool
/// initializer, under every start method. Each handle maps the whole
/// block, zeroed at creation: [`read_at`](SharedMemory::read_at) and
/// [`write_at`](SharedMemory::write_at) copy bytes out of it and into it,
/// [`as_atomic_u64`](SharedMemory::as_atomic_u64) gives its 8-byte words
/// as atomics, and [`buf`](SharedMemory::buf) and
/// [`buf_mut`](SharedMemory::buf_mut), whose callers rule out concurrent
/// writers, lend it as a plain slice (Python's `buf`).
///
/// # Who removes a segment
///
/// - Dropping a handle, or [`close`](SharedMemory::close), only unmaps it
///   from this process (Python's `close()`).
/// - [`unlink`](SharedMemory::unlink), from any handle in any process,
///   removes the name: nobody can open it any more, and the memory goes
///   back to the system when the last handle is gone.
/// - A segment made by [`create`](SharedMemory::create) is *tracked*: if
///   the process that created it ends without unlinking it (returning
///   from `main`, `exit`, a panic, or SIGKILL), a tracker process removes
///   it at once (tested: within 2 s of a SIGKILL, usually within
///   milliseconds). So a tracked segment lives until it is unlinked or
///   the process that created it ends, whichever comes first.
/// - That process is the creator itself, not the whole program: **unlike
///   Python**, whose resource tracker is shared by a process and all its
///   children (there a segment that a worker creates lives until the
///   program ends), a segment that a child or a [`Pool`](crate::Pool)
///   worker creates with `create` is removed when that child or worker
///   exits, even if its parent is still using it. For a segment that must
///   outlive the process that makes it, such as one a worker fills and
///   returns by name, use [`create_untracked`](SharedMemory::create_untracked)
///   in the worker, and [`unlink`](SharedMemory::unlink) it in the parent
///   when done; or create it in the parent and pass it (or its name) down.
/// - A segment made by [`create_untracked`](SharedMemory::create_untracked)
///   stays until someone unlinks it, or until the machine restarts
///   (Python's `track=False`).
/// - Opening never tracks: a process that opens a segment by name or
///   receives a handle never removes it on its own, whenever and however it
///   ends (Python 3.8 to 3.12 removed it when such a process exited,
///   gh-82300). And the tracker removes a name only while it still leads to
///   the segment its process created: if the name was unlinked and then
///   taken by another process's segment, that one is left alone.
///
/// # Concurrent access
///
/// Other processes, other handles in this one, and other threads (a
/// `SharedMemory` is `Sync`) may write the same bytes at any time, as with
/// any shared mapping. The safe accessors are built for that: `read_at`,
/// `write_at` and `as_atomic_u64` touch the bytes only with 8-byte atomic
/// operations on aligned words, so a race is never undefined behaviour.
/// But a copy is not one atomic operation: a `read_at` that races with a
/// write may return some bytes from before it and some from after (a torn
/// copy). To read or write a consistent whole, coordinate with a
/// [`Lock`](crate::Lock) that every writer takes (or a protocol of your
/// own, such as a [`Queue`](crate::Queue) message saying that the data is
/// ready), and do not check a value and then read it again later,
/// trusting the check, when another process may have written in between.
///
/// [`buf`](SharedMemory::buf) and [`buf_mut`](SharedMemory::buf_mut)
/// avoid the copy, and their callers take on a promise: while a plain slice is borrowed the
/// compiler may assume that nobody else writes its bytes, and nothing
/// about shared memory makes that so; the caller promises it (typically
/// by holding the lock while the slice lives).
///
/// If another process shrinks the file (`ftruncate`), touching the part
/// past its new end raises SIGBUS.
///
/// To hand a segment to a process through a queue or a pipe, send its
/// name and [`open`](SharedMemory::open) it there; a `SharedMemory` itself
/// travels only in process arguments, where its file descriptor goes along.
///
/// # Platform-specific behavior
///
/// Linux: a segment is a file in `/dev/shm`, a tmpfs whose pages are
/// allocated when first written. A write that finds `/dev/shm` full raises
/// SIGBUS, so `create` refuses a size larger than the space left there
/// (containers often have only 64 MiB: `docker run --shm-size`). A name has
/// at most 255 bytes and no `/`; leading slashes are ignored, so Python's
/// `_name` form (`/psm_…`) works too.
///
/// The tracker is a copy of this executable, started by the first tracked
/// `create` of each process: `ps` shows it as `multiproc: shared-memory
/// tracker for PID`. It is detached: init adopts it and reaps it when it
/// ends, so it is never the zombie child of your process (in a container
/// whose pid 1 does not reap orphans, run an init such as `docker run
/// --init`, as for any daemon). It has a session of its own, ignores
/// SIGINT, SIGTERM and SIGHUP, watches its creator through a pidfd, and
/// exits right after the creator, once the creator's remaining segments
/// are removed.
///
/// # Examples
///
/// ```
/// use multiproc::{Process, SharedMemory};
///
/// fn fill(name: String) -> multiproc::Result<()> {
///     let shm = SharedMemory::open(&name)?;
///     shm.write_at(0, b"hello")
/// }
///
/// let shm = SharedMemory::create(None, 1024)?;
/// let name = shm.name().unwrap().to_owned();
/// Process::new(fill, name).start()?.join()??;
/// let mut got = [0; 5];
/// shm.read_at(0, &mut got)?;
/// assert_eq!(&got, b"hello");
/// shm.unlink()?;
/// # Ok::<(), multiproc::Error>(())
/// ```
pub struct SharedMemory {
    map: Mapping,
    fd: OwnedFd,
    name: Option<String>,
    id: FileId,
}

impl fmt::Debug for SharedMemory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedMemory").field("name", &self.name).field("size", &self.size()).finish()
    }
}

impl SharedMemory {
    /// Creates a segment of `size` bytes, zeroed, named `name` or, with
    /// `None`, a fresh random name like Python's (`psm_` and 8 hex digits).
    /// Python's `SharedMemory(name, create=True, size=size)`.
    ///
    /// The segment is tracked: it is removed when this process ends, unless
    /// it was [unlinked](SharedMemory::unlink) before; this process, not
    /// the program (see [who removes a
    /// segment](SharedMemory#who-removes-a-segment)): in a child or a pool
    /// worker, use [`create_untracked`](SharedMemory::create_untracked) for
    /// a segment that must outlive it. The first tracked segment of a
    /// process starts its tracker, which takes a few milliseconds.
    ///
    /// The segment is registered with the tracker right after the system
    /// call that makes it (`shm_open` with `O_CREAT | O_EXCL`), before it
    /// is sized or mapped. Only a SIGKILL landing between the two, a window
    /// of one `fstat` and one `send` (plus a tracker's start-up if the
    /// running tracker was killed meanwhile), leaves the (empty) file in
    /// `/dev/shm`; any other failure of `create` removes it.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidInput`] for a size of 0 or a malformed name;
    /// [`ErrorKind::Io`] if a segment of that name exists already (its
    /// [`source`](std::error::Error::source) is an [`io::Error`] of kind
    /// `AlreadyExists`), if `/dev/shm` has less room than `size`, or if
    /// the segment or its tracker cannot be made. Nothing is left behind.
    ///
    /// # Examples
    ///
    /// ```
    /// use multiproc::SharedMemory;
    /// let shm = SharedMemory::create(None, 4096)?;
    /// assert!(shm.name().unwrap().starts_with("psm_"));
    /// assert_eq!(shm.size(), 4096);
    /// shm.write_at(0, &[42])?;
    /// let err = SharedMemory::create(shm.name(), 10).unwrap_err();
    /// assert!(err.to_string().contains("already exists"));
    /// shm.unlink()?;
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn create(name: Option<&str>, size: usize) -> Result<SharedMemory> {
        create(name, size, true)
    }

    /// Creates a segment that nothing removes but an explicit
    /// [`unlink`](SharedMemory::unlink): it outlives this process (Python's
    /// `SharedMemory(..., create=True, track=False)`). No tracker is
    /// started.
    ///
    /// # Errors
    ///
    /// As [`create`](SharedMemory::create).
    ///
    /// # Examples
    ///
    /// ```
    /// use multiproc::SharedMemory;
    /// let shm = SharedMemory::create_untracked(None, 100)?;
    /// // ... another program may open it by name, even after we exit ...
    /// shm.unlink()?; // the only way it ever goes
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    #[doc(alias("track"))]
    pub fn create_untracked(name: Option<&str>, size: usize) -> Result<SharedMemory> {
        create(name, size, false)
    }

    /// Opens the existing segment `name` (Python's `SharedMemory(name)`),
    /// mapping all of it, read-write. Opening does not track: this process
    /// never removes the segment unless it calls
    /// [`unlink`](SharedMemory::unlink).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Io`] if no segment has that name (its
    /// [`source`](std::error::Error::source) is an [`io::Error`] of kind
    /// `NotFound`) or this user may not open it;
    /// [`ErrorKind::InvalidState`] if the segment is empty (its creator
    /// has not sized it yet); [`ErrorKind::InvalidInput`] for a malformed
    /// name.
    ///
    /// # Examples
    ///
    /// ```
    /// use multiproc::SharedMemory;
    /// let a = SharedMemory::create(None, 64)?;
    /// let b = SharedMemory::open(a.name().unwrap())?;
    /// a.write_at(0, b"abc")?;
    /// let mut got = [0; 3];
    /// b.read_at(0, &mut got)?;
    /// assert_eq!(&got, b"abc");
    /// assert_eq!(b.size(), 64);
    /// a.unlink()?;
    /// assert!(SharedMemory::open(a.name().unwrap()).is_err());
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn open(name: &str) -> Result<SharedMemory> {
        let name = valid_name(name)?;
        let fd = sys::shm_open(name, true).map_err(|e| open_error(name, e))?;
        let (id, len) =
            sys::file_id(fd.as_fd()).map_err(|e| Error::io(&format!("fstat of shared memory segment {name:?}"), e))?;
        if len == 0 {
            return Err(Error::new(
                ErrorKind::InvalidState,
                format!(
                    "shared memory segment {name:?} is empty (0 bytes): its creator has not set its size yet; open it \
                     again once it has"
                ),
            ));
        }
        let size = usize::try_from(len).map_err(|_| {
            Error::new(
                ErrorKind::Unsupported,
                format!("shared memory segment {name:?} has {len} bytes, too many to map"),
            )
        })?;
        let map = map(fd.as_fd(), size, name)?;
        Ok(SharedMemory { map, fd, name: Some(name.to_owned()), id })
    }

    /// Creates an anonymous segment of `size` bytes: a memfd, with no name
    /// and nothing in `/dev/shm`, so nothing to unlink or track. It goes
    /// when its last handle does; pass it to children as a process
    /// argument.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidInput`] for a size of 0; [`ErrorKind::Io`] if
    /// the memory cannot be had.
    ///
    /// # Examples
    ///
    /// ```
    /// use multiproc::{Process, SharedMemory};
    ///
    /// fn double(shm: SharedMemory) -> multiproc::Result<()> {
    ///     let mut bytes = [0; 4];
    ///     shm.read_at(0, &mut bytes)?;
    ///     shm.write_at(0, &bytes.map(|b| b * 2))
    /// }
    ///
    /// let shm = SharedMemory::anonymous(4)?;
    /// assert_eq!(shm.name(), None);
    /// shm.write_at(0, &[1, 2, 3, 4])?;
    /// Process::new(double, shm.try_clone()?).start()?.join()??;
    /// let mut got = [0; 4];
    /// shm.read_at(0, &mut got)?;
    /// assert_eq!(got, [2, 4, 6, 8]);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    #[doc(alias("memfd_create"))]
    pub fn anonymous(size: usize) -> Result<SharedMemory> {
        check_size(size)?;
        let fd = sys::memfd("multiproc-shared-memory", size as u64)
            .map_err(|e| Error::io(&format!("creating {size} bytes of anonymous shared memory (memfd)"), e))?;
        let (id, _) = sys::file_id(fd.as_fd()).map_err(|e| Error::io("fstat of anonymous shared memory", e))?;
        let map = map(fd.as_fd(), size, "(anonymous)")?;
        Ok(SharedMemory { map, fd, name: None, id })
    }

    /// The segment's name, without a leading slash (Python's `name`);
    /// `None` for an [anonymous](SharedMemory::anonymous) one.
    ///
    /// # Examples
    ///
    /// ```
    /// use multiproc::SharedMemory;
    /// let shm = SharedMemory::create(None, 8)?;
    /// let name = shm.name().expect("a named segment");
    /// assert_eq!(SharedMemory::open(name)?.name(), Some(name));
    /// shm.unlink()?;
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    /// The segment's size in bytes, as mapped (Python's `size`).
    ///
    /// # Examples
    ///
    /// ```
    /// let shm = multiproc::SharedMemory::anonymous(10)?;
    /// assert_eq!(shm.size(), 10);
    /// assert!(shm.read_at(0, &mut [0; 10]).is_ok());
    /// assert!(shm.read_at(0, &mut [0; 11]).is_err());
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn size(&self) -> usize {
        self.map.len()
    }

    /// Copies `out.len()` bytes of the segment, from `offset` on, into
    /// `out` (Python's `bytes(shm.buf[offset:offset + len(out)])`).
    ///
    /// Safe whatever other handles, threads and processes do meanwhile:
    /// it reads with relaxed 8-byte atomic loads on aligned words. But if
    /// someone writes the range during the copy, `out` may hold a mix of
    /// old and new bytes (see [concurrent
    /// access](SharedMemory#concurrent-access)): to read a consistent whole
    /// while others write, hold a [`Lock`](crate::Lock) that they take too.
    ///
    /// It copies a whole 8-byte word at a time (no per-byte atomics).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidInput`] if `offset + out.len()` is past the
    /// segment's [`size`](SharedMemory::size); nothing is copied then.
    ///
    /// # Examples
    ///
    /// ```
    /// let shm = multiproc::SharedMemory::anonymous(16)?;
    /// shm.write_at(3, b"abc")?;
    /// let mut out = [0; 5];
    /// shm.read_at(2, &mut out)?;
    /// assert_eq!(out, *b"\0abc\0");
    /// assert!(shm.read_at(12, &mut out).is_err(), "12 + 5 > 16");
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    #[doc(alias("buf"))]
    pub fn read_at(&self, offset: usize, out: &mut [u8]) -> Result<()> {
        self.map.read_at(offset, out).map_err(|_| self.range_error("read", offset, out.len()))
    }

    /// Copies `bytes` into the segment, from `offset` on (Python's
    /// `shm.buf[offset:offset + len(bytes)] = bytes`).
    ///
    /// Safe whatever other handles, threads and processes do meanwhile:
    /// it writes with relaxed 8-byte atomic stores on aligned words (and a
    /// compare-exchange for a word it covers only in part, so that the
    /// neighbouring bytes, which someone else may be writing, are kept).
    /// A reader that races with it may see part of the new bytes (see
    /// [concurrent access](SharedMemory#concurrent-access)): to publish a
    /// consistent whole, write while holding a [`Lock`](crate::Lock) that
    /// readers take too, or tell them when it is done.
    ///
    /// It copies a whole 8-byte word at a time (no per-byte atomics).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidInput`] if `offset + bytes.len()` is past the
    /// segment's [`size`](SharedMemory::size); nothing is written then.
    ///
    /// # Examples
    ///
    /// ```
    /// use multiproc::{Lock, Process, SharedMemory};
    ///
    /// fn count_up((shm, lock): (SharedMemory, Lock)) -> multiproc::Result<()> {
    ///     for _ in 0..100 {
    ///         let _held = lock.acquire()?;
    ///         let mut n = [0; 4];
    ///         shm.read_at(0, &mut n)?;
    ///         shm.write_at(0, &(u32::from_le_bytes(n) + 1).to_le_bytes())?;
    ///     }
    ///     Ok(())
    /// }
    ///
    /// let (shm, lock) = (SharedMemory::anonymous(4)?, Lock::new()?);
    /// let children = (0..2)
    ///     .map(|_| Process::new(count_up, (shm.try_clone()?, lock.clone())).start())
    ///     .collect::<multiproc::Result<Vec<_>>>()?;
    /// for child in children {
    ///     child.join()??;
    /// }
    /// let mut n = [0; 4];
    /// shm.read_at(0, &mut n)?;
    /// assert_eq!(u32::from_le_bytes(n), 200);
    /// assert!(shm.write_at(2, &[0; 3]).is_err(), "2 + 3 > 4");
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    #[doc(alias("buf"))]
    pub fn write_at(&self, offset: usize, bytes: &[u8]) -> Result<()> {
        self.map.write_at(offset, bytes).map_err(|_| self.range_error("write", offset, bytes.len()))
    }

    /// The segment's whole 8-byte words as atomics: word `i` is bytes
    /// `8 * i .. 8 * i + 8`, in native byte order (little-endian on x86-64
    /// and aarch64), and there are `size() / 8` of them (a last partial
    /// word is left out). For counters and flags that several processes
    /// update without a lock.
    ///
    /// There is no `AtomicU8` or `AtomicU32` view: Rust's memory model
    /// makes an atomic write that races with an atomic access of another
    /// size undefined, and [`read_at`](SharedMemory::read_at) and
    /// [`write_at`](SharedMemory::write_at) use 8-byte words, so every
    /// access to the bytes uses that size. Mixing these words with
    /// `read_at` and `write_at` is fine.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::atomic::Ordering;
    /// use multiproc::{Process, SharedMemory};
    ///
    /// fn add(shm: SharedMemory) {
    ///     for _ in 0..1000 {
    ///         shm.as_atomic_u64()[0].fetch_add(1, Ordering::Relaxed);
    ///     }
    /// }
    ///
    /// let shm = SharedMemory::anonymous(20)?;
    /// assert_eq!(shm.as_atomic_u64().len(), 2);
    /// let children = (0..2)
    ///     .map(|_| Process::new(add, shm.try_clone()?).start())
    ///     .collect::<multiproc::Result<Vec<_>>>()?;
    /// for child in children {
    ///     child.join()?;
    /// }
    /// assert_eq!(shm.as_atomic_u64()[0].load(Ordering::Relaxed), 2000);
    /// let mut bytes = [0; 8];
    /// shm.read_at(0, &mut bytes)?;
    /// assert_eq!(u64::from_ne_bytes(bytes), 2000);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    #[doc(alias("buf"))]
    pub fn as_atomic_u64(&self) -> &[AtomicU64] {
        self.map.words()
    }

    fn range_error(&self, what: &str, offset: usize, len: usize) -> Error {
        Error::new(
            ErrorKind::InvalidInput,
            format!(
                "cannot {what} {len} bytes at offset {offset} of a shared memory segment of {} bytes: the range \
                 ends past the segment",
                self.size()
            ),
        )
    }

    /// Another handle on the same segment, with its own mapping: to keep
    /// one while passing the other to a child.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Io`] if out of file descriptors or address space.
    ///
    /// # Examples
    ///
    /// ```
    /// use multiproc::{Process, SharedMemory};
    ///
    /// fn mark(shm: SharedMemory) -> multiproc::Result<()> {
    ///     shm.write_at(0, &[1])
    /// }
    ///
    /// let shm = SharedMemory::create(None, 16)?;
    /// Process::new(mark, shm.try_clone()?).start()?.join()??;
    /// let mut first = [0];
    /// shm.read_at(0, &mut first)?;
    /// assert_eq!(first, [1]);
    /// shm.unlink()?;
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn try_clone(&self) -> Result<SharedMemory> {
        let fd = self.fd.try_clone().map_err(|e| Error::io("duplicating a shared memory segment's fd", e))?;
        let map = map(fd.as_fd(), self.size(), self.name.as_deref().unwrap_or("(anonymous)"))?;
        Ok(SharedMemory { map, fd, name: self.name.clone(), id: self.id })
    }

    /// Removes the segment's name (Python's `unlink()`): nobody can open
    /// it any more, and its memory goes back to the system once every
    /// handle, in every process, is closed. Handles that exist keep
    /// working. Any handle may unlink, in any process; the segment is no
    /// longer tracked afterwards. For an [anonymous](SharedMemory::anonymous)
    /// segment it does nothing.
    ///
    /// The name is removed only if it still leads to this segment: if it
    /// was unlinked and another segment took the name since, that one is
    /// left alone and this is an error.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Io`] if the name no longer exists (unlinked already;
    /// the [`source`](std::error::Error::source) is an [`io::Error`] of
    /// kind `NotFound`) or cannot be removed; [`ErrorKind::InvalidState`]
    /// if the name now belongs to another segment.
    ///
    /// # Examples
    ///
    /// ```
    /// use multiproc::SharedMemory;
    /// let shm = SharedMemory::create(None, 16)?;
    /// shm.unlink()?;
    /// assert!(SharedMemory::open(shm.name().unwrap()).is_err());
    /// assert!(shm.write_at(0, b"still works").is_ok(), "this handle still works");
    /// assert!(shm.unlink().is_err(), "it is gone already");
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn unlink(&self) -> Result<()> {
        let Some(name) = &self.name else {
            return Ok(());
        };
        let outcome = match tracker::unlink_if_same(name, self.id) {
            // Not allowed to look at it (a segment of another user that
            // this one may still remove): remove it unchecked.
            Err(e) if e.kind() == io::ErrorKind::PermissionDenied => sys::shm_unlink(name).map(|()| Unlinked::Done),
            other => other,
        };
        let outcome = outcome.map_err(|e| unlink_error(name, e))?;
        tracker::unregister(name, self.id);
        match outcome {
            Unlinked::Done => Ok(()),
            Unlinked::Missing => Err(unlink_error(name, io::ErrorKind::NotFound.into())),
            Unlinked::Replaced => Err(Error::new(
                ErrorKind::InvalidState,
                format!(
                    "the name {name:?} now belongs to another shared memory segment (this one was unlinked and the \
                     name taken again); nothing was removed"
                ),
            )),
        }
    }

    /// Unmaps the segment from this process and closes its fd (Python's
    /// `close()`), like dropping the handle. The segment itself stays (see
    /// [`unlink`](SharedMemory::unlink)).
    ///
    /// # Examples
    ///
    /// ```
    /// use multiproc::SharedMemory;
    /// let a = SharedMemory::create(None, 16)?;
    /// let name = a.name().unwrap().to_owned();
    /// a.close();
    /// let b = SharedMemory::open(&name)?; // still there
    /// b.unlink()?;
    /// b.close();
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn close(self) {
        drop(self);
    }

    /// A handle for a segment that arrived as a process argument.
    fn attach(fd: OwnedFd, name: Option<String>, size: u64) -> Result<SharedMemory> {
        let what = name.as_deref().unwrap_or("(anonymous)").to_owned();
        let (id, len) =
            sys::file_id(fd.as_fd()).map_err(|e| Error::io(&format!("fstat of shared memory {what:?}"), e))?;
        let size = usize::try_from(size).ok().filter(|&s| s > 0 && s as u64 <= len).ok_or_else(|| {
            Error::new(
                ErrorKind::InvalidState,
                format!(
                    "shared memory {what:?} has {len} bytes now, and its sender mapped {size}: it cannot be mapped here"
                ),
            )
        })?;
        let map = map(fd.as_fd(), size, &what)?;
        Ok(SharedMemory { map, fd, name, id })
    }
}

/// Creates and maps a segment, tracked or not; on any failure after the
/// name exists, the name is removed again.
fn create(name: Option<&str>, size: usize, track: bool) -> Result<SharedMemory> {
    check_size(size)?;
    let name = name.map(valid_name).transpose()?;
    if track {
        // Before the segment exists, so that registering it right after is
        // a single message.
        tracker::ensure_started()?;
    }
    let (fd, name) = match name {
        Some(name) => (sys::shm_create(name).map_err(|e| create_error(name, e))?, name.to_owned()),
        None => create_random()?,
    };
    // Registered first, before anything slow, so that the window in which
    // a SIGKILL leaves the file behind is one fstat and one send wide.
    let registered = (|| {
        let (id, _) =
            sys::file_id(fd.as_fd()).map_err(|e| Error::io(&format!("fstat of shared memory segment {name:?}"), e))?;
        if track {
            tracker::register(&name, id)?;
        }
        Ok(id)
    })();
    let id = match registered {
        Ok(id) => id,
        Err(e) => {
            let _ = sys::shm_unlink(&name);
            return Err(e);
        }
    };
    let mapped = (|| {
        sys::set_len(fd.as_fd(), size as u64)
            .map_err(|e| Error::io(&format!("setting shared memory segment {name:?} to {size} bytes"), e))?;
        check_room(fd.as_fd(), size)?;
        map(fd.as_fd(), size, &name)
    })();
    match mapped {
        Ok(map) => Ok(SharedMemory { map, fd, name: Some(name), id }),
        Err(e) => {
            let _ = tracker::unlink_if_same(&name, id);
            if track {
                tracker::unregister(&name, id);
            }
            Err(e)
        }
    }
}

/// A new segment under a fresh random name.
fn create_random() -> Result<(OwnedFd, String)> {
    for _ in 0..100 {
        let mut r = [0u8; 4];
        sys::random_bytes(&mut r).map_err(|e| Error::io("drawing a random shared memory name", e))?;
        let name = format!("{NAME_PREFIX}{}", r.iter().map(|b| format!("{b:02x}")).collect::<String>());
        match sys::shm_create(&name) {
            Ok(fd) => return Ok((fd, name)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(create_error(&name, e)),
        }
    }
    Err(Error::new(
        ErrorKind::Io,
        "100 random shared memory names in a row were taken; /dev/shm holds too many psm_ segments, unlink some",
    ))
}

fn map(fd: BorrowedFd<'_>, size: usize, name: &str) -> Result<Mapping> {
    Mapping::new(fd, 0, size).map_err(|e| Error::io(&format!("mapping {size} bytes of shared memory {name:?}"), e))
}

/// A handle travels in a process argument as its fd (duplicated into the
/// argument's side table), its name and its size; the receiver maps it,
/// and holds an opener's handle: never tracked.
impl Serialize for SharedMemory {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        (FdOut::<Self>::new(self.fd.as_fd()), &self.name, self.size() as u64).serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for SharedMemory {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let (fd, name, size): (FdIn<Self>, Option<String>, u64) = Deserialize::deserialize(deserializer)?;
        SharedMemory::attach(fd.into_fd(), name, size).map_err(D::Error::custom)
    }
}

impl FdHandle for SharedMemory {
    const WHAT: &'static str = "a SharedMemory";
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn size_zero_is_refused_before_anything_is_made() {
        for err in [
            SharedMemory::create(None, 0).unwrap_err(),
            SharedMemory::create_untracked(Some("never-made"), 0).unwrap_err(),
            SharedMemory::anonymous(0).unwrap_err(),
        ] {
            assert_eq!(err.kind(), ErrorKind::InvalidInput);
            assert!(err.to_string().contains("at least 1 byte"), "{err}");
        }
    }

    #[test]
    fn a_handle_refuses_to_travel_outside_a_process_argument() {
        let shm = SharedMemory::anonymous(8).unwrap();
        let err = crate::codec::encode(&shm, "a message").unwrap_err();
        assert!(err.to_string().contains("only inside the argument"), "{err}");
        let encoded = crate::codec::encode_with_fds(&shm, "an argument").unwrap();
        assert_eq!(encoded.fds.len(), 1);
        let back: SharedMemory =
            crate::codec::with_incoming(encoded.fds, || crate::codec::decode(&encoded.bytes, "an argument")).unwrap();
        assert_eq!((back.size(), back.name()), (8, None));
    }
}
