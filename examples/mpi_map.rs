//! Scale-out: the same `Pool`, with the ranks of an MPI job as its workers
//! (feature `mpi`). Build and start it with
//!
//! ```text
//! cargo build --release --features mpi --example mpi_map
//! mpirun -np 4 target/release/examples/mpi_map
//! mpirun -np 8 --hostfile hosts target/release/examples/mpi_map
//! ```
//!
//! Rank 0 runs `main`; ranks 1 to N−1 serve as the pool's workers.

use multiproc::Pool;

fn square(x: u64) -> u64 {
    x * x
}

/// Where a task ran: the worker's rank and host.
fn where_am_i(_: ()) -> (u32, String) {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    (multiproc::mpi::rank().unwrap_or(0), host.trim().to_owned())
}

fn main() -> Result<(), multiproc::Error> {
    let pool = match Pool::builder().mpi().build() {
        Ok(pool) => pool,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    let squares = pool.chunksize(1000).map(square, 0..1_000_000)?;
    println!("{} workers; sum of squares below 1e6: {}", pool.processes(), squares.iter().sum::<u64>());
    let mut places = pool.chunksize(1).map(where_am_i, vec![(); 4 * pool.processes()])?;
    places.sort();
    places.dedup();
    for (rank, host) in places {
        println!("rank {rank} on {host}");
    }
    Ok(())
}
