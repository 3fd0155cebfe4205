//! `spawn_join`: 100 sequential start + join of a process that does
//! nothing, per start method, in µs per process (the fork server is
//! started by an untimed warm-up, as in bench_mp.py).

use serde_json::json;

use crate::report::{Unit, emit, repeat, time};
use crate::{Config, IMPL, raw};
use multiproc::{Process, StartMethod};

const N: usize = 100;

fn noop(_: ()) {}

pub fn run(cfg: &Config) {
    for method in [StartMethod::Fork, StartMethod::Spawn, StartMethod::ForkServer] {
        Process::new(noop, ()).start_method(method).start().unwrap().join().unwrap();
        let samples = repeat(cfg.reps, || {
            time(|| {
                for _ in 0..N {
                    Process::new(noop, ()).start_method(method).start().unwrap().join().unwrap();
                }
            })
        });
        emit(
            "spawn_join",
            IMPL,
            json!({"start_method": method.name(), "n": N}),
            &samples,
            Unit::MicrosPer(N as f64, "us/process"),
            None,
        );
    }
    raw::spawn_join(cfg.reps);
}
