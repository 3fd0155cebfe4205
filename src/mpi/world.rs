//! The MPI job this process belongs to: set up before `main` when `mpirun`
//! started the program with two ranks or more, and what the ranks say to
//! each other.
//!
//! Every message carries bytes; its tag says what they are:
//! - `START` (rank 0 → worker rank): a pool wants this rank as a worker:
//!   rank 0's build fingerprint, the initializer, `maxtasksperchild`;
//! - `HELLO` (worker → 0): the answer: whether the builds match, the host,
//!   the pid;
//! - `DATA` (both ways): the bytes of the pool's frame stream, exactly as
//!   a local worker's socket carries them (tasks one way, results the
//!   other), cut anywhere;
//! - `STOP` (0 → worker): the pool stopped: skip every task not started,
//!   and leave after the one running;
//! - `GONE` (worker → 0): the worker's loop has ended (its exit code); the
//!   rank is free for the next pool;
//! - `QUIT` (0 → every rank, and to itself): rank 0's program is ending.

use std::sync::{Mutex, MutexGuard, OnceLock};

use mpi::environment::{Threading, Universe};
use mpi::point_to_point::{Destination, MatchedReceiveVec, Source, Status};
use mpi::topology::{Communicator, SimpleCommunicator};
use serde::{Deserialize, Serialize};

use crate::error::{Error, ErrorKind, Result};
use crate::runtime::TaskId;

pub(crate) const START: i32 = 1;
pub(crate) const HELLO: i32 = 2;
pub(crate) const DATA: i32 = 3;
pub(crate) const STOP: i32 = 4;
pub(crate) const GONE: i32 = 5;
pub(crate) const QUIT: i32 = 6;

/// Leaves MPI alone when set to `off` (a program that drives MPI itself).
pub(crate) const ENV_SWITCH: &str = "MULTIPROC_MPI";

/// What `START` carries.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Start {
    pub(crate) fingerprint: Vec<u8>,
    pub(crate) initializer: Option<(TaskId, Vec<u8>)>,
    pub(crate) max_tasks: Option<u64>,
    pub(crate) max_memory: Option<u64>,
    pub(crate) memory_limit: Option<u64>,
    pub(crate) track_usage: bool,
    pub(crate) max_frame: u64,
}

/// What `HELLO` carries.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Hello {
    /// `None` when the rank will serve; else why not.
    pub(crate) refused: Option<String>,
    pub(crate) host: String,
    pub(crate) pid: u32,
}

/// This process's place in the job.
pub(crate) struct World {
    pub(crate) rank: i32,
    pub(crate) size: i32,
    pub(crate) threading: Threading,
    /// Ends MPI when dropped (`MPI_Finalize`), at exit.
    universe: Mutex<Option<Universe>>,
}

static WORLD: OnceLock<World> = OnceLock::new();

impl World {
    /// The world communicator (a handle; any thread may make one).
    pub(crate) fn comm(&self) -> SimpleCommunicator {
        SimpleCommunicator::world()
    }

    /// Ends MPI in this process (`MPI_Finalize`), once.
    pub(crate) fn finalize(&self) {
        let universe = self.universe.lock().unwrap_or_else(|p| p.into_inner()).take();
        drop(universe);
    }
}

/// The job, if this process is a rank of one with two ranks or more.
pub(crate) fn world() -> Option<&'static World> {
    WORLD.get()
}

/// The number of ranks `mpirun` (or `srun`) says the job has, from the
/// environment the launcher gives every rank; `None` outside one.
fn launched_size() -> Option<i32> {
    ["OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_SIZE", "MPI_LOCALNRANKS"]
        .iter()
        .find_map(|key| std::env::var(key).ok())
        .and_then(|v| v.trim().parse().ok())
}

/// Called by the bootstrap before `main`, in a process that is not a
/// multiproc child: under `mpirun` with two ranks or more, sets MPI up;
/// ranks other than 0 then serve as pool workers and never return.
pub(crate) fn on_load() {
    if std::env::var_os(ENV_SWITCH).is_some_and(|v| v == "off") {
        return;
    }
    if launched_size().is_none_or(|n| n < 2) {
        return;
    }
    let Some((universe, threading)) = mpi::initialize_with_threading(Threading::Multiple) else {
        return;
    };
    let comm = SimpleCommunicator::world();
    let world = World { rank: comm.rank(), size: comm.size(), threading, universe: Mutex::new(Some(universe)) };
    let rank = world.rank;
    let world = WORLD.get_or_init(|| world);
    if rank == 0 {
        crate::sys::at_exit(super::master::at_exit);
    } else {
        super::rank::serve(world)
    }
}

/// The job, for rank 0's pool: fails unless this is rank 0 of a job of
/// two ranks or more that gives MPI to every thread.
pub(crate) fn master() -> Result<&'static World> {
    let Some(world) = world() else {
        let how = if launched_size().is_some() {
            "it runs under mpirun with a single rank; start it with 2 ranks or more: `mpirun -np 4 ./app` (rank 0 \
             runs main, the others become workers)"
        } else if std::env::var_os(ENV_SWITCH).is_some_and(|v| v == "off") {
            "MULTIPROC_MPI=off is set; unset it"
        } else {
            "it was not started by an MPI launcher; start it with `mpirun -np 4 ./app` (or `srun --mpi=pmix -n 4 \
             ./app` under Slurm): rank 0 runs main, the other ranks become the pool's workers"
        };
        return Err(Error::new(ErrorKind::InvalidState, format!("an MPI pool needs an MPI job, and {how}")));
    };
    if world.rank != 0 {
        return Err(Error::new(
            ErrorKind::InvalidState,
            format!("an MPI pool is made on rank 0 only, and this is rank {}", world.rank),
        ));
    }
    if world.threading != Threading::Multiple {
        return Err(Error::new(
            ErrorKind::Unsupported,
            format!(
                "the MPI library gives {:?} thread support and the MPI pool needs MPI_THREAD_MULTIPLE; use an MPI \
                 built with threads (Open MPI 4 from Debian or Ubuntu is)",
                world.threading
            ),
        ));
    }
    Ok(world)
}

/// Locks `m`, poisoned or not.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// This host's name, as MPI reports it.
pub(crate) fn host() -> String {
    mpi::environment::processor_name().unwrap_or_else(|_| "?".to_owned())
}

/// How long a thread waiting for MPI looks without sleeping.
const SPIN: std::time::Duration = std::time::Duration::from_micros(50);
/// How long a send looks without sleeping: a large message moves only
/// while both sides call MPI, and its receiver is waiting for it.
const SEND_SPIN: std::time::Duration = std::time::Duration::from_millis(1);
/// The longest sleep between two looks.
const MAX_NAP: std::time::Duration = std::time::Duration::from_micros(500);

/// Open MPI's blocking calls spin on the CPU for as long as they wait,
/// which on a host with fewer cores than busy threads takes the CPU from
/// the threads that do the work (the dispatcher, the worker). So every
/// wait here is `look` repeated: for a while with only a yield between
/// looks, then with sleeps (50 µs, doubling up to 0.5 ms), as a local
/// worker waits for its next task.
fn patiently<T>(spin: std::time::Duration, mut look: impl FnMut() -> Option<T>) -> T {
    let started = std::time::Instant::now();
    let mut nap = std::time::Duration::from_micros(50);
    loop {
        if let Some(found) = look() {
            return found;
        }
        if started.elapsed() < spin {
            std::thread::yield_now();
        } else {
            std::thread::sleep(nap);
            nap = (nap * 2).min(MAX_NAP);
        }
    }
}

/// The next message from `source`: its bytes and status.
pub(crate) fn next_message(source: &impl Source) -> (Vec<u8>, Status) {
    patiently(SPIN, || source.immediate_matched_probe()).matched_receive_vec::<u8>()
}

/// Sends `bytes` to `to` with `tag`, and waits until the buffer may be
/// reused (a large message waits for the receiver to take it).
pub(crate) fn send(to: &impl Destination, bytes: &[u8], tag: i32) {
    mpi::request::scope(|scope| {
        let mut request = Some(to.immediate_send_with_tag(scope, bytes, tag));
        patiently(SEND_SPIN, || match request.take()?.test() {
            Ok(_) => Some(()),
            Err(pending) => {
                request = Some(pending);
                None
            }
        });
    });
}
