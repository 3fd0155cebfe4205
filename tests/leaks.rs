//! Leak checks: after 200 start/join cycles per start method (plus panics,
//! kills and dropped handles, and managers started and dropped), this
//! process has the same fds, threads and children as before, and no
//! zombies.
//!
//! One test in its own binary, so that no other test changes the counts.

mod common;

use std::time::Duration;

use common::LONG;
use multiproc::Process;

fn square(x: u64) -> u64 {
    x * x
}

fn boom(_: ()) {
    panic!("boom");
}

fn forever(_: ()) {
    loop {
        std::thread::park();
    }
}

#[test]
fn no_fd_thread_or_process_leaks_after_200_cycles_per_method() {
    // Warm up: the fork server starts, lazy statics initialise.
    for method in common::METHODS {
        Process::new(square, 1).start_method(method).start().unwrap().join_timeout(LONG).unwrap();
    }
    let _w = common::watchdog_for("leaks", Duration::from_secs(300));
    let guard = common::LeakGuard::new();

    for method in common::METHODS {
        for i in 0..200u64 {
            let child = Process::new(square, i).start_method(method).start().unwrap();
            assert_eq!(child.join_timeout(LONG).unwrap(), i * i);
        }
        // The failure paths release everything too.
        for _ in 0..10 {
            let child = Process::new(boom, ()).start_method(method).start().unwrap();
            assert!(child.join_timeout(LONG).is_err());
            let child = Process::new(forever, ()).daemon(true).start_method(method).start().unwrap();
            child.kill().unwrap();
            assert!(child.join_timeout(LONG).is_err());
            let child = Process::new(forever, ()).daemon(true).start_method(method).start().unwrap();
            assert!(child.join_timeout(Duration::ZERO).unwrap_err().is_timeout());
            child.terminate().unwrap();
            drop(child); // detached: the reaper thread takes it
        }
    }

    // Managers started, used and dropped (each kept a connection open for
    // the process's life before the fault matrix found it).
    for method in common::METHODS {
        for _ in 0..5 {
            let m = multiproc::Manager::builder().start_method(method).start().unwrap();
            m.dict::<u32, u32>().unwrap().insert(1, 2).unwrap();
            let other = multiproc::Manager::connect(m.address(), m.authkey()).unwrap();
            assert_eq!(other.object_count().unwrap(), 0);
        }
    }

    // Detached children are reaped by a thread that exits when done.
    guard.check("200 processes per start method, their failure paths, and 15 managers");
}
