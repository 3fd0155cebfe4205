//! Runs the examples as a user would, with stdout a pipe, and checks what
//! they print. The quickstart's output is the seed programs' contract,
//! byte for byte (Q-6's four lines in any order, each exactly once).

mod common;

use std::process::{Command, Output, Stdio};
use std::time::Duration;

fn run(name: &str) -> Output {
    let path = common::example(name);
    assert!(path.exists(), "{} is not built; run the tests with `cargo test`", path.display());
    let child = Command::new(&path).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let pid = child.id();
    // The watchdog for a blocking wait_with_output.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        if rx.recv_timeout(Duration::from_secs(60)).is_err() {
            common::sigkill(pid);
        }
    });
    let out = child.wait_with_output().unwrap();
    let _ = tx.send(());
    assert!(out.status.success(), "{name} failed: {out:?}");
    out
}

fn stdout_lines(name: &str) -> Vec<String> {
    String::from_utf8(run(name).stdout).unwrap().lines().map(str::to_owned).collect()
}

#[test]
fn quickstart_prints_the_seed_output_byte_for_byte() {
    let out = String::from_utf8(run("quickstart").stdout).unwrap();
    let lines: Vec<&str> = out.split_inclusive('\n').collect();
    assert_eq!(lines.len(), 6, "{out:?}");
    assert_eq!(lines[0], "Square: 25\n");
    assert_eq!(lines[1], "[1, 4, 9, 16]\n");
    let mut numbers: Vec<&str> = lines[2..].to_vec();
    numbers.sort();
    assert_eq!(numbers, ["Number: 1\n", "Number: 2\n", "Number: 3\n", "Number: 4\n"]);
}

#[test]
fn quickstart_is_stable_over_repeated_runs() {
    for _ in 0..5 {
        quickstart_prints_the_seed_output_byte_for_byte();
    }
}

#[test]
fn return_values_example() {
    assert_eq!(stdout_lines("return_values"), ["count=8 mean=3.875 max=9", "2^10 = 1024", "hello, world"]);
}

#[test]
fn exit_codes_example() {
    assert_eq!(
        stdout_lines("exit_codes"),
        [
            "returned: exitcode Some(0)",
            "panicked: exitcode Some(1), message Some(\"something went wrong\")",
            "exit(3): exitcode Some(3)",
            "segfault: exitcode Some(-11)",
        ]
    );
}

#[test]
fn timeouts_example() {
    assert_eq!(
        stdout_lines("timeouts"),
        ["quick: 81", "slow: timed out, still alive: true", "slow: killed, exitcode Some(-9)"]
    );
}

#[test]
fn terminate_example() {
    assert_eq!(
        stdout_lines("terminate"),
        ["sleeper alive: true", "terminated: exitcode Some(-15)", "sleeper alive: false", "killed: exitcode Some(-9)"]
    );
}

#[test]
fn start_methods_example_flushes_children_into_a_pipe() {
    assert_eq!(
        stdout_lines("start_methods"),
        [
            "[fork] child Process-1 says hi without a newline... (pid matches: true)",
            "[spawn] child Process-2 says hi without a newline... (pid matches: true)",
            "[forkserver] child Process-3 says hi without a newline... (pid matches: true)",
            "a context for spawn starts processes with it",
        ]
    );
}

#[test]
fn queue_workers_example() {
    assert_eq!(
        stdout_lines("queue_workers"),
        [
            "all 11 tasks done",
            "4 workers exited after 11 tasks; 11 results wait in the queue",
            "a: 1 vowel(s)",
            "each: 2 vowel(s)",
            "it: 1 vowel(s)",
            "queued: 4 vowel(s)",
            "sees: 2 vowel(s)",
            "sentinel: 3 vowel(s)",
            "takes: 2 vowel(s)",
            "the: 1 vowel(s)",
            "until: 2 vowel(s)",
            "word: 1 vowel(s)",
            "worker: 2 vowel(s)",
        ]
    );
}

#[test]
fn pipe_example() {
    assert_eq!(
        stdout_lines("pipe"),
        [
            "poll before asking: false",
            "poll after asking: true",
            "typed reply: Greeting { from: \"child\", count: 2 }",
            "bytes reply: olleh",
            "one-way pipe: [3, 2, 1], then end of file",
            "evens: [0, 2, 4], odds: [1, 3, 5]",
            "both pipes at end of file, child exitcode Some(0)",
        ]
    );
}

#[test]
fn listener_client_example() {
    assert_eq!(
        stdout_lines("listener_client"),
        [
            "server: served 2 requests",
            "client got: hello, Ada",
            "client got: hello, Grace",
            "server: refused a client (Authentication)",
            "client with the wrong key: refused (Authentication)",
        ]
    );
}

#[test]
fn shared_counter_example() {
    assert_eq!(
        stdout_lines("shared_counter"),
        [
            "counter (Value, under its lock): 40000",
            "slots (Array, under its lock): [10000, 10000, 10000, 10000]",
            "hits (AtomicValue, no lock): 40000",
            "done (two fields, one acquisition): 4 workers, ids summing to 10",
        ]
    );
}

#[test]
fn barrier_example() {
    assert_eq!(
        stdout_lines("barrier"),
        [
            "after round 1: [1, 2, 3]",
            "after round 2: [3, 6, 9]",
            "after round 3: [6, 12, 18]",
            "after round 4: [10, 20, 30]",
            "parties: 4, waiting now: 0, broken: false",
        ]
    );
}

#[test]
fn shared_memory_example() {
    assert_eq!(
        stdout_lines("shared_memory"),
        [
            "created a block of 10 bytes (its name starts with psm_: true)",
            "the child saw [22, 33, 44, 55, 0] and set byte 4",
            "the parent reads [22, 33, 44, 55, 99]",
            "unlinked; opening it again fails: true",
        ]
    );
}

/// What a ported example's worker says, without the worker's name.
fn said(line: &str) -> String {
    line.split_once(" says that ").map(|(_, rest)| rest.to_string()).unwrap_or_else(|| panic!("{line:?}"))
}

#[test]
fn python_docs_mp_workers_example() {
    let lines = stdout_lines("mp_workers");
    assert_eq!(lines[0], "Unordered results:");
    assert_eq!(lines.len(), 31, "{lines:#?}");
    let mut got: Vec<String> = lines[1..].iter().map(|l| said(l)).collect();
    got.sort();
    let mut want: Vec<String> = (0..20)
        .map(|i| format!("mul({i}, 7) = {}", i * 7))
        .chain((0..10).map(|i| format!("plus({i}, 8) = {}", i + 8)))
        .collect();
    want.sort();
    assert_eq!(got, want);
    for line in &lines[1..] {
        let name = line.trim_start().split(' ').next().unwrap();
        assert!(["Process-1", "Process-2", "Process-3", "Process-4"].contains(&name), "{line}");
    }
}

#[test]
fn python_docs_mp_pool_example() {
    let lines = stdout_lines("mp_pool");
    let at =
        |title: &str| lines.iter().position(|l| l == title).unwrap_or_else(|| panic!("no {title:?} in {lines:#?}"));
    assert!(lines.contains(&"pool = <Pool state=RUN pool_size=4>".to_string()));
    let want: Vec<String> = (0..10)
        .map(|i| format!("mul({i}, 7) = {}", i * 7))
        .chain((0..10).map(|i| format!("plus({i}, 8) = {}", i + 8)))
        .collect();
    for title in ["Ordered results using pool.apply_async():", "Ordered results using pool.imap():"] {
        let start = at(title) + 1;
        let got: Vec<String> = lines[start..start + 20].iter().map(|l| said(l)).collect();
        assert_eq!(got, want, "{title}");
    }
    let start = at("Unordered results using pool.imap_unordered():") + 1;
    let mut got: Vec<String> = lines[start..start + 20].iter().map(|l| said(l)).collect();
    got.sort();
    let mut sorted = want.clone();
    sorted.sort();
    assert_eq!(got, sorted);
    for expected in [
        "\tGot a panic as expected from pool.apply()",
        "\tGot a panic as expected from pool.map()",
        "\tGot a panic as expected from list(pool.imap())",
        "\tGot a panic as expected from IMap::next()",
        "\tcallbacks succeeded",
        "\tclose() succeeded",
        "\tterminate() succeeded",
        "\tgarbage collection succeeded",
    ] {
        assert!(lines.iter().any(|l| l == expected), "no {expected:?} in {lines:#?}");
    }
}

#[test]
fn python_docs_mp_webserver_example() {
    let lines = stdout_lines("mp_webserver");
    assert!(lines[0].starts_with("Serving at http://localhost:") && lines[0].ends_with(" using 4 worker processes"));
    let servers: std::collections::HashSet<&str> =
        lines[1..].iter().map(|l| l.strip_prefix("GET / -> served by ").unwrap_or_else(|| panic!("{l:?}"))).collect();
    assert_eq!(lines.len(), 9, "{lines:#?}");
    // Which of the four answers is the kernel's choice (tests/handles.rs
    // shows that all four serve); each answer names one of them.
    assert!(servers.iter().all(|s| ["Process-1", "Process-2", "Process-3", "Process-4"].contains(s)), "{servers:?}");
}

#[test]
fn manager_dict_example_prints_what_python_prints() {
    assert_eq!(stdout_lines("manager_dict"), ["{1: '1', '2': 2, 0.25: None}", "[9, 8, 7, 6, 5, 4, 3, 2, 1, 0]"]);
}

#[test]
fn remote_manager_example_runs_server_and_client() {
    assert_eq!(
        stdout_lines("remote_manager"),
        [
            "server: serving",
            "client: 2 players, 8 points",
            "client: asked the server to shut down",
            "server: exited with code 0"
        ]
    );
}
