//! CPython's `Doc/includes/mp_workers.py`, ported: four worker processes
//! take tasks from one queue and put their results on another.
//!
//! What differs from the original, and why:
//! - A task is an enum (`Task::Mul`, `Task::Plus`, `Task::Stop`) where
//!   Python puts `(func, args)` tuples and a `'STOP'` string on the queue: a
//!   `Queue<T>` carries one type, and functions travel as data, not as
//!   pickled references.
//! - `iter(input.get, 'STOP')` becomes a `loop` that ends at `Task::Stop`.
//! - The tasks nap for a pseudo-random 0–50 ms instead of 0–500 ms, so
//!   that the example (which the tests run) finishes quickly; the order of
//!   the results is as unpredictable as in Python.
//! - The workers are joined at the end; Python leaves that to interpreter
//!   exit.

use std::time::Duration;

use multiproc::{Process, Queue, current_process};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
enum Task {
    Mul(i64, i64),
    Plus(i64, i64),
    Stop,
}

/// Run by the worker processes.
fn worker((input, output): (Queue<Task>, Queue<String>)) -> multiproc::Result<()> {
    loop {
        let task = input.get()?;
        if let Task::Stop = task {
            return Ok(());
        }
        output.put(&calculate(task))?;
    }
}

/// What a worker says about one task.
fn calculate(task: Task) -> String {
    let (name, a, b, result) = match task {
        Task::Mul(a, b) => ("mul", a, b, mul(a, b)),
        Task::Plus(a, b) => ("plus", a, b, plus(a, b)),
        Task::Stop => unreachable!("Stop is not calculated"),
    };
    format!("{} says that {name}({a}, {b}) = {result}", current_process().name())
}

/// A short nap whose length depends on the operands (a stand-in for
/// `random.random()`, which would need a random-number crate).
fn nap(a: i64, b: i64) {
    std::thread::sleep(Duration::from_millis(((a * 31 + b * 17) % 50) as u64));
}

fn mul(a: i64, b: i64) -> i64 {
    nap(a, b);
    a * b
}

fn plus(a: i64, b: i64) -> i64 {
    nap(a, b);
    a + b
}

fn main() -> multiproc::Result<()> {
    const NUMBER_OF_PROCESSES: usize = 4;
    let tasks1: Vec<Task> = (0..20).map(|i| Task::Mul(i, 7)).collect();
    let tasks2: Vec<Task> = (0..10).map(|i| Task::Plus(i, 8)).collect();

    // Create queues
    let task_queue = Queue::new()?;
    let done_queue = Queue::new()?;

    // Submit tasks
    for task in &tasks1 {
        task_queue.put(task)?;
    }

    // Start worker processes
    let workers = (0..NUMBER_OF_PROCESSES)
        .map(|_| Process::new(worker, (task_queue.clone(), done_queue.clone())).start())
        .collect::<multiproc::Result<Vec<_>>>()?;

    // Get and print results
    println!("Unordered results:");
    for _ in 0..tasks1.len() {
        println!("\t {}", done_queue.get()?);
    }

    // Add more tasks using `put()`
    for task in &tasks2 {
        task_queue.put(task)?;
    }

    // Get and print some more results
    for _ in 0..tasks2.len() {
        println!("\t {}", done_queue.get()?);
    }

    // Tell child processes to stop
    for _ in 0..NUMBER_OF_PROCESSES {
        task_queue.put(&Task::Stop)?;
    }
    for w in workers {
        w.join()??;
    }
    Ok(())
}
