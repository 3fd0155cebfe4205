//! The three seed programs of the project, in Rust, in order.
//!
//! ```text
//! cargo run --release --example quickstart
//! ```
//!
//! prints exactly what the Python originals print:
//!
//! ```text
//! Square: 25
//! [1, 4, 9, 16]
//! Number: 1
//! Number: 2
//! Number: 3
//! Number: 4
//! ```
//!
//! (The four `Number` lines come from four concurrent processes, so, as in
//! Python, they may appear in another order.)

use multiproc::{Pool, Process};

/// Q-3: one process.
fn print_square(number: u64) {
    println!("Square: {}", number * number);
}

/// Q-5: the function a pool of 4 maps over a list.
fn square(number: u64) -> u64 {
    number * number
}

/// Q-6: four processes at once.
fn print_number(number: u64) {
    println!("Number: {number}");
}

fn main() -> multiproc::Result<()> {
    // Q-3
    let process = Process::new(print_square, 5).start()?;
    process.join()?;

    // Q-5
    let pool = Pool::new(4)?;
    let results = pool.map(square, [1, 2, 3, 4])?;
    println!("{results:?}");

    // Q-6
    let mut processes = Vec::new();
    for i in 1..5 {
        processes.push(Process::new(print_number, i).start()?);
    }
    for process in &processes {
        process.join()?;
    }
    Ok(())
}
