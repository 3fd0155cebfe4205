//! The shared-memory ring under every queue: a memfd that all the queue's
//! processes map, holding a robust mutex, futex words, and a byte ring of
//! length-prefixed messages that grows when a message does not fit.
//!
//! Crash safety: the ring's state (capacity, head, tail, bytes used,
//! message count, unfinished tasks) lives in two copies, and a change is
//! written to the copy not in use and then published by flipping one
//! 64-bit word. A process killed while it holds the lock has published
//! either all of its change or none of it; the robust mutex tells the next
//! locker, who carries on from the published copy. A message is therefore
//! whole or absent, and nothing stays locked.
//!
//! Waiting: a getter that finds the ring empty looks again for a few tens
//! of microseconds (yielding the CPU), then sleeps on the `put_seq` futex,
//! which every put bumps; putters of a full bounded queue sleep on
//! `get_seq`, and `join` on `done_seq`. Wake-ups are only sent when
//! someone sleeps.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::error::{Error, ErrorKind, Result};
use crate::synchronize;
use crate::sys::{self, AsFd, GuardedMapping, Locked, Mapping, OwnedFd};

/// Bytes before the ring in the file (one page).
const HEADER: usize = 4096;
/// The ring's first capacity; it doubles as messages need.
const INITIAL_CAP: u64 = 64 * 1024;

const MAGIC: u64 = u64::from_le_bytes(*b"mpqueue1");

// Header offsets.
const OFF_MAGIC: usize = 0;
const OFF_MAXSIZE: usize = 8;
const OFF_CUR: usize = 16;
const OFF_PUT_SEQ: usize = 24;
const OFF_GET_SEQ: usize = 28;
const OFF_GETTERS: usize = 32;
const OFF_PUTTERS: usize = 36;
const OFF_DONE_SEQ: usize = 40;
const OFF_JOINERS: usize = 44;
const OFF_WATCHERS: usize = 48;
const OFF_COUNT_HINT: usize = 56;
const OFF_MUTEX: usize = 64;
const OFF_STATE: [usize; 2] = [256, 320];

// Record kinds.
const DATA: u32 = 1;
const PAD: u32 = 2;
const RECORD_HEAD: u64 = 8;

/// How long a getter or putter looks again before it sleeps.
const SPIN: Duration = Duration::from_micros(40);
/// How many times the lock is tried before sleeping on it.
const LOCK_TRIES: usize = 200;

/// The published state of the ring.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct State {
    cap: u64,
    head: u64,
    tail: u64,
    used: u64,
    count: u64,
    unfinished: u64,
}

/// The ring, as one process sees it.
#[derive(Debug)]
pub(crate) struct Ring {
    memfd: OwnedFd,
    event: OwnedFd,
    header: Mapping,
    /// The mapping of the ring bytes, resized when another process grew
    /// the ring; taken before the shared mutex.
    local: Mutex<Option<GuardedMapping>>,
    closed: AtomicBool,
}

/// The shared mutex, held; unlocks on drop.
struct Guard<'a> {
    ring: &'a Ring,
    local: MutexGuard<'a, Option<GuardedMapping>>,
    st: State,
}

impl Drop for Guard<'_> {
    fn drop(&mut self) {
        self.ring.header.mutex_at(OFF_MUTEX).unlock();
    }
}

fn round8(n: u64) -> u64 {
    n.div_ceil(8) * 8
}

fn io(what: &str) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |e| Error::io(what, e)
}

impl Ring {
    /// A new, empty ring; `maxsize` 0 is unbounded.
    pub(crate) fn new(maxsize: u64) -> Result<Ring> {
        let memfd = sys::memfd("multiproc-queue", HEADER as u64 + INITIAL_CAP).map_err(io("creating a queue"))?;
        let event = sys::eventfd().map_err(io("creating a queue"))?;
        let header = Mapping::new(memfd.as_fd(), 0, HEADER).map_err(io("mapping a queue"))?;
        header.mutex_at(OFF_MUTEX).init().map_err(io("creating a queue's lock"))?;
        header.u64_at(OFF_MAXSIZE).store(maxsize, Ordering::Relaxed);
        let st = State { cap: INITIAL_CAP, head: 0, tail: 0, used: 0, count: 0, unfinished: 0 };
        write_state(&header, 0, &st);
        header.u64_at(OFF_CUR).store(0, Ordering::Relaxed);
        header.u64_at(OFF_MAGIC).store(MAGIC, Ordering::Release);
        Ring::attach(memfd, event)
    }

    /// Maps a ring that another process created.
    pub(crate) fn attach(memfd: OwnedFd, event: OwnedFd) -> Result<Ring> {
        let header = Mapping::new(memfd.as_fd(), 0, HEADER).map_err(io("mapping a queue"))?;
        if header.u64_at(OFF_MAGIC).load(Ordering::Acquire) != MAGIC {
            return Err(Error::new(ErrorKind::Protocol, "a queue arrived whose memory is not a multiproc queue"));
        }
        Ok(Ring { memfd, event, header, local: Mutex::new(None), closed: AtomicBool::new(false) })
    }

    pub(crate) fn memfd(&self) -> &OwnedFd {
        &self.memfd
    }

    pub(crate) fn event(&self) -> &OwnedFd {
        &self.event
    }

    pub(crate) fn maxsize(&self) -> u64 {
        self.header.u64_at(OFF_MAXSIZE).load(Ordering::Relaxed)
    }

    /// The number of messages, as last published (no lock taken).
    pub(crate) fn count_hint(&self) -> u64 {
        self.header.u64_at(OFF_COUNT_HINT).load(Ordering::Acquire)
    }

    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::Release);
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    fn word(&self, off: usize) -> &AtomicU32 {
        self.header.u32_at(off)
    }

    /// Takes the in-process lock, then the shared one, by `deadline`
    /// (`None`: no deadline); `Ok(None)` if the deadline passed first.
    fn lock(&self, deadline: Option<Instant>) -> Result<Option<Guard<'_>>> {
        let local = match deadline {
            None => self.local.lock().unwrap_or_else(|p| p.into_inner()),
            Some(d) => loop {
                match self.local.try_lock() {
                    Ok(g) => break g,
                    Err(std::sync::TryLockError::Poisoned(p)) => break p.into_inner(),
                    Err(std::sync::TryLockError::WouldBlock) => {
                        if Instant::now() >= d {
                            return Ok(None);
                        }
                        std::thread::yield_now();
                    }
                }
            },
        };
        let m = self.header.mutex_at(OFF_MUTEX);
        // Holders keep it for a copy's time: try for a moment before
        // sleeping in the kernel, which would cost both sides a syscall.
        let mut got = None;
        for _ in 0..LOCK_TRIES {
            got = m.lock(Some(Instant::now())).map_err(io("locking a queue"))?;
            if got.is_some() {
                break;
            }
            std::hint::spin_loop();
        }
        let got = match got {
            Some(how) => Some(how),
            None => m.lock(deadline).map_err(io("locking a queue"))?,
        };
        match got {
            None => return Ok(None),
            Some(Locked::Clean) => {}
            Some(Locked::OwnerDied) => {
                // The published state is whole; the dead holder's half-made
                // change was never published. Only the wait() signal may
                // lag behind it.
                m.make_consistent().map_err(io("recovering a queue's lock"))?;
                let st = read_state(&self.header);
                self.header.u64_at(OFF_COUNT_HINT).store(st.count, Ordering::Release);
                self.signal_watchers(st.count > 0, true);
                // The dead holder may have changed the state without waking
                // anyone: every sleeper looks again.
                for seq in [OFF_PUT_SEQ, OFF_GET_SEQ, OFF_DONE_SEQ] {
                    self.word(seq).fetch_add(1, Ordering::SeqCst);
                    sys::futex_wake(self.word(seq), u32::MAX);
                }
            }
        }
        let st = read_state(&self.header);
        let mut guard = Guard { ring: self, local, st };
        guard.map_ring()?;
        Ok(Some(guard))
    }

    /// Appends one message; `Ok(false)` if `deadline` passed first (the
    /// queue stayed full, or its lock stayed busy).
    pub(crate) fn put(&self, payload: &[u8], deadline: Option<Instant>) -> Result<bool> {
        let need = RECORD_HEAD + round8(payload.len() as u64);
        let maxsize = self.maxsize();
        let mut spun = false;
        loop {
            let seq = self.word(OFF_GET_SEQ).load(Ordering::Acquire);
            {
                let Some(mut g) = self.lock(deadline)? else {
                    return Ok(false);
                };
                if maxsize == 0 || g.st.count < maxsize {
                    g.append(payload, need)?;
                    if g.st.count == 1 {
                        // Under the lock, so that watchers' signals follow
                        // the counts in order.
                        self.signal_watchers(true, false);
                    }
                    drop(g);
                    self.announce(OFF_PUT_SEQ, OFF_GETTERS);
                    return Ok(true);
                }
            }
            if !self.wait_for_change(OFF_GET_SEQ, OFF_PUTTERS, seq, deadline, &mut spun) {
                return Ok(false);
            }
        }
    }

    /// After a put or a get: bumps the `seq` word and wakes one waiter if
    /// `waiters` counts any.
    fn announce(&self, seq: usize, waiters: usize) {
        self.word(seq).fetch_add(1, Ordering::SeqCst);
        if self.word(waiters).load(Ordering::SeqCst) > 0 {
            sys::futex_wake(self.word(seq), 1);
        }
    }

    /// For tests of a producer killed in the middle of a put: takes the
    /// lock, writes half of the message, calls `inside`, and never returns.
    #[cfg(test)]
    pub(crate) fn put_half_then_hang(&self, payload: &[u8], inside: impl FnOnce()) -> ! {
        let need = RECORD_HEAD + round8(payload.len() as u64);
        let mut g = self.lock(None).ok().flatten().expect("the lock");
        let (at, _) = match g.place(need) {
            Some(p) => p,
            None => {
                g.grow(need).expect("room");
                g.place(need).expect("room after growing")
            }
        };
        g.write_record(at, DATA, payload.len() as u64, &payload[..payload.len() / 2]);
        inside();
        loop {
            std::thread::park();
        }
    }

    /// Takes the oldest message, handing its bytes to `decode` (the lock is
    /// still held, and the message already removed); `Ok(None)` if
    /// `deadline` passed first.
    pub(crate) fn get<R>(&self, deadline: Option<Instant>, decode: impl FnOnce(&[u8]) -> R) -> Result<Option<R>> {
        let mut spun = false;
        loop {
            let seq = self.word(OFF_PUT_SEQ).load(Ordering::Acquire);
            {
                let Some(mut g) = self.lock(deadline)? else {
                    return Ok(None);
                };
                if g.st.count > 0 {
                    let (at, len) = g.take()?;
                    if g.st.count == 0 {
                        self.signal_watchers(false, false);
                    }
                    let out = {
                        let ring = g.local.as_ref().expect("mapped by lock()");
                        decode(ring.bytes(at, len))
                    };
                    drop(g);
                    self.announce(OFF_GET_SEQ, OFF_PUTTERS);
                    return Ok(Some(out));
                }
            }
            if !self.wait_for_change(OFF_PUT_SEQ, OFF_GETTERS, seq, deadline, &mut spun) {
                return Ok(None);
            }
        }
    }

    /// Waits for the futex word at `seq_off` to move on from `seen`: a
    /// short spin the first time, then a sleep registered in `sleepers_off`.
    /// False once `deadline` has passed.
    fn wait_for_change(
        &self,
        seq_off: usize,
        sleepers_off: usize,
        seen: u32,
        deadline: Option<Instant>,
        spun: &mut bool,
    ) -> bool {
        let word = self.word(seq_off);
        let now = Instant::now();
        if deadline.is_some_and(|d| now >= d) {
            return false;
        }
        if !*spun {
            *spun = true;
            let until = deadline.map_or(now + SPIN, |d| d.min(now + SPIN));
            // Mostly a busy look, yielding now and then in case the process
            // we wait for shares this CPU.
            'spin: while Instant::now() < until {
                for _ in 0..128 {
                    if word.load(Ordering::Acquire) != seen {
                        break 'spin;
                    }
                    std::hint::spin_loop();
                }
                std::thread::yield_now();
            }
            return true;
        }
        let sleepers = self.word(sleepers_off);
        sleepers.fetch_add(1, Ordering::SeqCst);
        if word.load(Ordering::SeqCst) == seen {
            // At most RECHECK: a process that died between its change and
            // its wake-up (or after being woken) then costs the others that
            // much, not for ever.
            let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
            let _ = sys::futex_wait(word, seen, Some(synchronize::nap(left)));
        }
        sleepers.fetch_sub(1, Ordering::SeqCst);
        true
    }

    /// Marks one task done (JoinableQueue); an error if none is pending.
    pub(crate) fn task_done(&self) -> Result<()> {
        let mut g = self.lock(None)?.expect("no deadline");
        if g.st.unfinished == 0 {
            return Err(Error::new(
                ErrorKind::InvalidState,
                "task_done() was called more times than items were put into the queue; call it once per item got",
            ));
        }
        let mut st = g.st;
        st.unfinished -= 1;
        g.publish(st);
        let done = st.unfinished == 0;
        drop(g);
        if done {
            self.word(OFF_DONE_SEQ).fetch_add(1, Ordering::Release);
            if self.word(OFF_JOINERS).load(Ordering::Acquire) > 0 {
                sys::futex_wake(self.word(OFF_DONE_SEQ), u32::MAX);
            }
        }
        Ok(())
    }

    /// Waits until every item put has been marked done; false if
    /// `deadline` passed first.
    pub(crate) fn join(&self, deadline: Option<Instant>) -> Result<bool> {
        let mut spun = true;
        loop {
            let seq = self.word(OFF_DONE_SEQ).load(Ordering::Acquire);
            {
                let Some(g) = self.lock(deadline)? else {
                    return Ok(false);
                };
                if g.st.unfinished == 0 {
                    return Ok(true);
                }
            }
            if !self.wait_for_change(OFF_DONE_SEQ, OFF_JOINERS, seq, deadline, &mut spun) {
                return Ok(false);
            }
        }
    }

    /// Starts watching for messages (for `wait`): the event fd is kept
    /// readable while the queue holds messages, as long as someone
    /// watches.
    pub(crate) fn watch(&self) -> Result<()> {
        let g = self.lock(None)?.expect("no deadline");
        self.word(OFF_WATCHERS).fetch_add(1, Ordering::AcqRel);
        self.signal_watchers(g.st.count > 0, true);
        Ok(())
    }

    pub(crate) fn unwatch(&self) {
        self.word(OFF_WATCHERS).fetch_sub(1, Ordering::AcqRel);
    }

    /// Sets the event fd to "messages" or "none" if anyone watches; with
    /// `reset`, from any state (else only on a change of state).
    fn signal_watchers(&self, any: bool, reset: bool) {
        if self.word(OFF_WATCHERS).load(Ordering::Acquire) == 0 {
            return;
        }
        let fd = self.event.as_fd();
        if !any || reset {
            let mut sink = Vec::with_capacity(8);
            let _ = sys::read(fd, &mut sink, 8);
        }
        if any {
            let _ = sys::write_all(fd, &1u64.to_ne_bytes());
        }
    }
}

fn read_state(header: &Mapping) -> State {
    let cur = header.u64_at(OFF_CUR).load(Ordering::Acquire) as usize & 1;
    let base = OFF_STATE[cur];
    let f = |i: usize| header.u64_at(base + 8 * i).load(Ordering::Relaxed);
    State { cap: f(0), head: f(1), tail: f(2), used: f(3), count: f(4), unfinished: f(5) }
}

fn write_state(header: &Mapping, slot: usize, st: &State) {
    let base = OFF_STATE[slot];
    for (i, v) in [st.cap, st.head, st.tail, st.used, st.count, st.unfinished].into_iter().enumerate() {
        header.u64_at(base + 8 * i).store(v, Ordering::Relaxed);
    }
}

fn corrupt(what: &str) -> Error {
    Error::new(
        ErrorKind::Protocol,
        format!("the queue's shared memory is corrupt ({what}); something wrote over it. Create a new queue"),
    )
}

impl Guard<'_> {
    fn ring(&self) -> &GuardedMapping {
        self.local.as_ref().expect("mapped by lock()")
    }

    /// Maps (or remaps) the ring to the published capacity.
    fn map_ring(&mut self) -> Result<()> {
        let cap = usize::try_from(self.st.cap).map_err(|_| corrupt("capacity"))?;
        if self.st.cap < INITIAL_CAP || self.st.head >= self.st.cap || self.st.tail >= self.st.cap {
            return Err(corrupt("state"));
        }
        match self.local.as_mut() {
            Some(m) if m.len() == cap => Ok(()),
            Some(m) => m.resize(cap).map_err(io("remapping a grown queue")),
            None => {
                let m =
                    GuardedMapping::new(self.ring.memfd.as_fd(), HEADER as u64, cap).map_err(io("mapping a queue"))?;
                *self.local = Some(m);
                Ok(())
            }
        }
    }

    /// Publishes `st`: written to the copy not in use, then made current.
    fn publish(&mut self, st: State) {
        let header = &self.ring.header;
        let cur = header.u64_at(OFF_CUR).load(Ordering::Relaxed) & 1;
        write_state(header, (1 - cur) as usize, &st);
        header.u64_at(OFF_CUR).store(1 - cur, Ordering::Release);
        header.u64_at(OFF_COUNT_HINT).store(st.count, Ordering::Release);
        self.st = st;
    }

    fn write_record(&self, at: u64, kind: u32, len: u64, payload: &[u8]) {
        let mut head = [0u8; 8];
        head[..4].copy_from_slice(&(len as u32).to_le_bytes());
        head[4..].copy_from_slice(&kind.to_le_bytes());
        self.ring().write(at as usize, &head);
        if !payload.is_empty() {
            self.ring().write((at + RECORD_HEAD) as usize, payload);
        }
    }

    /// Where a record of `need` bytes goes: its offset, and a pad to write
    /// first (offset, size) when it wraps; `None` if it does not fit.
    fn place(&self, need: u64) -> Option<(u64, Option<(u64, u64)>)> {
        let st = &self.st;
        if st.used == 0 {
            return (need <= st.cap).then_some((0, None));
        }
        let wrapped = st.head <= st.tail;
        if wrapped {
            return (st.tail - st.head >= need).then_some((st.head, None));
        }
        if st.cap - st.head >= need {
            return Some((st.head, None));
        }
        (st.tail >= need).then_some((0, Some((st.head, st.cap - st.head))))
    }

    /// Writes a message and publishes it, growing the ring if needed.
    fn append(&mut self, payload: &[u8], need: u64) -> Result<()> {
        if payload.len() as u64 > u64::from(u32::MAX) {
            return Err(Error::new(
                ErrorKind::FrameTooLarge,
                "a queue message is above 4 GiB; split it, or pass it through a Pipe",
            ));
        }
        let (at, pad) = match self.place(need) {
            Some(p) => p,
            None => {
                self.grow(need)?;
                self.place(need).ok_or_else(|| corrupt("no room after growing"))?
            }
        };
        let mut st = self.st;
        if let Some((pad_at, size)) = pad {
            self.write_record(pad_at, PAD, size - RECORD_HEAD, &[]);
            st.used += size;
        }
        self.write_record(at, DATA, payload.len() as u64, payload);
        st.head = (at + need) % st.cap;
        st.used += need;
        st.count += 1;
        st.unfinished += 1;
        self.publish(st);
        Ok(())
    }

    /// Doubles the capacity until a record of `need` bytes fits, moving the
    /// wrapped part of the data to the new space after the old end.
    fn grow(&mut self, need: u64) -> Result<()> {
        let st = self.st;
        // Where the record will go once grown: after the data, which a
        // wrapped ring moves up to end at `old cap + head`.
        let end = match (st.used, st.head <= st.tail) {
            (0, _) => 0,
            (_, true) => st.cap + st.head,
            (_, false) => st.head,
        };
        let mut cap = st.cap * 2;
        while cap < end + need || cap - st.used < need + RECORD_HEAD {
            cap *= 2;
        }
        let total = HEADER as u64 + cap;
        sys::grow_file(self.ring.memfd.as_fd(), total)
            .map_err(|e| Error::io("growing a queue's shared memory (is /dev/shm or memory exhausted?)", e))?;
        let new_len = usize::try_from(cap).map_err(|_| corrupt("capacity"))?;
        self.local.as_mut().expect("mapped").resize(new_len).map_err(io("remapping a grown queue"))?;
        let mut next = st;
        next.cap = cap;
        if st.used > 0 && st.head <= st.tail {
            // Data runs [tail, old cap) then [0, head): move the second
            // part after the first, into space nobody uses yet.
            self.ring().copy_within(0, st.cap as usize, st.head as usize);
            next.head = st.cap + st.head;
        }
        self.publish(next);
        Ok(())
    }

    /// Removes the oldest message and publishes that; its offset and length
    /// (its bytes stay intact while the lock is held).
    fn take(&mut self) -> Result<(usize, usize)> {
        let mut st = self.st;
        loop {
            if st.tail + RECORD_HEAD > st.cap {
                return Err(corrupt("a record header past the end"));
            }
            let head = self.ring().bytes(st.tail as usize, 8);
            let len = u64::from(u32::from_le_bytes(head[..4].try_into().expect("4 bytes")));
            let kind = u32::from_le_bytes(head[4..].try_into().expect("4 bytes"));
            let size = RECORD_HEAD + round8(len);
            if st.tail + size > st.cap || size > st.used {
                return Err(corrupt("a record longer than the ring"));
            }
            match kind {
                PAD => {
                    st.used -= size;
                    st.tail = (st.tail + size) % st.cap;
                }
                DATA => {
                    let at = (st.tail + RECORD_HEAD) as usize;
                    st.used -= size;
                    st.tail = (st.tail + size) % st.cap;
                    st.count -= 1;
                    if st.count == 0 {
                        st.head = 0;
                        st.tail = 0;
                        st.used = 0;
                    }
                    self.publish(st);
                    return Ok((at, len as usize));
                }
                _ => return Err(corrupt("an unknown record kind")),
            }
        }
    }
}
