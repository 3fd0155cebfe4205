//! Lifecycle at the edges: a parent SIGKILLed with children, daemon and
//! non-daemon children at a parent's normal exit, and handles dropped
//! while their child runs. Each test runs under every start method.

mod common;

use std::fs;
use std::io::Read;
use std::path::Path;
use std::time::Duration;

use common::LONG;
use multiproc::{Child, Process, StartMethod};

fn forever(_: ()) {
    loop {
        std::thread::park();
    }
}

/// Blocks until the FIFO at `path` is opened for writing and closed again.
fn wait_gate(path: String) {
    let mut f = fs::File::open(path).unwrap();
    let mut buf = Vec::new();
    let _ = f.read_to_end(&mut buf);
}

fn make_gate(dir: &Path) -> String {
    let path = dir.join("gate");
    let ok = std::process::Command::new("mkfifo").arg(&path).status().unwrap();
    assert!(ok.success());
    path.to_string_lossy().into_owned()
}

/// Opens the gate for writing and closes it, releasing every reader.
fn release(gate: &str) {
    drop(fs::OpenOptions::new().write(true).open(gate).unwrap());
}

fn write_atomically(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    fs::write(&tmp, text).unwrap();
    fs::rename(tmp, path).unwrap();
}

/// Starts 4 children (2 from the main thread, 2 from a thread that then
/// exits), writes their pids to `dir/pids`, and waits to be killed.
fn parent_of_four((method, dir): (StartMethod, String)) {
    let start = move || Process::new(forever, ()).start_method(method).start().unwrap();
    let mut kids: Vec<Child<()>> = vec![start(), start()];
    kids.extend(std::thread::spawn(move || vec![start(), start()]).join().unwrap());
    let pids: Vec<String> = kids.iter().map(|k| k.pid().to_string()).collect();
    write_atomically(&Path::new(&dir).join("pids"), &pids.join(" "));
    forever(())
}

per_method! {
    fn children_die_within_2s_of_their_parent_being_sigkilled(method: StartMethod) {
        let dir = common::temp_dir(&format!("orphans-{method}"));
        let parent = Process::new(parent_of_four, (method, dir.to_string_lossy().into_owned()))
            .start_method(method)
            .start()
            .unwrap();
        let pids_file = dir.join("pids");
        assert!(common::wait_until(LONG, || pids_file.exists()), "the parent never reported its children");
        let pids: Vec<u32> = fs::read_to_string(&pids_file).unwrap().split(' ').map(|p| p.parse().unwrap()).collect();
        assert_eq!(pids.len(), 4);
        // All four are running, including the two whose starting thread has
        // already exited.
        assert!(pids.iter().all(|&p| !common::gone(p)), "{pids:?}");
        parent.kill().unwrap();
        assert_eq!(parent.join_timeout(LONG).unwrap_err().exitcode(), Some(-9));
        let all_gone = common::wait_until(Duration::from_secs(2), || pids.iter().all(|&p| common::gone(p)));
        let left: Vec<_> = pids.iter().filter(|&&p| !common::gone(p)).map(|&p| (p, common::stat(p))).collect();
        // Leave nothing behind even when failing: orphans would hold the
        // test's stdout open.
        left.iter().for_each(|&(p, _)| common::sigkill(p));
        assert!(all_gone, "children still running 2 s after their parent was killed: {left:?}");
        let _ = fs::remove_dir_all(dir);
    }
}

/// Starts a daemon child that runs forever and returns its pid.
fn start_daemon(method: StartMethod) -> u32 {
    let kid = Process::new(forever, ()).daemon(true).start_method(method).start().unwrap();
    kid.pid()
}

per_method! {
    fn a_daemon_child_is_terminated_when_its_parent_exits(method: StartMethod) {
        let parent = Process::new(start_daemon, method).start_method(method).start().unwrap();
        let daemon = parent.join_timeout(LONG).unwrap();
        // The parent's exit handler terminated the daemon and waited for it.
        assert!(common::gone(daemon), "daemon {daemon} outlived its parent: {:?}", common::stat(daemon));
    }
}

/// Starts a non-daemon child that waits on the gate, says it is returning,
/// and returns the child's pid.
fn start_worker((method, gate, dir): (StartMethod, String, String)) -> u32 {
    let kid = Process::new(wait_gate, gate).daemon(false).start_method(method).start().unwrap();
    write_atomically(&Path::new(&dir).join("returning"), "yes");
    kid.pid()
}

per_method! {
    fn a_non_daemon_child_is_waited_for_when_its_parent_exits(method: StartMethod) {
        let dir = common::temp_dir(&format!("nondaemon-{method}"));
        let gate = make_gate(&dir);
        let parent = Process::new(start_worker, (method, gate.clone(), dir.to_string_lossy().into_owned()))
            .start_method(method)
            .start()
            .unwrap();
        assert!(common::wait_until(LONG, || dir.join("returning").exists()));
        // The parent's target has returned, but the parent waits for its
        // child, which waits for the gate.
        assert!(parent.join_timeout(Duration::from_millis(500)).unwrap_err().is_timeout());
        release(&gate);
        let worker = parent.join_timeout(LONG).unwrap();
        assert!(common::gone(worker));
        let _ = fs::remove_dir_all(dir);
    }
}

per_method! {
    fn a_dropped_handle_detaches_and_the_child_is_still_reaped(method: StartMethod) {
        let dir = common::temp_dir(&format!("detach-{method}"));
        let gate = make_gate(&dir);
        let child = Process::new(wait_gate, gate.clone()).start_method(method).start().unwrap();
        let pid = child.pid();
        drop(child);
        // Dropping the handle did not stop the child.
        assert!(!common::gone(pid));
        assert!(multiproc::active_children().iter().any(|c| c.pid() == pid));
        release(&gate);
        // Reaped, not merely dead: the /proc entry disappears.
        assert!(
            common::wait_until(LONG, || common::stat(pid).is_none()),
            "pid {pid} was left as {:?}",
            common::stat(pid)
        );
        assert!(common::wait_until(LONG, || !multiproc::active_children().iter().any(|c| c.pid() == pid)));
        let _ = fs::remove_dir_all(dir);
    }
}

fn quick(_: ()) -> u8 {
    7
}

per_method! {
    fn a_dropped_handle_of_a_finished_child_leaves_no_zombie(method: StartMethod) {
        let child = Process::new(quick, ()).start_method(method).start().unwrap();
        let pid = child.pid();
        // Wait for the end without reaping: the pidfd becomes readable.
        assert!(common::wait_until(LONG, || common::gone(pid)));
        drop(child);
        assert!(common::wait_until(LONG, || common::stat(pid).is_none()), "{:?}", common::stat(pid));
    }
}
