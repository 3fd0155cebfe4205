//! The `progress` feature: `map` and `imap` draw a progress bar on stderr
//! when it is a terminal, and print nothing otherwise.
//!
//! Runs with `cargo test --features progress --test progress` (CI does).
//! The test runs this binary again as the program: once with stderr a pipe,
//! once under `script`, which gives it a terminal.

#![cfg(feature = "progress")]

mod common;

use std::process::{Command, Stdio};

use multiproc::Pool;

const PROGRAM: &str = "MULTIPROC_TEST_PROGRESS_PROGRAM";

fn slow_square(x: u64) -> u64 {
    std::thread::sleep(std::time::Duration::from_millis(2));
    x * x
}

#[test]
fn program() {
    if std::env::var_os(PROGRAM).is_none() {
        return;
    }
    let pool = Pool::new(2).unwrap();
    assert_eq!(pool.chunksize(1).map(slow_square, 0..200).unwrap().len(), 200);
    assert_eq!(pool.imap(slow_square, 0..200).unwrap().count(), 200);
}

fn program_command() -> Command {
    let exe = std::env::current_exe().unwrap();
    let mut cmd = Command::new(exe);
    cmd.args(["--exact", "program", "--nocapture", "--test-threads=1"]).env(PROGRAM, "1");
    cmd
}

#[test]
fn silent_when_stderr_is_not_a_terminal() {
    let _w = common::watchdog("progress_pipe");
    let out = program_command().stdout(Stdio::null()).stderr(Stdio::piped()).output().unwrap();
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains('\u{1b}'), "no terminal codes on a pipe: {stderr:?}");
    assert!(!stderr.contains("/200"), "no bar on a pipe: {stderr:?}");
}

#[test]
fn a_bar_on_a_terminal() {
    let _w = common::watchdog("progress_tty");
    let cmd = program_command();
    let line = format!(
        "{} {}",
        cmd.get_program().to_string_lossy(),
        cmd.get_args().map(|a| a.to_string_lossy().into_owned()).collect::<Vec<_>>().join(" ")
    );
    // `script` runs the program on a pseudo-terminal and copies what it
    // draws to our stdout.
    let out = Command::new("script")
        .args(["-qec", &line, "/dev/null"])
        .env(PROGRAM, "1")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let drawn = String::from_utf8_lossy(&out.stdout);
    assert!(drawn.contains("/200"), "a bar with its length: {drawn:?}");
}
