//! Chaos soak: Pool, Queue, Pipe, Lock and Value traffic at once, in rounds
//! under a start method drawn for each, while a chaos thread SIGKILLs a
//! random child or pool worker every 20–200 ms. Every task and message
//! ends exactly once, as a success or a typed error, and the counts add
//! up:
//! - pool: each of a round's `imap` items and `apply_async` calls comes
//!   back once, its right value or `WorkerLost`; no more lost than workers
//!   killed;
//! - queue: from each producer, no item twice, every item whose `put` had
//!   returned (the producer said so in shared memory) delivered, none
//!   beyond the one in flight; all of a producer that lived;
//! - pipe: each request to an echo child ends once, its answer or `Eof`
//!   (the child was killed; a new one takes the next), no more failed than
//!   echo children killed;
//! - lock and value: children add one to a total and to their own slot
//!   under the lock; the total is the sum of the slots but for at most one
//!   torn update per child killed, and a child that lived did all of its.
//!
//! Seeded: `MULTIPROC_CHAOS_SEED` (else drawn from the clock), printed
//! first; `MULTIPROC_CHAOS_SECS` (60 by default) is how long rounds keep
//! starting. Ignored in the quick run: `.ci/run` runs it in release.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use multiproc::connection::Connection;
use multiproc::{AtomicValue, ErrorKind, Pipe, Pool, Process, Queue, StartMethod, Value};

/// xorshift64*: small, seeded, and the same everywhere.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn method(&mut self) -> StartMethod {
        common::METHODS[self.below(common::METHODS.len() as u64) as usize]
    }
}

/// What the chaos thread killed, by kind (the child's name says it).
#[derive(Default)]
struct Kills {
    by_kind: Mutex<BTreeMap<&'static str, u64>>,
}

impl Kills {
    fn of(&self, kind: &'static str) -> u64 {
        self.by_kind.lock().unwrap().get(kind).copied().unwrap_or(0)
    }
}

fn kind_of(name: &str) -> &'static str {
    ["PoolWorker", "producer", "echo", "adder"].into_iter().find(|k| name.contains(k)).unwrap_or("other")
}

fn chaos(seed: u64, stop: Arc<AtomicBool>, kills: Arc<Kills>) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut rng = Rng(seed ^ 0x9e37_79b9_7f4a_7c15);
        while !stop.load(Ordering::SeqCst) {
            // The pace of the chaos, not a wait for anything.
            std::thread::sleep(Duration::from_millis(20 + rng.below(180)));
            let children = multiproc::active_children();
            if children.is_empty() {
                continue;
            }
            let victim = &children[rng.below(children.len() as u64) as usize];
            common::sigkill(victim.pid());
            *kills.by_kind.lock().unwrap().entry(kind_of(victim.name())).or_default() += 1;
        }
    })
}

/// 30 µs of work, then the square: long enough that some kills land on
/// a task being run.
fn square(x: u64) -> u64 {
    let start = Instant::now();
    while start.elapsed() < Duration::from_micros(30) {
        std::hint::spin_loop();
    }
    x.wrapping_mul(x)
}

/// Pool traffic for a round: (succeeded, lost).
fn pool_round(rng: &mut Rng) -> (u64, u64) {
    let method = rng.method();
    let pool = Pool::builder().processes(3).start_method(method).build().unwrap();
    let (mut ok, mut lost) = (0, 0);
    let mut tally = |what: &str, x: u64, r: multiproc::Result<u64>| match r {
        Ok(v) => {
            assert_eq!(v, square(x), "{method}: {what} {x}: a wrong value");
            ok += 1;
        }
        Err(e) => {
            assert_eq!(e.kind(), ErrorKind::WorkerLost, "{method}: {what} {x}: {e}");
            lost += 1;
        }
    };
    let calls: Vec<_> = (0..200u64).map(|x| (x, pool.apply_async(square, x).unwrap())).collect();
    let mut seen = 0;
    for (x, r) in pool.imap(square, 0..2000u64).unwrap().enumerate() {
        tally("imap item", x as u64, r);
        seen += 1;
    }
    assert_eq!(seen, 2000, "{method}: imap gave {seen} results for 2000 items");
    for (x, call) in calls {
        tally("apply_async", x, call.get_timeout(common::LONG));
    }
    (ok, lost)
}

const PRODUCERS: usize = 4;
const ITEMS: u64 = 500;

fn producer((q, p, put): (Queue<u64>, u64, AtomicValue<u64>)) {
    for i in 0..ITEMS {
        q.put(&(p * 1_000_000 + i)).unwrap();
        put.store(i + 1);
    }
}

/// Queue traffic for a round: (items delivered, producers killed).
fn queue_round(rng: &mut Rng) -> (u64, u64) {
    let method = rng.method();
    let q = Queue::<u64>::new().unwrap();
    let put: Vec<AtomicValue<u64>> = (0..PRODUCERS).map(|_| AtomicValue::new(0).unwrap()).collect();
    let children: Vec<_> = (0..PRODUCERS)
        .map(|p| {
            Process::new(producer, (q.clone(), p as u64, put[p].clone()))
                .name(format!("producer-{p}"))
                .start_method(method)
                .start()
                .unwrap()
        })
        .collect();
    let mut got: Vec<BTreeSet<u64>> = vec![BTreeSet::new(); PRODUCERS];
    let mut take = |item: u64| {
        let (p, i) = ((item / 1_000_000) as usize, item % 1_000_000);
        assert!(p < PRODUCERS && i < ITEMS, "{method}: an item no producer put: {item}");
        assert!(got[p].insert(i), "{method}: producer {p}'s item {i} delivered twice");
    };
    let deadline = Instant::now() + Duration::from_secs(120);
    while children.iter().any(|c| c.is_alive()) {
        assert!(Instant::now() < deadline, "{method}: producers still running after 120 s");
        match q.get_timeout(Duration::from_millis(50)) {
            Ok(item) => take(item),
            Err(e) => assert!(matches!(e.kind(), ErrorKind::Empty | ErrorKind::Timeout), "{method}: {e}"),
        }
    }
    let mut lived = [false; PRODUCERS];
    for (p, c) in children.iter().enumerate() {
        match c.join_timeout(common::LONG) {
            Ok(()) => lived[p] = true,
            Err(e) => assert_eq!(e.kind(), ErrorKind::Signaled, "{method}: producer {p}: {e}"),
        }
    }
    loop {
        match q.try_get() {
            Ok(item) => take(item),
            Err(e) => {
                assert_eq!(e.kind(), ErrorKind::Empty, "{method}: {e}");
                break;
            }
        }
    }
    let mut delivered = 0;
    for p in 0..PRODUCERS {
        let returned = put[p].load();
        let items = &got[p];
        delivered += items.len() as u64;
        if lived[p] {
            assert_eq!(items.len() as u64, ITEMS, "{method}: producer {p} lived but {} items came", items.len());
            continue;
        }
        for i in 0..returned {
            assert!(items.contains(&i), "{method}: producer {p}'s put of {i} returned, but it never came");
        }
        // Its next put may have been under way when it died.
        assert!(items.iter().all(|&i| i <= returned), "{method}: producer {p} put {returned}, more came");
    }
    (delivered, lived.iter().filter(|l| !**l).count() as u64)
}

fn echo(conn: Connection) {
    while let Ok(x) = conn.recv::<u64>() {
        if conn.send(&(x + 1)).is_err() {
            return;
        }
    }
}

/// Pipe traffic for a round: (answered, failed).
fn pipe_round(rng: &mut Rng) -> (u64, u64) {
    let method = rng.method();
    let start = || {
        let (mine, theirs) = Pipe(true).unwrap();
        let child = Process::new(echo, theirs).name("echo").start_method(method).start().unwrap();
        (mine, child)
    };
    let (mut conn, mut child) = start();
    let (mut ok, mut failed) = (0, 0);
    for x in 0..1000u64 {
        let answer = conn.send(&x).and_then(|()| {
            if conn.poll(Some(common::LONG))? { conn.recv::<u64>() } else { panic!("{method}: no answer, no end") }
        });
        match answer {
            Ok(y) => {
                assert_eq!(y, x + 1, "{method}: request {x}: a wrong answer");
                ok += 1;
            }
            Err(e) => {
                assert!(matches!(e.kind(), ErrorKind::Eof | ErrorKind::Protocol), "{method}: request {x}: {e}");
                failed += 1;
                let r = child.join_timeout(common::LONG);
                assert_eq!(r.unwrap_err().kind(), ErrorKind::Signaled, "{method}: the echo child's end");
                (conn, child) = start();
            }
        }
    }
    drop(conn);
    let _ = child.join_timeout(common::LONG);
    (ok, failed)
}

const ADDERS: usize = 8;
const ADDS: u64 = 2000;

fn adder((total, i): (Value<[u64; 1 + ADDERS]>, usize)) {
    for _ in 0..ADDS {
        let g = total.get_lock().acquire().unwrap();
        total.update(&g, |t| {
            t[0] += 1;
            t[1 + i] += 1;
        });
    }
}

/// Lock and Value traffic for a round: (additions, adders killed).
fn lock_round(rng: &mut Rng) -> (u64, u64) {
    let method = rng.method();
    let total = Value::new([0u64; 1 + ADDERS]).unwrap();
    let children: Vec<_> = (0..ADDERS)
        .map(|i| Process::new(adder, (total.clone(), i)).name("adder").start_method(method).start().unwrap())
        .collect();
    let mut killed = 0;
    let mut lived = [false; ADDERS];
    for (i, c) in children.iter().enumerate() {
        match c.join_timeout(Duration::from_secs(120)) {
            Ok(()) => lived[i] = true,
            Err(e) => {
                assert_eq!(e.kind(), ErrorKind::Signaled, "{method}: adder {i}: {e}");
                killed += 1;
            }
        }
    }
    let t = {
        let g = total.get_lock().acquire().unwrap();
        total.update(&g, |t| *t)
    };
    let slots: u64 = t[1..].iter().sum();
    assert!(t[0].abs_diff(slots) <= killed, "{method}: total {} but slots add to {slots}, {killed} killed", t[0]);
    for i in 0..ADDERS {
        if lived[i] {
            assert_eq!(t[1 + i], ADDS, "{method}: adder {i} lived but added {}", t[1 + i]);
        }
    }
    (t[0], killed)
}

type Round = fn(&mut Rng) -> (u64, u64);

#[test]
#[ignore = "a soak of a minute or more: run with --ignored, as .ci/run does (in release)"]
fn every_task_and_message_ends_once_under_chaos() {
    let seed = std::env::var("MULTIPROC_CHAOS_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64 | 1
    });
    let secs: u64 = std::env::var("MULTIPROC_CHAOS_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(60);
    println!("chaos: seed {seed} (MULTIPROC_CHAOS_SEED={seed} replays the draws), {secs} s of rounds");
    let _w = common::watchdog_for("chaos soak", Duration::from_secs(secs + 240));
    // The fork server lives on once started: start it before counting.
    Process::new(square, 1).start_method(StartMethod::ForkServer).start().unwrap().join().unwrap();
    let streams: [(&str, Round); 4] =
        [("pool", pool_round), ("queue", queue_round), ("pipe", pipe_round), ("lock", lock_round)];
    // One round of each, side by side and without chaos, before counting:
    // the allocator's per-thread arenas (mappings it keeps) are made.
    let warm: Vec<_> = streams.iter().map(|&(_, round)| std::thread::spawn(move || round(&mut Rng(seed)))).collect();
    for t in warm {
        t.join().unwrap();
    }
    let guard = common::LeakGuard::new();
    let stop = Arc::new(AtomicBool::new(false));
    let kills = Arc::new(Kills::default());
    let chaos = chaos(seed, Arc::clone(&stop), Arc::clone(&kills));
    let deadline = Instant::now() + Duration::from_secs(secs);
    let totals: Vec<_> = streams
        .iter()
        .enumerate()
        .map(|(n, &(name, round))| {
            let rounds = Arc::new(AtomicU64::new(0));
            let counts = std::thread::spawn({
                let rounds = Arc::clone(&rounds);
                move || {
                    let mut rng = Rng(seed.wrapping_add(n as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
                    let mut sum = (0, 0);
                    while Instant::now() < deadline {
                        let (a, b) = round(&mut rng);
                        sum = (sum.0 + a, sum.1 + b);
                        rounds.fetch_add(1, Ordering::SeqCst);
                    }
                    sum
                }
            });
            (name, rounds, counts)
        })
        .collect();
    let mut results = BTreeMap::new();
    for (name, rounds, counts) in totals {
        let counts = counts.join().unwrap_or_else(|_| panic!("chaos: the {name} stream failed (seed {seed})"));
        results.insert(name, (rounds.load(Ordering::SeqCst), counts));
    }
    stop.store(true, Ordering::SeqCst);
    chaos.join().unwrap();
    let (workers, producers, echoes, adders) =
        (kills.of("PoolWorker"), kills.of("producer"), kills.of("echo"), kills.of("adder"));
    let (pool_rounds, (pool_ok, pool_lost)) = results["pool"];
    let (queue_rounds, (items, dead_producers)) = results["queue"];
    let (pipe_rounds, (answered, failed)) = results["pipe"];
    let (lock_rounds, (additions, dead_adders)) = results["lock"];
    println!("chaos: kills: {workers} pool workers, {producers} producers, {echoes} echo children, {adders} adders");
    println!("chaos: pool: {pool_rounds} rounds, {pool_ok} tasks succeeded, {pool_lost} lost (WorkerLost)");
    println!("chaos: queue: {queue_rounds} rounds, {items} items delivered once, {dead_producers} producers died");
    println!("chaos: pipe: {pipe_rounds} rounds, {answered} requests answered, {failed} ended with Eof");
    println!("chaos: lock: {lock_rounds} rounds, {additions} additions, {dead_adders} adders died");
    assert_eq!(pool_ok + pool_lost, pool_rounds * 2200, "pool: tasks that did not end exactly once");
    assert!(pool_lost <= workers, "pool: {pool_lost} tasks lost to {workers} worker kills");
    assert_eq!(answered + failed, pipe_rounds * 1000, "pipe: requests that did not end exactly once");
    assert!(failed <= echoes, "pipe: {failed} requests failed, {echoes} echo children killed");
    assert!(dead_producers <= producers && dead_adders <= adders, "deaths no kill explains");
    assert!(workers + producers + echoes + adders > 0, "the chaos thread killed nothing: the soak proved nothing");
    guard.check("the chaos soak");
}
