//! Exit codes, in Python's convention: 0 after a return, 1 after a panic,
//! n after `std::process::exit(n)`, and -signal after death by a signal.
//! Each failure is a typed error that says what happened.
//!
//! ```text
//! cargo run --example exit_codes
//! ```

use multiproc::{ErrorKind, Process};

fn fine(_: ()) {}

fn panics(_: ()) {
    panic!("something went wrong");
}

fn exits(code: i32) {
    std::process::exit(code);
}

fn segfaults(_: ()) {
    // Dies by SIGSEGV, as a crash in a C library would.
    let _ = std::process::Command::new("kill").args(["-SEGV", &std::process::id().to_string()]).status();
    loop {
        std::thread::park();
    }
}

fn main() -> multiproc::Result<()> {
    let child = Process::new(fine, ()).start()?;
    child.join()?;
    println!("returned: exitcode {:?}", child.exitcode());

    let child = Process::new(panics, ()).start()?;
    let err = child.join().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Panicked);
    println!("panicked: exitcode {:?}, message {:?}", child.exitcode(), err.panic_info().map(|p| p.message()));

    let child = Process::new(exits, 3).start()?;
    let err = child.join().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Exited);
    println!("exit(3): exitcode {:?}", child.exitcode());

    let child = Process::new(segfaults, ()).start()?;
    let err = child.join().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Signaled);
    println!("segfault: exitcode {:?}", child.exitcode());
    Ok(())
}
