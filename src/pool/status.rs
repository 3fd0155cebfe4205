//! A pool worker's status page: how the parent knows, at the moment a
//! worker dies, which task it was running, which it finished, and which it
//! never started.
//!
//! One memfd per worker, made by the parent and passed to the worker with
//! its configuration. Page 0 is the header below, which both map; from page
//! 1 on, the worker's result buffer ([`ShmVec`]): the worker encodes its
//! results there, and sends them from there. The parent reads that part
//! only after the worker has died (`pread`), to recover what the worker
//! finished but had not sent.
//!
//! Every byte the worker ever sends is numbered (its *global offset* in the
//! stream: the `READY` frame is at 0). The buffer holds the bytes from
//! `BASE` on; the parent knows how many it has taken as whole frames, so
//! after a death it reads the buffer from there: whole frames up to
//! `COMMITTED`, then the chunk that was running, up to `DONE_END`.
//!
//! | word | written by | meaning |
//! |---|---|---|
//! | `CHUNK` | worker | the sequence number of the chunk it is in (chunks are numbered per worker, in the order sent) |
//! | `PROGRESS` | worker | `pos << 1 \| running`: the item at `pos` runs, or (`running` 0) every item before `pos` is done |
//! | `FRAME` | worker | where that chunk's `RESULT` frame starts |
//! | `DONE_END`, `FAILED` | worker | where the last finished item's outcome ends; how many failed |
//! | `BASE`, `COMMITTED` | worker | the first byte in the buffer; the end of the last whole frame |
//! | `ITEMS` | worker | items this worker finished before its current chunk, for `stats()` (those of the chunk are in `PROGRESS`) |
//! | slots | both | one per chunk sent (`seq % SLOTS`): queued, started (worker) or cancelled (parent), by compare-and-swap |
//!
//! A position `pos` is `seq << 32 | item`. The worker stores each word
//! with one plain store (no syscall): `PROGRESS` before an item and after
//! it, in an order such that a death at any point leaves the words telling
//! the truth. The parent reads them after the death, when nothing changes
//! any more, or live for `stats()` and timeouts, where a stale value only
//! delays a decision.
//!
//! Two handshakes settle a race with a single winner:
//! - **Cancel until start.** A chunk's slot goes from queued to started (by
//!   the worker, before its first item) or to cancelled (by the parent),
//!   by compare-and-swap: exactly one of them wins.
//! - **Stop one item.** To kill the worker running the item at `pos` (a
//!   timeout, or `AsyncResult::kill`) without killing the next one by
//!   mistake, the parent first freezes the worker (`SIGSTOP`, then waits
//!   until the kernel says it is stopped) and reads `PROGRESS`, which
//!   cannot change any more: if `pos` still runs, it kills the worker
//!   (only `pos` fails, and nothing after it has started); if not, it lets
//!   the worker go on (`SIGCONT`). The worker's side costs nothing: no
//!   fence, no flag to look at per item (a stopped process's stores are all
//!   visible: it entered the kernel to stop).

use std::io;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::codec::{self, Sink};
use crate::error::{Error, Result};
use crate::runtime::registry;
use crate::sys::{self, AsFd, AsRawFd, Mapping, OwnedFd, ShmVec};

/// Window slots: more than a worker's largest window, so that the chunks
/// in flight to one worker never share a slot.
pub(crate) const SLOTS: u64 = 128;

const OFF_MAGIC: usize = 0;
const OFF_CHUNK: usize = 8;
const OFF_PROGRESS: usize = 16;
const OFF_FRAME: usize = 24;
const OFF_DONE_END: usize = 32;
const OFF_FAILED: usize = 40;
const OFF_BASE: usize = 48;
const OFF_COMMITTED: usize = 56;
const OFF_ITEMS: usize = 80;
/// The worker's memory limit in bytes (0: none), and the peak it had when
/// an allocation was refused (0: none was).
const OFF_MEM_LIMIT: usize = 88;
const OFF_OOM_PEAK: usize = 96;
const OFF_SLOTS: usize = 128;

const MAGIC: u64 = 0x6d70_7374_6174_0001;

/// Slot states, in the low 2 bits; the chunk's sequence number above them.
const QUEUED: u64 = 0;
const STARTED: u64 = 1;
const CANCELLED: u64 = 2;

/// The first buffer: enough for a batch of small results without growing.
const FIRST_BUFFER: usize = 256 << 10;
/// An empty buffer larger than this shrinks back to [`FIRST_BUFFER`], to
/// give the memory of a large result back.
const KEEP_BUFFER: usize = 8 << 20;

/// A position: chunk `seq`, item `item` of it.
pub(crate) fn pos(seq: u64, item: u32) -> u64 {
    (seq << 32) | u64::from(item)
}

/// What `PROGRESS` says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Progress(u64);

impl Progress {
    /// The position it is about.
    pub(crate) fn pos(self) -> u64 {
        self.0 >> 1
    }

    /// Whether the item at [`pos`](Progress::pos) is running (else every
    /// item before it is done, and it has not started).
    pub(crate) fn running(self) -> bool {
        self.0 & 1 == 1
    }

    pub(crate) fn seq(self) -> u64 {
        self.pos() >> 32
    }

    pub(crate) fn item(self) -> u32 {
        self.pos() as u32
    }
}

/// The header words, read at one moment.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Snapshot {
    pub(crate) chunk: u64,
    pub(crate) progress: Progress,
    pub(crate) frame: u64,
    pub(crate) done_end: u64,
    pub(crate) failed: u32,
    pub(crate) base: u64,
    pub(crate) committed: u64,
    pub(crate) items: u64,
}

fn header_mapping(fd: &OwnedFd) -> io::Result<Mapping> {
    Mapping::new(fd.as_fd(), 0, sys::page_size())
}

fn slot_offset(seq: u64) -> usize {
    OFF_SLOTS + 8 * (seq % SLOTS) as usize
}

/// The parent's side of one worker's page.
#[derive(Debug)]
pub(crate) struct StatusPage {
    fd: OwnedFd,
    header: Mapping,
}

/// Pages of workers that have ended, with the pid of the process that made
/// them: the next worker of any pool in this process takes one instead of
/// making a page (a memfd, a mapping and a page fault: about 20 µs).
static SPARE_PAGES: Mutex<Vec<(u32, StatusPage)>> = Mutex::new(Vec::new());

/// Spare pages kept at most.
const MAX_SPARE_PAGES: usize = 16;

impl StatusPage {
    pub(crate) fn new() -> Result<StatusPage> {
        if let Some(page) = Self::spare() {
            return Ok(page);
        }
        let what = "creating a pool worker's status page";
        // Sized for the worker's first buffer too, so that the worker does
        // not grow it before its first result. Forked children (other
        // workers, other processes) do not keep it: it is internal.
        let len = (sys::page_size() + FIRST_BUFFER) as u64;
        let fd = {
            let _window = registry::fd_window();
            let fd = sys::memfd("multiproc-pool-worker", len).map_err(|e| Error::io(what, e))?;
            registry::lock().add_internal(fd.as_raw_fd());
            fd
        };
        let header = header_mapping(&fd).map_err(|e| Error::io(what, e))?;
        header.u64_at(OFF_MAGIC).store(MAGIC, Ordering::Release);
        Ok(StatusPage { fd, header })
    }

    /// A spare page made by this process, if there is one.
    fn spare() -> Option<StatusPage> {
        let me = std::process::id();
        // Never wait for the lock: a fork child may have inherited it held
        // by a thread it does not have (a fresh page does then).
        let mut spares = match SPARE_PAGES.try_lock() {
            Ok(s) => s,
            Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner(),
            Err(std::sync::TryLockError::WouldBlock) => return None,
        };
        while let Some((owner, page)) = spares.pop() {
            if owner == me {
                return Some(page);
            }
            // Inherited through a fork: this child closed its fd (an
            // internal one) already, so it must not be closed again.
            std::mem::forget(page);
        }
        None
    }

    /// Keeps the page of a worker that has ended (nothing writes to it any
    /// more) for the next worker, as good as new: its header zeroed, its
    /// buffer shrunk back to the first size (the rest of its memory goes
    /// back to the system).
    pub(crate) fn recycle(self) {
        let first = (sys::page_size() + FIRST_BUFFER) as u64;
        let sized = match sys::file_len(self.fd.as_fd()) {
            Ok(len) if len == first => true,
            Ok(_) => sys::set_len(self.fd.as_fd(), first).is_ok(),
            Err(_) => false,
        };
        if !sized {
            return;
        }
        for off in (OFF_MAGIC + 8..OFF_SLOTS + 8 * SLOTS as usize).step_by(8) {
            self.header.u64_at(off).store(0, Ordering::Relaxed);
        }
        let mut spares = match SPARE_PAGES.try_lock() {
            Ok(s) => s,
            Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner(),
            // Busy (or held in a fork parent's thread): the page just goes.
            Err(std::sync::TryLockError::WouldBlock) => return,
        };
        if spares.len() < MAX_SPARE_PAGES {
            spares.push((std::process::id(), self));
        }
    }

    /// The page's fd, for the worker's configuration.
    pub(crate) fn for_worker(&self) -> Result<PageFd> {
        let fd = self.fd.try_clone().map_err(|e| Error::io("passing a status page to a pool worker", e))?;
        Ok(PageFd(fd))
    }

    pub(crate) fn snapshot(&self) -> Snapshot {
        let h = &self.header;
        let word = |off: usize| h.u64_at(off).load(Ordering::Acquire);
        let chunk = word(OFF_CHUNK);
        let progress = Progress(word(OFF_PROGRESS));
        let in_chunk = if progress.seq() == chunk { u64::from(progress.item()) } else { 0 };
        Snapshot {
            chunk,
            progress,
            frame: word(OFF_FRAME),
            done_end: word(OFF_DONE_END),
            failed: word(OFF_FAILED) as u32,
            base: word(OFF_BASE),
            committed: word(OFF_COMMITTED),
            items: word(OFF_ITEMS) + in_chunk,
        }
    }

    /// The worker's memory limit, if it has one, and the peak it had when
    /// the limit refused an allocation (0 if none was refused).
    pub(crate) fn memory_note(&self) -> Option<(u64, u64)> {
        let limit = self.header.u64_at(OFF_MEM_LIMIT).load(Ordering::Acquire);
        (limit > 0).then(|| (limit, self.header.u64_at(OFF_OOM_PEAK).load(Ordering::Acquire)))
    }

    pub(crate) fn progress(&self) -> Progress {
        Progress(self.header.u64_at(OFF_PROGRESS).load(Ordering::Acquire))
    }

    /// Marks chunk `seq` as queued for the worker, before it is sent.
    pub(crate) fn queue(&self, seq: u64) {
        self.header.u64_at(slot_offset(seq)).store(seq << 2 | QUEUED, Ordering::Release);
    }

    /// Cancels chunk `seq` if the worker has not started it; whether it did.
    pub(crate) fn cancel(&self, seq: u64) -> bool {
        self.header
            .u64_at(slot_offset(seq))
            .compare_exchange(seq << 2 | QUEUED, seq << 2 | CANCELLED, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    /// The bytes the worker left in its buffer between the global offsets
    /// `from` and `to`, the buffer starting at `base`: after its death.
    pub(crate) fn left_behind(&self, base: u64, from: u64, to: u64) -> io::Result<Vec<u8>> {
        if from < base || to < from {
            return Err(io::Error::other(format!(
                "a dead pool worker's buffer holds {base}.. and {from}..{to} was asked"
            )));
        }
        let at = sys::page_size() as u64 + (from - base);
        let len = usize::try_from(to - from).map_err(|_| io::Error::other("a result larger than memory"))?;
        let bytes = sys::read_file_at(self.fd.as_fd(), at, len)?;
        if bytes.len() < len {
            return Err(io::Error::other("a dead pool worker's buffer is shorter than its status page says"));
        }
        Ok(bytes)
    }
}

impl Drop for StatusPage {
    fn drop(&mut self) {
        registry::lock().remove_internal(self.fd.as_raw_fd());
    }
}

codec::fd_newtype!(
    /// A status page's fd on its way to the worker, inside its configuration.
    PageFd,
    "a pool worker's status page"
);

/// The worker's side of its page: its result buffer, and the log of what
/// it does, which it keeps in the header.
#[derive(Debug)]
pub(crate) struct WorkerPage {
    /// Where results are encoded and sent from.
    pub(crate) out: ShmVec,
    pub(crate) log: ItemLog,
    /// The page's fd (`out` owns it), registered as internal.
    fd: sys::RawFd,
}

impl Drop for WorkerPage {
    fn drop(&mut self) {
        registry::lock().remove_internal(self.fd);
    }
}

/// The header as the worker writes it, and what it remembers of the
/// current chunk.
#[derive(Debug)]
pub(crate) struct ItemLog {
    header: Mapping,
    /// The global offset of `out`'s first byte.
    base: u64,
    seq: u64,
    done: u32,
    failed: u32,
    items: u64,
}

impl WorkerPage {
    pub(crate) fn attach(fd: PageFd) -> io::Result<WorkerPage> {
        let header = header_mapping(&fd.0)?;
        if header.u64_at(OFF_MAGIC).load(Ordering::Acquire) != MAGIC {
            return Err(io::Error::other("the pool's status page is not one"));
        }
        // A task that forks must not hand its worker's page to the child.
        let raw = fd.0.as_raw_fd();
        let out = ShmVec::new(fd.0, sys::page_size() as u64, FIRST_BUFFER)?;
        registry::lock().add_internal(raw);
        let log = ItemLog { header, base: 0, seq: 0, done: 0, failed: 0, items: 0 };
        Ok(WorkerPage { out, log, fd: raw })
    }

    /// Notes the worker's memory limit; returns the word where its abort
    /// handler notes a refused allocation.
    pub(crate) fn memory_limit(&self, limit: u64) -> &std::sync::atomic::AtomicU64 {
        self.log.word(OFF_MEM_LIMIT).store(limit, Ordering::Release);
        self.log.word(OFF_OOM_PEAK)
    }

    /// Claims chunk `seq` before running it: false if the parent cancelled
    /// it (it must then be skipped).
    pub(crate) fn claim(&self, seq: u64) -> bool {
        let slot = self.log.word(slot_offset(seq));
        match slot.compare_exchange(seq << 2 | QUEUED, seq << 2 | STARTED, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => true,
            Err(now) => now != seq << 2 | CANCELLED,
        }
    }

    /// How many bytes wait in `out` to be sent.
    pub(crate) fn held(&self) -> usize {
        self.out.len()
    }

    /// Every frame in `out` is whole: the parent may take them all.
    pub(crate) fn commit(&self) {
        self.log.word(OFF_COMMITTED).store(self.log.end(self.out.len()), Ordering::Release);
    }

    /// Sends every byte in `out` with `send`, then empties it.
    pub(crate) fn flush(&mut self, send: impl FnOnce(&[u8]) -> io::Result<()>) -> io::Result<()> {
        if self.out.len() == 0 {
            return Ok(());
        }
        send(self.out.as_slice())?;
        self.log.base = self.log.end(self.out.len());
        self.log.word(OFF_BASE).store(self.log.base, Ordering::Release);
        self.out.clear();
        if self.out.capacity() > KEEP_BUFFER {
            self.out.shrink_when_empty(FIRST_BUFFER);
        }
        Ok(())
    }
}

/// The header's words before the slots.
const HEADER_WORDS: usize = OFF_SLOTS / 8;

impl ItemLog {
    #[inline]
    fn word(&self, off: usize) -> &AtomicU64 {
        self.header.u64_at(off)
    }

    /// The header's words before the slots, checked once (for the per-item
    /// calls), to index with `OFF_* / 8`.
    #[inline]
    fn words(&self) -> &[AtomicU64; HEADER_WORDS] {
        self.header.u64_array::<HEADER_WORDS>(0)
    }

    /// The global offset of byte `at` of `out`.
    fn end(&self, at: usize) -> u64 {
        self.base + at as u64
    }

    /// Begins chunk `seq`, whose `RESULT` frame starts at `frame_start` in
    /// `out` and whose items' outcomes will start at `items_start`.
    pub(crate) fn begin_chunk(&mut self, seq: u64, frame_start: usize, items_start: usize) {
        self.seq = seq;
        self.items += u64::from(self.done);
        self.done = 0;
        self.failed = 0;
        self.word(OFF_ITEMS).store(self.items, Ordering::Relaxed);
        self.word(OFF_FRAME).store(self.end(frame_start), Ordering::Relaxed);
        self.word(OFF_DONE_END).store(self.end(items_start), Ordering::Relaxed);
        self.word(OFF_FAILED).store(0, Ordering::Relaxed);
        self.word(OFF_PROGRESS).store(pos(seq, 0) << 1, Ordering::Release);
        self.word(OFF_CHUNK).store(seq, Ordering::Release);
    }

    /// Before item `item` of the current chunk: says it runs.
    #[inline]
    pub(crate) fn start_item(&self, item: u32) {
        self.words()[OFF_PROGRESS / 8].store(pos(self.seq, item) << 1 | 1, Ordering::Release);
    }

    /// After item `item` of the current chunk, whose outcome ends at
    /// `out_len` in `out`.
    #[inline]
    pub(crate) fn finish_item(&mut self, item: u32, failed: bool, out_len: usize) {
        self.end_item(item, failed, out_len);
        self.words()[OFF_PROGRESS / 8].store(pos(self.seq, item + 1) << 1, Ordering::Release);
    }

    /// Notes where item `item`'s outcome ends, and whether it failed; its
    /// end is published by the next store of `PROGRESS`.
    #[inline]
    fn end_item(&mut self, item: u32, failed: bool, out_len: usize) {
        self.done = item + 1;
        self.failed += u32::from(failed);
        let words = self.words();
        words[OFF_DONE_END / 8].store(self.end(out_len), Ordering::Relaxed);
        if failed {
            words[OFF_FAILED / 8].store(u64::from(self.failed), Ordering::Relaxed);
        }
    }

    /// After item `item`, whose outcome ends at `out_len`, and before the
    /// next one: [`finish_item`](ItemLog::finish_item) then
    /// [`start_item`](ItemLog::start_item) in one entry (the next item's
    /// start says that every item before it is done).
    #[inline]
    pub(crate) fn next_item(&mut self, item: u32, failed: bool, out_len: usize) {
        self.end_item(item, failed, out_len);
        self.start_item(item + 1);
    }

    /// How many items of the current chunk finished, and how many of them
    /// failed.
    pub(crate) fn done(&self) -> (u32, u32) {
        (self.done, self.failed)
    }
}

const _: () = assert!(OFF_SLOTS + 8 * SLOTS as usize <= 4096 && OFF_ITEMS < OFF_SLOTS);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_recycled_page_comes_back_as_new_and_shrunk() {
        let page = StatusPage::new().unwrap();
        let id = sys::file_id(page.fd.as_fd()).unwrap();
        page.header.u64_at(OFF_PROGRESS).store(pos(7, 3) << 1 | 1, Ordering::Relaxed);
        page.queue(5);
        sys::set_len(page.fd.as_fd(), 64 << 20).unwrap();
        page.recycle();
        // Another test may take it first; then this one is not about it.
        let again = StatusPage::new().unwrap();
        if sys::file_id(again.fd.as_fd()).unwrap() == id {
            assert_eq!(again.progress().pos(), 0);
            assert!(!again.progress().running());
            assert!(!again.cancel(5), "slot 5 is empty again");
            assert_eq!(sys::file_len(again.fd.as_fd()).unwrap(), (sys::page_size() + FIRST_BUFFER) as u64);
            assert_eq!(again.header.u64_at(OFF_MAGIC).load(Ordering::Relaxed), MAGIC);
        }
    }
}
