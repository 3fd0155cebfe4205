//! multiproc's benchmark harness: the workloads of
//! `../shared/bench/python/bench_mp.py`, with the same names, parameters
//! and timed regions, printed as JSON lines in the same schema, beside the
//! physical limits (`impl: "raw"`) and rayon (`impl: "rayon"`) measured in
//! the same run.
//!
//! ```text
//! cargo bench --bench mp -- [--reps N] [--list] [WORKLOAD...]
//! ```
//!
//! A workload whose multiproc feature has not landed yet says so on stderr
//! and prints only its raw / rayon rows; nothing is faked.

#![allow(unreachable_pub, missing_debug_implementations)]

#[path = "mp/channels.rs"]
mod channels;
#[path = "mp/cpu.rs"]
mod cpu;
#[path = "mp/manager.rs"]
mod manager;
#[cfg(feature = "mpi")]
#[path = "mp/mpi.rs"]
mod mpi;
#[path = "mp/pool.rs"]
mod pool;
#[path = "mp/raw.rs"]
mod raw;
#[path = "mp/raw_shm.rs"]
mod raw_shm;
#[path = "mp/report.rs"]
mod report;
#[path = "mp/scaling.rs"]
mod scaling;
#[path = "mp/shared.rs"]
mod shared;
#[path = "mp/spawn_join.rs"]
mod spawn_join;

/// The `impl` of our rows.
pub const IMPL: &str = "multiproc";

/// Options shared by every workload.
pub struct Config {
    /// Repetitions per measurement.
    pub reps: usize,
}

type Workload = fn(&Config);

/// Every workload of bench_mp.py, in its order.
const WORKLOADS: &[(&str, Workload)] = &[
    ("spawn_join", spawn_join::run),
    ("pool_create", |cfg| {
        pool::pool_create(cfg);
        raw::pool_lifecycle("pool_create", &["fork", "spawn", "forkserver"], cfg.reps);
    }),
    ("pool_map_small", |cfg| {
        // The bare lifecycle first, as ours comes first in pool_map_small:
        // a fork costs more once the 1M-item maps have grown the heap.
        raw::pool_lifecycle("pool_map_small", &["fork"], cfg.reps);
        pool::pool_map_small(cfg);
        raw_shm::maps("pool_map_small", cfg.reps);
    }),
    ("pool_imap_unordered", |cfg| {
        pool::pool_imap_unordered(cfg);
        raw_shm::maps("pool_imap_unordered", cfg.reps);
    }),
    ("apply_async_latency", |cfg| {
        pool::apply_async_latency(cfg);
        raw_shm::apply_async_latency(cfg.reps);
    }),
    ("queue_small", |cfg| {
        channels::queue_small(cfg);
        raw_shm::queue_small(cfg.reps);
    }),
    ("queue_large", |cfg| {
        channels::queue_large(cfg);
        raw::queue_large(cfg.reps);
    }),
    ("pipe_throughput", |cfg| {
        channels::pipe_throughput(cfg);
        raw::pipe_throughput(cfg.reps);
    }),
    ("pipe_pingpong", |cfg| {
        channels::pipe_pingpong(cfg);
        raw::pipe_pingpong(cfg.reps);
    }),
    ("cpu_bound", |cfg| {
        let serial = cpu::cpu_bound_serial(cfg.reps);
        pool::cpu_bound(cfg, serial);
        cpu::cpu_bound_rayon(cfg.reps, serial);
    }),
    ("shared_value", |cfg| {
        shared::shared_value(cfg);
        raw_shm::shared_value(cfg.reps);
    }),
    ("executor_map", |cfg| {
        pool::executor_map(cfg);
        raw_shm::maps("executor_map", cfg.reps);
    }),
    ("manager_dict", |cfg| {
        manager::manager_dict(cfg);
        raw::manager_dict(cfg.reps);
        raw::manager_start(cfg.reps);
    }),
    ("manager_batch", |cfg| {
        manager::manager_batch(cfg);
        raw::manager_batch(cfg.reps);
    }),
    ("scaling_spawn_join", scaling::spawn_join),
    ("scaling_queue_producers", scaling::queue_producers),
    ("scaling_pool_workers", scaling::pool_workers),
    ("scaling_worker_memory", scaling::worker_memory),
    #[cfg(feature = "mpi")]
    ("mpi_pool", |cfg| {
        mpi::mpi_pool(cfg.reps);
    }),
];

fn main() {
    if raw::serve_role() {
        return;
    }
    let mut args: Vec<String> = std::env::args().skip(1).filter(|a| a != "--bench").collect();
    if args.iter().any(|a| a == "--list") {
        for (name, _) in WORKLOADS {
            println!("{name}");
        }
        return;
    }
    let mut cfg = Config { reps: 5 };
    if let Some(i) = args.iter().position(|a| a == "--reps") {
        cfg.reps = args.get(i + 1).and_then(|n| n.parse().ok()).filter(|&n| n > 0).unwrap_or_else(|| {
            eprintln!("--reps needs a positive number");
            std::process::exit(2)
        });
        args.drain(i..i + 2);
    }
    #[cfg(feature = "mpi")]
    if mpi::serve_rank(cfg.reps) {
        return;
    }
    let names: Vec<&str> = if args.is_empty() {
        WORKLOADS.iter().map(|(n, _)| *n).collect()
    } else {
        args.iter().map(String::as_str).collect()
    };
    if let Some(bad) = names.iter().find(|n| !WORKLOADS.iter().any(|(w, _)| w == *n)) {
        eprintln!("unknown workload {bad:?}; see --list");
        std::process::exit(2);
    }
    for name in names {
        let (_, run) = WORKLOADS.iter().find(|(n, _)| *n == name).expect("checked above");
        let t0 = std::time::Instant::now();
        report::log(&format!("# {name} ..."));
        run(&cfg);
        report::log(&format!("# {name} done in {:.1} s", t0.elapsed().as_secs_f64()));
    }
}
