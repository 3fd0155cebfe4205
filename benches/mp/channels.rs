//! The channel workloads of bench_mp.py: `queue_small`, `queue_large`,
//! `pipe_throughput` and `pipe_pingpong`, with the same children, the same
//! ready/go handshake over a Pipe, and the same timed regions (from "go" to
//! the last message received; a ping-pong's first round trip is untimed).

use std::time::{Duration, Instant};

use serde_json::json;

use crate::report::{Unit, emit, repeat};
use crate::{Config, IMPL};
use multiproc::connection::Connection;
use multiproc::{Child, Pipe, Process, Queue, SimpleQueue, StartMethod};

/// Starts `target(ctrl, arg)` under fork and returns it with the parent's
/// end of its control pipe (bench_mp.py's `_run_children`).
pub fn run_child<F, A, R>(target: F, arg: A) -> (Child<R>, Connection)
where
    F: Fn((Connection, A)) -> R + Copy + Send + 'static,
    A: serde::Serialize + serde::de::DeserializeOwned + Send + 'static,
    R: serde::Serialize + serde::de::DeserializeOwned + Send + 'static,
{
    let (parent, child) = Pipe(true).unwrap();
    let p = Process::new(target, (child, arg)).start_method(StartMethod::Fork).start().unwrap();
    (p, parent)
}

pub fn child_handshake(ctrl: &Connection) {
    ctrl.send(&"ready").unwrap();
    assert_eq!(ctrl.recv::<String>().unwrap(), "go");
}

/// Waits for "ready", starts the clock, says "go" (`_handshake_start`).
fn handshake_start(ctrl: &Connection) -> Instant {
    assert_eq!(ctrl.recv::<String>().unwrap(), "ready");
    let t0 = Instant::now();
    ctrl.send(&"go").unwrap();
    t0
}

/// Waits for "done" and the child's exit (`_wait_done` and `_join_all`).
fn finish<R: serde::de::DeserializeOwned>(ctrl: Connection, child: Child<R>) {
    assert_eq!(ctrl.recv::<String>().unwrap(), "done");
    child.join().unwrap();
}

/// Puts `n` messages of `len` bytes (random for 64 B, ones for 8 MiB, as
/// in Python) into a Queue or SimpleQueue.
type Queues = (Queue<Vec<u8>>, SimpleQueue<Vec<u8>>, bool);

fn produce((ctrl, ((queue, simple_q, simple), n, len)): (Connection, (Queues, usize, usize))) {
    let msg: Vec<u8> = if len <= 64 { (0..len).map(|i| (i * 37 + 11) as u8).collect() } else { vec![1; len] };
    child_handshake(&ctrl);
    for _ in 0..n {
        if simple { simple_q.put(&msg) } else { queue.put(&msg) }.unwrap();
    }
    ctrl.send(&"done").unwrap();
}

fn queue_run(n: usize, len: usize, simple: bool) -> Duration {
    let queue = Queue::new().unwrap();
    let simple_q = SimpleQueue::new().unwrap();
    let (child, ctrl) = run_child(produce, ((queue.clone(), simple_q.clone(), simple), n, len));
    let t0 = handshake_start(&ctrl);
    let mut last = Vec::new();
    for _ in 0..n {
        last = if simple { simple_q.get() } else { queue.get() }.unwrap();
    }
    let took = t0.elapsed();
    assert_eq!(last.len(), len);
    finish(ctrl, child);
    took
}

pub fn queue_small(cfg: &Config) {
    const N: usize = 200_000;
    for name in ["Queue", "SimpleQueue"] {
        let samples = repeat(cfg.reps, || queue_run(N, 64, name == "SimpleQueue"));
        let us = median(&samples) / N as f64 * 1e6;
        emit(
            "queue_small",
            IMPL,
            json!({"queue": name, "start_method": "fork", "n": N, "msg": "bytes[64]"}),
            &samples,
            Unit::PerSecond(N as f64, "msgs/s"),
            Some(json!({ "us_per_msg": us })),
        );
    }
}

pub fn queue_large(cfg: &Config) {
    const N: usize = 200;
    const SIZE: usize = 8 << 20;
    let samples = repeat(cfg.reps, || queue_run(N, SIZE, false));
    emit(
        "queue_large",
        IMPL,
        json!({"queue": "Queue", "start_method": "fork", "n": N, "msg": "bytes[8 MiB]", "total_bytes": N * SIZE}),
        &samples,
        Unit::GbPerSecond((N * SIZE) as f64),
        None,
    );
}

fn send_chunks((ctrl, (conn, chunk, nchunks)): (Connection, (Connection, usize, usize))) {
    let buf = vec![0u8; chunk];
    child_handshake(&ctrl);
    for _ in 0..nchunks {
        conn.send_bytes(&buf).unwrap();
    }
    ctrl.send(&"done").unwrap();
}

pub fn pipe_throughput(cfg: &Config) {
    const CHUNK: usize = 1 << 20;
    const TOTAL: usize = 1 << 30;
    let nchunks = TOTAL / CHUNK;
    for duplex in [true, false] {
        let samples = repeat(cfg.reps, || {
            let (r, w) = Pipe(duplex).unwrap();
            let (child, ctrl) = run_child(send_chunks, (w, CHUNK, nchunks));
            let t0 = handshake_start(&ctrl);
            let mut got = 0;
            for _ in 0..nchunks {
                got += r.recv_bytes().unwrap().len();
            }
            let took = t0.elapsed();
            assert_eq!(got, TOTAL);
            finish(ctrl, child);
            took
        });
        emit(
            "pipe_throughput",
            IMPL,
            // Python's params, to match its row; our one-way Pipe is a
            // socketpair shut down in one direction, not an os.pipe.
            json!({"mode": "send_bytes/recv_bytes", "duplex": duplex,
                   "transport": if duplex { "socketpair" } else { "os.pipe" },
                   "chunk_bytes": CHUNK, "total_bytes": TOTAL, "start_method": "fork"}),
            &samples,
            Unit::GbPerSecond(TOTAL as f64),
            (!duplex).then(|| json!({"transport_here": "socketpair, one direction shut down"})),
        );
    }
}

fn echo_bytes((conn, n): (Connection, usize)) {
    for _ in 0..n {
        conn.send_bytes(&conn.recv_bytes().unwrap()).unwrap();
    }
}

fn echo_values((conn, n): (Connection, usize)) {
    for _ in 0..n {
        conn.send(&conn.recv::<u64>().unwrap()).unwrap();
    }
}

pub fn pipe_pingpong(cfg: &Config) {
    const N: usize = 20_000;
    // Python's api names, to match its rows; send/recv here is postcard.
    for api in ["send_bytes/recv_bytes", "send/recv(pickle)"] {
        let bytes = api.starts_with("send_bytes");
        let samples = repeat(cfg.reps, || {
            let (a, b) = Pipe(true).unwrap();
            let child = if bytes { Process::new(echo_bytes, (b, N)) } else { Process::new(echo_values, (b, N)) }
                .start_method(StartMethod::Fork)
                .start()
                .unwrap();
            let round_trip = || {
                if bytes {
                    a.send_bytes(b"12345678").unwrap();
                    assert_eq!(a.recv_bytes().unwrap(), b"12345678");
                } else {
                    a.send(&12_345_678u64).unwrap();
                    assert_eq!(a.recv::<u64>().unwrap(), 12_345_678);
                }
            };
            round_trip();
            let t0 = Instant::now();
            for _ in 0..N - 1 {
                round_trip();
            }
            let took = t0.elapsed();
            child.join().unwrap();
            took
        });
        let payload = if bytes { "b'12345678'" } else { "12345678" };
        emit(
            "pipe_pingpong",
            IMPL,
            json!({"api": api, "duplex": true, "payload": payload, "round_trips": N - 1, "start_method": "fork"}),
            &samples,
            Unit::MicrosPer((N - 1) as f64, "us/round_trip"),
            None,
        );
    }
}

fn median(samples: &[f64]) -> f64 {
    let mut s = samples.to_vec();
    s.sort_by(f64::total_cmp);
    s[s.len() / 2]
}
