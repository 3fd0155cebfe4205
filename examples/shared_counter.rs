//! Python's classic shared counter: four processes add to a `Value` and an
//! `Array` under their built-in lock, and to an `AtomicValue` without one.
//!
//! ```text
//! cargo run --example shared_counter
//! ```
//!
//! prints
//!
//! ```text
//! counter (Value, under its lock): 40000
//! slots (Array, under its lock): [10000, 10000, 10000, 10000]
//! hits (AtomicValue, no lock): 40000
//! done (two fields, one acquisition): 4 workers, ids summing to 10
//! ```
//!
//! The Python original:
//!
//! ```python
//! from multiprocessing import Array, Process, Value
//!
//! def work(counter, slots, i):
//!     for n in range(10_000):
//!         with counter.get_lock():
//!             counter.value += 1
//!         with slots.get_lock():
//!             slots[n % len(slots)] += 1
//!
//! counter, slots = Value('q', 0), Array('q', 4)
//! ```
//!
//! A bare `counter.value += 1` (a read, then a write) loses updates when
//! processes interleave; so would two separate `get` and `set` calls
//! here. `with_lock` does the read-modify-write under the lock.

use multiproc::{Array, AtomicValue, Process, Value};

const WORKERS: i64 = 4;
const ROUNDS: usize = 10_000;

/// What every worker receives: the same shared objects, and its number.
type Shared = (Value<i64>, Array<i64>, AtomicValue<i64>, Value<[i64; 2]>, i64);

fn work((counter, slots, hits, done, id): Shared) -> multiproc::Result<()> {
    for n in 0..ROUNDS {
        counter.with_lock(|c| *c += 1)?;
        slots.with_lock(|s| {
            let len = s.len();
            s[n % len] += 1;
        })?;
        hits.fetch_add(1);
    }
    // Several updates under one acquisition of the lock: nobody sees one
    // without the other.
    let guard = done.get_lock().acquire()?;
    done.update(&guard, |d| d[0] += 1);
    done.update(&guard, |d| d[1] += id);
    Ok(())
}

fn main() -> multiproc::Result<()> {
    let counter = Value::new(0i64)?;
    let slots = Array::new(&[0i64; 4])?;
    let hits = AtomicValue::new(0i64)?;
    let done = Value::new([0i64; 2])?;

    let workers = (1..=WORKERS)
        .map(|id| Process::new(work, (counter.clone(), slots.clone(), hits.clone(), done.clone(), id)).start())
        .collect::<multiproc::Result<Vec<_>>>()?;
    for worker in workers {
        worker.join()??;
    }

    println!("counter (Value, under its lock): {}", counter.get()?);
    println!("slots (Array, under its lock): {:?}", slots.to_vec()?);
    println!("hits (AtomicValue, no lock): {}", hits.load());
    let [workers, ids] = done.get()?;
    println!("done (two fields, one acquisition): {workers} workers, ids summing to {ids}");
    Ok(())
}
