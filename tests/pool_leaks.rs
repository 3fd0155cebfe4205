//! Pools leave nothing behind: after pools are created, used (a crash and
//! a timeout included), dropped or closed, this process has the same fds
//! (but a bounded set of spare worker status pages), threads and children
//! as before, and no zombies. In its own binary, so
//! that no other test changes the counts.

mod common;

use std::time::Duration;

use multiproc::Pool;

fn square(x: u64) -> u64 {
    x * x
}

fn crash_on(x: u64) -> u64 {
    if x == 3 {
        std::process::abort();
    }
    x
}

fn nap(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

#[test]
fn pools_leave_no_fd_thread_or_process_behind() {
    let _w = common::watchdog_for("pool_leaks", Duration::from_secs(300));
    // Warm up: the fork server starts, lazy statics initialise.
    for method in common::METHODS {
        drop(Pool::builder().processes(1).start_method(method).build().unwrap());
    }
    let guard = common::LeakGuard::new();
    for method in common::METHODS {
        for round in 0..10 {
            let pool = Pool::builder().processes(2).start_method(method).build().unwrap();
            assert_eq!(pool.map(square, 0..100).unwrap()[10], 100);
            let _ = pool.chunksize(1).map(crash_on, 0..8);
            assert!(pool.timeout(Duration::from_millis(50)).apply(nap, 60_000).is_err());
            let lazy = pool.imap(square, 0..).unwrap();
            drop(lazy);
            if round % 2 == 0 {
                pool.close();
                pool.join().unwrap();
            }
            drop(pool);
        }
    }
    // The guard also checks that at most 16 spare status pages are kept.
    guard.check("60 pools, their failures, timeouts and dropped iterators");
}
