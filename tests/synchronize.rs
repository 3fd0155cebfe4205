//! Lock, RLock, Semaphore, BoundedSemaphore, Event, Value, Array and
//! AtomicValue between real processes, under every start method: who may
//! release what, timeouts that wait their full time, a holder SIGKILLed
//! while it holds a lock (the next acquirer is told, nobody hangs), exact
//! counts from 4 processes × 100,000 increments, a Value reaching pool
//! workers through their initializer, and no fd, mapping or /dev/shm entry
//! left behind.
//!
//! Processes are sequenced with Events and Semaphores, never with sleeps;
//! every blocking call has a generous ceiling (`LONG`).

mod common;

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use common::LONG;
use multiproc::{
    Array, AtomicValue, BoundedSemaphore, ErrorKind, Event, Lock, Pool, Process, RLock, Semaphore, StartMethod, Value,
};
use serde::{Deserialize, Serialize};

/// The timeout that must be waited out in full.
const SHORT: Duration = Duration::from_millis(50);

/// Asserts that `attempt(SHORT)` fails with `Timeout`, and only after
/// `SHORT` has passed.
fn assert_times_out_after_short<T: std::fmt::Debug>(attempt: impl FnOnce(Duration) -> multiproc::Result<T>) {
    let t = Instant::now();
    let err = attempt(SHORT).unwrap_err();
    let took = t.elapsed();
    assert_eq!(err.kind(), ErrorKind::Timeout, "{err}");
    assert!(took >= SHORT, "a {SHORT:?} timeout returned after {took:?}");
}

/// Asserts that `attempt(0)` fails with `Timeout` without waiting.
fn assert_zero_timeout_fails_at_once<T: std::fmt::Debug>(attempt: impl FnOnce(Duration) -> multiproc::Result<T>) {
    let t = Instant::now();
    assert_eq!(attempt(Duration::ZERO).unwrap_err().kind(), ErrorKind::Timeout);
    assert!(t.elapsed() < Duration::from_secs(1), "a zero timeout blocked for {:?}", t.elapsed());
}

/// Waits (with the `LONG` ceiling) until the main thread of `pid` sleeps:
/// after it has said it is about to block, that is the blocking call.
fn wait_until_asleep(pid: u32) {
    assert!(
        common::wait_until(LONG, || matches!(common::stat(pid), Some(('S', _)))),
        "process {pid} never went to sleep: {:?}",
        common::stat(pid)
    );
}

/// A child's last act: block until it is killed.
fn park_until_killed() -> ! {
    loop {
        std::thread::park();
    }
}

// ---------------------------------------------------------------- Lock

/// Starts `target(lock, held, release)` in a child and returns once the
/// child says (through `held`) that it holds the lock, with the event that
/// tells it to release.
fn start_holder<F, R>(target: F, lock: &Lock, method: StartMethod) -> (multiproc::Child<R>, Event)
where
    F: Fn((Lock, Event, Event)) -> R + Copy + Send + 'static,
    R: Serialize + serde::de::DeserializeOwned + Send + 'static,
{
    let (held, release) = (Event::new().unwrap(), Event::new().unwrap());
    let child =
        Process::new(target, (lock.clone(), held.clone(), release.clone())).start_method(method).start().unwrap();
    assert!(held.wait(Some(LONG)).unwrap(), "the child never took the lock");
    (child, release)
}

fn hold_lock_until_told((lock, held, release): (Lock, Event, Event)) -> bool {
    let guard = lock.acquire_timeout(LONG).unwrap();
    held.set();
    assert!(release.wait(Some(LONG)).unwrap(), "the parent never said to release");
    guard.owner_died()
}

per_method! {
    fn a_lock_held_by_a_child_blocks_the_parent_until_the_child_releases_it(method: StartMethod) {
        let lock = Lock::new().unwrap();
        let (child, release) = start_holder(hold_lock_until_told, &lock, method);

        assert!(lock.try_acquire().unwrap().is_none());
        assert_zero_timeout_fails_at_once(|d| lock.acquire_timeout(d).map(drop));
        assert_times_out_after_short(|d| lock.acquire_timeout(d).map(drop));
        let err = lock.release().unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidState, "{err}");
        assert!(lock.try_acquire().unwrap().is_none(), "a refused release must leave the lock held");

        release.set();
        let guard = lock.acquire_timeout(LONG).unwrap();
        assert!(!guard.owner_died());
        drop(guard);
        assert!(!child.join_timeout(LONG).unwrap(), "the child's acquire was clean");
        assert!(lock.try_acquire().unwrap().is_some());
    }
}

#[test]
fn a_lock_is_released_only_by_the_thread_that_holds_it() {
    let _w = common::watchdog("a_lock_is_released_only_by_the_thread_that_holds_it");
    let lock = Lock::new().unwrap();
    assert_eq!(lock.release().unwrap_err().kind(), ErrorKind::InvalidState, "nobody holds it");

    // Python's style: acquire() ... release(), with the guard leaked.
    lock.acquire().unwrap().leak();
    let other = lock.clone();
    let from_another_thread = std::thread::spawn(move || {
        let refused = other.release().unwrap_err().kind();
        let still_held = other.try_acquire().unwrap().is_none();
        let timed_out = other.acquire_timeout(SHORT).map(drop).unwrap_err().kind();
        (refused, still_held, timed_out)
    })
    .join()
    .unwrap();
    assert_eq!(from_another_thread, (ErrorKind::InvalidState, true, ErrorKind::Timeout));
    // Not re-entrant: the holder's own try is refused (today as `None`).
    assert!(!matches!(lock.try_acquire(), Ok(Some(_))), "the same thread took a Lock twice");
    lock.release().unwrap();
    assert_eq!(lock.release().unwrap_err().kind(), ErrorKind::InvalidState, "released twice");

    let guard = lock.try_acquire().unwrap().expect("free again");
    assert!(!guard.owner_died());
    guard.release();
    assert!(lock.try_acquire().unwrap().is_some(), "LockGuard::release releases");
}

fn leak_then_release((lock, held, release): (Lock, Event, Event)) {
    lock.acquire_timeout(LONG).unwrap().leak();
    held.set();
    assert!(release.wait(Some(LONG)).unwrap(), "the parent never said to release");
    lock.release().unwrap();
    assert_eq!(lock.release().unwrap_err().kind(), ErrorKind::InvalidState);
}

per_method! {
    fn a_child_can_release_python_style_a_lock_whose_guard_it_forgot(method: StartMethod) {
        let lock = Lock::new().unwrap();
        let (child, release) = start_holder(leak_then_release, &lock, method);
        assert!(lock.try_acquire().unwrap().is_none());
        release.set();
        child.join_timeout(LONG).unwrap();
        let guard = lock.try_acquire().unwrap().expect("the child released it");
        assert!(!guard.owner_died(), "the child released it; it did not die holding it");
    }
}

fn hold_lock_until_killed((lock, held): (Lock, Event)) {
    let _guard = lock.acquire_timeout(LONG).unwrap();
    held.set();
    park_until_killed()
}

fn acquire_and_report(lock: Lock) -> bool {
    lock.acquire_timeout(LONG).unwrap().owner_died()
}

per_method! {
    fn a_lock_whose_holder_was_sigkilled_goes_to_the_next_acquirer_who_is_told(method: StartMethod) {
        let lock = Lock::new().unwrap();
        let held = Event::new().unwrap();
        let child =
            Process::new(hold_lock_until_killed, (lock.clone(), held.clone())).start_method(method).start().unwrap();
        assert!(held.wait(Some(LONG)).unwrap(), "the child never took the lock");
        assert!(lock.try_acquire().unwrap().is_none());
        child.kill().unwrap();
        assert_eq!(child.join_timeout(LONG).unwrap_err().exitcode(), Some(-9));

        let guard = lock.acquire_timeout(LONG).unwrap();
        assert!(guard.owner_died(), "the holder's death must be reported");
        drop(guard);
        let guard = lock.acquire_timeout(LONG).unwrap();
        assert!(!guard.owner_died(), "only the first acquirer after the death is told");
        drop(guard);
        // Recovered for other processes too.
        let next = Process::new(acquire_and_report, lock.clone()).start_method(method).start().unwrap();
        assert!(!next.join_timeout(LONG).unwrap());
    }
}

#[test]
fn a_thread_that_ends_holding_a_lock_is_reported_like_a_dead_process() {
    let _w = common::watchdog("a_thread_that_ends_holding_a_lock_is_reported_like_a_dead_process");
    let lock = Lock::new().unwrap();
    let other = lock.clone();
    std::thread::spawn(move || std::mem::forget(other.acquire().unwrap())).join().unwrap();
    let guard = lock.acquire_timeout(LONG).unwrap();
    assert!(guard.owner_died());
    drop(guard);
    assert!(!lock.try_acquire().unwrap().unwrap().owner_died());
}

// --------------------------------------------------------------- RLock

#[test]
fn an_rlock_counts_its_levels_and_refuses_other_threads() {
    let _w = common::watchdog("an_rlock_counts_its_levels_and_refuses_other_threads");
    let me = std::process::id();
    let lock = RLock::new().unwrap();
    assert_eq!(lock.owner(), None);
    assert_eq!(lock.release().unwrap_err().kind(), ErrorKind::InvalidState, "nobody holds it");

    let a = lock.acquire().unwrap();
    assert_eq!((a.count(), a.owner_died()), (1, false));
    let b = lock.acquire_timeout(Duration::ZERO).unwrap();
    let c = lock.try_acquire().unwrap().expect("the owner re-enters without waiting");
    assert_eq!(c.count(), 3);
    assert_eq!(lock.owner(), Some((me, 3)));

    let other = lock.clone();
    let from_another_thread = std::thread::spawn(move || {
        let refused = other.release().unwrap_err().kind();
        let busy = other.try_acquire().unwrap().is_none();
        let t = Instant::now();
        let timed_out = other.acquire_timeout(SHORT).map(drop).unwrap_err().kind();
        (refused, busy, timed_out, t.elapsed() >= SHORT, other.owner())
    })
    .join()
    .unwrap();
    assert_eq!(from_another_thread, (ErrorKind::InvalidState, true, ErrorKind::Timeout, true, Some((me, 3))));
    assert_eq!(lock.owner(), Some((me, 3)), "a refused release changes nothing");

    drop(c);
    assert_eq!((lock.owner(), b.count()), (Some((me, 2)), 2));
    // Python's style for one level.
    b.leak();
    lock.release().unwrap();
    assert_eq!(lock.owner(), Some((me, 1)));
    drop(a);
    assert_eq!(lock.owner(), None);
    assert_eq!(lock.release().unwrap_err().kind(), ErrorKind::InvalidState, "released once too often");

    // Free for another thread now.
    let other = lock.clone();
    let got = std::thread::spawn(move || other.try_acquire().unwrap().map(|g| g.count())).join().unwrap();
    assert_eq!(got, Some(1));
}

/// An RLock's owner: `(pid, levels)`.
type Owner = Option<(u32, u32)>;

/// Tries a held RLock (it must time out, seeing the parent as owner), then
/// takes it once the parent has released every level: what it saw first,
/// its count, and the owner then.
fn probe_rlock((lock, probed, released): (RLock, Event, Event)) -> (Owner, u32, Owner) {
    let seen = lock.owner();
    assert!(lock.try_acquire().unwrap().is_none(), "held by the parent");
    assert_times_out_after_short(|d| lock.acquire_timeout(d).map(drop));
    assert_eq!(lock.release().unwrap_err().kind(), ErrorKind::InvalidState);
    probed.set();
    assert!(released.wait(Some(LONG)).unwrap(), "the parent never released");
    let guard = lock.acquire_timeout(LONG).unwrap();
    assert!(!guard.owner_died());
    (seen, guard.count(), lock.owner())
}

per_method! {
    fn an_rlock_held_at_two_levels_blocks_another_process_until_both_are_released(method: StartMethod) {
        let lock = RLock::new().unwrap();
        let (probed, released) = (Event::new().unwrap(), Event::new().unwrap());
        let outer = lock.acquire().unwrap();
        let inner = lock.acquire().unwrap();
        let child = Process::new(probe_rlock, (lock.clone(), probed.clone(), released.clone()))
            .start_method(method)
            .start()
            .unwrap();
        assert!(probed.wait(Some(LONG)).unwrap(), "the child never tried the lock");
        drop(inner);
        assert_eq!(lock.owner(), Some((std::process::id(), 1)), "one level is still held");
        drop(outer);
        released.set();
        let (seen, count, owner) = child.join_timeout(LONG).unwrap();
        assert_eq!(seen, Some((std::process::id(), 2)));
        assert_eq!((count, owner), (1, Some((child.pid(), 1))));
        assert_eq!(lock.owner(), None, "the child released it on return");
    }
}

fn hold_rlock_twice_until_killed((lock, held): (RLock, Event)) {
    let _outer = lock.acquire_timeout(LONG).unwrap();
    let _inner = lock.acquire_timeout(LONG).unwrap();
    held.set();
    park_until_killed()
}

per_method! {
    fn an_rlock_whose_holder_was_sigkilled_goes_to_the_next_acquirer_who_is_told(method: StartMethod) {
        let me = std::process::id();
        let lock = RLock::new().unwrap();
        let held = Event::new().unwrap();
        let child = Process::new(hold_rlock_twice_until_killed, (lock.clone(), held.clone()))
            .start_method(method)
            .start()
            .unwrap();
        assert!(held.wait(Some(LONG)).unwrap(), "the child never took the lock");
        assert_eq!(lock.owner(), Some((child.pid(), 2)));
        assert!(lock.try_acquire().unwrap().is_none());
        child.kill().unwrap();
        assert_eq!(child.join_timeout(LONG).unwrap_err().exitcode(), Some(-9));

        let outer = lock.acquire_timeout(LONG).unwrap();
        assert!(outer.owner_died(), "the holder's death must be reported");
        assert_eq!((outer.count(), lock.owner()), (1, Some((me, 1))), "the dead holder's levels are gone");
        let inner = lock.acquire().unwrap();
        assert_eq!((inner.owner_died(), inner.count()), (false, 2));
        drop(inner);
        drop(outer);
        assert_eq!(lock.owner(), None);
        assert!(!lock.acquire_timeout(LONG).unwrap().owner_died(), "only the first acquirer is told");
    }
}

// ----------------------------------------------------------- Semaphore

fn take_one((s, timeout): (Semaphore, Duration)) -> multiproc::Result<()> {
    s.acquire_timeout(timeout)
}

per_method! {
    fn a_semaphore_counts_units_taken_by_other_processes(method: StartMethod) {
        let s = Semaphore::new(3).unwrap();
        assert_eq!(s.get_value(), 3);
        let takers: Vec<_> = (0..3)
            .map(|_| Process::new(take_one, (s.clone(), LONG)).start_method(method).start().unwrap())
            .collect();
        for t in takers {
            t.join_timeout(LONG).unwrap().unwrap();
        }
        assert_eq!(s.get_value(), 0);
        assert!(!s.try_acquire().unwrap());
        assert_zero_timeout_fails_at_once(|d| s.acquire_timeout(d));
        assert_times_out_after_short(|d| s.acquire_timeout(d));
        let late = Process::new(take_one, (s.clone(), SHORT)).start_method(method).start().unwrap();
        assert_eq!(late.join_timeout(LONG).unwrap().unwrap_err().kind(), ErrorKind::Timeout);
        for _ in 0..3 {
            s.release().unwrap();
        }
        assert_eq!(s.get_value(), 3);
        assert!(s.try_acquire().unwrap());
        assert_eq!(s.get_value(), 2);
        // An unbounded semaphore may grow past its start.
        for _ in 0..10 {
            s.release().unwrap();
        }
        assert_eq!(s.get_value(), 12);
    }
}

/// Says it is about to wait (`ready`), then waits for a unit of `s`.
fn wait_for_unit((s, ready): (Semaphore, Semaphore)) -> multiproc::Result<()> {
    ready.release()?;
    s.acquire_timeout(LONG)
}

per_method! {
    fn each_release_of_a_semaphore_wakes_a_process_asleep_on_it(method: StartMethod) {
        let (s, ready) = (Semaphore::new(0).unwrap(), Semaphore::new(0).unwrap());
        let waiters: Vec<_> = (0..3)
            .map(|_| Process::new(wait_for_unit, (s.clone(), ready.clone())).start_method(method).start().unwrap())
            .collect();
        for _ in &waiters {
            ready.acquire_timeout(LONG).unwrap();
        }
        for w in &waiters {
            wait_until_asleep(w.pid());
        }
        assert!(waiters.iter().all(|w| w.join_timeout(Duration::ZERO).unwrap_err().is_timeout()));
        for _ in &waiters {
            s.release().unwrap();
        }
        for w in waiters {
            w.join_timeout(LONG).unwrap().unwrap();
        }
        assert_eq!(s.get_value(), 0, "each waiter took exactly one unit");
    }
}

const ENTRIES: u32 = 2_000;

/// Enters and leaves a section guarded by `s` many times, recording the
/// most processes ever inside at once.
fn enter_and_leave((s, inside, most): (Semaphore, AtomicValue<u32>, AtomicValue<u32>)) -> multiproc::Result<()> {
    for _ in 0..ENTRIES {
        s.acquire_timeout(LONG)?;
        let now = inside.fetch_add(1) + 1;
        let mut seen = most.load();
        while now > seen {
            match most.compare_exchange(seen, now) {
                Ok(_) => break,
                Err(current) => seen = current,
            }
        }
        std::thread::yield_now();
        inside.fetch_sub(1);
        s.release()?;
    }
    Ok(())
}

per_method! {
    fn a_semaphore_of_two_never_lets_three_processes_in_at_once(method: StartMethod) {
        let s = Semaphore::new(2).unwrap();
        let (inside, most) = (AtomicValue::new(0u32).unwrap(), AtomicValue::new(0u32).unwrap());
        let children: Vec<_> = (0..4)
            .map(|_| {
                Process::new(enter_and_leave, (s.clone(), inside.clone(), most.clone()))
                    .start_method(method)
                    .start()
                    .unwrap()
            })
            .collect();
        for c in children {
            c.join_timeout(LONG).unwrap().unwrap();
        }
        assert!((1..=2).contains(&most.load()), "{} processes were inside at once", most.load());
        assert_eq!((inside.load(), s.get_value()), (0, 2));
    }
}

/// Takes both units, gives them back, then gives one too many.
fn over_release(s: BoundedSemaphore) -> (bool, bool, u32) {
    let balanced = s.acquire_timeout(LONG).is_ok()
        && s.acquire_timeout(LONG).is_ok()
        && s.release().is_ok()
        && s.release().is_ok();
    let refused = s.release().is_err_and(|e| e.kind() == ErrorKind::InvalidState);
    (balanced, refused, s.get_value())
}

per_method! {
    fn a_bounded_semaphore_refuses_a_release_above_its_start_in_any_process(method: StartMethod) {
        let s = BoundedSemaphore::new(2).unwrap();
        let err = s.release().unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidState, "{err}");
        assert_eq!(s.get_value(), 2, "a refused release adds nothing");
        let child = Process::new(over_release, s.clone()).start_method(method).start().unwrap();
        assert_eq!(child.join_timeout(LONG).unwrap(), (true, true, 2));
        s.acquire_timeout(LONG).unwrap();
        assert!(s.try_acquire().unwrap());
        assert!(!s.try_acquire().unwrap());
        assert_zero_timeout_fails_at_once(|d| s.acquire_timeout(d));
        assert_times_out_after_short(|d| s.acquire_timeout(d));
        s.release().unwrap();
        s.release().unwrap();
        assert_eq!(s.release().unwrap_err().kind(), ErrorKind::InvalidState);
        assert_eq!(s.get_value(), 2);
    }
}

// --------------------------------------------------------------- Event

#[test]
fn an_event_wait_times_out_on_time_and_a_zero_timeout_never_blocks() {
    let _w = common::watchdog("an_event_wait_times_out_on_time_and_a_zero_timeout_never_blocks");
    let e = Event::new().unwrap();
    assert!(!e.is_set());
    let t = Instant::now();
    assert!(!e.wait(Some(Duration::ZERO)).unwrap());
    assert!(t.elapsed() < Duration::from_secs(1), "a zero timeout blocked for {:?}", t.elapsed());
    let t = Instant::now();
    assert!(!e.wait(Some(SHORT)).unwrap());
    assert!(t.elapsed() >= SHORT, "a {SHORT:?} wait returned after {:?}", t.elapsed());

    e.set();
    e.set();
    assert!(e.is_set());
    assert!(e.wait(Some(Duration::ZERO)).unwrap());
    assert!(e.wait(None).unwrap(), "set: no wait");
    assert!(e.clone().is_set(), "clones are the same event");
    e.clear();
    assert!(!e.is_set());
    assert!(!e.wait(Some(Duration::ZERO)).unwrap());
    e.clear();
    assert!(!e.is_set());
}

/// Says it is about to wait (`ready`), then waits for `e` with no limit.
fn wait_for_event((e, ready): (Event, Semaphore)) -> bool {
    ready.release().unwrap();
    e.wait(None).unwrap()
}

/// What a process sees of `e` without waiting, and after waiting `SHORT`.
fn look_at_event(e: Event) -> (bool, bool, bool) {
    let t = Instant::now();
    (e.is_set(), e.wait(Some(Duration::ZERO)).unwrap(), e.wait(Some(SHORT)).unwrap() || t.elapsed() < SHORT)
}

per_method! {
    fn one_set_wakes_every_process_waiting_for_an_event_and_clear_is_seen_everywhere(method: StartMethod) {
        let (e, ready) = (Event::new().unwrap(), Semaphore::new(0).unwrap());
        let waiters: Vec<_> = (0..3)
            .map(|_| Process::new(wait_for_event, (e.clone(), ready.clone())).start_method(method).start().unwrap())
            .collect();
        for _ in &waiters {
            ready.acquire_timeout(LONG).unwrap();
        }
        for w in &waiters {
            wait_until_asleep(w.pid());
        }
        assert!(waiters.iter().all(|w| w.join_timeout(Duration::ZERO).unwrap_err().is_timeout()));
        e.set();
        for w in waiters {
            assert!(w.join_timeout(LONG).unwrap(), "wait(None) returns true once set");
        }

        let set = Process::new(look_at_event, e.clone()).start_method(method).start().unwrap();
        assert_eq!(set.join_timeout(LONG).unwrap(), (true, true, true));
        e.clear();
        let cleared = Process::new(look_at_event, e.clone()).start_method(method).start().unwrap();
        assert_eq!(cleared.join_timeout(LONG).unwrap(), (false, false, false), "cleared, and waited its full time");
    }
}

// ------------------------------------------------ Value, Array, AtomicValue

const PROCESSES: usize = 4;
const INCREMENTS: u64 = 100_000;

fn increment_value(v: Value<u64>) -> multiproc::Result<()> {
    for _ in 0..INCREMENTS {
        v.with_lock(|n| *n += 1)?;
    }
    Ok(())
}

per_method! {
    fn four_processes_incrementing_a_value_under_its_lock_lose_no_update(method: StartMethod) {
        let v = Value::new(0u64).unwrap();
        let children: Vec<_> = (0..PROCESSES)
            .map(|_| Process::new(increment_value, v.clone()).start_method(method).start().unwrap())
            .collect();
        for c in children {
            c.join_timeout(LONG).unwrap().unwrap();
        }
        assert_eq!(v.get().unwrap(), PROCESSES as u64 * INCREMENTS);
        assert!(!v.get_lock().try_acquire().unwrap().expect("free").owner_died());
    }
}

const SLOTS: usize = 8;

fn increment_array(a: Array<u64>) -> multiproc::Result<()> {
    for i in 0..INCREMENTS as usize {
        a.with_lock(|s| {
            let len = s.len();
            s[i % len] += 1;
        })?;
    }
    Ok(())
}

per_method! {
    fn four_processes_incrementing_an_array_under_its_lock_lose_no_update(method: StartMethod) {
        let a = Array::new(&[0u64; SLOTS]).unwrap();
        let children: Vec<_> = (0..PROCESSES)
            .map(|_| Process::new(increment_array, a.clone()).start_method(method).start().unwrap())
            .collect();
        for c in children {
            c.join_timeout(LONG).unwrap().unwrap();
        }
        let per_slot = PROCESSES as u64 * INCREMENTS / SLOTS as u64;
        assert_eq!(a.to_vec().unwrap(), [per_slot; SLOTS]);
        assert_eq!(a.len(), SLOTS);
    }
}

fn add_atomically((up, down): (AtomicValue<u64>, AtomicValue<i32>)) {
    for _ in 0..INCREMENTS {
        up.fetch_add(1);
        down.fetch_sub(1);
    }
}

per_method! {
    fn four_processes_adding_to_an_atomic_value_without_a_lock_lose_no_update(method: StartMethod) {
        let (up, down) = (AtomicValue::new(0u64).unwrap(), AtomicValue::new(0i32).unwrap());
        let children: Vec<_> = (0..PROCESSES)
            .map(|_| Process::new(add_atomically, (up.clone(), down.clone())).start_method(method).start().unwrap())
            .collect();
        for c in children {
            c.join_timeout(LONG).unwrap();
        }
        assert_eq!(up.load(), PROCESSES as u64 * INCREMENTS);
        assert_eq!(down.load(), -(PROCESSES as i32 * INCREMENTS as i32));
    }
}

/// Every kind of object in one argument.
type Everything =
    (Lock, RLock, Semaphore, BoundedSemaphore, Event, Value<[u32; 2]>, Array<f64>, AtomicValue<i64>, Value<u8>);

/// Changes each object, so that the parent can see the change.
fn change_everything((lock, rlock, s, bs, e, pair, floats, n, byte): Everything) -> multiproc::Result<()> {
    assert!(lock.try_acquire()?.is_some(), "the Lock arrived free");
    assert_eq!(rlock.owner(), None, "the RLock arrived free");
    s.release()?;
    bs.acquire_timeout(LONG)?;
    e.set();
    pair.set([3, 4])?;
    floats.set(1, 2.5)?;
    assert_eq!(floats.set(3, 1.0).unwrap_err().kind(), ErrorKind::InvalidInput, "past the end");
    n.store(-5);
    byte.with_lock(|b| *b = b.wrapping_add(1))?;
    Ok(())
}

per_method! {
    fn every_object_a_child_receives_is_the_parents_own(method: StartMethod) {
        let everything: Everything = (
            Lock::new().unwrap(),
            RLock::new().unwrap(),
            Semaphore::new(0).unwrap(),
            BoundedSemaphore::new(2).unwrap(),
            Event::new().unwrap(),
            Value::new([1, 2]).unwrap(),
            Array::new(&[0.5; 3]).unwrap(),
            AtomicValue::new(7).unwrap(),
            Value::new(255).unwrap(),
        );
        let child = Process::new(change_everything, everything.clone()).start_method(method).start().unwrap();
        child.join_timeout(LONG).unwrap().unwrap();
        let (lock, rlock, s, bs, e, pair, floats, n, byte) = everything;
        assert!(lock.try_acquire().unwrap().is_some());
        assert!(rlock.try_acquire().unwrap().is_some());
        assert_eq!((s.get_value(), bs.get_value()), (1, 1));
        assert!(e.is_set());
        assert_eq!(pair.get().unwrap(), [3, 4]);
        assert_eq!(floats.to_vec().unwrap(), [0.5, 2.5, 0.5]);
        assert_eq!(n.load(), -5);
        assert_eq!(byte.get().unwrap(), 0);
    }
}

fn hold_value_lock_until_killed((v, held): (Value<u64>, Event)) {
    let _guard = v.get_lock().acquire_timeout(LONG).unwrap();
    held.set();
    park_until_killed()
}

fn die_inside_with_lock((v, held): (Value<u64>, Event)) {
    v.with_lock::<()>(|n| {
        *n = 999;
        held.set();
        park_until_killed()
    })
    .unwrap();
}

per_method! {
    fn a_value_whose_lock_holder_was_sigkilled_stays_usable(method: StartMethod) {
        let v = Value::new(7u64).unwrap();
        let held = Event::new().unwrap();
        let child =
            Process::new(hold_value_lock_until_killed, (v.clone(), held.clone())).start_method(method).start().unwrap();
        assert!(held.wait(Some(LONG)).unwrap(), "the child never took the lock");
        assert!(v.get_lock().try_acquire().unwrap().is_none());
        child.kill().unwrap();
        assert_eq!(child.join_timeout(LONG).unwrap_err().exitcode(), Some(-9));
        let guard = v.get_lock().acquire_timeout(LONG).unwrap();
        assert!(guard.owner_died(), "get_lock() reports the holder's death");
        v.update(&guard, |n| *n += 1);
        drop(guard);
        assert!(!v.get_lock().acquire_timeout(LONG).unwrap().owner_died());
        assert_eq!(v.get().unwrap(), 8);

        // Killed inside with_lock: the next with_lock still runs. with_lock
        // works on a copy, so the value is the one from before.
        held.clear();
        let child =
            Process::new(die_inside_with_lock, (v.clone(), held.clone())).start_method(method).start().unwrap();
        assert!(held.wait(Some(LONG)).unwrap(), "the child never got inside with_lock");
        child.kill().unwrap();
        assert_eq!(child.join_timeout(LONG).unwrap_err().exitcode(), Some(-9));
        assert_eq!(v.with_lock(|n| std::mem::replace(n, 10)).unwrap(), 8, "the killed update was never written");
        assert!(!v.get_lock().acquire_timeout(LONG).unwrap().owner_died(), "with_lock recovered the lock");
        assert_eq!(v.get().unwrap(), 10);
    }
}

fn die_halfway_through_an_array_update((a, held): (Array<u64>, Event)) {
    a.with_lock::<()>(|s| {
        s[0] = 1;
        held.set();
        park_until_killed()
    })
    .unwrap();
}

per_method! {
    fn an_array_whose_updater_was_sigkilled_shows_the_half_done_update_and_says_so(method: StartMethod) {
        let a = Array::new(&[0u64; 4]).unwrap();
        let held = Event::new().unwrap();
        let child = Process::new(die_halfway_through_an_array_update, (a.clone(), held.clone()))
            .start_method(method)
            .start()
            .unwrap();
        assert!(held.wait(Some(LONG)).unwrap(), "the child never got inside with_lock");
        child.kill().unwrap();
        assert_eq!(child.join_timeout(LONG).unwrap_err().exitcode(), Some(-9));
        let guard = a.get_lock().acquire_timeout(LONG).unwrap();
        assert!(guard.owner_died());
        drop(guard);
        assert_eq!(a.to_vec().unwrap(), [1, 0, 0, 0], "Array::with_lock works in place");
        a.set(0, 0).unwrap();
        assert_eq!(a.to_vec().unwrap(), [0; 4]);
    }
}

static COUNTER: OnceLock<Value<u64>> = OnceLock::new();

fn keep_counter(v: Value<u64>) {
    assert!(COUNTER.set(v).is_ok(), "the initializer runs once per worker");
}

fn add_to_counter(x: u64) -> multiproc::Result<u64> {
    COUNTER.get().expect("the initializer ran").with_lock(|n| *n += x)?;
    Ok(x)
}

per_method! {
    fn a_value_given_to_a_pool_initializer_is_shared_by_every_task(method: StartMethod) {
        let v = Value::new(0u64).unwrap();
        let pool =
            Pool::builder().processes(2).start_method(method).initializer(keep_counter, v.clone()).build().unwrap();
        let results = pool.chunksize(1).map(add_to_counter, 1..=100u64).unwrap();
        assert!(results.into_iter().all(|r| r.is_ok()));
        assert_eq!(v.get().unwrap(), 5050);
        pool.close();
        pool.join().unwrap();
        assert_eq!(v.get().unwrap(), 5050);
    }
}

// --------------------------------------------------------------- Leaks

/// What the leak check saw, in a process of its own.
#[derive(Debug, Serialize, Deserialize)]
struct LeakReport {
    fds_before: usize,
    fds_alive: usize,
    fds_after: usize,
    fds_after_children: usize,
    memfds_alive: usize,
    not_memfds: Vec<String>,
    maps_before: usize,
    maps_alive: usize,
    maps_after: usize,
}

/// Mappings of the objects' shared memory.
fn object_mappings() -> usize {
    std::fs::read_to_string("/proc/self/maps").unwrap().lines().filter(|l| l.contains("memfd:multiproc-")).count()
}

/// Where each open fd of this process points.
fn fd_targets() -> Vec<String> {
    std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .flatten()
        .filter_map(|e| std::fs::read_link(e.path()).ok())
        .map(|p| p.to_string_lossy().into_owned())
        .collect()
}

fn one_of_each(i: u32) -> Everything {
    (
        Lock::new().unwrap(),
        RLock::new().unwrap(),
        Semaphore::new(i).unwrap(),
        BoundedSemaphore::new(i).unwrap(),
        Event::new().unwrap(),
        Value::new([i; 2]).unwrap(),
        Array::new(&[f64::from(i); 600]).unwrap(),
        AtomicValue::new(i64::from(i)).unwrap(),
        Value::new(i as u8).unwrap(),
    )
}

fn use_everything((lock, rlock, s, bs, e, pair, floats, n, byte): Everything) -> multiproc::Result<()> {
    drop(lock.acquire_timeout(LONG)?);
    drop(rlock.acquire_timeout(LONG)?);
    s.release()?;
    bs.try_acquire()?;
    e.set();
    pair.get()?;
    floats.to_vec()?;
    n.fetch_add(1);
    byte.get()?;
    Ok(())
}

/// Creates and drops 100 of each object, then passes objects to 10
/// children, counting fds and mappings on the way.
fn create_and_drop_100_of_each(_: ()) -> LeakReport {
    // Warm up whatever starting a child sets up once.
    Process::new(use_everything, one_of_each(1))
        .start_method(StartMethod::Fork)
        .start()
        .unwrap()
        .join()
        .unwrap()
        .unwrap();
    let (fds_before, maps_before) = (common::fd_count(), object_mappings());
    let before: std::collections::HashSet<String> = fd_targets().into_iter().collect();

    let alive: Vec<Everything> = (0..100).map(one_of_each).collect();
    let (fds_alive, maps_alive) = (common::fd_count(), object_mappings());
    let new: Vec<String> = fd_targets().into_iter().filter(|t| !before.contains(t)).collect();
    let memfds_alive = new.iter().filter(|t| t.starts_with("/memfd:multiproc-")).count();
    let not_memfds = new.into_iter().filter(|t| !t.starts_with("/memfd:multiproc-")).collect();
    for objects in &alive {
        let _clones = objects.clone();
    }
    drop(alive);
    let (fds_after, maps_after) = (common::fd_count(), object_mappings());

    for i in 0..10 {
        let child = Process::new(use_everything, one_of_each(i)).start_method(StartMethod::Fork).start().unwrap();
        child.join_timeout(LONG).unwrap().unwrap();
    }
    LeakReport {
        fds_before,
        fds_alive,
        fds_after,
        fds_after_children: common::fd_count(),
        memfds_alive,
        not_memfds,
        maps_before,
        maps_alive,
        maps_after,
    }
}

#[test]
fn creating_and_dropping_100_of_each_object_leaves_no_fd_mapping_or_dev_shm_entry() {
    let _w = common::watchdog("creating_and_dropping_100_of_each_object_leaves_no_fd_mapping_or_dev_shm_entry");
    let shm_before = common::dev_shm();
    // In a process of its own: the other tests here open fds meanwhile.
    let child = Process::new(create_and_drop_100_of_each, ()).start_method(StartMethod::Spawn).start().unwrap();
    let r = child.join_timeout(LONG).unwrap();
    let shm_new: Vec<String> = common::dev_shm().difference(&shm_before).cloned().collect();
    assert!(shm_new.is_empty(), "new entries in /dev/shm: {shm_new:?}");
    let objects = 100 * 9;
    assert_eq!(r.fds_alive, r.fds_before + objects, "one fd per object: {r:?}");
    assert_eq!(r.memfds_alive, objects, "each object is a memfd: {r:?}");
    assert!(r.not_memfds.is_empty(), "{r:?}");
    assert_eq!(r.maps_alive, r.maps_before + objects, "one mapping per object: {r:?}");
    assert_eq!((r.fds_after, r.maps_after), (r.fds_before, r.maps_before), "dropped objects left fds: {r:?}");
    assert_eq!(r.fds_after_children, r.fds_before, "passing objects to children left fds: {r:?}");
}

fn wait_for_a_set((e, ready): (Event, Event)) -> multiproc::Result<bool> {
    ready.set();
    e.wait(Some(LONG))
}

per_method! {
    fn a_set_at_once_cleared_still_releases_a_sleeping_waiter(method: StartMethod) {
        let (e, ready) = (Event::new().unwrap(), Event::new().unwrap());
        let child = Process::new(wait_for_a_set, (e.clone(), ready.clone())).start_method(method).start().unwrap();
        assert!(ready.wait(Some(LONG)).unwrap());
        wait_until_asleep(child.pid());
        e.set();
        e.clear();
        assert!(child.join_timeout(LONG).unwrap().unwrap(), "the set counted, though cleared at once");
    }
}

#[test]
fn taking_a_lock_twice_in_one_thread_is_an_error_not_a_hang() {
    let _w = common::watchdog("taking_a_lock_twice_in_one_thread_is_an_error_not_a_hang");
    let lock = Lock::new().unwrap();
    let _held = lock.acquire().unwrap();
    for err in [
        lock.acquire().unwrap_err(),
        lock.acquire_timeout(LONG).unwrap_err(),
        lock.try_acquire().map(|g| g.is_some()).unwrap_err(),
    ] {
        assert_eq!(err.kind(), ErrorKind::InvalidState);
        assert!(err.to_string().contains("RLock"), "{err}");
    }
    let v = Value::new(0u32).unwrap();
    let g = v.get_lock().acquire().unwrap();
    assert_eq!(v.get().unwrap_err().kind(), ErrorKind::InvalidState, "Python's idiom, translated literally");
    v.update(&g, |n| *n += 1);
    drop(g);
    assert_eq!(v.get().unwrap(), 1);
}

#[test]
fn release_never_pulls_a_lock_from_under_a_live_guard() {
    let _w = common::watchdog("release_never_pulls_a_lock_from_under_a_live_guard");
    let a = Array::new(&[0u8; 4]).unwrap();
    let refused = a.with_lock(|s| {
        s[0] = 7;
        a.get_lock().release().map_err(|e| e.kind())
    });
    assert_eq!(refused.unwrap(), Err(ErrorKind::InvalidState), "the guard inside with_lock is not leaked");
    let r = RLock::new().unwrap();
    let g = r.acquire().unwrap();
    assert_eq!(r.release().unwrap_err().kind(), ErrorKind::InvalidState, "a live guard's level");
    drop(g);
    assert_eq!(r.owner(), None);
}

#[test]
fn a_forgotten_guard_leaves_its_lock_held_and_its_memory_mapped() {
    let _w = common::watchdog("a_forgotten_guard_leaves_its_lock_held_and_its_memory_mapped");
    // glibc lists the held robust mutex in this thread: unmapping it would
    // leave that list dangling, and the next lock taken would write there.
    std::thread::spawn(|| {
        let lock = Lock::new().unwrap();
        std::mem::forget(lock.acquire().unwrap());
        drop(lock);
        let filler: Vec<Vec<u8>> = (0..64).map(|_| vec![0xAB; 4096]).collect();
        let other = Lock::new().unwrap();
        for _ in 0..100 {
            drop(other.acquire().unwrap());
        }
        assert!(filler.iter().all(|v| v.iter().all(|&b| b == 0xAB)), "memory was overwritten");
    })
    .join()
    .expect("the thread survived");
}
