//! Timeouts: `join_timeout` gives up waiting but leaves the child running;
//! the parent then decides, and a process, unlike a thread, can be killed.
//!
//! ```text
//! cargo run --example timeouts
//! ```

use std::time::Duration;

use multiproc::Process;

fn slow_square(x: u64) -> u64 {
    std::thread::sleep(Duration::from_secs(60));
    x * x
}

fn quick_square(x: u64) -> u64 {
    x * x
}

fn main() -> multiproc::Result<()> {
    let quick = Process::new(quick_square, 9).start()?;
    println!("quick: {}", quick.join_timeout(Duration::from_secs(10))?);

    let slow = Process::new(slow_square, 9).start()?;
    match slow.join_timeout(Duration::from_millis(100)) {
        Err(e) if e.is_timeout() => println!("slow: timed out, still alive: {}", slow.is_alive()),
        other => println!("slow: unexpected {other:?}"),
    }
    slow.kill()?;
    let err = slow.join().unwrap_err();
    println!("slow: killed, exitcode {:?}", err.exitcode());
    Ok(())
}
