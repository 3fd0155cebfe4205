//! The parent's memory stays bounded when an `imap` consumer stalls: what
//! is in flight and unconsumed is bounded in bytes, not only in chunks. A
//! binary of its own, so that no other test moves this process's RSS.

mod common;

use std::time::Duration;

use common::LONG;
use multiproc::Pool;

const MIB: usize = 1 << 20;

fn echo(item: Vec<u8>) -> Vec<u8> {
    item
}

/// This process's resident set, in bytes.
fn rss() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: usize = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * page_size()
}

fn page_size() -> usize {
    let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
    let kib: usize = smaps
        .lines()
        .find_map(|l| l.strip_prefix("KernelPageSize:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    kib * 1024
}

#[test]
fn a_stalled_imap_consumer_holds_at_most_the_byte_bound() {
    let _w = common::watchdog_for("stalled imap", Duration::from_secs(300));
    const BOUND: usize = 16 * MIB;
    const ITEMS: usize = 300;
    let pool = Pool::builder().processes(2).max_in_flight_bytes(BOUND).build().unwrap();
    // Warm the pool and the allocator with the same sizes first.
    for r in pool.imap(echo, (0..8).map(|i| vec![i as u8; MIB])).unwrap() {
        assert_eq!(r.unwrap().len(), MIB);
    }
    let warmed = pool.stats().done;
    let before = rss();

    let input = (0..ITEMS).map(|i| vec![i as u8; MIB]);
    let mut results = pool.imap(echo, input).unwrap();
    for i in 0..10 {
        let item = results.next().unwrap().unwrap();
        assert!(item.len() == MIB && item.iter().all(|&b| b == i as u8), "item {i}");
    }
    // The consumer stalls. Wait until the pool has nothing left to do: every
    // task sent has run and its result has reached this process.
    let settled = common::wait_until(LONG, || {
        let s = pool.stats();
        let run: u64 = s.workers.iter().map(|w| w.tasks_run).sum();
        s.queued == 0 && s.running == 0 && s.done == run && s.done > warmed + 10
    });
    assert!(settled, "the pool did not settle: {:?}", pool.stats());
    let sent = pool.stats().done - warmed - 10;
    let grown = rss().saturating_sub(before);
    // Without the byte bound, the 256 chunks of the default max_in_flight
    // would be in flight: 256 MiB of arguments and as much of results.
    eprintln!("stalled: {sent} results waiting, the parent grew by {:.1} MiB", grown as f64 / MIB as f64);
    assert!(sent < (ITEMS - 10) as u64, "the whole input was read ahead ({sent} items)");
    assert!(
        grown < BOUND + 16 * MIB,
        "the parent grew by {} MiB with {sent} results waiting (bound {} MiB)",
        grown / MIB,
        BOUND / MIB
    );

    // The rest arrives, in order.
    for i in 10..ITEMS {
        let item = results.next().unwrap().unwrap();
        assert!(item.len() == MIB && item.iter().all(|&b| b == i as u8), "item {i}");
    }
    assert!(results.next().is_none());
}
