//! The same CPU work on threads with rayon, beside multiproc's pool:
//! `cpu_bound` (64 × sum of i*i for i < 200,000) and `pool_map_small`
//! (1M squares). Rust's serial run of `cpu_bound` is the `raw` row.

use rayon::prelude::*;
use serde_json::json;

use crate::report::{Unit, emit, repeat, time};

pub const TASKS: usize = 64;
pub const ARG: u64 = 200_000;

/// `sum(i*i for i in range(n))`, kept from being folded into a formula.
pub fn cpu_task(n: u64) -> u64 {
    let mut acc = 0u64;
    for i in 0..n {
        let i = std::hint::black_box(i);
        acc = acc.wrapping_add(i.wrapping_mul(i));
    }
    acc
}

pub fn square(x: u64) -> u64 {
    x * x
}

fn two_threads() -> rayon::ThreadPool {
    rayon::ThreadPoolBuilder::new().num_threads(2).build().unwrap()
}

fn task_name() -> String {
    format!("sum(i*i for i in range({ARG}))")
}

/// Emits the serial row and returns its median, for the speedup rows.
pub fn cpu_bound_serial(reps: usize) -> f64 {
    let expect = cpu_task(ARG);
    let samples = repeat(reps, || {
        time(|| {
            let out: Vec<u64> = (0..TASKS).map(|_| cpu_task(ARG)).collect();
            assert_eq!(out[TASKS - 1], expect);
        })
    });
    emit(
        "cpu_bound",
        "raw",
        json!({"mode": "serial", "tasks": TASKS, "task": task_name()}),
        &samples,
        Unit::PerSecond(TASKS as f64, "tasks/s"),
        Some(json!({"what": "the same work serially in Rust"})),
    )
}

/// The rayon rows of `cpu_bound`: tasks/s and the speedup over serial.
pub fn cpu_bound_rayon(reps: usize, serial_median: f64) {
    let pool = two_threads();
    let expect = cpu_task(ARG);
    for chunksize in [None, Some(1usize)] {
        let samples = repeat(reps, || {
            time(|| {
                let out: Vec<u64> = pool.install(|| {
                    let it = (0..TASKS).into_par_iter().map(|_| cpu_task(ARG));
                    match chunksize {
                        Some(c) => it.with_max_len(c).collect(),
                        None => it.with_min_len(8).collect(),
                    }
                });
                assert_eq!(out[TASKS - 1], expect);
            })
        });
        let params = pool_params(chunksize);
        let median =
            emit("cpu_bound", "rayon", params.clone(), &samples, Unit::PerSecond(TASKS as f64, "tasks/s"), None);
        let mut speedup = params;
        speedup["mode"] = json!("speedup Pool(2).map vs serial");
        emit(
            "cpu_bound",
            "rayon",
            speedup,
            &samples,
            Unit::Ratio(serial_median),
            Some(json!({"median_s_pool": median})),
        );
    }
}

/// The params of a `cpu_bound` row of `Pool(2).map` (rayon's or ours).
pub fn pool_params(chunksize: Option<usize>) -> serde_json::Value {
    let chunk = chunksize.map_or(json!("default(8)"), |c| json!(c));
    json!({"mode": "Pool(2).map", "start_method": "fork", "tasks": TASKS, "task": task_name(), "chunksize": chunk})
}

/// The rayon rows of `pool_map_small`: 1M squares on 2 threads.
pub fn pool_map_small_rayon(reps: usize) {
    const N: u64 = 1_000_000;
    let pool = two_threads();
    for chunksize in [None, Some(10_000usize)] {
        let samples = repeat(reps, || {
            time(|| {
                let out: Vec<u64> = pool.install(|| {
                    let it = (0..N as usize).into_par_iter().map(|i| square(i as u64));
                    match chunksize {
                        Some(c) => it.with_min_len(c).collect(),
                        None => it.with_min_len(125_000).collect(),
                    }
                });
                assert_eq!(out[(N - 1) as usize], (N - 1) * (N - 1));
            })
        });
        let chunk = chunksize.map_or(json!(format!("default({})", N.div_ceil(8))), |c| json!(c));
        let median = {
            let mut s = samples.clone();
            s.sort_by(f64::total_cmp);
            s[s.len() / 2]
        };
        emit(
            "pool_map_small",
            "rayon",
            json!({"start_method": "fork", "processes": 2, "n": N, "chunksize": chunk}),
            &samples,
            Unit::PerSecond(N as f64, "items/s"),
            Some(json!({"us_per_item": median / N as f64 * 1e6})),
        );
    }
}
