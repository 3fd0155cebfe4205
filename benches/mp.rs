//! multiproc's benchmark harness: the workloads of
//! `../shared/bench/python/bench_mp.py`, with the same names, parameters
//! and timed regions, printed as JSON lines in the same schema.
//!
//! ```text
//! cargo bench --bench mp -- [--reps N] [--list] [WORKLOAD...]
//! ```

#![allow(unreachable_pub, missing_debug_implementations)]

#[path = "mp/report.rs"]
mod report;
#[path = "mp/spawn_join.rs"]
mod spawn_join;

/// The `impl` of our rows.
pub const IMPL: &str = "multiproc";

/// Set in the environment of a raw exec-of-self child: exit at once.
pub const EXIT_AT_ONCE: &str = "MULTIPROC_BENCH_EXIT_AT_ONCE";

/// Options shared by every workload.
pub struct Config {
    /// Repetitions per measurement.
    pub reps: usize,
}

type Workload = fn(&Config);

/// Every workload, in bench_mp.py's order; `None` where the feature has
/// not landed yet.
const WORKLOADS: &[(&str, Option<Workload>)] = &[
    ("spawn_join", Some(spawn_join::run)),
    ("pool_create", None),
    ("pool_map_small", None),
    ("pool_imap_unordered", None),
    ("apply_async_latency", None),
    ("queue_small", None),
    ("queue_large", None),
    ("pipe_throughput", None),
    ("pipe_pingpong", None),
    ("cpu_bound", None),
    ("shared_value", None),
    ("executor_map", None),
    ("manager_dict", None),
];

fn main() {
    if std::env::var_os(EXIT_AT_ONCE).is_some() {
        return;
    }
    let mut args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    if args.iter().any(|a| a == "--list") {
        for (name, _) in WORKLOADS {
            println!("{name}");
        }
        return;
    }
    let mut cfg = Config { reps: 5 };
    if let Some(i) = args.iter().position(|a| a == "--reps") {
        cfg.reps = args
            .get(i + 1)
            .and_then(|n| n.parse().ok())
            .filter(|&n| n > 0)
            .unwrap_or_else(|| {
                eprintln!("--reps needs a positive number");
                std::process::exit(2)
            });
        args.drain(i..i + 2);
    }
    let names: Vec<&str> = if args.is_empty() {
        WORKLOADS.iter().map(|(n, _)| *n).collect()
    } else {
        args.iter().map(String::as_str).collect()
    };
    for name in names {
        match WORKLOADS.iter().find(|(n, _)| *n == name) {
            None => {
                eprintln!("unknown workload {name:?}; see --list");
                std::process::exit(2);
            }
            Some((_, None)) => report::log(&format!(
                "# {name}: missing (its feature has not landed yet)"
            )),
            Some((_, Some(run))) => {
                let t0 = std::time::Instant::now();
                report::log(&format!("# {name} ..."));
                run(&cfg);
                report::log(&format!(
                    "# {name} done in {:.1} s",
                    t0.elapsed().as_secs_f64()
                ));
            }
        }
    }
}
