//! Pool behaviour under every start method: every call, per-item errors,
//! worker deaths of every kind, timeouts, laziness, the executor API, the
//! initializer and maxtasksperchild, lifecycle and bad input. Modelled on
//! CPython's `_TestPool`, `_TestPoolWorkerErrors`, `_TestPoolWorkerLifetime`
//! and `test_concurrent_futures`.

mod common;

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::LONG;
use common::probe::{mark, probe, probed_pool};
use multiproc::{ErrorKind, Pool, ReturnWhen, SharedMemory, StartMethod};
use serde::{Deserialize, Serialize};

fn pool(method: StartMethod, n: usize) -> Pool {
    Pool::builder().processes(n).start_method(method).build().unwrap()
}

fn square(x: u64) -> u64 {
    x * x
}

fn mul(a: u64, b: u64) -> u64 {
    a * b
}

fn fail_on((x, bad): (u64, Vec<u64>)) -> u64 {
    assert!(!bad.contains(&x), "bad {x}");
    x
}

fn pid(_: u64) -> u32 {
    std::process::id()
}

fn nap(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

/// Dies in the way `how` names when `x == at`; otherwise returns `x`.
fn die_at((x, at, how): (u64, u64, String)) -> u64 {
    if x == at {
        match how.as_str() {
            "kill" => {
                let me = std::process::id().to_string();
                let _ = std::process::Command::new("kill").args(["-KILL", &me]).status();
                std::thread::sleep(Duration::from_secs(60));
            }
            "segv" => {
                // Twice: a forked worker inherits std's SIGSEGV handler (for
                // stack overflows), which lets the first one pass when it
                // did not come from a fault.
                let me = std::process::id().to_string();
                for _ in 0..2 {
                    let _ = std::process::Command::new("kill").args(["-SEGV", &me]).status();
                }
                std::thread::sleep(Duration::from_secs(60));
            }
            "abort" => std::process::abort(),
            "exit" => std::process::exit(3),
            other => panic!("unknown death {other}"),
        }
    }
    x
}

per_method! {
    fn every_call_returns_results_in_order(method: StartMethod) {
        let pool = pool(method, 2);
        assert_eq!(pool.apply(square, 7).unwrap(), 49);
        assert_eq!(pool.apply_async(square, 8).unwrap().get_timeout(LONG).unwrap(), 64);
        let expected: Vec<u64> = (0..100).map(|x| x * x).collect();
        assert_eq!(pool.map(square, 0..100).unwrap(), expected);
        assert_eq!(pool.chunksize(7).map(square, 0..100).unwrap(), expected);
        assert_eq!(pool.map_async(square, 0..100).unwrap().get_timeout(LONG).unwrap(), expected);
        assert_eq!(pool.starmap(mul, (0..100).map(|x| (x, x))).unwrap(), expected);
        assert_eq!(pool.starmap_async(mul, [(3, 4)]).unwrap().get().unwrap(), [12]);
        let lazy: Vec<u64> = pool.imap(square, 0..100).unwrap().map(Result::unwrap).collect();
        assert_eq!(lazy, expected);
        let lazy: Vec<u64> = pool.chunksize(9).imap(square, 0..100).unwrap().map(Result::unwrap).collect();
        assert_eq!(lazy, expected);
        let mut unordered: Vec<u64> = pool.chunksize(3).imap_unordered(square, 0..100).unwrap().map(Result::unwrap).collect();
        unordered.sort();
        assert_eq!(unordered, expected);
        assert_eq!(pool.submit(square, 5).unwrap().get().unwrap(), 25);
    }
}

fn describe(x: f64) -> (i8, String, f64) {
    (x.signum() as i8, format!("{x:.1}"), -x)
}

fn halve(x: i128) -> f32 {
    x as f32 / 2.0
}

per_method! {
    fn numbers_of_every_width_and_serde_values_round_trip(method: StartMethod) {
        let pool = pool(method, 2);
        let xs = [0.0, -1.5, 2.25, f64::MAX, f64::MIN_POSITIVE];
        let expected: Vec<(i8, String, f64)> = xs.iter().map(|&x| describe(x)).collect();
        assert_eq!(pool.map(describe, xs).unwrap(), expected);
        assert_eq!(pool.map(halve, [i128::MIN, -3, 7]).unwrap(), [i128::MIN as f32 / 2.0, -1.5, 3.5]);
        let bytes: Vec<u8> = pool.chunksize(100).map(|b: u8| b.wrapping_add(1), 0..=255u8).unwrap();
        assert_eq!(bytes, (0..=255u8).map(|b| b.wrapping_add(1)).collect::<Vec<_>>());
    }
}

per_method! {
    fn empty_inputs_give_empty_results(method: StartMethod) {
        let pool = pool(method, 1);
        assert!(pool.map(square, Vec::new()).unwrap().is_empty());
        assert!(pool.map_async(square, Vec::new()).unwrap().get_timeout(Duration::from_millis(100)).unwrap().is_empty());
        assert_eq!(pool.imap(square, Vec::new()).unwrap().count(), 0);
        assert_eq!(pool.imap_unordered(square, Vec::new()).unwrap().count(), 0);
        assert!(pool.starmap(mul, Vec::new()).unwrap().is_empty());
    }
}

per_method! {
    fn map_raises_the_first_failing_input_and_imap_goes_on(method: StartMethod) {
        let pool = pool(method, 2);
        let bad = vec![3, 7];
        let err = pool.chunksize(1).map(fail_on, (0..10).map(|x| (x, bad.clone()))).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Panicked);
        assert_eq!(err.panic_info().unwrap().message(), "bad 3");
        let items: Vec<_> = pool.imap(fail_on, (0..6).map(|x| (x, vec![3]))).unwrap().collect();
        assert_eq!(items.len(), 6);
        for (i, item) in items.iter().enumerate() {
            match item {
                Ok(v) => assert_eq!(*v, i as u64),
                Err(e) => {
                    assert_eq!(i, 3);
                    assert_eq!(e.panic_info().unwrap().message(), "bad 3");
                    assert!(e.panic_info().unwrap().file().unwrap().ends_with("tests/pool.rs"));
                }
            }
        }
        assert!(items[3].is_err());
    }
}

per_method! {
    fn a_panicking_task_leaves_its_worker_alive(method: StartMethod) {
        let pool = pool(method, 1);
        let before = pool.apply(pid, 0).unwrap();
        let err = pool.apply(fail_on, (1, vec![1])).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Panicked);
        assert_eq!(pool.apply(pid, 0).unwrap(), before, "the same worker served after the panic");
    }
}

per_method! {
    fn a_worker_that_dies_fails_only_its_running_task_and_is_replaced(method: StartMethod) {
        for (how, chunksize) in [("kill", 1), ("segv", 4), ("abort", 1), ("exit", 4)] {
            let pool = pool(method, 2);
            let results: Vec<_> = pool
                .chunksize(chunksize)
                .imap(die_at, (0..40).map(|x| (x, 17, how.to_string())))
                .unwrap()
                .collect();
            let lost: Vec<_> = results.iter().enumerate().filter_map(|(i, r)| r.as_ref().err().map(|e| (i, e))).collect();
            let failed: Vec<usize> = lost.iter().map(|(i, _)| *i).collect();
            assert_eq!(failed, [17], "{how}, chunksize {chunksize}: only the running item fails: {lost:?}");
            for (_, e) in &lost {
                assert_eq!(e.kind(), ErrorKind::WorkerLost, "{how}: {e}");
                let expected = match how {
                    "kill" => -9,
                    "segv" => -11,
                    "abort" => -6,
                    _ => 3,
                };
                assert_eq!(e.exitcode(), Some(expected), "{how}: {e}");
            }
            for (i, r) in results.iter().enumerate() {
                if let Ok(v) = r {
                    assert_eq!(*v, i as u64);
                }
            }
            // The pool goes on, with a replacement.
            assert_eq!(pool.map(square, 0..10).unwrap()[9], 81);
            let pids: HashSet<u32> = pool.chunksize(1).map(pid, 0..20).unwrap().into_iter().collect();
            assert!(!pids.contains(&lost[0].1.pid().unwrap()));
        }
    }
}

per_method! {
    fn a_task_past_its_timeout_fails_alone(method: StartMethod) {
        let pool = pool(method, 2);
        let started = Instant::now();
        let out: Vec<_> = pool
            .timeout(Duration::from_millis(500))
            .chunksize(1)
            .imap(nap, [1, 2, 60_000, 3, 4, 5])
            .unwrap()
            .collect();
        assert!(started.elapsed() < Duration::from_secs(20));
        for (i, r) in out.iter().enumerate() {
            if i == 2 {
                let e = r.as_ref().unwrap_err();
                assert_eq!(e.kind(), ErrorKind::Timeout, "{e}");
            } else {
                assert!(r.is_ok(), "item {i}: {r:?}");
            }
        }
        assert_eq!(pool.apply(square, 4).unwrap(), 16);
    }
}

per_method! {
    fn imap_pulls_an_endless_input_lazily(method: StartMethod) {
        let pool = Pool::builder().processes(2).start_method(method).max_in_flight(8).build().unwrap();
        let pulled = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&pulled);
        let input = (0u64..).inspect(move |_| {
            counter.fetch_add(1, Ordering::Relaxed);
        });
        let mut it = pool.chunksize(4).imap(square, input).unwrap();
        for i in 0..5000u64 {
            assert_eq!(it.next().unwrap().unwrap(), i * i);
            let ahead = pulled.load(Ordering::Relaxed) - i as usize;
            assert!(ahead <= 8 * 4 + 4, "pulled {ahead} items ahead of the consumer");
        }
        drop(it);
        // Dropping the iterator left nothing queued: the pool is free.
        assert_eq!(pool.apply(square, 3).unwrap(), 9);
    }
}

per_method! {
    fn buffersize_bounds_how_far_imap_reads_ahead(method: StartMethod) {
        let pool = pool(method, 2);
        for unordered in [false, true] {
            let pulled = Arc::new(AtomicUsize::new(0));
            let counter = Arc::clone(&pulled);
            let input = (0u64..300).inspect(move |_| {
                counter.fetch_add(1, Ordering::Relaxed);
            });
            let calls = pool.buffersize(5);
            let mut got: Vec<u64> = Vec::new();
            let it: Box<dyn Iterator<Item = multiproc::Result<u64>>> = if unordered {
                Box::new(calls.imap_unordered(square, input).unwrap())
            } else {
                Box::new(calls.imap(square, input).unwrap())
            };
            for r in it {
                got.push(r.unwrap());
                let ahead = pulled.load(Ordering::Relaxed) - got.len();
                assert!(ahead <= 5, "pulled {ahead} items ahead of the consumer with buffersize(5)");
            }
            if unordered {
                got.sort_unstable();
            }
            assert_eq!(got, (0u64..300).map(|x| x * x).collect::<Vec<_>>());
        }
        // A buffersize larger than the chunk size still chunks as asked.
        let out: Vec<u64> = pool.chunksize(4).buffersize(10).imap(square, 0u64..50).unwrap().map(|r| r.unwrap()).collect();
        assert_eq!(out, (0u64..50).map(|x| x * x).collect::<Vec<_>>());
    }
}

#[test]
fn zero_buffersize_and_zero_timeouts_are_invalid_input() {
    let _w = common::watchdog("zero options");
    let pool = Pool::new(1).unwrap();
    let err = pool.buffersize(0).imap(square, 0u64..3).err().unwrap();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    assert!(err.to_string().contains("buffersize"), "{err}");
    // A zero timeout is refused the same way every time, for every call,
    // instead of sometimes running the task and sometimes not.
    for _ in 0..10 {
        let timed = pool.timeout(Duration::ZERO);
        assert_eq!(timed.apply(square, 2).unwrap_err().kind(), ErrorKind::InvalidInput);
        assert_eq!(timed.apply_async(square, 2).err().unwrap().kind(), ErrorKind::InvalidInput);
        assert_eq!(timed.map(square, 0u64..4).unwrap_err().kind(), ErrorKind::InvalidInput);
        assert_eq!(timed.imap(square, 0u64..4).err().unwrap().kind(), ErrorKind::InvalidInput);
    }
    let err = Pool::builder().processes(1).task_timeout(Duration::ZERO).build().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    assert!(err.to_string().contains("timeout"), "{err}");
    // The pool is unharmed.
    assert_eq!(pool.apply(square, 3).unwrap(), 9);
}

/// Counts a run of task `i`, says it started, and waits for `go`.
fn mark_and_hold(i: u64) -> u64 {
    mark(i);
    probe().started.set();
    assert!(probe().go.wait(Some(LONG)).unwrap(), "go never came");
    i
}

fn runs(shm: &SharedMemory, i: usize) -> u64 {
    common::probe::runs(shm)[i]
}

/// Task `i`: task 0 holds until `go`; the others return at once.
fn hold_first(i: u64) -> u64 {
    if i == 0 { mark_and_hold(i) } else { mark(i) }
}

per_method! {
    fn next_timeout_waits_at_most_its_timeout_and_leaves_the_iterator_usable(method: StartMethod) {
        for unordered in [false, true] {
            let (pool, started, go, _counts) = probed_pool(method, 1, 4);
            let short = Duration::from_millis(20);
            if unordered {
                let mut it = pool.imap_unordered(hold_first, 0..3u64).unwrap();
                // The first call sends the input (imap is lazy), then waits.
                let err = it.next_timeout(short).unwrap_err();
                assert_eq!(err.kind(), ErrorKind::Timeout, "{err}");
                assert!(started.wait(Some(LONG)).unwrap());
                assert_eq!(it.next_timeout(short).unwrap_err().kind(), ErrorKind::Timeout);
                go.set();
                let mut got: Vec<u64> = (0..3).map(|_| it.next_timeout(LONG).unwrap().unwrap().unwrap()).collect();
                got.sort_unstable();
                assert_eq!(got, [0, 1, 2]);
                assert!(it.next_timeout(Duration::ZERO).unwrap().is_none());
            } else {
                let mut it = pool.imap(hold_first, 0..3u64).unwrap();
                assert_eq!(it.next_timeout(short).unwrap_err().kind(), ErrorKind::Timeout);
                assert!(started.wait(Some(LONG)).unwrap());
                assert_eq!(it.next_timeout(short).unwrap_err().kind(), ErrorKind::Timeout);
                go.set();
                assert_eq!(it.next_timeout(LONG).unwrap().unwrap().unwrap(), 0);
                assert_eq!(it.next_timeout(Duration::MAX).unwrap().unwrap().unwrap(), 1, "a huge timeout waits");
                assert_eq!(it.next().unwrap().unwrap(), 2);
                assert!(it.next_timeout(Duration::ZERO).unwrap().is_none());
            }
        }
    }
}

per_method! {
    fn cancel_works_until_a_task_starts_even_inside_a_workers_window(method: StartMethod) {
        let (pool, started, go, counts) = probed_pool(method, 1, 8);
        let running = pool.apply_async(mark_and_hold, 0).unwrap();
        let behind: Vec<_> = (1..4).map(|i| pool.apply_async(mark, i).unwrap()).collect();
        assert!(started.wait(Some(LONG)).unwrap(), "the first task never started");
        // Task 1 sits in the busy worker's window (a fresh worker takes two
        // chunks), task 3 in the parent's queue: both can be cancelled.
        assert!(behind[0].cancel(), "a task in a busy worker's window can be cancelled");
        assert!(behind[2].cancel(), "a queued task can be cancelled");
        assert!(behind[0].cancelled() && behind[0].ready());
        assert_eq!(behind[0].get().unwrap_err().kind(), ErrorKind::Cancelled);
        assert!(!running.cancel(), "a running task cannot be cancelled");
        assert!(!running.cancelled());
        go.set();
        assert_eq!(running.get_timeout(LONG).unwrap(), 0);
        assert_eq!(behind[1].get_timeout(LONG).unwrap(), 2, "the task behind the cancelled one runs");
        assert!(!behind[1].cancel(), "a finished task cannot be cancelled");
        assert_eq!(behind[2].get().unwrap_err().kind(), ErrorKind::Cancelled);
        // Everything has run that will: the cancelled tasks never did.
        pool.close();
        pool.join().unwrap();
        assert_eq!((runs(&counts, 0), runs(&counts, 1), runs(&counts, 2), runs(&counts, 3)), (1, 0, 1, 0));
    }
}

per_method! {
    fn terminate_workers_and_kill_workers_cancel_what_was_not_sent(method: StartMethod) {
        for kill in [false, true] {
            let (pool, started, _go, counts) = probed_pool(method, 1, 24);
            let running = pool.apply_async(mark_and_hold, 0).unwrap();
            let behind: Vec<_> = (1..24).map(|i| pool.apply_async(mark, i).unwrap()).collect();
            assert!(started.wait(Some(LONG)).unwrap(), "the first task never started");
            let workers: Vec<u32> = pool.stats().workers.iter().map(|w| w.pid).collect();
            if kill {
                pool.kill_workers();
            } else {
                pool.terminate_workers();
            }
            // Python 3.14: the running task and those already sent to the
            // worker fail; the rest are cancelled; nothing else runs.
            assert_eq!(running.get_timeout(LONG).unwrap_err().kind(), ErrorKind::BrokenPool);
            let mut cancelled = 0;
            for (i, r) in behind.iter().enumerate() {
                let kind = r.get_timeout(LONG).unwrap_err().kind();
                assert!(matches!(kind, ErrorKind::Cancelled | ErrorKind::BrokenPool), "task {}: {kind:?}", i + 1);
                cancelled += usize::from(kind == ErrorKind::Cancelled);
            }
            assert!(cancelled >= 16, "only {cancelled} of 23 queued tasks were cancelled");
            let stats = pool.stats();
            assert_eq!((stats.cancelled, stats.failed, stats.done), (cancelled as u64, 24 - cancelled as u64, 0));
            assert_eq!(pool.apply(mark, 1).unwrap_err().kind(), ErrorKind::InvalidState);
            // Again, or terminate(), is harmless; join() returns, no worker
            // is left.
            pool.kill_workers();
            pool.terminate();
            pool.join().unwrap();
            for pid in workers {
                assert!(common::wait_until(LONG, || common::gone(pid)), "worker {pid} is still there");
            }
            assert_eq!((1..24).map(|i| runs(&counts, i)).sum::<u64>(), 0, "a task behind ran");
        }
    }
}

per_method! {
    fn results_are_taken_once_and_successful_needs_ready(method: StartMethod) {
        let pool = pool(method, 1);
        let slow = pool.apply_async(nap, 200).unwrap();
        assert_eq!(slow.successful().unwrap_err().kind(), ErrorKind::InvalidState);
        assert!(slow.get_timeout(Duration::ZERO).unwrap_err().is_timeout());
        assert_eq!(slow.get_timeout(LONG).unwrap(), 200);
        assert!(slow.successful().unwrap());
        assert_eq!(slow.get().unwrap_err().kind(), ErrorKind::InvalidState);
        let bad = pool.apply_async(fail_on, (1, vec![1])).unwrap();
        assert!(bad.wait_timeout(LONG));
        assert!(!bad.successful().unwrap());
    }
}

per_method! {
    fn as_completed_yields_everything_and_times_out(method: StartMethod) {
        let pool = pool(method, 2);
        let rs: Vec<_> = (0..6).map(|i| pool.submit(square, i).unwrap()).collect();
        let mut got: Vec<u64> = multiproc::as_completed(&rs, Some(LONG)).map(|r| r.unwrap().get().unwrap()).collect();
        got.sort();
        assert_eq!(got, [0, 1, 4, 9, 16, 25]);

        let rs = vec![pool.submit(nap, 0).unwrap(), pool.submit(nap, 60_000).unwrap(), pool.submit(nap, 60_000).unwrap()];
        let seen: Vec<_> = multiproc::as_completed(&rs, Some(Duration::from_millis(500))).collect();
        assert!(seen[0].is_ok(), "{seen:?}");
        let err = seen.last().unwrap().as_ref().unwrap_err();
        assert!(err.is_timeout());
        assert!(err.to_string().contains("2 (of 3)"), "{err}");
        pool.terminate();
    }
}

per_method! {
    fn wait_honours_each_return_condition(method: StartMethod) {
        let pool = pool(method, 2);
        let rs = vec![pool.submit(nap, 0).unwrap(), pool.submit(nap, 60_000).unwrap()];
        let first = multiproc::wait(&rs, ReturnWhen::FirstCompleted, Some(LONG));
        assert_eq!((first.done.len(), first.not_done.len()), (1, 1));
        let timed = multiproc::wait(&rs, ReturnWhen::AllCompleted, Some(Duration::from_millis(100)));
        assert_eq!(timed.not_done.len(), 1);
        let zero = multiproc::wait(&rs, ReturnWhen::AllCompleted, Some(Duration::ZERO));
        assert_eq!(zero.not_done.len(), 1);
        pool.terminate();

        let pool = self::pool(method, 2);
        let rs = vec![pool.submit(fail_on, (1, vec![1])).unwrap(), pool.submit(fail_on, (2, vec![])).unwrap()];
        let exc = multiproc::wait(&rs, ReturnWhen::FirstException, Some(LONG));
        assert!(exc.done.iter().any(|r| !r.successful().unwrap()));
        let all = multiproc::wait(&rs, ReturnWhen::AllCompleted, Some(LONG));
        assert_eq!(all.done.len(), 2);
    }
}

per_method! {
    fn results_can_be_awaited(method: StartMethod) {
        let pool = pool(method, 2);
        let a = pool.submit(square, 6).unwrap();
        let b = pool.map_async(square, 0..5).unwrap();
        let (a, b) = futures::executor::block_on(async { (a.await, b.await) });
        assert_eq!(a.unwrap(), 36);
        assert_eq!(b.unwrap(), [0, 1, 4, 9, 16]);
        let c = pool.submit(fail_on, (5, vec![5])).unwrap();
        assert_eq!(futures::executor::block_on(c).unwrap_err().kind(), ErrorKind::Panicked);
    }
}

/// Set by the initializer, read by the tasks.
static GREETING: std::sync::Mutex<Option<String>> = std::sync::Mutex::new(None);

fn init(greeting: String) {
    *GREETING.lock().unwrap() = Some(greeting);
}

fn greeted(_: u64) -> (u32, Option<String>) {
    (std::process::id(), GREETING.lock().unwrap().clone())
}

per_method! {
    fn initializer_runs_in_every_worker_and_maxtasksperchild_recycles_them(method: StartMethod) {
        let pool = Pool::builder()
            .processes(2)
            .start_method(method)
            .initializer(init, "hi".to_string())
            .maxtasksperchild(1)
            .build()
            .unwrap();
        let out = pool.chunksize(1).map(greeted, 0..6).unwrap();
        let pids: HashSet<u32> = out.iter().map(|(p, _)| *p).collect();
        assert_eq!(pids.len(), 6, "six tasks, six workers: {out:?}");
        assert!(out.iter().all(|(_, g)| g.as_deref() == Some("hi")));
    }
}

fn bad_init(_: ()) {
    panic!("cannot initialize");
}

per_method! {
    fn a_failing_initializer_breaks_the_pool_instead_of_spinning(method: StartMethod) {
        let pool = Pool::builder().processes(2).start_method(method).initializer(bad_init, ()).build().unwrap();
        let err = pool.apply(square, 2).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::BrokenPool, "{err}");
        assert!(err.to_string().contains("cannot initialize"), "{err}");
        let again = pool.apply_async(square, 3).unwrap_err();
        assert_eq!(again.kind(), ErrorKind::BrokenPool);
        // Broken, not restarting workers over and over: it winds down.
        pool.terminate();
        pool.join().unwrap();
    }
}

per_method! {
    fn lifecycle_errors_are_clear(method: StartMethod) {
        assert_eq!(Pool::builder().processes(0).start_method(method).build().unwrap_err().kind(), ErrorKind::InvalidInput);
        assert_eq!(Pool::builder().maxtasksperchild(0).start_method(method).build().unwrap_err().kind(), ErrorKind::InvalidInput);
        let pool = pool(method, 1);
        assert_eq!(pool.join().unwrap_err().kind(), ErrorKind::InvalidState);
        assert_eq!(pool.chunksize(0).map(square, [1]).unwrap_err().kind(), ErrorKind::InvalidInput);
        let pending = pool.apply_async(nap, 100).unwrap();
        pool.close();
        for err in [pool.apply(square, 1).unwrap_err(), pool.map(square, [1]).unwrap_err(), pool.imap(square, [1]).unwrap_err()] {
            assert_eq!(err.kind(), ErrorKind::InvalidState);
            assert!(err.to_string().contains("closed"), "{err}");
        }
        pool.join().unwrap();
        assert_eq!(pending.get().unwrap(), 100, "close lets queued work finish");
    }
}

per_method! {
    fn terminate_fails_what_is_pending_and_drop_leaves_no_worker(method: StartMethod) {
        let pool = pool(method, 2);
        let pids: HashSet<u32> = pool.chunksize(1).map(pid, 0..10).unwrap().into_iter().collect();
        let slow: Vec<_> = (0..6).map(|_| pool.apply_async(nap, 60_000).unwrap()).collect();
        let started = Instant::now();
        pool.terminate();
        pool.join().unwrap();
        assert!(started.elapsed() < Duration::from_secs(5));
        for r in &slow {
            assert_eq!(r.get().unwrap_err().kind(), ErrorKind::BrokenPool);
        }
        assert!(pids.iter().all(|&p| common::stat(p).is_none()), "workers reaped after terminate");

        let pool = self::pool(method, 2);
        let pids: HashSet<u32> = pool.chunksize(1).map(pid, 0..10).unwrap().into_iter().collect();
        drop(pool);
        assert!(pids.iter().all(|&p| common::stat(p).is_none()), "workers reaped after drop");
    }
}

#[derive(Debug)]
struct Unserializable;

impl Serialize for Unserializable {
    fn serialize<S: serde::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
        Err(serde::ser::Error::custom("refuses"))
    }
}

impl<'de> Deserialize<'de> for Unserializable {
    fn deserialize<D: serde::Deserializer<'de>>(_: D) -> Result<Self, D::Error> {
        Err(serde::de::Error::custom("refuses"))
    }
}

fn takes_bad(_: Unserializable) -> u8 {
    0
}

fn returns_bad(_: u8) -> Unserializable {
    Unserializable
}

per_method! {
    fn unserializable_arguments_and_results_are_typed_errors(method: StartMethod) {
        let pool = pool(method, 1);
        let before = pool.apply(pid, 0).unwrap();
        let err = pool.apply_async(takes_bad, Unserializable).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Serialize);
        assert!(err.to_string().contains("refuses"), "{err}");
        let err = pool.apply(returns_bad, 1).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Serialize, "{err}");
        assert_eq!(pool.apply(pid, 0).unwrap(), before, "the worker survived");
    }
}

fn inner_pool(method: StartMethod) -> Vec<u64> {
    let inner = Pool::builder().processes(2).start_method(method).build().unwrap();
    inner.map(square, 0..4).unwrap()
}

per_method! {
    fn a_task_can_use_a_pool_of_its_own(method: StartMethod) {
        let pool = pool(method, 1);
        let r = pool.apply_async(inner_pool, method).unwrap();
        assert_eq!(r.get_timeout(LONG).unwrap(), [0, 1, 4, 9]);
    }
}

fn use_copied_pool(_: ()) -> String {
    let mut pool = COPIED.lock().unwrap();
    let answer = match pool.as_ref().unwrap().apply(square, 2) {
        Ok(_) => "worked".into(),
        Err(e) => format!("{:?}", e.kind()),
    };
    // Files opened now may take the numbers of the pool's fds, which the
    // child closed when it started: dropping the copy must not close them.
    let files: Vec<std::fs::File> = (0..16).map(|_| std::fs::File::open("/proc/self/stat").unwrap()).collect();
    drop(pool.take());
    for mut f in files {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut f, &mut s).expect("a file the copied pool's drop closed");
    }
    answer
}

static COPIED: std::sync::Mutex<Option<Pool>> = std::sync::Mutex::new(None);

#[test]
fn a_pool_copied_into_a_forked_child_says_so() {
    let _w = common::watchdog("copied_pool");
    *COPIED.lock().unwrap() = Some(pool(StartMethod::ForkServer, 1));
    let child = multiproc::Process::new(use_copied_pool, ()).start_method(StartMethod::Fork).start().unwrap();
    assert_eq!(child.join_timeout(LONG).unwrap(), "InvalidState");
    COPIED.lock().unwrap().take();
}

per_method! {
    fn a_lone_timed_task_on_an_idle_pool_times_out(method: StartMethod) {
        let pool = pool(method, 1);
        // The dispatcher has nothing to do and sleeps with no deadline.
        assert_eq!(pool.apply(square, 2).unwrap(), 4);
        let started = Instant::now();
        let err = pool.timeout(Duration::from_millis(100)).apply(nap, 60_000).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Timeout, "{err}");
        assert!(started.elapsed() < Duration::from_secs(10));
    }
}

fn slow_init(ms: u64) {
    nap(ms);
}

per_method! {
    fn a_slow_initializer_does_not_count_against_task_timeouts(method: StartMethod) {
        // The initializer takes longer than a task may: only the task's own
        // run counts.
        let pool = Pool::builder()
            .processes(1)
            .start_method(method)
            .initializer(slow_init, 400)
            .task_timeout(Duration::from_millis(250))
            .build()
            .unwrap();
        let results: Vec<_> = (0..3u64).map(|x| pool.apply_async(square, x).unwrap()).collect();
        for (x, r) in (0..3u64).zip(results) {
            assert_eq!(r.get_timeout(LONG).unwrap(), x * x);
        }
    }
}
