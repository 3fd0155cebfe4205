//! The fork server dies: its children in flight end, and the next start
//! replaces it. In its own binary, because killing the server would break
//! other tests' children.

mod common;

use common::LONG;
use multiproc::{Process, StartMethod};

fn forever(_: ()) {
    loop {
        std::thread::park();
    }
}

fn square(x: u64) -> u64 {
    x * x
}

/// The fork server among this process's children.
fn fork_server() -> Option<u32> {
    common::children().into_iter().map(|(pid, _)| pid).find(|pid| {
        std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| c.starts_with(b"multiproc: forkserver"))
    })
}

#[test]
fn a_killed_fork_server_is_replaced_and_its_children_end() {
    let _w = common::watchdog("forkserver");
    let warm = Process::new(square, 2).start_method(StartMethod::ForkServer).start().unwrap();
    assert_eq!(warm.join_timeout(LONG).unwrap(), 4);
    let in_flight = Process::new(forever, ()).daemon(true).start_method(StartMethod::ForkServer).start().unwrap();
    let server = fork_server().expect("the fork server is our child");
    common::sigkill(server);

    // The child in flight dies with its server (parent-death signal); how
    // it ended was the server's to report, so it is lost, not invented.
    let err = in_flight.join_timeout(LONG).unwrap_err();
    assert!(!in_flight.is_alive());
    assert_eq!(in_flight.exitcode(), None, "{err}");
    assert!(err.to_string().contains("unknown"), "{err}");

    // The next start replaces the server.
    let child = Process::new(square, 9).start_method(StartMethod::ForkServer).start().unwrap();
    assert_eq!(child.join_timeout(LONG).unwrap(), 81);
    let replacement = fork_server().expect("a new fork server");
    assert_ne!(replacement, server);
    assert!(common::wait_until(LONG, || common::stat(server).is_none()), "the old server was reaped");
}
