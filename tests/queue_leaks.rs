//! Dropped queues leave no fd and no mapping behind. In a binary of its
//! own: it counts this process's fds and queue mappings, which another
//! test's queues, alive at the same moment, would change.

mod common;

use multiproc::Queue;

fn queue_mappings() -> usize {
    std::fs::read_to_string("/proc/self/maps").unwrap().lines().filter(|l| l.contains("multiproc-queue")).count()
}

#[test]
fn dropped_queues_leave_no_fd_or_mapping() {
    let _w = common::watchdog("dropped_queues_leave_no_fd_or_mapping");
    let guard = common::LeakGuard::new();
    let maps = queue_mappings();
    for _ in 0..50 {
        let q = Queue::<Vec<u8>>::new().unwrap();
        q.put(&vec![0; 300_000]).unwrap();
        let c = q.clone();
        assert_eq!(c.get().unwrap().len(), 300_000);
    }
    // Exactly: the guard allows the allocator a few new mappings.
    assert_eq!(queue_mappings(), maps);
    guard.check("50 queues");
}
