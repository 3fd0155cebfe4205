//! Workers' output in the parent (`PoolBuilder::forward_output`): four
//! workers each print 1,000 lines to stdout and to stderr, and the parent
//! prints them, whole and tagged with the worker's name and pid:
//!
//! ```text
//! [ForkPoolWorker-1 4242] task 0 line 17
//! ```
//!
//! Run with an optional start method: `cargo run --example worker_logs -- spawn`.
//! With a second argument `process`, four plain `Process` children do the
//! same (`Process::forward_output`), tagged `[Process-1 4242]`.

use multiproc::{Pool, Process, StartMethod};

fn chatty(task: u32) -> u32 {
    for i in 0..1000 {
        println!("task {task} line {i}");
        eprintln!("task {task} err {i}");
    }
    task
}

fn main() -> multiproc::Result<()> {
    let method = match std::env::args().nth(1).as_deref() {
        Some("spawn") => StartMethod::Spawn,
        Some("forkserver") => StartMethod::ForkServer,
        _ => StartMethod::Fork,
    };
    if std::env::args().nth(2).as_deref() == Some("process") {
        let children: Vec<_> = (0..4)
            .map(|task| Process::new(chatty, task).start_method(method).forward_output(true).start())
            .collect::<multiproc::Result<_>>()?;
        for (task, child) in children.iter().enumerate() {
            assert_eq!(child.join()?, task as u32);
        }
        return Ok(());
    }
    let pool = Pool::builder().processes(4).start_method(method).forward_output().build()?;
    let done = pool.chunksize(1).map(chatty, 0..4)?;
    assert_eq!(done, [0, 1, 2, 3]);
    pool.close();
    pool.join()?;
    Ok(())
}
