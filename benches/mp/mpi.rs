//! `mpi_pool`: multiproc's MPI pool (`Pool::builder().mpi()`, its map at
//! chunksize 1 and 1000, the cases of bench_extra.py's mpi4py.futures
//! baseline) and its limit, a raw rsmpi master/worker (rank 0 hands out
//! chunks of numbers, the other ranks square them and send the chunk
//! back). Built with the `mpi` feature (Debian's Open MPI); outside
//! `mpirun`, the workload starts this executable under it twice (the pool,
//! then the raw program with multiproc's MPI switched off), and rank 0
//! prints the rows.

use std::time::Instant;

use mpi::point_to_point::{Destination, Source, Status};
use mpi::topology::Communicator;
use serde_json::json;

use crate::report::{Unit, emit, repeat};

/// Set in the ranks that `mpirun` starts.
const ROLE: &str = "MULTIPROC_BENCH_MPI";
const RANKS: usize = 3;
const CASES: [(u64, usize); 2] = [(5_000, 1), (1_000_000, 1000)];
const WORK: i32 = 1;
const STOP: i32 = 2;

/// The workload: starts `mpirun -np 3` on this executable, whose rank 0
/// prints the rows (stdout is passed through).
pub fn mpi_pool(reps: usize) {
    let exe = std::env::current_exe().expect("the bench knows its executable");
    for role in ["pool", "raw"] {
        let mut cmd = std::process::Command::new("mpirun");
        cmd.args(["--allow-run-as-root", "--oversubscribe", "-np", &RANKS.to_string()])
            .arg(&exe)
            .args(["--reps", &reps.to_string(), "mpi_pool"])
            .env(ROLE, role);
        if role == "raw" {
            // The raw program drives MPI itself.
            cmd.env("MULTIPROC_MPI", "off");
        }
        match cmd.status() {
            Ok(s) if s.success() => {}
            Ok(s) => eprintln!("# mpi_pool ({role}): mpirun ended with {s}"),
            Err(e) => eprintln!("# mpi_pool: could not run mpirun ({e}): apt-get install openmpi-bin"),
        }
    }
}

/// In a rank that `mpirun` started for [`mpi_pool`]: runs its part and
/// returns true; false in a normal run.
pub fn serve_rank(reps: usize) -> bool {
    match std::env::var(ROLE).as_deref() {
        Ok("pool") => {
            pool(reps);
            return true;
        }
        Ok(_) => {}
        Err(_) => return false,
    }
    let universe = mpi::initialize().expect("MPI initializes under mpirun");
    let world = universe.world();
    if world.rank() == 0 {
        master(&world, reps);
    } else {
        worker(&world);
    }
    true
}

/// Rank 0 of the pool run (the other ranks are the pool's workers, and
/// never get here).
fn pool(reps: usize) {
    fn square(x: u64) -> u64 {
        x * x
    }
    let pool = multiproc::Pool::builder().mpi().build().expect("an MPI pool under mpirun");
    for (n, chunksize) in CASES {
        let samples = repeat(reps, || {
            let t0 = Instant::now();
            let squares = pool.chunksize(chunksize).map(square, 0..n).expect("the map");
            let took = t0.elapsed();
            assert_eq!(squares.iter().sum::<u64>(), (0..n).map(|i| i * i).sum::<u64>());
            took
        });
        row("multiproc", n, chunksize, &samples, "Pool::builder().mpi(): map of u64 squares on ranks 1 and 2");
    }
}

/// One `mpi_pool` row.
fn row(imp: &str, n: u64, chunksize: usize, samples: &[f64], what: &str) {
    emit(
        "mpi_pool",
        imp,
        json!({"api": "MPIPoolExecutor.map", "n": n, "chunksize": chunksize, "ranks": RANKS}),
        samples,
        Unit::PerSecond(n as f64, "items/s"),
        Some(json!({ "what": what })),
    );
}

fn worker(world: &impl Communicator) {
    let master = world.process_at_rank(0);
    loop {
        let (mut chunk, status): (Vec<u64>, Status) = master.receive_vec();
        if status.tag() == STOP {
            return;
        }
        for x in &mut chunk {
            *x *= *x;
        }
        master.send_with_tag(&chunk[..], WORK);
    }
}

fn master(world: &impl Communicator, reps: usize) {
    let workers: Vec<i32> = (1..world.size()).collect();
    for (n, chunksize) in CASES {
        // One-item messages are sent eagerly, so several may be in flight
        // per worker; a 1000-item chunk is sent by rendezvous, so each
        // worker has one at a time (else master and worker could both
        // block in a send).
        let window = if chunksize == 1 { 32 } else { 1 };
        let samples = repeat(reps, || {
            let t0 = Instant::now();
            let total = run(world, &workers, n, chunksize, window);
            let took = t0.elapsed();
            assert_eq!(total, (0..n).map(|i| i * i).sum::<u64>());
            took
        });
        row(
            "raw",
            n,
            chunksize,
            &samples,
            "rsmpi master/worker: rank 0 sends chunks of u64 (window 32 at chunksize 1, 1 at 1000) to the other ranks, \
             which square them and send them back",
        );
    }
    for &w in &workers {
        world.process_at_rank(w).send_with_tag(&[0u64][..], STOP);
    }
}

/// One map of `n` squares: the sum of the results.
fn run(world: &impl Communicator, workers: &[i32], n: u64, chunksize: usize, window: usize) -> u64 {
    let mut next = 0u64;
    let mut outstanding = 0usize;
    let mut total = 0u64;
    let send_next = |to: i32, next: &mut u64| -> bool {
        if *next >= n {
            return false;
        }
        let end = (*next + chunksize as u64).min(n);
        let chunk: Vec<u64> = (*next..end).collect();
        world.process_at_rank(to).send_with_tag(&chunk[..], WORK);
        *next = end;
        true
    };
    for _ in 0..window {
        for &w in workers {
            if send_next(w, &mut next) {
                outstanding += 1;
            }
        }
    }
    while outstanding > 0 {
        let (chunk, status): (Vec<u64>, Status) = world.any_process().receive_vec();
        outstanding -= 1;
        total += chunk.iter().sum::<u64>();
        if send_next(status.source_rank(), &mut next) {
            outstanding += 1;
        }
    }
    total
}
