//! A `Barrier` keeps worker processes in step, round by round, as Python's
//! `multiprocessing.Barrier` does: each round, every worker does its part,
//! then waits for the others. (`Barrier::with_action` also runs a fn item
//! once per round, in the last party to arrive.)
//!
//! ```text
//! cargo run --example barrier
//! ```

use std::time::Duration;

use multiproc::{Array, Barrier, Process};

const WORKERS: usize = 3;
const ROUNDS: usize = 4;

/// Waits for every party, with a generous timeout: a crashed worker
/// breaks the barrier instead of hanging the rest.
fn sync(barrier: &Barrier) -> multiproc::Result<u32> {
    barrier.wait_timeout(Duration::from_secs(30))
}

/// Worker `id` adds its round's share to its cell, waits for the others,
/// then waits again while the main process reads.
fn worker((id, barrier, cells): (usize, Barrier, Array<u64>)) -> multiproc::Result<()> {
    for round in 1..=ROUNDS {
        cells.with_lock(|c| c[id] += (round * (id + 1)) as u64)?;
        sync(&barrier)?;
        sync(&barrier)?;
    }
    Ok(())
}

fn main() -> multiproc::Result<()> {
    // The main process is a party too: it reads the cells between rounds.
    let barrier = Barrier::new(WORKERS as u32 + 1)?;
    let cells = Array::new(&[0u64; WORKERS])?;
    let workers: Vec<_> = (0..WORKERS)
        .map(|id| Process::new(worker, (id, barrier.clone(), cells.clone())).start())
        .collect::<Result<_, _>>()?;
    for round in 1..=ROUNDS {
        sync(&barrier)?; // every worker has added its share
        println!("after round {round}: {:?}", cells.to_vec()?);
        sync(&barrier)?; // the workers may go on
    }
    for w in workers {
        w.join()??;
    }
    println!("parties: {}, waiting now: {}, broken: {}", barrier.parties(), barrier.n_waiting(), barrier.broken());
    Ok(())
}
