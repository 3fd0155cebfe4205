//! Python's `multiprocessing.log_to_stderr()` (feature `log`): records of
//! this process, of its children and of its pool's workers print on stderr
//! as Python prints them, `[LEVEL/ProcessName] message`:
//!
//! ```text
//! [INFO/MainProcess] starting
//! [INFO/Process-1] hello from a child
//! [WARNING/SpawnPoolWorker-2] task 3
//! ```
//!
//! Run: `cargo run --features log --example log_to_stderr -- spawn`.

use multiproc::{Pool, Process, StartMethod};

fn hello(_: ()) {
    log::info!("hello from a child");
    log::debug!("not shown: below the level");
}

fn task(n: u32) -> u32 {
    log::warn!("task {n}");
    n
}

fn main() -> multiproc::Result<()> {
    let method = match std::env::args().nth(1).as_deref() {
        Some("spawn") => StartMethod::Spawn,
        Some("forkserver") => StartMethod::ForkServer,
        _ => StartMethod::Fork,
    };
    multiproc::log_to_stderr(log::LevelFilter::Info)?;
    log::info!("starting");
    Process::new(hello, ()).start_method(method).start()?.join()?;
    let pool = Pool::builder().processes(2).start_method(method).forward_output().build()?;
    assert_eq!(pool.chunksize(1).map(task, 0..4)?, [0, 1, 2, 3]);
    pool.close();
    pool.join()?;
    Ok(())
}
