//! The MPI pool under `mpirun` (run by tests/mpi_pool.rs): rank 0 runs
//! every pool method on the other ranks and prints one `ok ...` line per
//! check; an assertion that fails panics, and the test sees the job fail.
//! With `--expect-mismatch`, one rank runs another build, and the pool
//! must refuse to start, naming its host.

use std::sync::mpsc;
use std::time::Duration;

use multiproc::{ErrorKind, Pool, PoolStats, ReturnWhen, as_completed, wait};

fn square(x: u64) -> u64 {
    x * x
}

fn mul(a: u64, b: u64) -> u64 {
    a * b
}

fn checked_div((a, b): (u64, u64)) -> Result<u64, String> {
    a.checked_div(b).ok_or_else(|| format!("{a} / 0"))
}

fn boom(x: u64) -> u64 {
    if x == 3 {
        panic!("three is not allowed");
    }
    x
}

fn where_am_i(_: u32) -> (u32, String) {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    (multiproc::mpi::rank().unwrap_or(u32::MAX), host.trim().to_owned())
}

fn die(_: ()) {
    std::process::abort();
}

fn worker_pid(_: ()) -> u32 {
    std::process::id()
}

static TAG: std::sync::Mutex<String> = std::sync::Mutex::new(String::new());

fn set_tag(tag: String) {
    *TAG.lock().unwrap() = tag;
}

fn read_tag(_: ()) -> String {
    TAG.lock().unwrap().clone()
}

fn sleepy(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

/// Hybrid: a local pool inside a task on a worker rank.
fn local_sum(n: u64) -> u64 {
    let pool = Pool::new(2).expect("a local pool inside an MPI rank");
    pool.map(square, 0..n).expect("the local map").iter().sum()
}

const LIMIT: Duration = Duration::from_secs(60);

fn main() {
    let expect_mismatch = std::env::args().any(|a| a == "--expect-mismatch");
    assert_eq!(multiproc::mpi::rank(), Some(0), "only rank 0 reaches main");
    let size = multiproc::mpi::world_size().expect("under mpirun");
    if expect_mismatch {
        let err = multiproc::mpi::pool().expect_err("a rank runs another build");
        assert_eq!(err.kind(), ErrorKind::BuildMismatch, "{err}");
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
        assert!(err.to_string().contains(&format!("on host {}", host.trim())), "{err}");
        println!("ok mismatch refused: {err}");
        return;
    }
    if std::env::args().any(|a| a == "--crash") {
        // A rank that dies ends the whole job (Open MPI 4 has no fault
        // tolerance): mpirun must end rank 0 too, not leave it waiting.
        let pool = multiproc::mpi::pool().expect("an MPI pool");
        println!("crashing a rank");
        let _ = pool.apply(die, ());
        println!("rank 0 went on after a rank died");
        return;
    }
    let pool = multiproc::mpi::pool().expect("an MPI pool");
    assert_eq!(pool.processes(), size as usize - 1);
    println!("ok pool of {} ranks", pool.processes());

    // Every rank serves, each on its own rank, none on rank 0.
    let placed: Vec<(u32, String)> = pool.chunksize(1).map(where_am_i, 0..64).unwrap();
    let mut ranks: Vec<u32> = placed.iter().map(|(r, _)| *r).collect();
    ranks.sort_unstable();
    ranks.dedup();
    assert!(ranks.iter().all(|&r| r >= 1 && r < size), "{ranks:?}");
    let mut places = placed.clone();
    places.sort();
    places.dedup();
    for (rank, host) in places {
        println!("placed rank {rank} on {host}");
    }
    println!("ok map runs on ranks >= 1");

    let want: Vec<u64> = (0..10_000).map(square).collect();
    assert_eq!(pool.map(square, 0..10_000).unwrap(), want);
    assert_eq!(pool.chunksize(1).map(square, 0..2000).unwrap(), want[..2000]);
    assert_eq!(pool.chunksize(1000).map(square, 0..10_000).unwrap(), want);
    println!("ok map");
    let big: Vec<Vec<u8>> = (0..4).map(|i| vec![i as u8; 3 << 20]).collect();
    fn total(v: Vec<u8>) -> u64 {
        v.iter().map(|&b| u64::from(b)).sum()
    }
    let sums = pool.map(total, big).unwrap();
    assert_eq!(sums, (0..4u64).map(|i| i * (3 << 20)).collect::<Vec<_>>());
    fn filled(n: usize) -> Vec<u8> {
        vec![n as u8; n]
    }
    let results = pool.map(filled, [3 << 20, 5, 3 << 20, (3 << 20) + 1]).unwrap();
    assert!(results.iter().all(|r| r.iter().all(|&b| b == r.len() as u8)));
    assert_eq!(results.iter().map(Vec::len).collect::<Vec<_>>(), [3 << 20, 5, 3 << 20, (3 << 20) + 1]);
    println!("ok map of 3 MiB arguments and results");

    let lazy: Vec<u64> = pool.imap(square, 0..1000).unwrap().map(Result::unwrap).collect();
    assert_eq!(lazy, want[..1000]);
    let mut unordered: Vec<u64> =
        pool.chunksize(7).imap_unordered(square, 0..1000).unwrap().map(Result::unwrap).collect();
    unordered.sort_unstable();
    assert_eq!(unordered, want[..1000]);
    println!("ok imap imap_unordered");

    assert_eq!(
        pool.starmap(mul, (0..100).map(|i| (i, i + 1))).unwrap(),
        (0..100).map(|i| i * (i + 1)).collect::<Vec<_>>()
    );
    assert_eq!(pool.map_async(square, 0..100).unwrap().get_timeout(LIMIT).unwrap(), want[..100]);
    assert_eq!(pool.starmap_async(mul, [(2, 3), (4, 5)]).unwrap().get_timeout(LIMIT).unwrap(), [6, 20]);
    println!("ok starmap map_async starmap_async");

    assert_eq!(pool.apply(square, 12).unwrap(), 144);
    let (tx, rx) = mpsc::channel();
    let r = pool.apply_async(square, 9).unwrap().callback(move |v| tx.send(v).unwrap());
    assert!(r.wait_timeout(LIMIT));
    assert_eq!(rx.recv_timeout(LIMIT).unwrap(), 81);
    let futures: Vec<_> = (0..20).map(|i| pool.submit(square, i).unwrap()).collect();
    let done = wait(&futures, ReturnWhen::AllCompleted, Some(LIMIT));
    assert_eq!(done.done.len(), 20);
    assert_eq!(as_completed(&futures, Some(LIMIT)).count(), 20);
    assert_eq!(futures.iter().map(|f| f.get().unwrap()).sum::<u64>(), (0..20).map(square).sum());
    println!("ok apply apply_async callback submit wait as_completed");

    // An error returned by a task is its value; a panic fails its item
    // alone, and the pool goes on.
    assert_eq!(pool.map(checked_div, [(6, 3), (1, 0)]).unwrap(), [Ok(2), Err("1 / 0".to_string())]);
    let err = pool.chunksize(2).map(boom, 0..8).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Panicked, "{err}");
    assert!(err.to_string().contains("three is not allowed"), "{err}");
    let items: Vec<_> = pool.chunksize(2).imap(boom, 0..8).unwrap().collect();
    assert!(items.iter().enumerate().all(|(i, r)| (i == 3) == r.is_err()), "{items:?}");
    let (etx, erx) = mpsc::channel();
    let failed = pool.apply_async(boom, 3).unwrap().error_callback(move |e| etx.send(e.kind()).unwrap());
    assert!(failed.wait_timeout(LIMIT));
    assert_eq!(erx.recv_timeout(LIMIT).unwrap(), ErrorKind::Panicked);
    assert_eq!(pool.apply(square, 5).unwrap(), 25);
    println!("ok errors and panics fail alone");

    // What a rank cannot do is refused plainly.
    let timed = pool.timeout(Duration::from_secs(5)).map(square, 0..3).unwrap_err();
    assert_eq!(timed.kind(), ErrorKind::InvalidInput, "{timed}");
    let built = Pool::builder().mpi().task_timeout(Duration::from_secs(1)).build().unwrap_err();
    assert_eq!(built.kind(), ErrorKind::InvalidInput, "{built}");
    let busy = Pool::builder().mpi().build().unwrap_err();
    assert_eq!(busy.kind(), ErrorKind::InvalidInput, "every rank serves the first pool: {busy}");
    println!("ok timeouts refused, ranks held");

    // Queued tasks can be cancelled.
    let long: Vec<_> = (0..(size as u64 - 1) * 3).map(|_| pool.apply_async(sleepy, 200).unwrap()).collect();
    let queued = pool.apply_async(square, 7).unwrap();
    let cancelled = queued.cancel();
    if cancelled {
        assert_eq!(queued.get_timeout(LIMIT).unwrap_err().kind(), ErrorKind::Cancelled);
    } else {
        assert_eq!(queued.get_timeout(LIMIT).unwrap(), 49);
    }
    for r in &long {
        assert_eq!(r.get_timeout(LIMIT).unwrap(), 200);
    }
    println!("ok cancel");

    let stats: PoolStats = pool.stats();
    assert_eq!(stats.workers.len(), size as usize - 1);
    assert!(stats.workers.iter().all(|w| w.mpi_rank.is_some_and(|r| r >= 1) && w.host.is_some()), "{stats:?}");
    assert!(stats.workers.iter().map(|w| w.tasks_run).sum::<u64>() > 0);
    let ranks = pool.mpi_ranks();
    assert_eq!(ranks.iter().map(|(r, _)| *r).collect::<Vec<_>>(), (1..size).collect::<Vec<_>>(), "{ranks:?}");
    println!("ok stats name ranks and hosts");

    // Hybrid: a local pool inside a task on a rank.
    assert_eq!(pool.apply(local_sum, 100).unwrap(), (0..100).map(square).sum::<u64>());
    println!("ok a local pool inside a rank");

    pool.close();
    pool.join().unwrap();
    drop(pool);
    println!("ok close join");

    // The ranks serve the next pool: an initializer, and maxtasksperchild
    // (a rank's worker leaves after 2 chunks, and the rank serves again).
    let pool = Pool::builder().mpi().initializer(set_tag, "tagged".to_string()).maxtasksperchild(2).build().unwrap();
    let tags = pool.chunksize(1).map(read_tag, vec![(); 20]).unwrap();
    assert!(tags.iter().all(|t| t == "tagged"), "{tags:?}");
    let pids = pool.chunksize(1).map(worker_pid, vec![(); 20]).unwrap();
    assert!(pids.iter().all(|&p| p > 0));
    println!("ok initializer maxtasksperchild");

    // terminate() with tasks running: the running ones finish on their
    // rank, the rest fail, and the ranks are free again.
    let running: Vec<_> = (0..20).map(|_| pool.apply_async(sleepy, 100).unwrap()).collect();
    pool.terminate();
    pool.join().unwrap();
    let failed = running.iter().filter(|r| r.get_timeout(LIMIT).is_err()).count();
    assert!(failed > 0, "terminate failed the tasks not finished");
    drop(pool);
    let again = multiproc::mpi::pool().expect("the ranks are free after terminate");
    assert_eq!(again.map(square, 0..10).unwrap(), want[..10]);
    println!("ok terminate frees the ranks");
}
