//! A probe that pool tasks share with the test, set up by the pool's
//! initializer: `started` is set by a task that begins holding, `go`
//! releases it, and `runs[i]` counts how many times task `i` ran (in shared
//! memory, so that a task killed mid-run still counts).

use std::sync::OnceLock;
use std::sync::atomic::Ordering;

use multiproc::{Event, Pool, SharedMemory, StartMethod};

pub struct Probe {
    pub started: Event,
    pub go: Event,
    pub runs: SharedMemory,
}

static PROBE: OnceLock<Probe> = OnceLock::new();

fn init_probe((started, go, runs): (Event, Event, SharedMemory)) {
    let _ = PROBE.set(Probe { started, go, runs });
}

/// The probe, in a pool worker.
pub fn probe() -> &'static Probe {
    PROBE.get().expect("the initializer ran")
}

/// Counts a run of task `i`, then returns `i`.
pub fn mark(i: u64) -> u64 {
    probe().runs.as_atomic_u64()[i as usize].fetch_add(1, Ordering::SeqCst);
    i
}

/// A pool of `n` workers sharing a fresh probe for `tasks` tasks with the
/// test, and the probe's parts.
pub fn probed_pool(method: StartMethod, n: usize, tasks: usize) -> (Pool, Event, Event, SharedMemory) {
    let (started, go) = (Event::new().unwrap(), Event::new().unwrap());
    let runs = SharedMemory::anonymous(8 * tasks).unwrap();
    let pool = Pool::builder()
        .processes(n)
        .start_method(method)
        .initializer(init_probe, (started.clone(), go.clone(), runs.try_clone().unwrap()))
        .build()
        .unwrap();
    (pool, started, go, runs)
}

/// How many times each task ran.
pub fn runs(shm: &SharedMemory) -> Vec<u64> {
    shm.as_atomic_u64().iter().map(|w| w.load(Ordering::SeqCst)).collect()
}
