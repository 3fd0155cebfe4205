//! Process behaviour under every start method: return values, panics, exit
//! codes, timeouts, liveness, identity, names, environment and bad input.
//! Modelled on CPython's `_TestProcess` (Lib/test/_test_multiprocessing.py).

mod common;

use std::time::{Duration, Instant};

use common::LONG;
use multiproc::{ErrorKind, Process, StartMethod};
use serde::{Deserialize, Serialize};

fn square(x: u64) -> u64 {
    x * x
}

fn boom(msg: String) {
    panic!("{msg}");
}

fn quit(code: i32) {
    std::process::exit(code)
}

fn forever(_: ()) {
    loop {
        std::thread::park();
    }
}

fn nap(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

#[derive(Debug, Serialize, Deserialize, PartialEq)]
struct Whoami {
    name: String,
    pid: u32,
    daemon: bool,
    parent: Option<(u32, String, bool)>,
}

fn whoami(_: ()) -> Whoami {
    let me = multiproc::current_process();
    Whoami {
        name: me.name().to_owned(),
        pid: me.pid(),
        daemon: me.daemon(),
        parent: multiproc::parent_process().map(|p| (p.pid(), p.name().to_owned(), p.is_alive())),
    }
}

per_method! {
    fn returns_the_targets_value(method: StartMethod) {
        let child = Process::new(square, 12).start_method(method).start().unwrap();
        assert_eq!(child.join_timeout(LONG).unwrap(), 144);
        assert_eq!(child.exitcode(), Some(0));
    }
}

per_method! {
    fn returns_structured_values_and_unit(method: StartMethod) {
        let child = Process::new(|(a, b): (String, Vec<i32>)| (b.len(), a.to_uppercase()), ("hey".to_string(), vec![1, 2, 3]))
            .start_method(method)
            .start()
            .unwrap();
        assert_eq!(child.join_timeout(LONG).unwrap(), (3, "HEY".to_string()));
        let unit = Process::new(|_: ()| (), ()).start_method(method).start().unwrap();
        unit.join_timeout(LONG).unwrap();
    }
}

fn exit_when_told((go, code): (multiproc::Event, i32)) {
    let _ = go.wait(Some(LONG));
    std::process::exit(code)
}

per_method! {
    /// 300 children end at once, more than one wait of the fork server's
    /// epoll set reports (256): each one's exit code still comes back.
    fn three_hundred_children_ending_at_once_each_report_their_exit_code(method: StartMethod) {
        common::raise_fd_limit(4_096);
        let go = multiproc::Event::new().unwrap();
        let children: Vec<_> = (0..300)
            .map(|i| Process::new(exit_when_told, (go.clone(), i % 7)).start_method(method).start().unwrap())
            .collect();
        go.set();
        for (i, child) in children.iter().enumerate() {
            let _ = child.join_timeout(LONG);
            assert_eq!(child.exitcode(), Some(i as i32 % 7), "child {i}");
        }
    }
}

per_method! {
    fn carries_back_panic_message_and_location(method: StartMethod) {
        let child = Process::new(boom, "kaboom 42".to_string()).start_method(method).start().unwrap();
        let err = child.join_timeout(LONG).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Panicked, "{err}");
        let panic = err.panic_info().unwrap();
        assert_eq!(panic.message(), "kaboom 42");
        assert!(panic.file().unwrap().ends_with("tests/process.rs"), "{panic}");
        assert_eq!(panic.line(), Some(line_of_boom()));
        assert!(err.to_string().contains("kaboom 42"), "{err}");
        assert!(err.to_string().contains("tests/process.rs"), "{err}");
        assert_eq!(err.exitcode(), Some(1));
        assert_eq!(child.exitcode(), Some(1));
    }
}

/// The line of the `panic!` in `boom`, found in this file's source.
fn line_of_boom() -> u32 {
    let src = include_str!("process.rs");
    let line = src.lines().position(|l| l.trim() == "panic!(\"{msg}\");").unwrap();
    line as u32 + 1
}

per_method! {
    fn exit_codes_follow_python(method: StartMethod) {
        let ok = Process::new(square, 1).start_method(method).start().unwrap();
        ok.join_timeout(LONG).unwrap();
        assert_eq!(ok.exitcode(), Some(0));

        let three = Process::new(quit, 3).start_method(method).start().unwrap();
        let err = three.join_timeout(LONG).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Exited);
        assert_eq!(err.exitcode(), Some(3));
        assert_eq!(three.exitcode(), Some(3));
        assert!(err.to_string().contains("exited with code 3"), "{err}");

        let killed = Process::new(forever, ()).daemon(true).start_method(method).start().unwrap();
        killed.kill().unwrap();
        let err = killed.join_timeout(LONG).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Signaled);
        assert_eq!(err.exitcode(), Some(-9));
        assert_eq!(killed.exitcode(), Some(-9));
        assert!(err.to_string().contains("SIGKILL"), "{err}");

        let terminated = Process::new(forever, ()).daemon(true).start_method(method).start().unwrap();
        terminated.terminate().unwrap();
        let err = terminated.join_timeout(LONG).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Signaled);
        assert_eq!(terminated.exitcode(), Some(-15));
        assert!(err.to_string().contains("SIGTERM"), "{err}");

        // Python 3.14's interrupt(): SIGINT from a process ends a child
        // that does not handle it, with exit code -2.
        let interrupted = Process::new(forever, ()).daemon(true).start_method(method).start().unwrap();
        interrupted.interrupt().unwrap();
        let err = interrupted.join_timeout(LONG).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Signaled);
        assert_eq!(interrupted.exitcode(), Some(-2));
        assert!(err.to_string().contains("SIGINT"), "{err}");
    }
}

per_method! {
    fn join_timeout_leaves_a_sleeping_child_alive(method: StartMethod) {
        let child = Process::new(nap, 60_000).daemon(true).start_method(method).start().unwrap();
        let started = Instant::now();
        let err = child.join_timeout(Duration::from_millis(200)).unwrap_err();
        let took = started.elapsed();
        assert!(err.is_timeout(), "{err}");
        assert!(took >= Duration::from_millis(200), "returned early: {took:?}");
        assert!(took < Duration::from_secs(3), "returned late: {took:?}");
        assert!(child.is_alive());
        assert_eq!(child.exitcode(), None);
        // A zero timeout never blocks.
        let started = Instant::now();
        assert!(child.join_timeout(Duration::ZERO).unwrap_err().is_timeout());
        assert!(started.elapsed() < Duration::from_secs(1));
        child.kill().unwrap();
        assert_eq!(child.join_timeout(LONG).unwrap_err().exitcode(), Some(-9));
    }
}

per_method! {
    fn is_alive_and_exitcode_before_and_after(method: StartMethod) {
        let child = Process::new(forever, ()).daemon(true).start_method(method).start().unwrap();
        assert!(child.is_alive());
        assert_eq!(child.exitcode(), None);
        child.terminate().unwrap();
        let _ = child.join_timeout(LONG);
        assert!(!child.is_alive());
        assert_eq!(child.exitcode(), Some(-15));
        // Signalling a finished child is a no-op, as in Python.
        child.terminate().unwrap();
        child.kill().unwrap();
        assert_eq!(child.exitcode(), Some(-15));
    }
}

per_method! {
    fn exitcode_is_seen_without_join(method: StartMethod) {
        let child = Process::new(quit, 7).start_method(method).start().unwrap();
        assert!(common::wait_until(LONG, || !child.is_alive()));
        assert_eq!(child.exitcode(), Some(7));
        assert_eq!(child.join_timeout(LONG).unwrap_err().exitcode(), Some(7));
    }
}

per_method! {
    fn child_knows_itself_and_its_parent(method: StartMethod) {
        let child = Process::new(whoami, ()).name("SomeProcess").start_method(method).start().unwrap();
        let pid = child.pid();
        let me = child.join_timeout(LONG).unwrap();
        assert_eq!(me.name, "SomeProcess");
        assert_eq!(me.pid, pid);
        assert!(!me.daemon);
        assert_eq!(me.parent, Some((std::process::id(), "MainProcess".to_string(), true)));
        assert!(multiproc::parent_process().is_none());
        assert_eq!(multiproc::current_process().name(), "MainProcess");
    }
}

fn grandchild_names(method: StartMethod) -> (String, String, Whoami) {
    let inner = Process::new(whoami, ()).start_method(method).start().unwrap();
    let inner_name = inner.name().to_owned();
    let me = multiproc::current_process().name().to_owned();
    (me, inner_name, inner.join_timeout(LONG).unwrap())
}

per_method! {
    fn default_names_and_nesting_follow_python(method: StartMethod) {
        let child = Process::new(grandchild_names, method).start_method(method).start().unwrap();
        let outer = child.name().to_owned();
        assert!(outer.starts_with("Process-"), "{outer}");
        let (me, inner, who) = child.join_timeout(LONG).unwrap();
        assert_eq!(me, outer);
        assert_eq!(inner, format!("{outer}:1"));
        assert_eq!(who.name, inner);
        assert_eq!(who.parent.as_ref().map(|p| p.1.as_str()), Some(outer.as_str()));
        assert_eq!(who.parent.as_ref().map(|p| p.0), Some(child.pid()));
    }
}

per_method! {
    fn daemon_flag_is_passed_and_inherited(method: StartMethod) {
        let child = Process::new(whoami, ()).daemon(true).start_method(method).start().unwrap();
        assert!(child.daemon());
        assert!(child.join_timeout(LONG).unwrap().daemon);
    }
}

per_method! {
    fn active_children_tracks_running_children(method: StartMethod) {
        let name = format!("active-{method}");
        let child = Process::new(forever, ()).daemon(true).name(name.clone()).start_method(method).start().unwrap();
        let pid = child.pid();
        assert!(multiproc::active_children().iter().any(|c| c.pid() == pid && c.name() == name));
        child.kill().unwrap();
        let _ = child.join_timeout(LONG);
        assert!(!multiproc::active_children().iter().any(|c| c.pid() == pid));
    }
}

fn read_env(key: String) -> Option<String> {
    std::env::var(key).ok()
}

per_method! {
    fn environment_additions_reach_the_child(method: StartMethod) {
        let child = Process::new(read_env, "MULTIPROC_TEST_VAR".to_string())
            .env("MULTIPROC_TEST_VAR", format!("value-{method}"))
            .start_method(method)
            .start()
            .unwrap();
        assert_eq!(child.join_timeout(LONG).unwrap(), Some(format!("value-{method}")));
        let bad = Process::new(read_env, String::new()).env("A=B", "x").start_method(method).start();
        assert_eq!(bad.unwrap_err().kind(), ErrorKind::InvalidInput);
    }
}

fn echo_len(data: Vec<u8>) -> (usize, Vec<u8>) {
    let sum = data.iter().map(|&b| b as usize).sum::<usize>() % 251;
    (sum, data)
}

per_method! {
    fn large_arguments_and_results_round_trip(method: StartMethod) {
        // Bigger than any socket buffer, both ways.
        let data: Vec<u8> = (0..(4usize << 20)).map(|i| (i % 251) as u8).collect();
        let expected = data.iter().map(|&b| b as usize).sum::<usize>() % 251;
        let child = Process::new(echo_len, data.clone()).start_method(method).start().unwrap();
        let (sum, back) = child.join_timeout(LONG).unwrap();
        assert_eq!(sum, expected);
        assert_eq!(back, data);
    }
}

#[derive(Debug)]
struct Unserializable;

impl Serialize for Unserializable {
    fn serialize<S: serde::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
        Err(serde::ser::Error::custom("this value refuses to be serialized"))
    }
}

impl<'de> Deserialize<'de> for Unserializable {
    fn deserialize<D: serde::Deserializer<'de>>(_: D) -> Result<Self, D::Error> {
        Err(serde::de::Error::custom("this value refuses to be deserialized"))
    }
}

fn takes_unserializable(_: Unserializable) {}

fn returns_unserializable(_: ()) -> Unserializable {
    Unserializable
}

/// Serializes fine; fails to deserialize on the other side.
#[derive(Debug, Serialize)]
struct OneWay(u8);

impl<'de> Deserialize<'de> for OneWay {
    fn deserialize<D: serde::Deserializer<'de>>(_: D) -> Result<Self, D::Error> {
        Err(serde::de::Error::custom("OneWay only travels one way"))
    }
}

fn returns_one_way(_: ()) -> OneWay {
    OneWay(1)
}

fn takes_one_way(_: OneWay) {}

per_method! {
    fn an_argument_that_fails_to_serialize_is_a_typed_error(method: StartMethod) {
        let err = Process::new(takes_unserializable, Unserializable).start_method(method).start().unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Serialize);
        // The message names the type and keeps the Serialize impl's own words.
        assert!(err.to_string().contains("Unserializable"), "{err}");
        assert!(err.to_string().contains("refuses to be serialized"), "{err}");
    }
}

per_method! {
    fn an_argument_that_fails_to_deserialize_in_the_child_is_a_typed_error(method: StartMethod) {
        let child = Process::new(takes_one_way, OneWay(3)).start_method(method).start().unwrap();
        let err = child.join_timeout(LONG).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Deserialize, "{err}");
        assert!(err.to_string().contains("OneWay"), "{err}");
        assert_eq!(child.exitcode(), Some(1));
    }
}

per_method! {
    fn a_result_that_fails_to_serialize_or_deserialize_is_a_typed_error(method: StartMethod) {
        let child = Process::new(returns_unserializable, ()).start_method(method).start().unwrap();
        let err = child.join_timeout(LONG).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Serialize, "{err}");
        assert_eq!(child.exitcode(), Some(1));

        let child = Process::new(returns_one_way, ()).start_method(method).start().unwrap();
        let err = child.join_timeout(LONG).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Deserialize, "{err}");
        assert_eq!(child.exitcode(), Some(0));
    }
}

per_method! {
    fn joining_twice_is_a_typed_error(method: StartMethod) {
        let child = Process::new(square, 3).start_method(method).start().unwrap();
        assert_eq!(child.join_timeout(LONG).unwrap(), 9);
        let err = child.join_timeout(LONG).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidState);
        let err = child.join().unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidState);
        assert!(err.to_string().contains("already joined"), "{err}");
        // Also after a failed join.
        let child = Process::new(quit, 2).start_method(method).start().unwrap();
        assert_eq!(child.join_timeout(LONG).unwrap_err().kind(), ErrorKind::Exited);
        assert_eq!(child.join_timeout(LONG).unwrap_err().kind(), ErrorKind::InvalidState);
    }
}

per_method! {
    fn a_handle_can_be_shared_between_threads(method: StartMethod) {
        let child = Process::new(forever, ()).daemon(true).start_method(method).start().unwrap();
        std::thread::scope(|s| {
            let joiner = s.spawn(|| child.join_timeout(LONG));
            assert!(child.is_alive());
            child.kill().unwrap();
            assert_eq!(joiner.join().unwrap().unwrap_err().exitcode(), Some(-9));
        });
    }
}

per_method! {
    fn children_ignore_sigint(method: StartMethod) {
        let child = Process::new(forever, ()).daemon(true).start_method(method).start().unwrap();
        // SIGINT (as from Ctrl-C to the process group) must not end it.
        let status = std::process::Command::new("kill").args(["-INT", &child.pid().to_string()]).status().unwrap();
        assert!(status.success());
        // SIGTERM after SIGINT: if SIGINT had killed it, the code would be -2.
        assert!(child.join_timeout(Duration::from_millis(300)).unwrap_err().is_timeout());
        child.terminate().unwrap();
        assert_eq!(child.join_timeout(LONG).unwrap_err().exitcode(), Some(-15));
    }
}

#[test]
fn a_sigint_the_moment_a_fork_child_starts_is_ignored_too() {
    let _w = common::watchdog("a_sigint_the_moment_a_fork_child_starts_is_ignored_too");
    // kill(2) straight after start() returns, while the child may still be
    // on its way to its SIGINT handler: the signal must wait for it.
    let children: Vec<_> = (0..20)
        .map(|_| {
            let child = Process::new(forever, ()).daemon(true).start_method(StartMethod::Fork).start().unwrap();
            let pid = rustix::process::Pid::from_raw(child.pid() as i32).unwrap();
            rustix::process::kill_process(pid, rustix::process::Signal::INT).unwrap();
            child
        })
        .collect();
    for child in &children {
        let end = child.join_timeout(Duration::from_millis(50));
        assert!(end.as_ref().is_err_and(|e| e.is_timeout()), "a child ended on SIGINT: {end:?}");
    }
    for child in children {
        child.terminate().unwrap();
        assert_eq!(child.join_timeout(LONG).unwrap_err().exitcode(), Some(-15));
    }
}

fn cmdline_and_comm(pid: u32) -> (String, String) {
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap();
    let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ").trim().to_string();
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap().trim().to_string();
    (cmdline, comm)
}

fn title_of_self(_: ()) -> (String, String) {
    cmdline_and_comm(std::process::id())
}

per_method! {
    fn process_names_show_in_ps(method: StartMethod) {
        let child = Process::new(title_of_self, ()).name("titled").start_method(method).start().unwrap();
        let (cmdline, comm) = child.join_timeout(LONG).unwrap();
        assert!(cmdline.starts_with("multiproc: titled"), "{cmdline:?}");
        assert_eq!(comm, "multiproc: titl");
    }
}

#[test]
fn start_methods_parse_and_contexts_bind() {
    for m in common::METHODS {
        assert_eq!(m.name().parse::<StartMethod>().unwrap(), m);
        assert_eq!(multiproc::get_context(m).start_method(), m);
        let child = multiproc::get_context(m).process(square, 5).start().unwrap();
        assert_eq!(child.join_timeout(LONG).unwrap(), 25);
    }
    assert_eq!("threads".parse::<StartMethod>().unwrap_err().kind(), ErrorKind::InvalidInput);
    assert_eq!(multiproc::get_all_start_methods().len(), 3);
}

#[test]
fn cpu_count_honours_the_affinity_mask() {
    fn pinned_count(_: ()) -> usize {
        // Pin this child to CPU 0 (taskset is in util-linux).
        let pid = std::process::id().to_string();
        let status = std::process::Command::new("taskset").args(["-p", "-c", "0", &pid]).output().unwrap();
        assert!(status.status.success(), "{status:?}");
        multiproc::cpu_count()
    }
    assert!(multiproc::cpu_count() >= 1);
    assert_eq!(multiproc::cpu_count(), std::thread::available_parallelism().unwrap().get().min(multiproc::cpu_count()));
    let child = Process::new(pinned_count, ()).start_method(StartMethod::Fork).start().unwrap();
    assert_eq!(child.join_timeout(LONG).unwrap(), 1);
}

fn my_args(_: ()) -> Vec<String> {
    std::env::args().collect()
}

per_method! {
    fn a_child_keeps_the_parents_arguments_after_its_title(method: StartMethod) {
        let child = Process::new(my_args, ()).name("argv").start_method(method).start().unwrap();
        let args = child.join_timeout(LONG).unwrap();
        let ours: Vec<String> = std::env::args().collect();
        assert!(args[0].starts_with("multiproc: argv") || ours[0].starts_with(&args[0]), "{args:?}");
        assert_eq!(args[1..], ours[1..], "the arguments after argv[0] are the parent's");
    }
}

fn sleep_forever(_: ()) {
    loop {
        std::thread::park();
    }
}

#[test]
fn a_child_shows_itself_as_python_does() {
    let _w = common::watchdog("child display");
    let child = multiproc::Process::new(sleep_forever, ()).name("shown").daemon(true).start().unwrap();
    let pid = child.pid();
    assert_eq!(
        child.to_string(),
        format!("<Process name='shown' pid={pid} parent={} started daemon>", std::process::id())
    );
    child.terminate().unwrap();
    let _ = child.join_timeout(common::LONG);
    assert_eq!(
        child.to_string(),
        format!("<Process name='shown' pid={pid} parent={} stopped exitcode=-SIGTERM daemon>", std::process::id())
    );
}
