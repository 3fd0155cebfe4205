//! Ctrl-C during a `Pool::map`: SIGINT to the foreground process group
//! ends the whole tree (the program, its fork server, every worker) within
//! a second, and leaves no orphan.
//!
//! The test runs this binary again as the "program", in its own process
//! group, and sends SIGINT to that group, as a terminal does.

mod common;

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::LONG;
use multiproc::{Pool, StartMethod};

const RUNNER: &str = "MULTIPROC_TEST_INTERRUPT_RUNNER";

fn nap(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

fn pid(_: u64) -> u32 {
    std::process::id()
}

/// The program: starts a pool, says it is busy, and maps for a minute.
#[test]
fn runner() {
    let Ok(method) = std::env::var(RUNNER) else { return };
    let method: StartMethod = method.parse().unwrap();
    let pool = Pool::builder().processes(2).start_method(method).build().unwrap();
    let _ = pool.chunksize(1).map(pid, 0..4).unwrap();
    println!("busy");
    let _ = pool.chunksize(1).map(nap, vec![60_000; 8]);
    panic!("the map should have been interrupted");
}

/// Every process whose ancestry leads to `root`.
fn descendants(root: u32) -> Vec<u32> {
    let mut tree = vec![root];
    let mut grew = true;
    while grew {
        grew = false;
        for entry in std::fs::read_dir("/proc").unwrap().flatten() {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else { continue };
            if let Some((_, ppid)) = common::stat(pid) {
                if tree.contains(&ppid) && !tree.contains(&pid) {
                    tree.push(pid);
                    grew = true;
                }
            }
        }
    }
    tree.retain(|&p| p != root);
    tree
}

fn interrupt_during_map(method: StartMethod) {
    let _w = common::watchdog("interrupt");
    let exe = std::env::current_exe().unwrap();
    let mut program = Command::new(exe)
        .args(["--exact", "runner", "--nocapture", "--test-threads=1"])
        .env(RUNNER, method.name())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .unwrap();
    let pgid = program.id();
    let mut lines = BufReader::new(program.stdout.take().unwrap()).lines();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in lines.by_ref() {
            if line.map(|l| l.contains("busy")).unwrap_or(false) {
                let _ = tx.send(());
                return;
            }
        }
    });
    rx.recv_timeout(LONG).expect("the program never got busy");
    let tree = descendants(pgid);
    assert!(tree.len() >= 2, "{method}: the workers are running: {tree:?}");

    let status = Command::new("kill").args(["-INT", "--", &format!("-{pgid}")]).status().unwrap();
    assert!(status.success());

    let ended = common::wait_until(Duration::from_secs(1), || program.try_wait().unwrap().is_some());
    let all_gone = common::wait_until(Duration::from_secs(1), || tree.iter().all(|&p| common::gone(p)));
    let left: Vec<_> = tree.iter().filter(|&&p| !common::gone(p)).copied().collect();
    left.iter().for_each(|&p| common::sigkill(p));
    let _ = program.kill();
    let _ = program.wait();
    assert!(ended, "{method}: the program outlived Ctrl-C by more than a second");
    assert!(all_gone, "{method}: processes still running a second after Ctrl-C: {left:?}");
}

#[test]
fn ctrl_c_during_map_ends_the_tree_fork() {
    interrupt_during_map(StartMethod::Fork);
}

#[test]
fn ctrl_c_during_map_ends_the_tree_spawn() {
    interrupt_during_map(StartMethod::Spawn);
}

#[test]
fn ctrl_c_during_map_ends_the_tree_forkserver() {
    interrupt_during_map(StartMethod::ForkServer);
}
