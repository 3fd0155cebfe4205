//! Worker processes fed from a task queue, Python's classic pattern: four
//! workers `get` words from a `JoinableQueue` until a `None` sentinel, call
//! `task_done` for each, and `put` their results into a `Queue`. The main
//! process waits for the tasks with `join`, stops the workers, and prints
//! the results, sorted (the workers race, so they arrive in any order).
//!
//! ```text
//! cargo run --example queue_workers
//! ```
//!
//! One difference from Python: `put` copies the item into shared memory
//! before it returns (there is no feeder thread), so a worker can exit
//! before anyone reads its results. This program joins the workers *before*
//! it drains the results: in Python that order deadlocks once the results
//! outgrow a pipe buffer (the docs' "joining processes that use queues",
//! gh-73983); here it is fine.

use std::time::Duration;

use multiproc::{JoinableQueue, Process, Queue};

/// Bounds every wait: a bug fails the program instead of hanging it.
const LIMIT: Duration = Duration::from_secs(30);
const WORKERS: usize = 4;

/// `None` is the sentinel that tells a worker to stop.
type Tasks = JoinableQueue<Option<String>>;
/// A word and how many vowels it has.
type Results = Queue<(String, usize)>;

/// Python:
///
/// ```python
/// def worker(tasks, results):
///     while (word := tasks.get()) is not None:
///         results.put((word, sum(c in "aeiou" for c in word)))
///         tasks.task_done()
///     tasks.task_done()
/// ```
///
/// It also returns how many words it handled (a Python target's return
/// value is lost; here `join` returns it).
fn worker((tasks, results): (Tasks, Results)) -> multiproc::Result<usize> {
    let mut handled = 0;
    while let Some(word) = tasks.get_timeout(LIMIT)? {
        let vowels = word.chars().filter(|c| "aeiou".contains(*c)).count();
        results.put(&(word, vowels))?;
        tasks.task_done()?;
        handled += 1;
    }
    tasks.task_done()?; // the sentinel counts as a task too
    Ok(handled)
}

fn main() -> multiproc::Result<()> {
    let tasks = Tasks::new()?;
    let results = Results::new()?;
    // Python: Process(target=worker, args=(tasks, results)).start()
    let workers = (0..WORKERS)
        .map(|_| Process::new(worker, (tasks.clone(), results.clone())).start())
        .collect::<multiproc::Result<Vec<_>>>()?;

    let words: Vec<&str> = "a worker takes each queued word until it sees the sentinel".split(' ').collect();
    for word in &words {
        tasks.put(&Some(word.to_string()))?;
    }
    tasks.join_timeout(LIMIT)?; // Python: tasks.join()
    println!("all {} tasks done", words.len());

    // One sentinel per worker, then join them all, results still unread.
    for _ in 0..WORKERS {
        tasks.put(&None)?;
    }
    let mut handled = 0;
    for w in &workers {
        handled += w.join_timeout(LIMIT)??;
    }
    println!("{WORKERS} workers exited after {handled} tasks; {} results wait in the queue", results.qsize());

    let mut counted = (0..handled).map(|_| results.get_timeout(LIMIT)).collect::<multiproc::Result<Vec<_>>>()?;
    counted.sort();
    for (word, vowels) in counted {
        println!("{word}: {vowels} vowel(s)");
    }
    Ok(())
}
