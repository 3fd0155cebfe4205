//! A program that ignores SIGCHLD: the kernel reaps its children at once,
//! so their exit status is lost. multiproc must not hang, spin or invent an
//! exit code. The test re-runs itself under `trap '' CHLD` (an ignored
//! signal stays ignored across exec), so nothing here needs `unsafe`.

mod common;

use std::process::Command;

use common::LONG;
use multiproc::{Process, StartMethod};

const INNER: &str = "MULTIPROC_TEST_SIGCHLD_IGNORED";

fn seven(_: ()) -> u8 {
    7
}

fn quit(code: i32) {
    std::process::exit(code)
}

fn sigchld_ignored() -> bool {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let ign = status.lines().find_map(|l| l.strip_prefix("SigIgn:")).unwrap().trim();
    u64::from_str_radix(ign, 16).unwrap() & (1 << (17 - 1)) != 0
}

#[test]
fn children_of_a_process_that_ignores_sigchld() {
    if std::env::var_os(INNER).is_none() {
        let exe = std::env::current_exe().unwrap();
        let out = Command::new("bash")
            .arg("-c")
            .arg("trap '' CHLD; exec \"$0\" --exact children_of_a_process_that_ignores_sigchld --nocapture")
            .arg(exe)
            .env(INNER, "1")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stdout) + String::from_utf8_lossy(&out.stderr)
        );
        assert!(String::from_utf8_lossy(&out.stdout).contains("1 passed"));
        return;
    }
    let _w = common::watchdog("sigchld");
    assert!(sigchld_ignored(), "the outer test should have set SIGCHLD to ignored");
    let threads = common::thread_count();
    for method in common::METHODS {
        // A reply still arrives; only the status is unknown (fork, spawn)
        // or known (the fork server resets SIGCHLD for itself).
        let child = Process::new(seven, ()).start_method(method).start().unwrap();
        assert_eq!(child.join_timeout(LONG).unwrap(), 7);
        assert!(!child.is_alive());
        match method {
            StartMethod::ForkServer => assert_eq!(child.exitcode(), Some(0)),
            _ => assert_eq!(child.exitcode(), None),
        }
        // No reply: a typed error, not a hang and not a made-up code.
        let child = Process::new(quit, 3).start_method(method).start().unwrap();
        let err = child.join_timeout(LONG).unwrap_err();
        match method {
            StartMethod::ForkServer => assert_eq!(err.exitcode(), Some(3)),
            _ => assert!(err.to_string().contains("SIGCHLD"), "{err}"),
        }
        // A dropped handle: the reaper gives up on it instead of spinning.
        drop(Process::new(seven, ()).start_method(method).start().unwrap());
    }
    assert!(common::wait_until(LONG, || common::thread_count() == threads), "the reaper thread did not end");
}
