//! Workers under control (issue 17): a memory cap that replaces a worker
//! between tasks, and `interrupt()` (in tests/process.rs).

mod common;

use multiproc::{ErrorKind, Pool, StartMethod};

/// This worker's pid and resident memory.
fn pid_and_rss(_: ()) -> (u32, u64) {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: u64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    (std::process::id(), pages * 4096)
}

/// Keeps `mib` MiB, touched, for the rest of the worker's life; its pid.
fn hog(mib: usize) -> u32 {
    Box::leak(vec![1u8; mib << 20].into_boxed_slice());
    std::process::id()
}

per_method! {
    fn a_worker_over_max_memory_is_replaced_after_its_task(method: StartMethod) {
        // What a fresh worker holds, to set the cap above it.
        let probe = Pool::builder().processes(1).start_method(method).build().unwrap();
        let (_, baseline) = probe.apply(pid_and_rss, ()).unwrap();
        drop(probe);
        let pool = Pool::builder()
            .processes(1)
            .start_method(method)
            .max_memory_per_child(baseline + (32 << 20))
            .build()
            .unwrap();
        let (first, _) = pool.apply(pid_and_rss, ()).unwrap();
        let (again, _) = pool.apply(pid_and_rss, ()).unwrap();
        assert_eq!(first, again, "under the cap, the worker stays");
        // The task that goes over succeeds; the next one runs elsewhere.
        assert_eq!(pool.apply(hog, 64).unwrap(), first);
        let (next, rss) = pool.apply(pid_and_rss, ()).unwrap();
        assert_ne!(next, first, "the worker over the cap was replaced");
        assert!(rss < baseline + (32 << 20), "the new worker starts small: {rss}");
        // A map whose every chunk goes over: every result is right, none
        // lost or run twice.
        let pids = pool.chunksize(1).map(hog, vec![40; 6]).unwrap();
        let distinct: std::collections::HashSet<u32> = pids.iter().copied().collect();
        assert_eq!(distinct.len(), 6, "each chunk in a fresh worker: {pids:?}");
        assert_eq!(pool.stats().failed, 0);
    }
}

#[test]
fn a_zero_memory_cap_is_refused() {
    let err = Pool::builder().max_memory_per_child(0).build().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
}
