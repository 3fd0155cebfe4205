//! A pool's status pages (one memfd per worker) stay with the pool: a
//! process forked while the pool runs does not inherit them, and each
//! forked worker holds only its own. In its own binary, so that no other
//! test's pools are counted.

mod common;

use common::LONG;
use multiproc::Pool;

fn square(x: u64) -> u64 {
    x * x
}

/// The pool's own fds this process holds: its status pages (one memfd per
/// worker).
fn pool_pages_of(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .flatten()
        .filter(|e| std::fs::read_link(e.path()).is_ok_and(|l| l.to_string_lossy().contains("multiproc-pool-worker")))
        .count()
}

fn my_pool_pages(_: ()) -> usize {
    pool_pages_of(std::process::id())
}

#[test]
fn forked_children_and_workers_do_not_inherit_the_pools_status_pages() {
    let _w = common::watchdog("status page fds");
    let pool = Pool::builder().processes(3).start_method(multiproc::StartMethod::Fork).build().unwrap();
    assert_eq!(pool.map(square, 0..30).unwrap()[5], 25);
    assert!(pool_pages_of(std::process::id()) >= 3, "the parent holds one page per worker");
    // A forked process started now has none of them.
    let child = multiproc::Process::new(my_pool_pages, ()).start_method(multiproc::StartMethod::Fork).start().unwrap();
    assert_eq!(child.join_timeout(LONG).unwrap(), 0);
    // Each forked worker holds only its own page, not its siblings'.
    for w in pool.stats().workers {
        assert_eq!(pool_pages_of(w.pid), 1, "worker {} holds its siblings' pages", w.pid);
    }
}
