//! Return values: a child's return value comes back through `join`, any
//! serde type, tuples for several arguments.
//!
//! ```text
//! cargo run --example return_values
//! ```

use multiproc::Process;
use serde::{Deserialize, Serialize};

#[derive(Debug, Serialize, Deserialize)]
struct Stats {
    count: usize,
    mean: f64,
    max: i64,
}

fn stats(values: Vec<i64>) -> Stats {
    let count = values.len();
    let mean = values.iter().sum::<i64>() as f64 / count as f64;
    let max = values.iter().copied().max().unwrap_or(0);
    Stats { count, mean, max }
}

fn power((base, exp): (u64, u32)) -> u64 {
    base.pow(exp)
}

fn main() -> multiproc::Result<()> {
    let child = Process::new(stats, vec![3, 1, 4, 1, 5, 9, 2, 6]).start()?;
    let s = child.join()?;
    println!("count={} mean={} max={}", s.count, s.mean, s.max);

    let child = Process::new(power, (2, 10)).start()?;
    println!("2^10 = {}", child.join()?);

    // A closure that captures nothing works too.
    let child = Process::new(|name: String| format!("hello, {name}"), "world".to_string()).start()?;
    println!("{}", child.join()?);
    Ok(())
}
