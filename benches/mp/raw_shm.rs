//! The shared-memory floors, measured in the same run: what two or three
//! processes sharing one mapping can do with the simplest correct code,
//! under the workloads that move data through shared memory or wait on a
//! futex.
//!
//! - `queue_small`: a single-producer, single-consumer ring of 64-byte
//!   slots between a fork child and the parent, each message published on
//!   its own (one release of the head per message, a wake-up only when the
//!   other side sleeps).
//! - `pool_map_small`, `pool_imap_unordered`, `executor_map`: two warm
//!   fork workers; the parent writes the inputs into the mapping, the
//!   workers claim chunks of the same size as the pool's by
//!   compare-and-swap, square them into the mapping, and the parent copies
//!   the results into a `Vec<u64>`: the same bytes moved between processes,
//!   with nothing else.
//! - `apply_async_latency`: one argument and one result word, a request and
//!   a response counter, each side spinning a while and then sleeping on a
//!   futex.
//! - `shared_value`: two fork children each take a futex mutex (the
//!   three-state mutex of Drepper's "Futexes are tricky") 100,000 times and
//!   add one to a word under it.
//!
//! `unsafe_code` is allowed in this file for the mapping and for `fork`
//! alone; the children run nothing but atomics, arithmetic and futex calls
//! (no allocation, no lock another thread could hold), then `_exit`.

#![allow(unsafe_code)]

use std::hint::spin_loop;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rustix::thread::futex;
use serde_json::{Value, json};

use crate::raw::emit_raw;
use crate::report::{Unit, repeat};

/// How many times a waiter checks its word before it sleeps: about 50 µs
/// on this machine, long enough to catch a reply that is on its way.
const SPIN: u32 = 1 << 11;

/// "Every sleeper" for `FUTEX_WAKE`: the kernel reads the count as an
/// `int`, so `u32::MAX` (-1) would wake one at most.
const WAKE_ALL: u32 = i32::MAX as u32;

/// `AtomicU32`s in a 64-byte cache line: words that two processes write
/// are kept this far apart.
const LINE: usize = 16;

/// Words that are valid when all their bytes are zero: what an anonymous
/// mapping starts as.
trait ZeroWord {}
impl ZeroWord for AtomicU32 {}
impl ZeroWord for AtomicU64 {}

/// `len` words in a `MAP_SHARED` anonymous mapping: a fork child sees the
/// same words as its parent.
struct Shared<T: ZeroWord> {
    ptr: *mut T,
    len: usize,
}

impl<T: ZeroWord> Shared<T> {
    fn new(len: usize) -> Shared<T> {
        use rustix::mm::{MapFlags, ProtFlags, mmap_anonymous};
        let bytes = (len * size_of::<T>()).max(1);
        // SAFETY: a fresh mapping at an address of the kernel's choosing
        // overlaps nothing of ours.
        let ptr = unsafe {
            mmap_anonymous(std::ptr::null_mut(), bytes, ProtFlags::READ | ProtFlags::WRITE, MapFlags::SHARED)
        }
        .expect("mmap of the shared floor's words");
        Shared { ptr: ptr.cast(), len }
    }
}

impl<T: ZeroWord> std::ops::Deref for Shared<T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        // SAFETY: the mapping holds `len` words, zero-filled by the kernel,
        // and zero is a valid value of every `ZeroWord`; it lives until
        // `drop`; the words are atomics, so sharing them is sound.
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }
}

impl<T: ZeroWord> Drop for Shared<T> {
    fn drop(&mut self) {
        // SAFETY: the mapping is ours and no reference into it outlives
        // `self`.
        let _ = unsafe { rustix::mm::munmap(self.ptr.cast(), (self.len * size_of::<T>()).max(1)) };
    }
}

/// Forks a child that runs `body` and `_exit`s (1 if `body` panicked, so
/// that a failure never unwinds into the parent's code in the child);
/// returns its pid.
fn fork_child(body: impl FnOnce()) -> libc::pid_t {
    // SAFETY: the child runs only `body`, which in this file is atomics,
    // arithmetic and futex calls on an inherited mapping, then `_exit`:
    // nothing that another thread of the parent could have left locked.
    match unsafe { libc::fork() } {
        -1 => panic!("fork: {}", std::io::Error::last_os_error()),
        0 => {
            let code = i32::from(std::panic::catch_unwind(std::panic::AssertUnwindSafe(body)).is_err());
            // SAFETY: `_exit` has no preconditions.
            unsafe { libc::_exit(code) }
        }
        pid => pid,
    }
}

fn reap(pid: libc::pid_t) {
    let pid = rustix::process::Pid::from_raw(pid).expect("a child's pid");
    let status = rustix::process::waitpid(Some(pid), rustix::process::WaitOptions::empty())
        .expect("waitpid")
        .expect("the child's status");
    assert_eq!(status.1.exit_status(), Some(0), "a floor's child failed");
}

/// Adds `n` to the event counter `word` and wakes its sleepers, if any are
/// counted in `sleepers`.
fn publish_n(word: &AtomicU32, n: u32, sleepers: &AtomicU32) {
    word.fetch_add(n, Ordering::SeqCst);
    if sleepers.load(Ordering::SeqCst) != 0 {
        let _ = futex::wake(word, futex::Flags::empty(), WAKE_ALL);
    }
}

/// Adds one to the event counter `word` and wakes its sleepers, if any.
fn publish(word: &AtomicU32, sleepers: &AtomicU32) {
    publish_n(word, 1, sleepers);
}

/// Waits until `word` is no longer `seen`: spins [`SPIN`] times, then
/// counts itself in `sleepers` and sleeps on the futex. A publisher either
/// sees the count (and wakes it, or its wait finds the word changed) or
/// published before the count, which the check after counting sees.
/// Returns the new value.
fn await_change(word: &AtomicU32, seen: u32, sleepers: &AtomicU32) -> u32 {
    for _ in 0..SPIN {
        let now = word.load(Ordering::Acquire);
        if now != seen {
            return now;
        }
        spin_loop();
    }
    sleepers.fetch_add(1, Ordering::SeqCst);
    let mut now = word.load(Ordering::SeqCst);
    while now == seen {
        let _ = futex::wait(word, futex::Flags::empty(), seen, None);
        now = word.load(Ordering::SeqCst);
    }
    sleepers.fetch_sub(1, Ordering::SeqCst);
    now
}

/// Waits until `word` reaches at least `target` (a counter that only grows).
fn await_at_least(word: &AtomicU32, target: u32, sleepers: &AtomicU32) {
    let mut now = word.load(Ordering::Acquire);
    while now.wrapping_sub(target) > u32::MAX / 2 {
        now = await_change(word, now, sleepers);
    }
}

// ---------------------------------------------------------------------------
// queue_small: a ring of 64-byte slots
// ---------------------------------------------------------------------------

const SLOT_WORDS: usize = 8;
const RING_SLOTS: u32 = 1024;
// Control words of the ring, each side's on a cache line of its own.
const HEAD: usize = 0;
const HEAD_SLEEPERS: usize = 1;
const TAIL: usize = LINE;
const TAIL_SLEEPERS: usize = LINE + 1;
const GO: usize = 2 * LINE;
const GO_SLEEPERS: usize = 2 * LINE + 1;
const READY: usize = 3 * LINE;
const READY_SLEEPERS: usize = 3 * LINE + 1;

/// `queue_small`'s floor: `n` 64-byte messages from a fork child to the
/// parent through a ring in shared memory, timed from "go" to the last
/// message copied out.
pub fn queue_small(reps: usize) {
    const N: u32 = 200_000;
    let samples = repeat(reps, || {
        let ctl: Shared<AtomicU32> = Shared::new(4 * LINE);
        let slots: Shared<AtomicU64> = Shared::new(RING_SLOTS as usize * SLOT_WORDS);
        let producer = fork_child(|| {
            // Ready, with the ring's pages touched, as the Queue's child
            // says ready before the clock starts.
            slots.iter().for_each(|w| w.store(0, Ordering::Relaxed));
            publish(&ctl[READY], &ctl[READY_SLEEPERS]);
            await_change(&ctl[GO], 0, &ctl[GO_SLEEPERS]);
            let msg: [u64; SLOT_WORDS] = std::array::from_fn(|i| 0x0b30_5560_7b92_a6c1u64.rotate_left(i as u32 * 7));
            for head in 0..N {
                await_at_least(&ctl[TAIL], (head + 1).saturating_sub(RING_SLOTS), &ctl[TAIL_SLEEPERS]);
                let slot = &slots[(head % RING_SLOTS) as usize * SLOT_WORDS..][..SLOT_WORDS];
                for (w, m) in slot.iter().zip(msg) {
                    w.store(m, Ordering::Relaxed);
                }
                publish(&ctl[HEAD], &ctl[HEAD_SLEEPERS]);
            }
        });
        await_at_least(&ctl[READY], 1, &ctl[READY_SLEEPERS]);
        let t0 = Instant::now();
        publish(&ctl[GO], &ctl[GO_SLEEPERS]);
        let mut last = [0u64; SLOT_WORDS];
        for tail in 0..N {
            await_at_least(&ctl[HEAD], tail + 1, &ctl[HEAD_SLEEPERS]);
            let slot = &slots[(tail % RING_SLOTS) as usize * SLOT_WORDS..][..SLOT_WORDS];
            for (m, w) in last.iter_mut().zip(slot) {
                *m = w.load(Ordering::Relaxed);
            }
            std::hint::black_box(&last);
            publish(&ctl[TAIL], &ctl[TAIL_SLEEPERS]);
        }
        let took = t0.elapsed();
        assert_eq!(last[0], 0x0b30_5560_7b92_a6c1, "the last message arrived whole");
        reap(producer);
        took
    });
    for queue in ["Queue", "SimpleQueue"] {
        emit_raw(
            "queue_small",
            json!({"queue": queue, "start_method": "fork", "n": N, "msg": "bytes[64]"}),
            &samples,
            Unit::PerSecond(f64::from(N), "msgs/s"),
            "a fork child puts each 64-byte message in a shared-memory ring of 1,024 slots and publishes it; the \
             parent copies each out (spin, then futex)",
        );
    }
}

// ---------------------------------------------------------------------------
// The maps: two warm workers over shared inputs and outputs
// ---------------------------------------------------------------------------

// Control words of a map: the parent's, then the workers' count.
const GEN: usize = 0;
const GEN_SLEEPERS: usize = 1;
const QUIT: usize = 2;
const LEN: usize = 3;
const CHUNK: usize = 4;
const DONE: usize = LINE;
const DONE_SLEEPERS: usize = LINE + 1;

/// Two fork workers that square `inputs` into `outputs` in chunks claimed
/// from `next` (job generation in the high half, index in the low half).
struct MapFloor {
    ctl: Shared<AtomicU32>,
    next: Shared<AtomicU64>,
    inputs: Shared<AtomicU64>,
    outputs: Shared<AtomicU64>,
    workers: Vec<libc::pid_t>,
}

impl MapFloor {
    fn start(max: usize) -> MapFloor {
        let mut floor = MapFloor {
            ctl: Shared::new(2 * LINE),
            next: Shared::new(1),
            inputs: Shared::new(max),
            outputs: Shared::new(max),
            workers: Vec::new(),
        };
        for _ in 0..2 {
            let pid = fork_child(|| floor.work());
            floor.workers.push(pid);
        }
        floor
    }

    fn work(&self) {
        let ctl = &self.ctl;
        let mut generation = 0;
        loop {
            generation = await_change(&ctl[GEN], generation, &ctl[GEN_SLEEPERS]);
            if ctl[QUIT].load(Ordering::Acquire) != 0 {
                return;
            }
            let (len, chunk) =
                (u64::from(ctl[LEN].load(Ordering::Acquire)), u64::from(ctl[CHUNK].load(Ordering::Acquire)));
            let mut claim = self.next[0].load(Ordering::Acquire);
            loop {
                let (job, start) = (claim >> 32, claim & 0xffff_ffff);
                if job != u64::from(generation) || start >= len {
                    break;
                }
                match self.next[0].compare_exchange_weak(claim, claim + chunk, Ordering::AcqRel, Ordering::Acquire) {
                    Ok(_) => {
                        let end = (start + chunk).min(len);
                        for i in start as usize..end as usize {
                            let x = self.inputs[i].load(Ordering::Relaxed);
                            self.outputs[i].store(x * x, Ordering::Relaxed);
                        }
                        publish_n(&ctl[DONE], (end - start) as u32, &ctl[DONE_SLEEPERS]);
                        claim = self.next[0].load(Ordering::Acquire);
                    }
                    Err(now) => claim = now,
                }
            }
        }
    }

    /// One map of `0..len` in chunks of `chunk`: inputs written, workers
    /// woken, results copied out into a `Vec` (`collect`, as `map` does) or
    /// each read once (as `imap_unordered(..).count()` takes each). Returns
    /// the time it took.
    fn map(&self, len: u32, chunk: u32, collect: bool) -> Duration {
        let ctl = &self.ctl;
        let t0 = Instant::now();
        for (i, w) in self.inputs[..len as usize].iter().enumerate() {
            w.store(i as u64, Ordering::Relaxed);
        }
        // The new job's claim word first: a worker still in the last job
        // that reads the new length (acquire) then sees the new
        // generation, and claims nothing.
        ctl[DONE].store(0, Ordering::Relaxed);
        let generation = ctl[GEN].load(Ordering::Relaxed).wrapping_add(1);
        self.next[0].store(u64::from(generation) << 32, Ordering::Release);
        ctl[LEN].store(len, Ordering::Release);
        ctl[CHUNK].store(chunk, Ordering::Release);
        publish(&ctl[GEN], &ctl[GEN_SLEEPERS]);
        await_at_least(&ctl[DONE], len, &ctl[DONE_SLEEPERS]);
        let results = self.outputs[..len as usize].iter().map(|w| w.load(Ordering::Relaxed));
        let last = if collect {
            let out: Vec<u64> = results.collect();
            std::hint::black_box(&out);
            out[len as usize - 1]
        } else {
            results.fold(0, |_, r| std::hint::black_box(r))
        };
        let took = t0.elapsed();
        assert_eq!(last, u64::from(len - 1) * u64::from(len - 1));
        took
    }
}

impl Drop for MapFloor {
    fn drop(&mut self) {
        self.ctl[QUIT].store(1, Ordering::Release);
        publish(&self.ctl[GEN], &self.ctl[GEN_SLEEPERS]);
        for pid in self.workers.drain(..) {
            reap(pid);
        }
    }
}

const MAP_WHAT: &str = "two warm fork workers claim chunks of the same size by compare-and-swap and square shared-memory \
                        inputs into shared-memory outputs; the parent writes the inputs and copies the results into a \
                        Vec (spin, then futex)";

/// The floors of the three map-shaped workloads, with the chunk sizes and
/// params of their multiproc rows.
pub fn maps(workload: &str, reps: usize) {
    let collect = workload != "pool_imap_unordered";
    let rows: Vec<(u32, u32, Value)> = match workload {
        "pool_map_small" => [None, Some(10_000u32)]
            .into_iter()
            .map(|c| {
                let n = 1_000_000u32;
                let chunk = c.map_or(json!(format!("default({})", n.div_ceil(8))), |c| json!(c));
                (
                    n,
                    c.unwrap_or(n.div_ceil(8)),
                    json!({"start_method": "fork", "processes": 2, "n": n, "chunksize": chunk}),
                )
            })
            .collect(),
        "pool_imap_unordered" => [1u32, 1000]
            .into_iter()
            .map(|c| (200_000, c, json!({"start_method": "fork", "processes": 2, "n": 200_000, "chunksize": c})))
            .collect(),
        "executor_map" => ["concurrent.futures.ProcessPoolExecutor", "multiprocessing.Pool.map (reference)"]
            .into_iter()
            .map(|e| {
                let params =
                    json!({"executor": e, "max_workers": 2, "n": 100_000, "chunksize": 1000, "start_method": "fork"});
                (100_000, 1000, params)
            })
            .collect(),
        _ => unreachable!("no map floor for {workload}"),
    };
    let largest = rows.iter().map(|r| r.0).max().unwrap();
    let floor = MapFloor::start(largest as usize);
    // Warm: every page of the mapping touched once, as a warm pool's
    // buffers are.
    floor.map(largest, 1000, collect);
    for (n, chunk, params) in rows {
        let samples = repeat(reps, || floor.map(n, chunk, collect));
        emit_raw(workload, params, &samples, Unit::PerSecond(f64::from(n), "items/s"), MAP_WHAT);
    }
}

// ---------------------------------------------------------------------------
// apply_async_latency: a request and a response through shared words
// ---------------------------------------------------------------------------

const REQ: usize = 0;
const REQ_SLEEPERS: usize = 1;
const STOP: usize = 2;
const RESP: usize = LINE;
const RESP_SLEEPERS: usize = LINE + 1;

/// `apply_async_latency`'s floor: 10,000 calls of `square(3)` on a warm
/// fork worker, one at a time, through one argument and one result word.
pub fn apply_async_latency(reps: usize) {
    const N: u32 = 10_000;
    let ctl: Shared<AtomicU32> = Shared::new(3 * LINE);
    let data: Shared<AtomicU64> = Shared::new(2);
    let worker = fork_child(|| {
        let mut seen = 0;
        loop {
            seen = await_change(&ctl[REQ], seen, &ctl[REQ_SLEEPERS]);
            if ctl[STOP].load(Ordering::Acquire) != 0 {
                return;
            }
            let x = data[0].load(Ordering::Relaxed);
            data[1].store(x * x, Ordering::Relaxed);
            publish(&ctl[RESP], &ctl[RESP_SLEEPERS]);
        }
    });
    let call = |x: u64| {
        let before = ctl[RESP].load(Ordering::Acquire);
        data[0].store(x, Ordering::Relaxed);
        publish(&ctl[REQ], &ctl[REQ_SLEEPERS]);
        await_change(&ctl[RESP], before, &ctl[RESP_SLEEPERS]);
        data[1].load(Ordering::Relaxed)
    };
    for _ in 0..200 {
        assert_eq!(call(3), 9);
    }
    let samples = repeat(reps, || {
        let t0 = Instant::now();
        for _ in 0..N {
            assert_eq!(call(3), 9);
        }
        t0.elapsed()
    });
    ctl[STOP].store(1, Ordering::Release);
    publish(&ctl[REQ], &ctl[REQ_SLEEPERS]);
    reap(worker);
    emit_raw(
        "apply_async_latency",
        json!({"start_method": "fork", "processes": 2, "n": N}),
        &samples,
        Unit::MicrosPer(f64::from(N), "us/call"),
        "a warm fork worker squares an argument word into a result word; request and response counters, each side \
         spinning then sleeping on a futex",
    );
}

// ---------------------------------------------------------------------------
// shared_value: a futex mutex
// ---------------------------------------------------------------------------

const LOCK: usize = 0;
const VALUE: usize = 1;
const FINISHED: usize = LINE;
const FINISHED_SLEEPERS: usize = LINE + 1;
const START: usize = 2 * LINE;
const START_SLEEPERS: usize = 2 * LINE + 1;
const BOTH_READY: usize = 3 * LINE;
const BOTH_READY_SLEEPERS: usize = 3 * LINE + 1;

/// Takes the three-state futex mutex at `m` (0 free, 1 held, 2 held with
/// waiters).
fn lock(m: &AtomicU32) {
    if let Err(mut c) = m.compare_exchange(0, 1, Ordering::Acquire, Ordering::Relaxed) {
        if c != 2 {
            c = m.swap(2, Ordering::Acquire);
        }
        while c != 0 {
            let _ = futex::wait(m, futex::Flags::empty(), 2, None);
            c = m.swap(2, Ordering::Acquire);
        }
    }
}

fn unlock(m: &AtomicU32) {
    if m.fetch_sub(1, Ordering::Release) != 1 {
        m.store(0, Ordering::Release);
        let _ = futex::wake(m, futex::Flags::empty(), 1);
    }
}

/// `shared_value`'s floor: two fork children each add one to a shared word
/// 100,000 times under a futex mutex, timed from "go" to both done.
pub fn shared_value(reps: usize) {
    const N: u32 = 100_000;
    let samples = repeat(reps, || {
        let ctl: Shared<AtomicU32> = Shared::new(4 * LINE);
        let children: Vec<_> = (0..2)
            .map(|_| {
                fork_child(|| {
                    publish(&ctl[BOTH_READY], &ctl[BOTH_READY_SLEEPERS]);
                    await_change(&ctl[START], 0, &ctl[START_SLEEPERS]);
                    for _ in 0..N {
                        lock(&ctl[LOCK]);
                        let v = ctl[VALUE].load(Ordering::Relaxed);
                        ctl[VALUE].store(v + 1, Ordering::Relaxed);
                        unlock(&ctl[LOCK]);
                    }
                    publish(&ctl[FINISHED], &ctl[FINISHED_SLEEPERS]);
                })
            })
            .collect();
        // Both ready before the clock starts, as Python's children say.
        await_at_least(&ctl[BOTH_READY], 2, &ctl[BOTH_READY_SLEEPERS]);
        let t0 = Instant::now();
        publish(&ctl[START], &ctl[START_SLEEPERS]);
        await_at_least(&ctl[FINISHED], 2, &ctl[FINISHED_SLEEPERS]);
        let took = t0.elapsed();
        assert_eq!(ctl[VALUE].load(Ordering::Relaxed), 2 * N);
        children.into_iter().for_each(reap);
        took
    });
    emit_raw(
        "shared_value",
        json!({"type": "Value('i')", "lock": true, "processes": 2, "incr_per_process": N, "start_method": "fork"}),
        &samples,
        Unit::PerSecond(f64::from(2 * N), "ops/s"),
        "two fork children each add one to a shared word under a three-state futex mutex (Drepper), 100,000 times",
    );
}
