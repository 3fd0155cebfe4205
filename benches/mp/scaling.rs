//! How each cost grows with the work (issue 19's scaling curves), with
//! Python's figures from `bench/python/bench_extra.py` where Python can run
//! the same shape in reasonable time:
//!
//! - `scaling_spawn_join`: start + join of n processes in sequence (fork
//!   and forkserver at 1, 100 and 10,000; spawn at 1, 100 and 1,000), and
//!   100 of them while 1,000 other children stay alive; the `raw` rows are
//!   `fork` + `waitpid` at the same n.
//! - `scaling_queue_producers`: 200,000 messages of 64 bytes through one
//!   `Queue` from 1, 2, 4 or 8 producer processes, timed from "go" to the
//!   last `get`.
//! - `scaling_pool_workers`: 20,000 `square` tasks through
//!   `imap_unordered` with chunk size 1 on a pool of 1, 2, 4, 16 or 64
//!   workers on this machine's cores: time per task must not grow with
//!   oversubscription.
//! - `scaling_worker_memory`: an idle, warm `Pool(4)`'s resident and
//!   proportional memory per worker (`Rss` and `Pss` of
//!   `/proc/PID/smaps_rollup`), per start method. These rows' "seconds"
//!   fields hold KiB: the schema has no other place for a size.

use std::collections::HashSet;
use std::time::Instant;

use serde_json::json;

use crate::channels::{child_handshake, run_child};
use crate::report::{Unit, emit, repeat, time};
use crate::{Config, IMPL, raw};
use multiproc::connection::Connection;
use multiproc::{Pool, Process, Queue, StartMethod};

fn noop(_: ()) {}

fn square(x: u64) -> u64 {
    x * x
}

/// Waits for a message (or end of file) on `conn`: a child that stays
/// alive until the parent lets it go.
fn linger(conn: Connection) {
    let _ = conn.recv_bytes();
}

fn start_join(method: StartMethod, n: usize) {
    for _ in 0..n {
        Process::new(noop, ()).start_method(method).start().unwrap().join().unwrap();
    }
}

pub fn spawn_join(cfg: &Config) {
    for method in [StartMethod::Fork, StartMethod::ForkServer, StartMethod::Spawn] {
        start_join(method, 1);
        let sizes: &[usize] = if method == StartMethod::Spawn { &[1, 100, 1000] } else { &[1, 100, 10_000] };
        for &n in sizes {
            // The biggest size once: it is 10,000 processes already.
            let reps = if n >= 1000 { 1 } else { cfg.reps };
            let samples = repeat(reps, || time(|| start_join(method, n)));
            let params = json!({"start_method": method.name(), "n": n, "alive": 0});
            emit("scaling_spawn_join", IMPL, params.clone(), &samples, Unit::MicrosPer(n as f64, "us/process"), None);
            if method != StartMethod::Spawn {
                let samples = repeat(reps, || time(|| raw::fork_and_wait(n)));
                raw::emit_raw(
                    "scaling_spawn_join",
                    params,
                    &samples,
                    Unit::MicrosPer(n as f64, "us/process"),
                    "fork() + _exit + waitpid",
                );
            }
        }
        if method == StartMethod::Spawn {
            continue;
        }
        // 100 more while 1,000 others are alive (the fork server's children
        // too, with forkserver).
        const ALIVE: usize = 1000;
        let (ours, theirs): (Vec<_>, Vec<_>) = (0..ALIVE).map(|_| multiproc::Pipe(true).unwrap()).unzip();
        let alive: Vec<_> =
            theirs.into_iter().map(|c| Process::new(linger, c).start_method(method).start().unwrap()).collect();
        let samples = repeat(cfg.reps, || time(|| start_join(method, 100)));
        let params = json!({"start_method": method.name(), "n": 100, "alive": ALIVE});
        emit("scaling_spawn_join", IMPL, params.clone(), &samples, Unit::MicrosPer(100.0, "us/process"), None);
        let samples = repeat(cfg.reps, || time(|| raw::fork_and_wait(100)));
        raw::emit_raw(
            "scaling_spawn_join",
            params,
            &samples,
            Unit::MicrosPer(100.0, "us/process"),
            "fork() + _exit + waitpid",
        );
        // A word to each: every child holds the others' ends too (a fork
        // child inherits the parent's fds, as in Python), so end of file
        // would never come.
        for c in &ours {
            c.send_bytes(b"go").unwrap();
        }
        for p in alive {
            p.join().unwrap();
        }
    }
}

fn produce((ctrl, (queue, n)): (Connection, (Queue<Vec<u8>>, usize))) {
    let msg: Vec<u8> = (0..64).map(|i| (i * 37 + 11) as u8).collect();
    child_handshake(&ctrl);
    for _ in 0..n {
        queue.put(&msg).unwrap();
    }
    ctrl.send(&"done").unwrap();
}

pub fn queue_producers(cfg: &Config) {
    const N: usize = 200_000;
    for producers in [1usize, 2, 4, 8] {
        let samples = repeat(cfg.reps, || {
            let queue = Queue::new().unwrap();
            let children: Vec<_> = (0..producers).map(|_| run_child(produce, (queue.clone(), N / producers))).collect();
            for (_, ctrl) in &children {
                assert_eq!(ctrl.recv::<String>().unwrap(), "ready");
            }
            let t0 = Instant::now();
            for (_, ctrl) in &children {
                ctrl.send(&"go").unwrap();
            }
            for _ in 0..N {
                assert_eq!(queue.get().unwrap().len(), 64);
            }
            let took = t0.elapsed();
            for (child, ctrl) in children {
                assert_eq!(ctrl.recv::<String>().unwrap(), "done");
                child.join().unwrap();
            }
            took
        });
        emit(
            "scaling_queue_producers",
            IMPL,
            json!({"queue": "Queue", "start_method": "fork", "n": N, "msg": "bytes[64]", "producers": producers}),
            &samples,
            Unit::PerSecond(N as f64, "msgs/s"),
            None,
        );
    }
}

pub fn pool_workers(cfg: &Config) {
    const N: u64 = 20_000;
    for workers in [1usize, 2, 4, 16, 64] {
        let pool = Pool::builder().processes(workers).start_method(StartMethod::Fork).build().unwrap();
        pool.chunksize(1).map(square, 0..1000).unwrap();
        let samples = repeat(cfg.reps, || {
            time(|| {
                let count = pool.chunksize(1).imap_unordered(square, 0..N).unwrap().count();
                assert_eq!(count as u64, N);
            })
        });
        emit(
            "scaling_pool_workers",
            IMPL,
            json!({"start_method": "fork", "processes": workers, "n": N, "chunksize": 1}),
            &samples,
            Unit::MicrosPer(N as f64, "us/task"),
            None,
        );
        pool.close();
        pool.join().unwrap();
    }
}

/// This process's descendants, by walking `/proc`'s parent pids.
fn descendants() -> HashSet<u32> {
    let parents: Vec<(u32, u32)> = std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| {
            let pid: u32 = e.ok()?.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            let ppid = stat.rsplit_once(')')?.1.split_whitespace().nth(1)?.parse().ok()?;
            Some((pid, ppid))
        })
        .collect();
    let mut found: HashSet<u32> = HashSet::from([std::process::id()]);
    loop {
        let before = found.len();
        for &(pid, ppid) in &parents {
            if found.contains(&ppid) {
                found.insert(pid);
            }
        }
        if found.len() == before {
            found.remove(&std::process::id());
            return found;
        }
    }
}

/// `Rss` and `Pss` of `pid`, in KiB.
fn rss_pss(pid: u32) -> (f64, f64) {
    let rollup = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).unwrap();
    let field = |name: &str| -> f64 {
        rollup
            .lines()
            .find_map(|l| l.strip_prefix(name)?.trim().strip_suffix("kB")?.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {name} in /proc/{pid}/smaps_rollup"))
    };
    (field("Rss:"), field("Pss:"))
}

pub fn worker_memory(cfg: &Config) {
    const WORKERS: usize = 4;
    for method in [StartMethod::Fork, StartMethod::Spawn, StartMethod::ForkServer] {
        // Start the fork server (a descendant of ours, not a worker) first.
        start_join(method, 1);
        let (mut rss, mut pss) = (Vec::new(), Vec::new());
        for _ in 0..cfg.reps {
            let before = descendants();
            let pool = Pool::builder().processes(WORKERS).start_method(method).build().unwrap();
            pool.chunksize(1).map(square, 0..100).unwrap();
            let workers: Vec<u32> = descendants().difference(&before).copied().collect();
            assert_eq!(workers.len(), WORKERS, "the new descendants are the pool's workers");
            let (r, p) = workers.iter().map(|&w| rss_pss(w)).fold((0.0, 0.0), |a, b| (a.0 + b.0, a.1 + b.1));
            rss.push(r / WORKERS as f64);
            pss.push(p / WORKERS as f64);
            pool.close();
            pool.join().unwrap();
        }
        for (metric, values) in [("RSS", rss), ("PSS", pss)] {
            emit(
                "scaling_worker_memory",
                IMPL,
                json!({"start_method": method.name(), "processes": WORKERS, "metric": metric, "state": "idle after a map"}),
                &values,
                Unit::Amount("KiB/worker"),
                None,
            );
        }
    }
}
