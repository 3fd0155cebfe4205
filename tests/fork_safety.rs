//! The Fork start method in a busy multithreaded parent: other threads
//! panic (holding the panic-hook lock) and read the environment (holding
//! std's environment lock) while children are forked, with environment
//! additions. A child that took either lock after the fork would hang.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use common::LONG;
use multiproc::{Process, StartMethod};

fn forever(_: ()) {
    loop {
        std::thread::park();
    }
}

fn seven(_: ()) -> u8 {
    7
}

/// A forked child must not inherit the fds another thread is in the
/// middle of setting up (a spawn's error pipe, a new control socket): a
/// spawn would wait on its error pipe for as long as that forked child
/// lives, here forever.
#[test]
fn fork_starts_do_not_capture_other_threads_fds_in_flight() {
    let _w = common::watchdog("fork_race");
    let stop = Arc::new(AtomicBool::new(false));
    let forker = {
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            let mut kids = Vec::new();
            while !stop.load(Ordering::Relaxed) && kids.len() < 400 {
                kids.push(Process::new(forever, ()).daemon(true).start_method(StartMethod::Fork).start().unwrap());
            }
            kids
        })
    };
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    let starter = std::thread::spawn(move || {
        for method in [StartMethod::Spawn, StartMethod::ForkServer] {
            for _ in 0..60 {
                let child = Process::new(seven, ()).start_method(method).start().unwrap();
                assert_eq!(child.join_timeout(LONG).unwrap(), 7);
            }
        }
        let _ = done_tx.send(());
    });
    let finished = done_rx.recv_timeout(std::time::Duration::from_secs(60));
    stop.store(true, Ordering::Relaxed);
    let kids = forker.join().unwrap();
    for kid in &kids {
        kid.kill().unwrap();
    }
    for kid in &kids {
        let _ = kid.join_timeout(LONG);
    }
    assert!(finished.is_ok(), "spawn / fork-server starts got stuck behind forked children");
    starter.join().unwrap();
}

/// Pools made and used from two threads at once, with fork workers: a
/// worker adopts the process's token budget first thing, and a fork taken
/// while the other thread held the budget's lock (making a pool's
/// semaphore) left that worker waiting for it for ever, its task never
/// started (found by CI as a hang in tests/pool_callbacks.rs).
#[test]
fn fork_workers_start_while_other_threads_make_pools() {
    let _w = common::watchdog("fork_budget_race");
    let run = || {
        for _ in 0..60 {
            let pool = multiproc::Pool::builder().processes(2).start_method(StartMethod::Fork).build().unwrap();
            let r = pool.apply_async(seven, ()).unwrap();
            assert_eq!(r.get_timeout(LONG).expect("a fork worker never ran its task"), 7);
        }
    };
    let other = std::thread::spawn(run);
    run();
    other.join().unwrap();
}
