//! `shared_value` of bench_mp.py: two fork children each do 100,000
//! locked increments of one shared `Value<i32>`, timed from "go" to both
//! "done"s, as in Python.

use std::time::Instant;

use serde_json::json;

use crate::channels::{child_handshake, run_child};
use crate::report::{Unit, emit, repeat};
use crate::{Config, IMPL};
use multiproc::Value;
use multiproc::connection::Connection;

const N: u32 = 100_000;

fn incr((ctrl, (v, n)): (Connection, (Value<i32>, u32))) {
    child_handshake(&ctrl);
    for _ in 0..n {
        v.with_lock(|x| *x += 1).unwrap();
    }
    ctrl.send(&"done").unwrap();
}

pub fn shared_value(cfg: &Config) {
    let samples = repeat(cfg.reps, || {
        let v = Value::new(0i32).unwrap();
        let (a, ctrl_a) = run_child(incr, (v.clone(), N));
        let (b, ctrl_b) = run_child(incr, (v.clone(), N));
        for c in [&ctrl_a, &ctrl_b] {
            assert_eq!(c.recv::<String>().unwrap(), "ready");
        }
        let t0 = Instant::now();
        for c in [&ctrl_a, &ctrl_b] {
            c.send(&"go").unwrap();
        }
        for c in [&ctrl_a, &ctrl_b] {
            assert_eq!(c.recv::<String>().unwrap(), "done");
        }
        let took = t0.elapsed();
        a.join().unwrap();
        b.join().unwrap();
        assert_eq!(v.get().unwrap(), 2 * N as i32);
        took
    });
    emit(
        "shared_value",
        IMPL,
        json!({"type": "Value('i')", "lock": true, "processes": 2, "incr_per_process": N, "start_method": "fork"}),
        &samples,
        Unit::PerSecond(f64::from(2 * N), "ops/s"),
        None,
    );
}
