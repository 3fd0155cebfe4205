//! `manager_dict` of bench_mp.py: a child does 10,000 set/get pairs on a
//! `Manager().dict()`, timed from "go" to "done"; and the Manager's start.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::channels::{child_handshake, run_child};
use crate::report::{Unit, emit, repeat};
use crate::{Config, IMPL};
use multiproc::connection::Connection;
use multiproc::manager::DictProxy;
use multiproc::{Manager, StartMethod};

const N: u64 = 10_000;

fn set_get((ctrl, (d, n)): (Connection, (DictProxy<u64, u64>, u64))) {
    // Opens this process's connection to the manager, as Python's warm-up.
    d.insert(u64::MAX, 0).unwrap();
    let _ = d.get(&u64::MAX).unwrap();
    child_handshake(&ctrl);
    for i in 0..n {
        d.insert(i, i).unwrap();
        let _ = d.get(&i).unwrap();
    }
    ctrl.send(&"done").unwrap();
}

fn median(samples: &[f64]) -> f64 {
    let mut s = samples.to_vec();
    s.sort_by(f64::total_cmp);
    s[s.len() / 2]
}

pub fn manager_dict(cfg: &Config) {
    let m = Manager::with_start_method(StartMethod::Fork).unwrap();
    let d = m.dict::<u64, u64>().unwrap();
    let samples = repeat(cfg.reps, || {
        d.clear().unwrap();
        let (child, ctrl) = run_child(set_get, (d.clone(), N));
        assert_eq!(ctrl.recv::<String>().unwrap(), "ready");
        let t0 = Instant::now();
        ctrl.send(&"go").unwrap();
        assert_eq!(ctrl.recv::<String>().unwrap(), "done");
        let took = t0.elapsed();
        child.join().unwrap();
        assert_eq!(d.len().unwrap() as u64, N + 1);
        took
    });
    emit(
        "manager_dict",
        IMPL,
        json!({"proxy": "Manager().dict()", "set_get_pairs": N, "ops": 2 * N, "from": "child process", "start_method": "fork"}),
        &samples,
        Unit::PerSecond(2.0 * N as f64, "ops/s"),
        Some(json!({"us_per_set_get_pair": median(&samples) / N as f64 * 1e6})),
    );
    drop(d);
    drop(m);
    let start = repeat(cfg.reps, || {
        let t0 = Instant::now();
        let m = Manager::with_start_method(StartMethod::Fork).unwrap();
        let took: Duration = t0.elapsed();
        m.shutdown().unwrap();
        took
    });
    emit("manager_dict", IMPL, json!({"phase": "Manager() start", "start_method": "fork"}), &start, Unit::Millis, None);
}

const BATCH: u64 = 10_000;

/// `manager_batch` of bench/python/bench_extra.py: one call that carries
/// 10,000 items (`dict.update`, `list.extend`), from the process that made
/// the manager; the object is emptied outside the timed region.
pub fn manager_batch(cfg: &Config) {
    let m = Manager::with_start_method(StartMethod::Fork).unwrap();
    let d = m.dict::<u64, u64>().unwrap();
    let items: Vec<(u64, u64)> = (0..BATCH).map(|i| (i, i)).collect();
    batch_row(cfg, "dict.update", "int -> int", || {
        d.clear().unwrap();
        let t0 = Instant::now();
        d.update(items.iter().copied()).unwrap();
        (t0.elapsed(), d.len().unwrap())
    });
    let l = m.list::<u64>().unwrap();
    let values: Vec<u64> = (0..BATCH).collect();
    batch_row(cfg, "list.extend", "int", || {
        l.clear().unwrap();
        let t0 = Instant::now();
        l.extend(values.iter().copied()).unwrap();
        (t0.elapsed(), l.len().unwrap())
    });
}

/// One row of `manager_batch`: `run` empties the object, times the call,
/// and says how many items the object holds after it.
fn batch_row(cfg: &Config, call: &str, types: &str, mut run: impl FnMut() -> (Duration, usize)) {
    let samples = repeat(cfg.reps, || {
        let (took, len) = run();
        assert_eq!(len as u64, BATCH);
        took
    });
    emit(
        "manager_batch",
        IMPL,
        json!({"call": call, "items": BATCH, "types": types, "start_method": "fork"}),
        &samples,
        Unit::PerSecond(BATCH as f64, "items/s"),
        None,
    );
}
