//! CPython's `Doc/includes/mp_pool.py`, ported: a tour of `Pool` (results
//! in every style, small benchmarks, errors, timeouts, callbacks, close and
//! terminate).
//!
//! What differs from the original, and why:
//! - A task is an enum (`Task::Mul`, `Task::Plus`) where Python passes
//!   `(func, args)`: functions travel as data, not as pickled references,
//!   so `calculatestar` is `calculate` itself.
//! - `f(x)` divides by `x - 5`: with floats Rust gives infinity where
//!   Python raises `ZeroDivisionError`, so `f` panics there, and the panic
//!   comes back as that item's `Err` (kind `Panicked`).
//! - The naps are 0–50 ms, not 0–500 ms (the tests run this example), and
//!   pseudo-random from the operands (no random-number crate).
//! - `L = [None] * 1000000` is a `Vec<()>`; `noop` returns `()`.
//! - `it.next(timeout)` is `next_timeout`, `res.get(timeout)` is
//!   `get_timeout`; `multiprocessing.TimeoutError` is `ErrorKind::Timeout`.
//! - The checks on `pool._cache` and `pool._pool` (private attributes) are
//!   `pool.stats()`; "garbage collection" is dropping the pool, which
//!   terminates it and waits for its workers.
//! - There is no `threads` mode (`multiprocessing.dummy`).

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use multiproc::{ErrorKind, Pool, current_process};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
enum Task {
    Mul(i64, i64),
    Plus(i64, i64),
}

fn calculate(task: Task) -> String {
    let (name, a, b, result) = match task {
        Task::Mul(a, b) => ("mul", a, b, mul((a, b))),
        Task::Plus(a, b) => ("plus", a, b, plus(a, b)),
    };
    format!("{} says that {name}({a}, {b}) = {result}", current_process().name())
}

fn nap(a: i64, b: i64) {
    std::thread::sleep(Duration::from_millis(((a * 31 + b * 17) % 50) as u64));
}

fn mul((a, b): (i64, i64)) -> i64 {
    nap(a, b);
    a * b
}

fn plus(a: i64, b: i64) -> i64 {
    nap(a, b);
    a + b
}

fn f(x: f64) -> f64 {
    assert!(x != 5.0, "float division by zero");
    1.0 / (x - 5.0)
}

fn pow3(x: u64) -> u64 {
    x.pow(3)
}

fn noop(_: ()) {}

fn sleep_ms(ms: u64) {
    std::thread::sleep(Duration::from_millis(ms));
}

fn main() -> multiproc::Result<()> {
    println!("{:-^79}", " Using processes ");
    println!("cpu_count() = {}\n", multiproc::cpu_count());

    // Create pool
    const PROCESSES: usize = 4;
    println!("Creating pool with {PROCESSES} processes\n");
    let pool = Pool::new(PROCESSES)?;
    println!("pool = {pool}");
    println!();

    // Tests
    let tasks: Vec<Task> = (0..10).map(|i| Task::Mul(i, 7)).chain((0..10).map(|i| Task::Plus(i, 8))).collect();

    let results = tasks.iter().map(|&t| pool.apply_async(calculate, t)).collect::<multiproc::Result<Vec<_>>>()?;
    let imap_it = pool.imap(calculate, tasks.clone())?;
    let imap_unordered_it = pool.imap_unordered(calculate, tasks.clone())?;

    println!("Ordered results using pool.apply_async():");
    for r in results {
        println!("\t {}", r.get()?);
    }
    println!();

    println!("Ordered results using pool.imap():");
    for x in imap_it {
        println!("\t {}", x?);
    }
    println!();

    println!("Unordered results using pool.imap_unordered():");
    for x in imap_unordered_it {
        println!("\t {}", x?);
    }
    println!();

    println!("Ordered results using pool.map() --- will block till complete:");
    for x in pool.map(calculate, tasks.clone())? {
        println!("\t {x}");
    }
    println!();

    // Simple benchmarks
    const N: u64 = 100_000;
    println!("def pow3(x): return x**3");

    let t = Instant::now();
    let a: Vec<u64> = (0..N).map(pow3).collect();
    println!("\tmap(pow3, range({N})):\n\t\t{} seconds", t.elapsed().as_secs_f64());

    let t = Instant::now();
    let b = pool.map(pow3, 0..N)?;
    println!("\tpool.map(pow3, range({N})):\n\t\t{} seconds", t.elapsed().as_secs_f64());

    let t = Instant::now();
    let c = pool.chunksize((N / 8) as usize).imap(pow3, 0..N)?.collect::<multiproc::Result<Vec<_>>>()?;
    println!("\tlist(pool.imap(pow3, range({N}), chunksize={})):\n\t\t{} seconds", N / 8, t.elapsed().as_secs_f64());

    assert!(a == b && b == c, "{} {} {}", a.len(), b.len(), c.len());
    println!();

    let l = vec![(); 1_000_000];
    println!("def noop(x): pass");
    println!("L = [None] * 1000000");

    let t = Instant::now();
    let a: Vec<()> = l.iter().map(|&x| noop(x)).collect();
    println!("\tmap(noop, L):\n\t\t{} seconds", t.elapsed().as_secs_f64());

    let t = Instant::now();
    let b = pool.map(noop, l.clone())?;
    println!("\tpool.map(noop, L):\n\t\t{} seconds", t.elapsed().as_secs_f64());

    let t = Instant::now();
    let c = pool.chunksize(l.len() / 8).imap(noop, l.clone())?.collect::<multiproc::Result<Vec<_>>>()?;
    println!("\tlist(pool.imap(noop, L, chunksize={})):\n\t\t{} seconds", l.len() / 8, t.elapsed().as_secs_f64());

    assert!(a == b && b == c, "{} {} {}", a.len(), b.len(), c.len());
    println!();

    // Test error handling
    println!("Testing error handling:");

    match pool.apply(f, 5.0) {
        Err(e) if e.kind() == ErrorKind::Panicked => println!("\tGot a panic as expected from pool.apply()"),
        other => panic!("expected a panic, got {other:?}"),
    }

    match pool.map(f, (0..10).map(f64::from)) {
        Err(e) if e.kind() == ErrorKind::Panicked => println!("\tGot a panic as expected from pool.map()"),
        other => panic!("expected a panic, got {other:?}"),
    }

    match pool.imap(f, (0..10).map(f64::from))?.collect::<multiproc::Result<Vec<_>>>() {
        Err(e) if e.kind() == ErrorKind::Panicked => println!("\tGot a panic as expected from list(pool.imap())"),
        other => panic!("expected a panic, got {other:?}"),
    }

    // The iterator goes on after the failed item.
    let mut it = pool.imap(f, (0..10).map(f64::from))?;
    let mut i = 0;
    for x in it.by_ref() {
        assert_eq!(x.is_err(), i == 5, "item {i}");
        i += 1;
    }
    assert_eq!(i, 10);
    println!("\tGot a panic as expected from IMap::next()");
    println!();

    // Testing timeouts
    let mut out = std::io::stdout();
    print!("Testing AsyncResult::get_timeout():");
    let res = pool.apply_async(calculate, tasks[0])?;
    loop {
        out.flush()?;
        match res.get_timeout(Duration::from_millis(20)) {
            Ok(v) => {
                print!("\n\t{v}");
                break;
            }
            Err(e) if e.is_timeout() => print!("."),
            Err(e) => return Err(e),
        }
    }
    println!();
    println!();

    print!("Testing IMap::next_timeout():");
    let mut it = pool.imap(calculate, tasks.clone())?;
    loop {
        out.flush()?;
        match it.next_timeout(Duration::from_millis(20)) {
            Ok(Some(v)) => print!("\n\t{}", v?),
            Ok(None) => break,
            Err(e) if e.is_timeout() => print!("."),
            Err(e) => return Err(e),
        }
    }
    println!();
    println!();

    // Testing callback
    println!("Testing callback:");

    let a = Arc::new(Mutex::new(Vec::new()));
    let b: Vec<u64> = vec![56, 0, 1, 8, 27, 64, 125, 216, 343, 512, 729];

    let sink = Arc::clone(&a);
    let r = pool.apply_async(mul, (7, 8))?.callback(move |v| sink.lock().unwrap().push(v as u64));
    r.wait();

    let sink = Arc::clone(&a);
    let r = pool.map_async(pow3, 0..10)?.callback(move |v| sink.lock().unwrap().extend(v));
    r.wait();

    if *a.lock().unwrap() == b {
        println!("\tcallbacks succeeded\n");
    } else {
        println!("\t*** callbacks failed\n\t\t{:?} != {b:?}\n", a.lock().unwrap());
    }

    // Check there are no outstanding tasks
    let stats = pool.stats();
    assert_eq!((stats.queued, stats.running), (0, 0), "{stats:?}");

    // Check close() methods
    println!("Testing close():");

    let workers: Vec<u32> = pool.stats().workers.iter().map(|w| w.pid).collect();
    assert!(workers.iter().all(|&pid| std::path::Path::new(&format!("/proc/{pid}")).exists()));

    let result = pool.apply_async(sleep_ms, 500)?;
    pool.close();
    pool.join()?;

    result.get()?;

    assert!(pool.stats().workers.is_empty());

    println!("\tclose() succeeded\n");

    // Check terminate() method
    println!("Testing terminate():");

    let pool = Pool::new(2)?;
    pool.apply(pow3, 2)?;
    let results = (0..100).map(|_| pool.apply_async(sleep_ms, 100)).collect::<multiproc::Result<Vec<_>>>()?;
    pool.terminate();
    pool.join()?;
    assert!(pool.stats().workers.is_empty());
    assert!(results.iter().all(|r| r.get().is_err_and(|e| e.kind() == ErrorKind::BrokenPool)));

    println!("\tterminate() succeeded\n");

    // Check garbage collection
    println!("Testing garbage collection:");

    let pool = Pool::new(2)?;
    let processes: Vec<u32> = pool.stats().workers.iter().map(|w| w.pid).collect();
    pool.apply(pow3, 2)?;
    let results = (0..100).map(|_| pool.apply_async(sleep_ms, 100)).collect::<multiproc::Result<Vec<_>>>()?;

    drop(results);
    drop(pool);

    for pid in processes {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        assert!(stat.is_empty() || stat.contains(") Z"), "worker {pid} is still alive");
    }

    println!("\tgarbage collection succeeded\n");
    Ok(())
}
