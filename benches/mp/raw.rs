//! The physical limits, measured in the same run: bare `fork()` + `waitpid`,
//! exec of this executable, a socketpair round trip and socketpair / pipe
//! throughput between two processes, and `memcpy`.
//!
//! Helper processes are this bench binary re-executed through std's
//! `Command` with [`ROLE`] set, and the socket or pipe as their stdin or
//! stdout; `main` serves the role before doing anything else.

use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::process::{Child, Command, Stdio};
use std::time::Instant;

use serde_json::{Value, json};

use crate::report::{Unit, emit, repeat, time};

/// The environment variable that turns this binary into a raw helper.
pub const ROLE: &str = "MULTIPROC_BENCH_RAW";

/// Serves a helper role and returns true, or returns false in a normal run.
pub fn serve_role() -> bool {
    let Ok(role) = std::env::var(ROLE) else {
        return false;
    };
    let parts: Vec<&str> = role.split(':').collect();
    match parts.as_slice() {
        ["exit"] => {}
        ["echo"] => echo(),
        ["square"] => square_worker(std::io::stdin().as_fd(), std::io::stdout().as_fd()),
        ["send", chunk, total] => send(chunk.parse().unwrap(), total.parse().unwrap()),
        ["batch", kind] => batch_sink(kind),
        ["dict"] => dict_server(),
        _ => panic!("unknown {ROLE} {role:?}"),
    }
    true
}

/// Echoes 8-byte messages from stdin to stdout until end of file.
fn echo() {
    let stdin = std::io::stdin();
    let stdout = std::io::stdout();
    let mut buf = [0u8; 8];
    loop {
        if read_full(stdin.as_fd(), &mut buf) == 0 {
            return;
        }
        rustix::io::write(stdout.as_fd(), &buf).unwrap();
    }
}

/// Reads little-endian `u64`s from `input` and writes their squares to
/// `output` until end of file: a pool worker with nothing around it.
fn square_worker(input: std::os::fd::BorrowedFd<'_>, output: std::os::fd::BorrowedFd<'_>) {
    let mut buf = [0u8; 8];
    while read_full(input, &mut buf) == 8 {
        let x = u64::from_le_bytes(buf);
        write_full(output, &(x * x).to_le_bytes());
    }
}

/// Says ready, waits for go, then writes `total` bytes in `chunk`-byte
/// writes to stdout.
fn send(chunk: usize, total: usize) {
    let mut out = std::io::stdout().lock();
    out.write_all(b"r").unwrap();
    out.flush().unwrap();
    let mut go = [0u8; 1];
    std::io::stdin().read_exact(&mut go).unwrap();
    let buf = vec![0u8; chunk];
    let mut sent = 0;
    while sent < total {
        write_full(std::io::stdout().as_fd(), &buf);
        sent += chunk;
    }
}

/// The items of one batch: 10,000 little-endian u64s (a list's) or
/// pairs of them (a dict's).
const BATCH: usize = 10_000;

fn batch_bytes(kind: &str) -> usize {
    if kind == "dict" { BATCH * 16 } else { BATCH * 8 }
}

/// Reads batches from stdin and puts their items where a manager would (a
/// `Vec<u64>` emptied before each, or a `HashMap<u64, u64>` with a
/// multiply-fold hash), answering one byte for each.
fn batch_sink(kind: &str) {
    let stdin = std::io::stdin();
    let stdout = std::io::stdout();
    let mut buf = vec![0u8; batch_bytes(kind)];
    let mut list: Vec<u64> = Vec::new();
    let mut dict: std::collections::HashMap<u64, u64, FoldState> = Default::default();
    let word = |c: &[u8]| u64::from_le_bytes(c.try_into().unwrap());
    loop {
        if read_full(stdin.as_fd(), &mut buf) == 0 {
            return;
        }
        if kind == "dict" {
            dict.clear();
            dict.reserve(BATCH);
            for pair in buf.chunks_exact(16) {
                dict.insert(word(&pair[..8]), word(&pair[8..]));
            }
        } else {
            list.clear();
            list.extend(buf.chunks_exact(8).map(word));
        }
        rustix::io::write(stdout.as_fd(), b"k").unwrap();
    }
}

/// One 64x64->128-bit multiply per word, folded: the hash the manager's
/// dicts use.
#[derive(Default, Clone)]
struct FoldState;

struct Fold(u64);

impl std::hash::BuildHasher for FoldState {
    type Hasher = Fold;
    fn build_hasher(&self) -> Fold {
        Fold(0x2545_f491_4f6c_dd1d)
    }
}

impl std::hash::Hasher for Fold {
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.write_u64(u64::from(*b));
        }
    }
    fn write_u64(&mut self, w: u64) {
        let p = u128::from(self.0 ^ w) * 0x9e37_79b9_7f4a_7c15;
        self.0 = (p as u64) ^ ((p >> 64) as u64);
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

/// A set or a get on [`dict_server`]: an operation byte, a key, a value.
const DICT_REQUEST: usize = 17;

/// Serves sets and gets of `u64`s on a `HashMap` (the manager's hash),
/// one request at a time from stdin (looked for without sleeping first),
/// each answered on stdout with 8 bytes (the value got, or 0 for a set),
/// until end of file.
fn dict_server() {
    let stdin = std::io::stdin();
    let stdout = std::io::stdout();
    let mut dict: std::collections::HashMap<u64, u64, FoldState> = Default::default();
    let mut req = [0u8; DICT_REQUEST];
    let word = |c: &[u8]| u64::from_le_bytes(c.try_into().unwrap());
    while read_full_spinning(stdin.as_fd(), &mut req) == DICT_REQUEST {
        let (key, value) = (word(&req[1..9]), word(&req[9..]));
        let answer = if req[0] == b's' {
            dict.insert(key, value);
            0
        } else {
            dict.get(&key).copied().unwrap_or(u64::MAX)
        };
        write_full(stdout.as_fd(), &answer.to_le_bytes());
    }
}

/// `manager_dict`'s floor: the same 10,000 set/get pairs, each operation a
/// request and an answer on a socketpair to a child process that keeps
/// the `HashMap`; both sides look for 50 µs before they sleep.
pub fn manager_dict(reps: usize) {
    const PAIRS: u64 = 10_000;
    let (ours, theirs) = UnixStream::pair().unwrap();
    let theirs = OwnedFd::from(theirs);
    let mut child = helper("dict", Stdio::from(theirs.try_clone().unwrap()), Stdio::from(theirs));
    let call = |op: u8, key: u64, value: u64| -> u64 {
        let mut req = [0u8; DICT_REQUEST];
        req[0] = op;
        req[1..9].copy_from_slice(&key.to_le_bytes());
        req[9..].copy_from_slice(&value.to_le_bytes());
        write_full(ours.as_fd(), &req);
        let mut answer = [0u8; 8];
        assert_eq!(read_full_spinning(ours.as_fd(), &mut answer), 8, "the dict server stopped");
        u64::from_le_bytes(answer)
    };
    // The first call waits out the child's start-up: untimed.
    call(b's', u64::MAX, 0);
    let samples = repeat(reps, || {
        time(|| {
            for i in 0..PAIRS {
                call(b's', i, i);
                assert_eq!(call(b'g', i, 0), i);
            }
        })
    });
    drop(ours);
    child.wait().unwrap();
    emit_raw(
        "manager_dict",
        json!({"proxy": "Manager().dict()", "set_get_pairs": PAIRS, "ops": 2 * PAIRS, "from": "child process", "start_method": "fork"}),
        &samples,
        Unit::PerSecond(2.0 * PAIRS as f64, "ops/s"),
        "each set and get a 17-byte request and an 8-byte answer on a socketpair to a child process that keeps a \
         HashMap (the manager's hash); both sides look for 50 us before they sleep",
    );
}

/// `manager_batch`'s floors: the batch's bytes through a socketpair to a
/// child process that puts the items in a list or a dict and answers.
pub fn manager_batch(reps: usize) {
    for (kind, call, types) in [("dict", "dict.update", "int -> int"), ("list", "list.extend", "int")] {
        let (ours, theirs) = UnixStream::pair().unwrap();
        let theirs = OwnedFd::from(theirs);
        let mut child = helper(&format!("batch:{kind}"), Stdio::from(theirs.try_clone().unwrap()), Stdio::from(theirs));
        let data: Vec<u8> = (0..batch_bytes(kind) / 8).flat_map(|i| (i as u64 / 2).to_le_bytes()).collect();
        let mut ack = [0u8; 1];
        // The first batch waits out the child's start-up: untimed.
        write_full(ours.as_fd(), &data);
        read_full(ours.as_fd(), &mut ack);
        let samples = repeat(reps, || {
            time(|| {
                write_full(ours.as_fd(), &data);
                read_full(ours.as_fd(), &mut ack);
            })
        });
        drop(ours);
        child.wait().unwrap();
        emit_raw(
            "manager_batch",
            json!({"call": call, "items": BATCH, "types": types, "start_method": "fork"}),
            &samples,
            Unit::PerSecond(BATCH as f64, "items/s"),
            "the batch's bytes (8 per number) through a socketpair to a child that fills a Vec or a HashMap with a \
             multiply-fold hash, and a one-byte answer",
        );
    }
}

/// As [`read_full`], but looking without sleeping first (yielding the CPU
/// between looks) for up to 50 µs, as the manager's client and server do:
/// a round trip's floor that does not pay two wake-ups when the answer is
/// quick.
fn read_full_spinning(fd: std::os::fd::BorrowedFd<'_>, buf: &mut [u8]) -> usize {
    let start = Instant::now();
    let mut got = 0;
    while got < buf.len() && start.elapsed() < std::time::Duration::from_micros(50) {
        match rustix::net::recv(fd, &mut buf[got..], rustix::net::RecvFlags::DONTWAIT) {
            Ok((0, _)) => return got,
            Ok((n, _)) => got += n,
            Err(rustix::io::Errno::AGAIN | rustix::io::Errno::INTR) => std::thread::yield_now(),
            Err(e) => panic!("recv: {e}"),
        }
    }
    got + read_full(fd, &mut buf[got..])
}

fn read_full(fd: std::os::fd::BorrowedFd<'_>, buf: &mut [u8]) -> usize {
    let mut got = 0;
    while got < buf.len() {
        match rustix::io::read(fd, &mut buf[got..]) {
            Ok(0) => return got,
            Ok(n) => got += n,
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => panic!("read: {e}"),
        }
    }
    got
}

fn write_full(fd: std::os::fd::BorrowedFd<'_>, mut buf: &[u8]) {
    while !buf.is_empty() {
        match rustix::io::write(fd, buf) {
            Ok(n) => buf = &buf[n..],
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => panic!("write: {e}"),
        }
    }
}

fn helper(role: &str, stdin: Stdio, stdout: Stdio) -> Child {
    Command::new("/proc/self/exe").env(ROLE, role).stdin(stdin).stdout(stdout).spawn().unwrap()
}

const SPAWN_N: usize = 100;

/// `fork()` a child that `_exit`s at once, and `waitpid` it: the floor
/// under every start method. `unsafe_code` is allowed for this item alone:
/// it is the raw system calls, with nothing of multiproc around them.
#[allow(unsafe_code)]
fn raw_fork_and_wait() -> std::io::Result<()> {
    // SAFETY: the child calls only `_exit`, which is async-signal-safe, so
    // forking a multithreaded process is sound here.
    let pid = unsafe { libc::fork() };
    match pid {
        -1 => Err(std::io::Error::last_os_error()),
        // SAFETY: `_exit` has no preconditions.
        0 => unsafe { libc::_exit(0) },
        pid => {
            let mut status = 0;
            // SAFETY: `pid` is our own child; `status` is a valid out-pointer.
            if unsafe { libc::waitpid(pid, &mut status, 0) } == -1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        }
    }
}

/// Forks a child that serves [`square_worker`] on its end of a socketpair,
/// and returns our end and its pid. `unsafe_code` is allowed for this item
/// alone: the raw `fork`, with nothing of multiproc around it.
/// The child closes `others` (the parent's ends of earlier workers'
/// sockets), so that each worker sees end of file when the parent closes
/// its end, not when the last worker exits.
#[allow(unsafe_code)]
fn fork_square_worker(others: &[OwnedFd]) -> (OwnedFd, libc::pid_t) {
    let (ours, theirs) = UnixStream::pair().unwrap();
    let others: Vec<i32> = others.iter().map(|fd| fd.as_raw_fd()).collect();
    // SAFETY: the child makes only `close`, `read`, `write` and `_exit`
    // system calls, all async-signal-safe, so forking a multithreaded
    // process is sound here.
    match unsafe { libc::fork() } {
        -1 => panic!("fork: {}", std::io::Error::last_os_error()),
        0 => {
            drop(ours);
            for fd in others {
                // SAFETY: the parent's copy stays its own; this closes the
                // child's inherited copy, which nothing in the child uses.
                unsafe { libc::close(fd) };
            }
            square_worker(theirs.as_fd(), theirs.as_fd());
            // SAFETY: `_exit` has no preconditions.
            unsafe { libc::_exit(0) }
        }
        pid => (ours.into(), pid),
    }
}

/// A bare pool worker: a fork child, or this executable exec'd.
enum BareWorker {
    Forked(libc::pid_t),
    Execed(Child),
}

impl BareWorker {
    fn start(method: &str, others: &[OwnedFd]) -> (OwnedFd, BareWorker) {
        if method == "spawn" {
            let (ours, theirs) = UnixStream::pair().unwrap();
            let theirs = OwnedFd::from(theirs);
            let child = helper("square", Stdio::from(theirs.try_clone().unwrap()), Stdio::from(theirs));
            (ours.into(), BareWorker::Execed(child))
        } else {
            let (ours, pid) = fork_square_worker(others);
            (ours, BareWorker::Forked(pid))
        }
    }

    fn join(self) {
        match self {
            BareWorker::Forked(pid) => {
                let pid = rustix::process::Pid::from_raw(pid).unwrap();
                rustix::process::waitpid(Some(pid), rustix::process::WaitOptions::empty()).unwrap();
            }
            BareWorker::Execed(mut child) => {
                child.wait().unwrap();
            }
        }
    }
}

/// The lifecycle floors of `pool_create` and `pool_map_small`: two bare
/// workers started (fork for the fork and forkserver rows, exec for spawn),
/// one `square(3)` round trip, then end of file to both and a wait for
/// each.
pub fn pool_lifecycle(workload: &str, methods: &[&str], reps: usize) {
    for &method in methods {
        let (mut create, mut first, mut shutdown) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..reps {
            let t0 = Instant::now();
            let (mut fds, mut workers) = (Vec::new(), Vec::new());
            for _ in 0..2 {
                let (fd, worker) = BareWorker::start(method, &fds);
                fds.push(fd);
                workers.push(worker);
            }
            let t1 = Instant::now();
            write_full(fds[0].as_fd(), &3u64.to_le_bytes());
            let mut answer = [0u8; 8];
            read_full(fds[0].as_fd(), &mut answer);
            assert_eq!(u64::from_le_bytes(answer), 9);
            let t2 = Instant::now();
            drop(fds);
            workers.into_iter().for_each(BareWorker::join);
            let t3 = Instant::now();
            create.push((t1 - t0).as_secs_f64());
            first.push((t2 - t0).as_secs_f64());
            shutdown.push((t3 - t2).as_secs_f64());
        }
        let how = if method == "spawn" { "exec of this executable" } else { "fork()" };
        let row = |phase: &str| json!({"start_method": method, "processes": 2, "phase": phase});
        let what = |phase: &str| format!("two bare workers by {how}: {phase}");
        emit_raw(workload, row("constructor"), &create, Unit::Millis, &what("started"));
        emit_raw(
            workload,
            row("constructor_to_first_result"),
            &first,
            Unit::Millis,
            &what("started, then one square(3) over a socketpair"),
        );
        emit_raw(workload, row("close_join"), &shutdown, Unit::Millis, &what("end of file to both, and waitpid"));
    }
}

/// `manager_dict`'s `Manager() start` floor: one bare server forked and
/// heard from once (a `square(3)` on a socketpair), as the constructor
/// returns once its server has answered; its end (end of file and
/// `waitpid`) is not timed, as `shutdown` is not.
pub fn manager_start(reps: usize) {
    let samples = repeat(reps, || {
        let t0 = Instant::now();
        let (fd, server) = BareWorker::start("fork", &[]);
        write_full(fd.as_fd(), &3u64.to_le_bytes());
        let mut answer = [0u8; 8];
        read_full(fd.as_fd(), &mut answer);
        let took = t0.elapsed();
        assert_eq!(u64::from_le_bytes(answer), 9);
        drop(fd);
        server.join();
        took
    });
    emit_raw(
        "manager_dict",
        json!({"phase": "Manager() start", "start_method": "fork"}),
        &samples,
        Unit::Millis,
        "a bare server by fork(), heard from once (one square(3) over a socketpair)",
    );
}

/// `n` bare `fork()` + `waitpid` in sequence.
pub fn fork_and_wait(n: usize) {
    for _ in 0..n {
        raw_fork_and_wait().unwrap();
    }
}

/// `spawn_join`'s floors: `fork()` + `waitpid` under the fork and
/// forkserver rows, exec of this executable under the spawn row.
pub fn spawn_join(reps: usize) {
    for method in ["fork", "forkserver"] {
        let samples = repeat(reps, || time(|| fork_and_wait(SPAWN_N)));
        emit_raw(
            "spawn_join",
            json!({"start_method": method, "n": SPAWN_N}),
            &samples,
            Unit::MicrosPer(SPAWN_N as f64, "us/process"),
            "fork() + _exit + waitpid",
        );
    }
    let samples = repeat(reps, || {
        time(|| {
            for _ in 0..SPAWN_N {
                let status = Command::new("/proc/self/exe").env(ROLE, "exit").status().unwrap();
                assert!(status.success());
            }
        })
    });
    emit_raw(
        "spawn_join",
        json!({"start_method": "spawn", "n": SPAWN_N}),
        &samples,
        Unit::MicrosPer(SPAWN_N as f64, "us/process"),
        "fork() + execve(self) that exits before main's work + wait",
    );
}

/// `pipe_pingpong`'s floor: 8-byte round trips over a socketpair with a
/// child process that echoes.
pub fn pipe_pingpong(reps: usize) {
    const N: usize = 20_000;
    let samples = repeat(reps, || {
        let (ours, theirs) = UnixStream::pair().unwrap();
        let theirs = OwnedFd::from(theirs);
        let mut child = helper("echo", Stdio::from(theirs.try_clone().unwrap()), Stdio::from(theirs));
        let mut buf = *b"12345678";
        // The first round trip waits out the child's start-up: untimed.
        rustix::io::write(&ours, &buf).unwrap();
        read_full(ours.as_fd(), &mut buf);
        let t0 = Instant::now();
        for _ in 0..N - 1 {
            rustix::io::write(&ours, &buf).unwrap();
            read_full(ours.as_fd(), &mut buf);
        }
        let took = t0.elapsed();
        drop(ours);
        child.wait().unwrap();
        took
    });
    // The same 8 bytes under both rows: a `u64` is 8 bytes on the wire too.
    for (api, payload) in [("send_bytes/recv_bytes", "b'12345678'"), ("send/recv(pickle)", "12345678")] {
        emit_raw(
            "pipe_pingpong",
            json!({"api": api, "duplex": true, "payload": payload, "round_trips": N - 1, "start_method": "fork"}),
            &samples,
            Unit::MicrosPer((N - 1) as f64, "us/round_trip"),
            "write/read of 8 bytes on a socketpair, echoed by a child process",
        );
    }
}

/// `pipe_throughput`'s floors: 1 GiB in 1 MiB writes from a child, through
/// a socketpair and through a pipe.
pub fn pipe_throughput(reps: usize) {
    const CHUNK: usize = 1 << 20;
    const TOTAL: usize = 1 << 30;
    for duplex in [true, false] {
        let samples = repeat(reps, || {
            let (data_r, data_w, go_w, go_r): (OwnedFd, OwnedFd, OwnedFd, OwnedFd) = if duplex {
                let (a, b) = UnixStream::pair().unwrap();
                let (a, b) = (OwnedFd::from(a), OwnedFd::from(b));
                (a.try_clone().unwrap(), b.try_clone().unwrap(), a, b)
            } else {
                let (r, w) = std::io::pipe().unwrap();
                let (gr, gw) = std::io::pipe().unwrap();
                (r.into(), w.into(), gw.into(), gr.into())
            };
            let mut child = helper(&format!("send:{CHUNK}:{TOTAL}"), Stdio::from(go_r), Stdio::from(data_w));
            let mut ready = [0u8; 1];
            read_full(data_r.as_fd(), &mut ready);
            let mut buf = vec![0u8; CHUNK];
            let t0 = Instant::now();
            rustix::io::write(&go_w, b"g").unwrap();
            let mut got = 0;
            while got < TOTAL {
                let n = read_full(data_r.as_fd(), &mut buf);
                assert!(n > 0, "the sender stopped early");
                got += n;
            }
            let took = t0.elapsed();
            child.wait().unwrap();
            took
        });
        emit_raw(
            "pipe_throughput",
            json!({"mode": "send_bytes/recv_bytes", "duplex": duplex, "transport": if duplex { "socketpair" } else { "os.pipe" }, "chunk_bytes": CHUNK, "total_bytes": TOTAL, "start_method": "fork"}),
            &samples,
            Unit::GbPerSecond(TOTAL as f64),
            if duplex {
                "1 MiB write/read on a socketpair from a child"
            } else {
                "1 MiB write/read on a pipe from a child"
            },
        );
    }
}

/// `queue_large`'s floor: copying each 8 MiB message once, in memory.
pub fn queue_large(reps: usize) {
    const N: usize = 200;
    const SIZE: usize = 8 << 20;
    let src = vec![1u8; SIZE];
    let mut dst = vec![0u8; SIZE];
    let samples = repeat(reps, || {
        time(|| {
            for _ in 0..N {
                dst.copy_from_slice(std::hint::black_box(&src));
                std::hint::black_box(&mut dst);
            }
        })
    });
    emit_raw(
        "queue_large",
        json!({"queue": "Queue", "start_method": "fork", "n": N, "msg": "bytes[8 MiB]", "total_bytes": N * SIZE}),
        &samples,
        Unit::GbPerSecond((N * SIZE) as f64),
        "memcpy of each 8 MiB message, in one process",
    );
}

pub fn emit_raw(workload: &str, params: Value, samples: &[f64], unit: Unit, what: &str) {
    emit(workload, "raw", params, samples, unit, Some(json!({ "what": what })));
}
