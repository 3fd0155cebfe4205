//! Soak: 100,000 tasks per start method while a helper SIGKILLs a random
//! worker every ~200 ms. Every task returns its correct value or fails with
//! `WorkerLost`, and at most one per kill fails (only the task a killed
//! worker was running); none is lost or duplicated; afterwards no process,
//! fd or thread is left over.
//!
//! Ignored in the quick run; `.ci/run` runs it with `--ignored`.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use multiproc::{ErrorKind, Pool, StartMethod};

const TASKS: u64 = 100_000;

/// 20 µs of work (whatever the build profile), then the square: 100,000
/// of them keep two workers busy for about a second, through several kills.
fn work(x: u64) -> u64 {
    let start = Instant::now();
    while start.elapsed() < Duration::from_micros(20) {
        std::hint::spin_loop();
    }
    x * x
}

fn worker_pids() -> Vec<u32> {
    multiproc::active_children().into_iter().filter(|c| c.name().contains("PoolWorker")).map(|c| c.pid()).collect()
}

fn soak(method: StartMethod) -> (usize, usize) {
    let pool = Pool::builder().processes(2).start_method(method).build().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let killer = {
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            let mut kills = 0;
            let mut seed = 0x2545_f491_4f6c_dd1du64;
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(200));
                let pids = worker_pids();
                if pids.is_empty() {
                    continue;
                }
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                common::sigkill(pids[(seed % pids.len() as u64) as usize]);
                kills += 1;
            }
            kills
        })
    };
    let mut ok = 0;
    let mut lost = 0;
    let mut seen = 0u64;
    for (i, result) in pool.imap(work, 0..TASKS).unwrap().enumerate() {
        match result {
            Ok(v) => {
                assert_eq!(v, (i as u64) * (i as u64), "{method}: item {i} has a wrong value");
                ok += 1;
            }
            Err(e) => {
                assert_eq!(e.kind(), ErrorKind::WorkerLost, "{method}: item {i}: {e}");
                lost += 1;
            }
        }
        seen += 1;
    }
    stop.store(true, Ordering::Relaxed);
    let kills = killer.join().unwrap();
    assert_eq!(seen, TASKS, "{method}: every task came back exactly once");
    assert!(kills >= 3, "{method}: the helper killed only {kills} workers; the soak was too short");
    assert!(lost <= kills, "{method}: {lost} tasks lost to {kills} kills: more than the running one per kill");
    eprintln!("{method}: {ok} ok, {lost} lost to {kills} kills");
    (ok, lost)
}

#[test]
#[ignore = "a soak test (about 5 s): run with --ignored, as .ci/run does"]
fn a_pool_survives_random_worker_kills() {
    let _w = common::watchdog_for("soak", Duration::from_secs(600));
    let before = (common::fd_count() - common::spare_pages(), common::thread_count());
    for method in common::METHODS {
        let (ok, _) = soak(method);
        assert!(ok > 0);
    }
    // The fork server stays; everything else is gone.
    assert!(common::wait_until(common::LONG, || worker_pids().is_empty()), "workers left: {:?}", worker_pids());
    let zombies: Vec<_> = common::children().into_iter().filter(|&(_, s)| s == 'Z').collect();
    assert!(zombies.is_empty(), "zombies: {zombies:?}");
    assert!(
        common::wait_until(common::LONG, || common::thread_count() <= before.1),
        "threads: {} before, {} after",
        before.1,
        common::thread_count()
    );
    // The fork server's socket and pidfd are the only new fds, besides the
    // status pages kept for the next pool's workers (at most 16).
    let after = common::fd_count() - common::spare_pages();
    assert!(after <= before.0 + 2, "fds: {} before, {after} after", before.0);
    assert!(common::spare_pages() <= 16, "{} spare status pages", common::spare_pages());
}
