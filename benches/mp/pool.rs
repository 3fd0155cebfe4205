//! The pool workloads of bench_mp.py: `pool_create`, `pool_map_small`,
//! `pool_imap_unordered`, `apply_async_latency`, `cpu_bound` (the pool
//! rows) and `executor_map`. Pools are warmed with a small map before timed
//! maps, as in Python; lifecycle rows use a fresh pool per repetition.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::report::{Unit, emit, repeat, time};
use crate::{Config, IMPL, cpu};
use multiproc::{Pool, StartMethod};

fn square(x: u64) -> u64 {
    x * x
}

fn pool2(method: StartMethod) -> Pool {
    Pool::builder().processes(2).start_method(method).build().unwrap()
}

/// Constructor, constructor to first result, and close + join, each on a
/// fresh `Pool(2)`.
fn lifecycle(cfg: &Config, method: StartMethod, workload: &str) {
    let (mut create, mut first, mut shutdown) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..cfg.reps {
        let t0 = Instant::now();
        let pool = pool2(method);
        let t1 = Instant::now();
        assert_eq!(pool.apply_async(square, 3).unwrap().get().unwrap(), 9);
        let t2 = Instant::now();
        pool.close();
        pool.join().unwrap();
        let t3 = Instant::now();
        create.push((t1 - t0).as_secs_f64());
        first.push((t2 - t0).as_secs_f64());
        shutdown.push((t3 - t2).as_secs_f64());
    }
    let row = |phase: &str| json!({"start_method": method.name(), "processes": 2, "phase": phase});
    emit(workload, IMPL, row("constructor"), &create, Unit::Millis, None);
    emit(workload, IMPL, row("constructor_to_first_result"), &first, Unit::Millis, None);
    emit(workload, IMPL, row("close_join"), &shutdown, Unit::Millis, None);
}

pub fn pool_create(cfg: &Config) {
    for method in [StartMethod::Fork, StartMethod::Spawn, StartMethod::ForkServer] {
        lifecycle(cfg, method, "pool_create");
    }
}

fn median(samples: &[f64]) -> f64 {
    let mut s = samples.to_vec();
    s.sort_by(f64::total_cmp);
    s[s.len() / 2]
}

pub fn pool_map_small(cfg: &Config) {
    const N: u64 = 1_000_000;
    lifecycle(cfg, StartMethod::Fork, "pool_map_small");
    let pool = pool2(StartMethod::Fork);
    pool.map(square, 0..1000).unwrap();
    // Each map untimed (Python's rows), then with a per-task timeout (ours
    // only: a timed map must not be slower, since timeouts are per item and
    // keep the window).
    for timeout in [None, Some(Duration::from_secs(60))] {
        for chunksize in [None, Some(10_000usize)] {
            let mut calls = pool.chunksize(chunksize.unwrap_or(N.div_ceil(8) as usize));
            if let Some(t) = timeout {
                calls = calls.timeout(t);
            }
            let samples = repeat(cfg.reps, || {
                let t0 = Instant::now();
                let out = calls.map(square, 0..N).unwrap();
                let took = t0.elapsed();
                assert_eq!(out[(N - 1) as usize], (N - 1) * (N - 1));
                took
            });
            let chunk = chunksize.map_or(json!(format!("default({})", N.div_ceil(8))), |c| json!(c));
            let mut params = json!({"start_method": "fork", "processes": 2, "n": N, "chunksize": chunk});
            if let Some(t) = timeout {
                params["task_timeout_s"] = json!(t.as_secs());
            }
            emit(
                "pool_map_small",
                IMPL,
                params,
                &samples,
                Unit::PerSecond(N as f64, "items/s"),
                Some(json!({"us_per_item": median(&samples) / N as f64 * 1e6})),
            );
        }
    }
    cpu::pool_map_small_rayon(cfg.reps);
}

pub fn pool_imap_unordered(cfg: &Config) {
    const N: u64 = 200_000;
    let pool = pool2(StartMethod::Fork);
    pool.map(square, 0..1000).unwrap();
    for timeout in [None, Some(Duration::from_secs(60))] {
        for chunksize in [1usize, 1000] {
            let mut calls = pool.chunksize(chunksize);
            if let Some(t) = timeout {
                calls = calls.timeout(t);
            }
            let samples = repeat(cfg.reps, || {
                let t0 = Instant::now();
                let count = calls.imap_unordered(square, 0..N).unwrap().count();
                let took = t0.elapsed();
                assert_eq!(count as u64, N);
                took
            });
            let mut params = json!({"start_method": "fork", "processes": 2, "n": N, "chunksize": chunksize});
            if let Some(t) = timeout {
                params["task_timeout_s"] = json!(t.as_secs());
            }
            emit(
                "pool_imap_unordered",
                IMPL,
                params,
                &samples,
                Unit::PerSecond(N as f64, "items/s"),
                Some(json!({"us_per_item": median(&samples) / N as f64 * 1e6})),
            );
        }
    }
}

pub fn apply_async_latency(cfg: &Config) {
    const N: usize = 10_000;
    let pool = pool2(StartMethod::Fork);
    for _ in 0..200 {
        pool.apply_async(square, 3).unwrap().get().unwrap();
    }
    let samples = repeat(cfg.reps, || {
        time(|| {
            for _ in 0..N {
                pool.apply_async(square, 3).unwrap().get().unwrap();
            }
        })
    });
    emit(
        "apply_async_latency",
        IMPL,
        json!({"start_method": "fork", "processes": 2, "n": N}),
        &samples,
        Unit::MicrosPer(N as f64, "us/call"),
        None,
    );
}

/// The multiproc rows of `cpu_bound`: `Pool(2).map` of the tasks, and its
/// speedup over Rust's serial run (median `serial`).
pub fn cpu_bound(cfg: &Config, serial: f64) {
    let pool = pool2(StartMethod::Fork);
    pool.map(square, 0..100).unwrap();
    let expect = cpu::cpu_task(cpu::ARG);
    for chunksize in [None, Some(1usize)] {
        let samples = repeat(cfg.reps, || {
            let t0 = Instant::now();
            let out = match chunksize {
                None => pool.map(cpu::cpu_task, vec![cpu::ARG; cpu::TASKS]).unwrap(),
                Some(c) => pool.chunksize(c).map(cpu::cpu_task, vec![cpu::ARG; cpu::TASKS]).unwrap(),
            };
            let took = t0.elapsed();
            assert_eq!(out[cpu::TASKS - 1], expect);
            took
        });
        let params = cpu::pool_params(chunksize);
        let med =
            emit("cpu_bound", IMPL, params.clone(), &samples, Unit::PerSecond(cpu::TASKS as f64, "tasks/s"), None);
        let mut speedup: Value = params;
        speedup["mode"] = json!("speedup Pool(2).map vs serial");
        emit("cpu_bound", IMPL, speedup, &samples, Unit::Ratio(serial), Some(json!({"median_s_pool": med})));
    }
}

pub fn executor_map(cfg: &Config) {
    const N: u64 = 100_000;
    let pool = pool2(StartMethod::Fork);
    pool.chunksize(100).map(square, 0..1000).unwrap();
    for executor in ["concurrent.futures.ProcessPoolExecutor", "multiprocessing.Pool.map (reference)"] {
        let samples = repeat(cfg.reps, || {
            let t0 = Instant::now();
            let out = pool.chunksize(1000).map(square, 0..N).unwrap();
            let took = t0.elapsed();
            assert_eq!(out.len() as u64, N);
            took
        });
        emit(
            "executor_map",
            IMPL,
            json!({"executor": executor, "max_workers": 2, "n": N, "chunksize": 1000, "start_method": "fork"}),
            &samples,
            Unit::PerSecond(N as f64, "items/s"),
            None,
        );
    }
}
