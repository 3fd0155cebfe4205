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

/// Says which item it works on, on stderr, then squares it slowly.
fn chatty_square(x: u64) -> u64 {
    eprintln!("item {x}");
    slow_square(x)
}

/// A map whose workers' output is forwarded while its bar is drawn.
#[test]
fn program_forwarding() {
    if std::env::var_os(PROGRAM).is_none() {
        return;
    }
    let pool = Pool::builder().processes(2).forward_output().build().unwrap();
    assert_eq!(pool.chunksize(1).map(chatty_square, 0..200).unwrap().len(), 200);
    pool.close();
    pool.join().unwrap();
}

fn program_command() -> Command {
    program_command_for("program")
}

fn program_command_for(test: &str) -> Command {
    let exe = std::env::current_exe().unwrap();
    let mut cmd = Command::new(exe);
    cmd.args(["--exact", test, "--nocapture", "--test-threads=1"]).env(PROGRAM, "1");
    cmd
}

/// What `cmd` draws on a pseudo-terminal: `script` runs it there and
/// copies the terminal's output to our stdout.
fn on_a_terminal(cmd: Command) -> String {
    let line = format!(
        "{} {}",
        cmd.get_program().to_string_lossy(),
        cmd.get_args().map(|a| a.to_string_lossy().into_owned()).collect::<Vec<_>>().join(" ")
    );
    let out = Command::new("script")
        .args(["-qec", &line, "/dev/null"])
        .env(PROGRAM, "1")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
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
    let drawn = on_a_terminal(program_command());
    assert!(drawn.contains("/200"), "a bar with its length: {drawn:?}");
}

/// Whether `line` ends with a whole forwarded line `[ForkServerPoolWorker-k
/// pid] item n` (what the terminal shows before it may be a cleared bar),
/// and its `n`.
fn forwarded_item(line: &str) -> Option<u64> {
    let text = line.trim_end_matches('\r');
    let (tag, item) = text.rsplit_once("] item ")?;
    let start = tag.rfind('[')?;
    // What the terminal shows before the tag: the line must have been
    // taken back to its start (`\r`) and, if a bar was on it, cleared
    // (`ESC [2K`), so that the forwarded line stands alone.
    let before = tag[..start].trim_start_matches("test program_forwarding ... ");
    let (earlier, last) = before.rsplit_once('\r').unwrap_or(("", before));
    let cleared = last.contains("\u{1b}[2K") || last.contains("\u{1b}[K");
    let alone = without_control_codes(last).is_empty() && (without_control_codes(earlier).is_empty() || cleared);
    alone.then_some(())?;
    let tag = &tag[start..];
    let (name, pid) = tag.split_once(' ')?;
    let (kind, k) = name.split_once("PoolWorker-")?;
    let known = ["[Fork", "[Spawn", "[ForkServer"].contains(&kind);
    (known && k.parse::<u32>().is_ok() && pid.parse::<u32>().is_ok()).then_some(())?;
    item.parse().ok()
}

/// `text` without carriage returns and ANSI escape sequences.
fn without_control_codes(text: &str) -> String {
    let mut out = String::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\r' => {}
            '\u{1b}' => {
                // ESC [ parameters, then one final letter.
                if chars.peek() == Some(&'[') {
                    chars.next();
                    for c in chars.by_ref() {
                        if c.is_ascii_alphabetic() {
                            break;
                        }
                    }
                }
            }
            c => out.push(c),
        }
    }
    out
}

#[test]
fn forwarded_lines_print_whole_above_a_drawn_bar() {
    let _w = common::watchdog("progress_forwarding");
    let drawn = on_a_terminal(program_command_for("program_forwarding"));
    assert!(drawn.contains("/200"), "a bar was drawn: {drawn:?}");
    let mut seen = vec![0u32; 200];
    for line in drawn.split('\n') {
        if line.contains("] item ") {
            let n = forwarded_item(line).unwrap_or_else(|| panic!("a forwarded line was cut: {line:?}"));
            seen[n as usize] += 1;
        }
    }
    assert!(seen.iter().all(|&c| c == 1), "every line once: {seen:?}");
}
