//! A child started by spawn or the fork server takes its parent's default
//! start method, as Python's children do; so a Pool made in a spawned
//! child uses spawn too when the program chose spawn. In its own binary,
//! because it changes the process-wide default.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};

use common::LONG;
use multiproc::{Pool, Process, StartMethod};

/// Set in the test's child before it makes a pool: a forked worker would
/// inherit it, an exec'd (spawned) worker starts without it.
static MARKED: AtomicBool = AtomicBool::new(false);

/// What a pool worker sees: its default start method, whether it shares
/// its parent's memory, and its parent's pid.
fn worker_view(_: ()) -> (StartMethod, bool, u32) {
    (multiproc::get_start_method(), MARKED.load(Ordering::SeqCst), std::os::unix::process::parent_id())
}

/// Runs in the child: its own default, then what a pool it makes sees.
fn child_view(_: ()) -> (StartMethod, (StartMethod, bool, u32), u32) {
    let mine = multiproc::get_start_method();
    MARKED.store(true, Ordering::SeqCst);
    let pool = Pool::new(1).unwrap();
    let worker = pool.apply(worker_view, ()).unwrap();
    (mine, worker, std::process::id())
}

#[test]
fn children_take_their_parents_default_start_method() {
    let _w = common::watchdog("start method");
    for method in [StartMethod::Spawn, StartMethod::ForkServer, StartMethod::Fork] {
        multiproc::force_start_method(method);
        let child = Process::new(child_view, ()).start().unwrap();
        let (mine, (worker_method, worker_marked, worker_parent), child_pid) = child.join_timeout(LONG).unwrap();
        assert_eq!(mine, method, "the child's default");
        assert_eq!(worker_method, method, "its pool worker's default");
        match method {
            // A spawned worker is the child's own, and does not share its
            // memory.
            StartMethod::Spawn => assert!(!worker_marked && worker_parent == child_pid),
            // A fork-server worker is the fork server's child.
            StartMethod::ForkServer => assert!(!worker_marked && worker_parent != child_pid),
            StartMethod::Fork => assert!(worker_marked && worker_parent == child_pid),
        }
    }
}
