//! `spawn_join`: 100 sequential start + join of a process that does
//! nothing, per start method; µs per process. The raw limits: fork() +
//! waitpid of a child that exits at once, and exec of this executable
//! (which exits before `main`'s work) + wait.

use serde_json::json;

use crate::report::{Unit, emit, repeat, time};
use crate::{Config, IMPL};
use multiproc::{Process, StartMethod};

const N: usize = 100;

fn noop(_: ()) {}

pub fn run(cfg: &Config) {
    for method in [
        StartMethod::Fork,
        StartMethod::Spawn,
        StartMethod::ForkServer,
    ] {
        // Warm-up, untimed: starts the fork server.
        Process::new(noop, ())
            .start_method(method)
            .start()
            .unwrap()
            .join()
            .unwrap();
        let samples = repeat(cfg.reps, || {
            time(|| {
                for _ in 0..N {
                    Process::new(noop, ())
                        .start_method(method)
                        .start()
                        .unwrap()
                        .join()
                        .unwrap();
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
    raw(cfg);
}

/// The exec-of-self limit: `/proc/self/exe` started through std's
/// `Command` with a marker that makes this bench exit at the top of main.
fn raw(cfg: &Config) {
    let samples = repeat(cfg.reps, || {
        time(|| {
            for _ in 0..N {
                let status = std::process::Command::new("/proc/self/exe")
                    .env(crate::EXIT_AT_ONCE, "1")
                    .status()
                    .unwrap();
                assert!(status.success());
            }
        })
    });
    emit(
        "spawn_join",
        "raw",
        json!({"start_method": "spawn", "n": N, "what": "Command(/proc/self/exe) + wait, exits at the top of main"}),
        &samples,
        Unit::MicrosPer(N as f64, "us/process"),
        None,
    );
}
