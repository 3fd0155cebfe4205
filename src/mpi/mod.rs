//! Scale-out on MPI (feature `mpi`): the same [`Pool`] across hosts, as
//! mpi4py.futures' `MPIPoolExecutor` in its static mode.
//!
//! Start the program with `mpirun -np N ./app` (or `srun --mpi=pmix -n N
//! ./app` under Slurm). Rank 0 runs `main`; ranks 1 to N−1 never reach it:
//! before `main`, multiproc's bootstrap makes them pool workers, which
//! wait for rank 0's pools and leave when rank 0's program ends. On rank 0,
//! [`pool()`] (or `Pool::builder().mpi().build()`) returns an ordinary
//! [`Pool`] whose workers are those ranks, one per rank: `map`, `imap`,
//! `imap_unordered`, `starmap`, `apply_async`, `submit`, callbacks,
//! chunksize and the progress bar work as in a local pool, over the same
//! dispatcher. A program started without `mpirun`, or with one rank, gets
//! an [`ErrorKind::InvalidState`](crate::ErrorKind::InvalidState) error
//! that says how to start it; dynamic process creation (`MPI_Comm_spawn`,
//! mpi4py's dynamic mode) is not used.
//!
//! Tasks are found by their place in the executable, so every rank must run
//! the identical binary: each worker rank compares its build fingerprint
//! with rank 0's when a pool starts, and a mismatch fails `build()` with
//! [`ErrorKind::BuildMismatch`](crate::ErrorKind::BuildMismatch) naming the
//! host, before any task is sent.
//!
//! What differs from a local pool, because of what MPI allows:
//! - A rank cannot be killed without ending the job: Open MPI 4 has no
//!   fault tolerance, and a rank that dies (a crash, an abort, `exit()`)
//!   aborts the whole job, rank 0 included; `mpirun` reports which rank.
//!   Surviving rank loss needs ULFM (Open MPI 5's `--with-ft=ulfm`), which
//!   multiproc does not use yet. A task that panics or returns an error
//!   fails alone, as locally.
//! - So there are no per-task timeouts (a timeout is refused with
//!   `InvalidInput`), [`AsyncResult::kill`](crate::AsyncResult::kill) stops
//!   only what has not been sent, and `cancel()` works until a task is sent
//!   to a rank rather than until it starts. `terminate()` (and dropping the
//!   pool) cancels every task a rank has not started and waits for the ones
//!   running.
//! - An initializer's argument must be plain data (no fds: a Pipe or a
//!   Lock cannot travel to another host).
//!
//! Each rank may itself use a local [`Pool`] inside a task (hybrid: MPI
//! across hosts, processes within a host). `stats()` names each worker's
//! rank and host ([`WorkerStats::mpi_rank`](crate::WorkerStats::mpi_rank)).
//! A program that drives MPI itself sets `MULTIPROC_MPI=off`, and
//! multiproc leaves MPI alone.
//!
//! # Examples
//!
//! ```no_run
//! // Run with: mpirun -np 4 ./target/release/examples/mpi_map
//! fn square(x: u64) -> u64 { x * x }
//!
//! let pool = multiproc::mpi::pool()?;
//! assert_eq!(pool.map(square, 0..10)?, (0..10).map(square).collect::<Vec<_>>());
//! # Ok::<(), multiproc::Error>(())
//! ```

mod master;
mod rank;
mod world;

pub(crate) use master::{RankLink, start_worker, worker_ranks};
pub(crate) use world::on_load;

use crate::Pool;
use crate::error::Result;

/// A pool whose workers are the other ranks of this MPI job, one per rank:
/// `Pool::builder().mpi().build()`.
///
/// # Errors
///
/// See [`PoolBuilder::mpi`](crate::PoolBuilder::mpi).
///
/// # Examples
///
/// ```
/// // Outside `mpirun -np N` (N >= 2) the error says how to start the program.
/// if let Err(e) = multiproc::mpi::pool() {
///     assert_eq!(e.kind(), multiproc::ErrorKind::InvalidState);
///     assert!(e.to_string().contains("mpirun -np"));
/// }
/// ```
#[doc(alias("MPIPoolExecutor"))]
pub fn pool() -> Result<Pool> {
    Pool::builder().mpi().build()
}

/// This process's rank in the MPI job (`MPI_Comm_rank`), or `None` when it
/// is not part of one with two ranks or more.
///
/// # Examples
///
/// ```
/// // 0 on rank 0 under mpirun; None in an ordinary run.
/// assert!(multiproc::mpi::rank().is_none_or(|r| r == 0));
/// ```
#[doc(alias("MPI_Comm_rank", "Get_rank"))]
pub fn rank() -> Option<u32> {
    world::world().map(|w| w.rank as u32)
}

/// The number of ranks in the MPI job (`MPI_Comm_size`), or `None` when
/// this process is not part of one with two ranks or more.
///
/// # Examples
///
/// ```
/// assert!(multiproc::mpi::world_size().is_none_or(|n| n >= 2));
/// ```
#[doc(alias("MPI_Comm_size", "Get_size"))]
pub fn world_size() -> Option<u32> {
    world::world().map(|w| w.size as u32)
}
