//! Every task's exact fate, under every start method: when a worker dies
//! (SIGKILL, SIGSEGV, abort, `exit(3)`), times out, or has its task killed,
//! only the task it was running fails; what it finished is delivered;
//! what it had not started runs elsewhere, exactly once. Each task counts
//! its runs in shared memory, so "exactly once" is checked, not assumed.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::LONG;
use common::probe::{mark, probe, probed_pool, runs};
use multiproc::{ErrorKind, StartMethod};

/// Ends this process the way `how` says.
fn die(how: &str) -> ! {
    match how {
        "kill" => {
            let me = std::process::id().to_string();
            let _ = std::process::Command::new("kill").args(["-KILL", &me]).status();
        }
        "segv" => {
            // Twice: a forked worker inherits std's SIGSEGV handler (for
            // stack overflows), which lets the first one pass when it did
            // not come from a fault.
            let me = std::process::id().to_string();
            for _ in 0..2 {
                let _ = std::process::Command::new("kill").args(["-SEGV", &me]).status();
            }
        }
        "abort" => std::process::abort(),
        "exit" => std::process::exit(3),
        other => panic!("unknown death {other}"),
    }
    std::thread::sleep(LONG);
    unreachable!("still alive after dying");
}

fn exitcode(how: &str) -> i32 {
    match how {
        "kill" => -9,
        "segv" => -11,
        "abort" => -6,
        _ => 3,
    }
}

/// Task `i`: counts its run; if `i == at`, says so, waits for `go`, and
/// dies the way `how` says; otherwise returns `i * 10`.
fn die_at((i, at, how): (u64, u64, String)) -> u64 {
    mark(i);
    if i == at {
        probe().started.set();
        assert!(probe().go.wait(Some(LONG)).unwrap());
        die(&how);
    }
    i * 10
}

per_method! {
    fn a_dying_worker_fails_only_the_task_it_was_running(method: StartMethod) {
        for how in ["kill", "segv", "abort", "exit"] {
            const N: u64 = 12;
            let (pool, started, go, counts) = probed_pool(method, 2, N as usize);
            let results: Vec<_> = (0..N).map(|i| pool.apply_async(die_at, (i, 0, how.to_string())).unwrap()).collect();
            assert!(started.wait(Some(LONG)).unwrap(), "{how}: the doomed task never started");
            // Task 0 holds its worker, whose window holds more tasks, while
            // the rest wait in the other worker's window and the queue.
            go.set();
            for (i, r) in results.iter().enumerate() {
                let got = r.get_timeout(LONG);
                if i == 0 {
                    let e = got.unwrap_err();
                    assert_eq!(e.kind(), ErrorKind::WorkerLost, "{how}: {e}");
                    assert_eq!(e.exitcode(), Some(exitcode(how)), "{how}: {e}");
                    assert!(e.pid().is_some());
                } else {
                    assert_eq!(got.unwrap(), i as u64 * 10, "{how}: task {i}");
                }
            }
            pool.close();
            pool.join().unwrap();
            assert_eq!(runs(&counts), vec![1; N as usize], "{how}: every task ran exactly once");
        }
    }
}

/// Task `i`: counts its run; if `i == at`, dies the way `how` says at once.
fn die_now_at((i, at, how): (u64, u64, String)) -> u64 {
    mark(i);
    if i == at {
        die(&how);
    }
    i * 10
}

per_method! {
    fn a_death_in_the_middle_of_a_chunk_keeps_its_finished_items_and_reruns_the_rest(method: StartMethod) {
        for how in ["kill", "abort"] {
            const N: u64 = 16;
            let (pool, _started, _go, counts) = probed_pool(method, 2, N as usize);
            let it = pool.chunksize(4).imap(die_now_at, (0..N).map(|i| (i, 6, how.to_string()))).unwrap();
            let results: Vec<_> = it.collect();
            assert_eq!(results.len(), N as usize);
            for (i, r) in results.iter().enumerate() {
                match i {
                    6 => assert_eq!(r.as_ref().unwrap_err().kind(), ErrorKind::WorkerLost, "{how}"),
                    _ => assert_eq!(*r.as_ref().unwrap(), i as u64 * 10, "{how}: item {i}"),
                }
            }
            pool.close();
            pool.join().unwrap();
            assert_eq!(runs(&counts), vec![1; N as usize], "{how}: items 4 and 5 delivered, 7 run again, once each");
        }
    }
}

/// Task `i`: counts its run, and takes long if `i == slow`.
fn slow_at((i, slow): (u64, u64)) -> u64 {
    mark(i);
    if i == slow {
        probe().started.set();
        std::thread::sleep(LONG);
    }
    i
}

per_method! {
    fn a_timeout_fails_only_the_late_task_and_keeps_the_window(method: StartMethod) {
        const N: u64 = 20;
        let (pool, _started, _go, counts) = probed_pool(method, 2, N as usize);
        let t0 = Instant::now();
        let results: Vec<_> = pool
            .timeout(Duration::from_millis(300))
            .chunksize(3)
            .imap(slow_at, (0..N).map(|i| (i, 4)))
            .unwrap()
            .collect();
        assert!(t0.elapsed() < Duration::from_secs(20));
        for (i, r) in results.iter().enumerate() {
            match i {
                4 => {
                    let e = r.as_ref().unwrap_err();
                    assert_eq!(e.kind(), ErrorKind::Timeout, "{e}");
                }
                _ => assert_eq!(*r.as_ref().unwrap(), i as u64, "item {i}"),
            }
        }
        pool.close();
        pool.join().unwrap();
        assert_eq!(runs(&counts), vec![1; N as usize], "item 5, in the late task's chunk, ran once elsewhere");
    }
}

/// Task `i`: counts its run; task `at` says so and holds until `go`.
fn hold_at((i, at): (u64, u64)) -> u64 {
    mark(i);
    if i == at {
        probe().started.set();
        assert!(probe().go.wait(Some(LONG)).unwrap());
    }
    i
}

per_method! {
    fn kill_stops_a_running_task_and_nothing_else(method: StartMethod) {
        const N: u64 = 8;
        let (pool, started, go, counts) = probed_pool(method, 1, N as usize);
        let results: Vec<_> = (0..N).map(|i| pool.apply_async(hold_at, (i, 0)).unwrap()).collect();
        assert!(started.wait(Some(LONG)).unwrap());
        assert!(!results[0].cancel(), "cancel() cannot stop a running task");
        assert!(results[0].kill(), "kill() can");
        assert_eq!(results[0].get_timeout(LONG).unwrap_err().kind(), ErrorKind::Cancelled);
        assert!(results[0].cancelled());
        for (i, r) in results.iter().enumerate().skip(1) {
            assert_eq!(r.get_timeout(LONG).unwrap(), i as u64, "task {i} ran on the replacement");
        }
        assert!(!results[1].kill(), "a finished task has nothing to stop");
        go.set();
        pool.close();
        pool.join().unwrap();
        assert_eq!(runs(&counts), vec![1; N as usize]);
    }
}

/// Task `i`: counts its run, then spins for about `us` microseconds.
fn busy((i, us): (u64, u64)) -> u64 {
    mark(i);
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_micros(us) {
        std::hint::spin_loop();
    }
    i
}

per_method! {
    fn random_kills_lose_at_most_one_task_each_and_no_task_runs_twice(method: StartMethod) {
        const N: u64 = 5000;
        const KILLS: u64 = 100;
        let (pool, _started, _go, counts) = probed_pool(method, 2, N as usize);
        let kills = Arc::new(AtomicU64::new(0));
        let results: Vec<_> = std::thread::scope(|scope| {
            // Kills a random worker of this pool, waits for the pool to
            // replace it, and again, until KILLS workers died.
            let killer = scope.spawn(|| {
                let mut seed = 0x2545_f491_4f6c_dd1du64;
                let mut last = Vec::new();
                while kills.load(Ordering::SeqCst) < KILLS {
                    let pids: Vec<u32> = pool.stats().workers.iter().map(|w| w.pid).collect();
                    if pids.len() < 2 || pids == last {
                        std::thread::sleep(Duration::from_millis(1));
                        continue;
                    }
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    common::sigkill(pids[(seed % pids.len() as u64) as usize]);
                    last = pids;
                    kills.fetch_add(1, Ordering::SeqCst);
                }
            });
            // The input waits for the kills, so that they spread over the run.
            let gate = Arc::clone(&kills);
            let input = (0..N).map(move |i| {
                let want = i * KILLS / N;
                let t0 = Instant::now();
                while gate.load(Ordering::SeqCst) < want && t0.elapsed() < LONG {
                    std::thread::sleep(Duration::from_micros(200));
                }
                (i, 100)
            });
            let results = pool.imap(busy, input).unwrap().collect();
            killer.join().unwrap();
            results
        });
        let kills = kills.load(Ordering::SeqCst);
        assert_eq!(results.len(), N as usize, "every task answered once");
        assert!(kills >= KILLS, "only {kills} kills");
        let counts = runs(&counts);
        let mut lost = 0;
        for (i, r) in results.iter().enumerate() {
            match r {
                Ok(v) => {
                    assert_eq!(*v, i as u64);
                    assert_eq!(counts[i], 1, "task {i} answered, so it ran exactly once");
                }
                Err(e) => {
                    assert_eq!(e.kind(), ErrorKind::WorkerLost, "item {i}: {e}");
                    // It had begun (its worker said so) when the kill landed:
                    // perhaps before its first instruction, never twice.
                    assert!(counts[i] <= 1, "task {i} ran {} times", counts[i]);
                    lost += 1;
                }
            }
        }
        assert!(lost <= kills, "{lost} tasks lost to {kills} kills");
        eprintln!("{method}: {lost} tasks lost to {kills} kills");
    }
}

per_method! {
    fn kill_racing_the_end_of_a_task_gives_it_one_fate_and_touches_nothing_else(method: StartMethod) {
        // Every other task is killed at some moment of its short run (or
        // before, or just after): each ends delivered or cancelled, never
        // both and never neither, and the tasks not killed are untouched.
        const N: u64 = 300;
        let (pool, _started, _go, counts) = probed_pool(method, 2, N as usize);
        let results: Vec<_> = (0..N).map(|i| pool.apply_async(busy, (i, 50 + (i * 37) % 400)).unwrap()).collect();
        let mut killed = 0;
        for (i, r) in results.iter().enumerate().filter(|(i, _)| i % 2 == 1) {
            let t0 = Instant::now();
            while t0.elapsed() < Duration::from_micros((i as u64 * 53) % 300) {
                std::hint::spin_loop();
            }
            killed += usize::from(r.kill());
        }
        let counts_now = |i: usize| runs(&counts)[i];
        let (mut delivered, mut cancelled) = (0, 0);
        for (i, r) in results.iter().enumerate() {
            match r.get_timeout(LONG) {
                Ok(v) => {
                    assert_eq!(v, i as u64);
                    assert_eq!(counts_now(i), 1, "task {i} answered, so it ran once");
                    delivered += 1;
                }
                Err(e) => {
                    assert!(i % 2 == 1, "task {i} was not killed, yet failed: {e}");
                    assert_eq!(e.kind(), ErrorKind::Cancelled, "task {i}: {e}");
                    assert!(r.cancelled());
                    assert!(counts_now(i) <= 1, "task {i} ran twice");
                    cancelled += 1;
                }
            }
        }
        assert_eq!(delivered + cancelled, N as usize);
        assert_eq!(cancelled, killed, "kill() said true exactly for the tasks it stopped");
        pool.close();
        pool.join().unwrap();
    }
}

per_method! {
    fn cancelling_hundreds_of_queued_tasks_never_runs_one(method: StartMethod) {
        // Each cancelled chunk leaves the window at once while the worker
        // has not read it yet: the worker's status-page slots must not be
        // reused under it (they would make a cancelled task run).
        const N: u64 = 300;
        let (pool, started, go, counts) = probed_pool(method, 1, N as usize + 1);
        let running = pool.apply_async(hold_at, (0, 0)).unwrap();
        assert!(started.wait(Some(LONG)).unwrap());
        for i in 1..N {
            let r = pool.apply_async(hold_at, (i, 0)).unwrap();
            assert!(r.cancel(), "task {i} had not started");
        }
        let after = pool.apply_async(hold_at, (N, 0)).unwrap();
        go.set();
        assert_eq!(running.get_timeout(LONG).unwrap(), 0);
        assert_eq!(after.get_timeout(LONG).unwrap(), N);
        let runs = runs(&counts);
        assert_eq!(runs[0], 1);
        assert_eq!(runs[N as usize], 1);
        assert!(runs[1..N as usize].iter().all(|&r| r == 0), "a cancelled task ran");
    }
}

per_method! {
    fn kill_of_a_map_stops_its_running_chunk_not_its_first(method: StartMethod) {
        let (pool, started, _go, counts) = probed_pool(method, 1, 4);
        // Items 0 and 1 finish; item 2 holds; item 3 waits behind it.
        let all = pool.chunksize(1).map_async(hold_at, (0..4).map(|i| (i, 2))).unwrap();
        assert!(started.wait(Some(LONG)).unwrap());
        assert!(all.kill(), "item 2 was running");
        assert_eq!(all.get_timeout(LONG).unwrap_err().kind(), ErrorKind::Cancelled);
        let runs = runs(&counts);
        assert_eq!(&runs[..3], [1, 1, 1]);
        assert_eq!(runs[3], 0, "the item after the killed one never ran");
        assert_eq!(pool.apply(hold_at, (0, 9)).unwrap(), 0, "the pool goes on");
    }
}

fn tenfold(i: u64) -> u64 {
    i * 10
}

per_method! {
    fn active_children_leaves_a_dead_worker_to_its_pool(method: StartMethod) {
        // active_children() reaps the children that ended, as Python's
        // does, but a pool's worker is its pool's to reap: a fork server
        // reports a child's end once, and a pool that never heard it would
        // go on sending tasks to a worker that is gone. A thread calls
        // active_children() without pause while workers are killed, so
        // that it looks at each death as soon as the pool does.
        let pool = multiproc::Pool::builder().processes(2).start_method(method).build().unwrap();
        assert_eq!(pool.apply(tenfold, 1).unwrap(), 10);
        let stop = std::sync::atomic::AtomicBool::new(false);
        let outcome = std::thread::scope(|s| {
            s.spawn(|| {
                while !stop.load(Ordering::SeqCst) {
                    let _ = multiproc::active_children();
                }
            });
            let outcome = (0..10).try_for_each(|round| {
                let victim = pool.stats().workers[round % 2].pid;
                common::sigkill(victim);
                let replaced = common::wait_until(LONG, || {
                    let workers = pool.stats().workers;
                    workers.len() == 2 && workers.iter().all(|w| w.pid != victim)
                });
                if !replaced {
                    return Err(format!("round {round}: the pool never replaced its killed worker {victim}"));
                }
                match pool.map_async(tenfold, 0..40).unwrap().get_timeout(LONG) {
                    Ok(all) if all == (0..40).map(|i| i * 10).collect::<Vec<u64>>() => Ok(()),
                    other => Err(format!("round {round}: {other:?}")),
                }
            });
            stop.store(true, Ordering::SeqCst);
            outcome
        });
        outcome.unwrap();
    }
}
