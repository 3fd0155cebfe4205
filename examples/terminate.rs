//! terminate() sends SIGTERM and kill() sends SIGKILL; another thread can
//! do it while one waits in join().
//!
//! ```text
//! cargo run --example terminate
//! ```

use std::time::Duration;

use multiproc::Process;

fn forever(_: ()) {
    loop {
        std::thread::park();
    }
}

fn main() -> multiproc::Result<()> {
    let child = Process::new(forever, ()).name("sleeper").start()?;
    println!("{} alive: {}", child.name(), child.is_alive());
    std::thread::scope(|s| {
        let waiter = s.spawn(|| child.join());
        child.terminate().expect("SIGTERM");
        let err = waiter.join().expect("no panic").unwrap_err();
        println!("terminated: exitcode {:?}", err.exitcode());
    });
    println!("{} alive: {}", child.name(), child.is_alive());

    let child = Process::new(forever, ()).start()?;
    child.kill()?;
    let _ = child.join_timeout(Duration::from_secs(10));
    println!("killed: exitcode {:?}", child.exitcode());
    Ok(())
}
