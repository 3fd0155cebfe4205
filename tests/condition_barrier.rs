//! Condition and Barrier across processes: notify(n) wakes exactly n,
//! notify_all the rest, wait_for and timeouts; a 5-party barrier for 1000
//! rounds, abort, reset, timeouts that break a round, and actions.

mod common;

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use common::LONG;
use multiproc::{AtomicValue, Barrier, Condition, ErrorKind, Lock, Process, StartMethod};

/// Waits on `cond` after counting itself in `arrived` (under the
/// condition's lock, so that once the parent sees it, it is waiting).
fn waiter((cond, arrived, woken): (Condition, AtomicValue<u32>, AtomicValue<u32>)) -> multiproc::Result<bool> {
    let mut g = cond.acquire()?;
    arrived.fetch_add(1);
    let notified = g.wait_timeout(LONG)?;
    woken.fetch_add(1);
    Ok(notified)
}

fn notify_exactly(cond: Condition, method: StartMethod) {
    let arrived = AtomicValue::new(0u32).unwrap();
    let woken = AtomicValue::new(0u32).unwrap();
    let kids: Vec<_> = (0..4)
        .map(|_| {
            Process::new(waiter, (cond.clone(), arrived.clone(), woken.clone())).start_method(method).start().unwrap()
        })
        .collect();
    assert!(common::wait_until(LONG, || arrived.load() == 4), "the waiters never arrived");
    let g = cond.acquire_timeout(LONG).unwrap();
    assert_eq!(g.notify(2), 2);
    drop(g);
    assert!(common::wait_until(LONG, || woken.load() == 2), "two waiters should wake");
    let g = cond.acquire_timeout(LONG).unwrap();
    assert_eq!(woken.load(), 2, "exactly two woke");
    assert_eq!(g.notify_all(), 2, "the other two were still waiting");
    assert_eq!(g.notify_all(), 0);
    drop(g);
    for k in kids {
        assert!(k.join_timeout(LONG).unwrap().unwrap(), "every waiter was notified, none timed out");
    }
    assert_eq!(woken.load(), 4);
}

per_method! {
    fn notify_wakes_exactly_n_waiters_and_notify_all_the_rest(method: StartMethod) {
        notify_exactly(Condition::new().unwrap(), method);
        notify_exactly(Condition::with_lock(Lock::new().unwrap()).unwrap(), method);
    }
}

fn set_ready((cond, ready): (Condition, AtomicValue<u32>)) -> multiproc::Result<()> {
    let g = cond.acquire()?;
    ready.store(1);
    g.notify_all();
    Ok(())
}

per_method! {
    fn wait_for_sees_a_change_made_in_another_process(method: StartMethod) {
        let cond = Condition::new().unwrap();
        let ready = AtomicValue::new(0u32).unwrap();
        let mut g = cond.acquire().unwrap();
        let child = Process::new(set_ready, (cond.clone(), ready.clone())).start_method(method).start().unwrap();
        assert!(g.wait_for(|| ready.load() == 1, Some(LONG)).unwrap());
        drop(g);
        child.join_timeout(LONG).unwrap().unwrap();
    }
}

#[test]
fn waits_time_out_on_time_and_a_zero_timeout_only_looks() {
    let _w = common::watchdog("waits_time_out_on_time_and_a_zero_timeout_only_looks");
    let cond = Condition::new().unwrap();
    let mut g = cond.acquire().unwrap();
    let t = Instant::now();
    assert!(!g.wait_timeout(Duration::from_millis(50)).unwrap());
    assert!(t.elapsed() >= Duration::from_millis(50));
    assert!(!g.wait_timeout(Duration::ZERO).unwrap());
    assert!(!g.wait_for(|| false, Some(Duration::ZERO)).unwrap());
    // An RLock held twice is released whole while waiting, and restored.
    let lock = multiproc::RLock::new().unwrap();
    let cond = Condition::with_rlock(lock.clone()).unwrap();
    let outer = lock.acquire().unwrap();
    let mut g = cond.acquire().unwrap();
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let probe = std::thread::spawn({
        let (cond, done) = (cond.clone(), done.clone());
        // Takes the lock the waiter holds twice: possible only if the wait
        // released both levels.
        move || {
            cond.acquire_timeout(LONG).map(|g| {
                done.store(true, Ordering::SeqCst);
                g.notify_all();
            })
        }
    });
    assert!(g.wait_for(|| done.load(Ordering::SeqCst), Some(LONG)).unwrap());
    probe.join().unwrap().unwrap();
    assert_eq!(lock.owner(), Some((std::process::id(), 2)), "both levels restored");
    drop(g);
    drop(outer);
    assert_eq!(lock.owner(), None);
}

const ROUNDS: u32 = 1000;

fn party((b, sum): (Barrier, AtomicValue<u64>)) -> multiproc::Result<u32> {
    for _ in 0..ROUNDS {
        sum.fetch_add(u64::from(b.wait_timeout(LONG)?));
    }
    Ok(ROUNDS)
}

per_method! {
    fn five_parties_pass_a_barrier_a_thousand_times(method: StartMethod) {
        let b = Barrier::new(5).unwrap();
        let sum = AtomicValue::new(0u64).unwrap();
        let kids: Vec<_> =
            (0..4).map(|_| Process::new(party, (b.clone(), sum.clone())).start_method(method).start().unwrap()).collect();
        assert_eq!(party((b.clone(), sum.clone())).unwrap(), ROUNDS);
        for k in kids {
            assert_eq!(k.join_timeout(LONG).unwrap().unwrap(), ROUNDS);
        }
        assert_eq!(sum.load(), u64::from(ROUNDS) * (1 + 2 + 3 + 4), "each round hands out 0..5 once");
        assert!(!b.broken());
        assert_eq!(b.n_waiting(), 0);
    }
}

fn wait_once(b: Barrier) -> multiproc::Result<u32> {
    b.wait_timeout(LONG)
}

per_method! {
    fn abort_and_reset_break_a_round_and_mend_the_barrier(method: StartMethod) {
        let b = Barrier::new(3).unwrap();
        let child = Process::new(wait_once, b.clone()).start_method(method).start().unwrap();
        assert!(common::wait_until(LONG, || b.n_waiting() == 1));
        b.abort().unwrap();
        assert_eq!(child.join_timeout(LONG).unwrap().unwrap_err().kind(), ErrorKind::BrokenBarrier);
        assert!(b.broken());
        assert_eq!(b.wait().unwrap_err().kind(), ErrorKind::BrokenBarrier, "broken until reset");

        b.reset().unwrap();
        assert!(!b.broken());
        let child = Process::new(wait_once, b.clone()).start_method(method).start().unwrap();
        assert!(common::wait_until(LONG, || b.n_waiting() == 1));
        b.reset().unwrap();
        assert_eq!(
            child.join_timeout(LONG).unwrap().unwrap_err().kind(),
            ErrorKind::BrokenBarrier,
            "a reset breaks the round in progress"
        );
        assert!(!b.broken(), "but leaves the barrier usable");

        let kids: Vec<_> =
            (0..2).map(|_| Process::new(wait_once, b.clone()).start_method(method).start().unwrap()).collect();
        let mut seen = vec![b.wait_timeout(LONG).unwrap()];
        for k in kids {
            seen.push(k.join_timeout(LONG).unwrap().unwrap());
        }
        seen.sort();
        assert_eq!(seen, [0, 1, 2]);
    }
}

#[test]
fn a_timeout_breaks_the_round_for_everyone() {
    let _w = common::watchdog("a_timeout_breaks_the_round_for_everyone");
    let b = Barrier::new(3).unwrap();
    let other = b.clone();
    let t = std::thread::spawn(move || other.wait_timeout(LONG));
    assert!(common::wait_until(LONG, || b.n_waiting() == 1));
    let started = Instant::now();
    let err = b.wait_timeout(Duration::from_millis(50)).unwrap_err();
    assert!(started.elapsed() >= Duration::from_millis(50));
    assert_eq!(err.kind(), ErrorKind::BrokenBarrier);
    assert!(err.to_string().contains("timed out"), "{err}");
    assert_eq!(t.join().unwrap().unwrap_err().kind(), ErrorKind::BrokenBarrier);
    assert!(b.broken());
    assert_eq!(Barrier::new(0).unwrap_err().kind(), ErrorKind::InvalidInput);
}

static ACTIONS: AtomicU32 = AtomicU32::new(0);

fn count_round() {
    ACTIONS.fetch_add(1, Ordering::SeqCst);
}

fn explode() {
    panic!("the action failed");
}

#[test]
fn the_action_runs_once_per_round_and_its_panic_breaks_the_round() {
    let _w = common::watchdog("the_action_runs_once_per_round_and_its_panic_breaks_the_round");
    let b = Barrier::with_action(2, count_round).unwrap();
    let other = b.clone();
    let t = std::thread::spawn(move || (0..10).try_for_each(|_| other.wait_timeout(LONG).map(drop)));
    for _ in 0..10 {
        b.wait_timeout(LONG).unwrap();
    }
    t.join().unwrap().unwrap();
    assert_eq!(ACTIONS.load(Ordering::SeqCst), 10);

    let b = Barrier::with_action(2, explode).unwrap();
    let other = b.clone();
    let t = std::thread::spawn(move || other.wait_timeout(LONG));
    let mine = b.wait_timeout(LONG);
    let theirs = t.join().unwrap();
    let mut kinds = [mine.unwrap_err().kind(), theirs.unwrap_err().kind()];
    kinds.sort_by_key(|k| format!("{k:?}"));
    assert_eq!(kinds, [ErrorKind::BrokenBarrier, ErrorKind::Panicked]);
    assert!(b.broken());
}

#[test]
fn waiters_of_an_aborted_round_fail_even_when_aborted_twice() {
    let _w = common::watchdog("waiters_of_an_aborted_round_fail_even_when_aborted_twice");
    for _ in 0..20 {
        let b = Barrier::new(3).unwrap();
        let waiters: Vec<_> = (0..2)
            .map(|_| {
                let b = b.clone();
                std::thread::spawn(move || b.wait_timeout(LONG))
            })
            .collect();
        assert!(common::wait_until(LONG, || b.n_waiting() == 2));
        b.abort().unwrap();
        b.abort().unwrap();
        for w in waiters {
            assert_eq!(w.join().unwrap().unwrap_err().kind(), ErrorKind::BrokenBarrier, "a broken round passed");
        }
    }
}

fn die_in_the_action() {
    std::process::exit(7);
}

fn arrive_last(b: Barrier) -> multiproc::Result<u32> {
    b.wait_timeout(LONG)
}

per_method! {
    fn a_party_that_dies_in_the_action_breaks_the_round(method: StartMethod) {
        let b = Barrier::with_action(2, die_in_the_action).unwrap();
        let first = {
            let b = b.clone();
            std::thread::spawn(move || b.wait())
        };
        assert!(common::wait_until(LONG, || b.n_waiting() == 1));
        let child = Process::new(arrive_last, b.clone()).start_method(method).start().unwrap();
        assert_eq!(child.join_timeout(LONG).unwrap_err().exitcode(), Some(7));
        let t = Instant::now();
        assert_eq!(first.join().unwrap().unwrap_err().kind(), ErrorKind::BrokenBarrier);
        assert!(t.elapsed() < Duration::from_secs(5), "noticed late: {:?}", t.elapsed());
        assert!(b.broken());
        b.reset().unwrap();
        assert_eq!(b.n_waiting(), 0);
    }
}

per_method! {
    fn a_waiter_killed_while_waiting_is_never_counted_as_woken(method: StartMethod) {
        let cond = Condition::new().unwrap();
        let (arrived, woken) = (AtomicValue::new(0u32).unwrap(), AtomicValue::new(0u32).unwrap());
        let start = || {
            Process::new(waiter, (cond.clone(), arrived.clone(), woken.clone())).start_method(method).start().unwrap()
        };
        let doomed = start();
        assert!(common::wait_until(LONG, || arrived.load() == 1));
        let live = start();
        assert!(common::wait_until(LONG, || arrived.load() == 2));
        doomed.kill().unwrap();
        // Dead (a zombie not yet joined, whose pid still exists).
        assert!(common::wait_until(LONG, || !matches!(common::stat(doomed.pid()), Some(('S' | 'R', _)))));
        let g = cond.acquire_timeout(LONG).unwrap();
        assert_eq!(g.notify(1), 1);
        drop(g);
        assert!(live.join_timeout(LONG).unwrap().unwrap(), "the live waiter got the notification");
        assert!(doomed.join_timeout(LONG).is_err());
    }
}

#[test]
fn slots_of_killed_waiters_are_reclaimed() {
    let _w = common::watchdog("slots_of_killed_waiters_are_reclaimed");
    let cond = Condition::new().unwrap();
    let (arrived, woken) = (AtomicValue::new(0u32).unwrap(), AtomicValue::new(0u32).unwrap());
    for k in 1..=(multiproc::MAX_WAITERS as u32 + 10) {
        let child = Process::new(waiter, (cond.clone(), arrived.clone(), woken.clone()))
            .start_method(StartMethod::Fork)
            .start()
            .unwrap();
        assert!(common::wait_until(LONG, || arrived.load() == k));
        child.kill().unwrap();
        assert!(child.join_timeout(LONG).is_err());
    }
    let mut g = cond.acquire_timeout(LONG).unwrap();
    assert!(!g.wait_timeout(Duration::from_millis(1)).unwrap(), "a slot was free for a new waiter");
    assert_eq!(g.notify_all(), 0, "no ghost waiters");
}

fn wait_default(b: Barrier) -> multiproc::Result<u32> {
    b.wait()
}

#[test]
fn a_default_timeout_set_in_one_process_holds_in_another() {
    let _w = common::watchdog("a_default_timeout_set_in_one_process_holds_in_another");
    let b = Barrier::new(2).unwrap().with_timeout(Duration::from_millis(50));
    let child = Process::new(wait_default, b.clone()).start().unwrap();
    let err = child.join_timeout(LONG).unwrap().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::BrokenBarrier);
    assert!(b.broken());
}
