//! The pool's wire, for the fuzz targets (feature `fuzzing`): the frames a
//! worker reads from the dispatcher, run by the worker's own code
//! ([`Order::of`], `wire::run_task`), and the frames the dispatcher reads
//! from a worker, taken as `Tracked::read`, `Dispatch::handle_frame` and
//! `Tracked::take_result` take them, then decoded as the caller's thread
//! decodes a chunk (`Job::take_any`, `Chunk::decode`).
//!
//! An input is one byte that says what to do, then its bytes:
//!
//! - bit 0 clear: a worker reads the rest as its task stream (bit 1: the
//!   pool has `track_usage`). With bit 2, the rest is not sent as it is:
//!   it is an id mask (16 bytes), an item count (1 byte) and the items'
//!   encoded arguments, made into the `TASK` frame of chunk 0 of job 1 for
//!   the probe target (which takes a `(String, Vec<u16>)` and returns a
//!   `u64`), made as the dispatcher makes one but with the id XORed with
//!   the mask; the worker's reply is then read back by a dispatcher that
//!   sent that chunk;
//! - bit 0 set: a dispatcher reads what a worker sent. Bits 1 and 2 pick
//!   the type that results are decoded as (`u64`, `String`, `(u16,
//!   String)`, `Vec<u8>`), bits 3 and 4 how many chunks it sent to the
//!   worker (1 to 4, indices 0 on, first item 0), then come the job id (8
//!   bytes, little endian), each chunk's item count (1 byte each) and the
//!   bytes the worker sent.
//!
//! Missing bytes read as zeros.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::time::Instant;

use serde::de::DeserializeOwned;
use serde::ser::{Serialize, SerializeTuple, Serializer};

use super::job::{ChunkOutcome, Job};
use super::status::{StatusPage, WorkerPage};
use super::wire::{self, ChunkHead, Delivery};
use super::worker::Order;
use crate::codec::{self, FrameStream};
use crate::error::{Error, ErrorKind, RemoteError, Result};
use crate::runtime::{self, Failure, TaskId};

/// What the two ends of the pool's wire made of an input.
#[derive(Debug, Default)]
pub struct PoolWireSeen {
    /// The bytes the worker sent back (worker side).
    pub sent: Vec<u8>,
    /// The probe's chunk (worker side, bit 2): its item count, and whether
    /// its id was left as made (an all-zero mask).
    pub probe: Option<(u32, bool)>,
    /// The outcome of each item the dispatcher took, as the caller decodes
    /// it: a value (`Ok`), or that item's error.
    pub items: Vec<Result<()>>,
    /// `READY` frames read.
    pub ready: u32,
    /// `USAGE` frames read.
    pub usage: u32,
    /// The initializer's failure, which breaks the pool.
    pub init_failed: Option<String>,
}

/// Runs one input (see the module documentation).
///
/// # Errors
///
/// What makes a worker leave with exit code 1, or the dispatcher break a
/// worker's stream: `FrameTooLarge` and `Protocol` for a corrupt stream
/// (a frame above the limit or of an unknown kind, a `TASK` or `USAGE`
/// frame too short, a result that matches no chunk sent, a `TASK` whose id
/// does not resolve with more items than a result frame can refuse).
pub fn pool_wire(data: &[u8]) -> Result<PoolWireSeen> {
    let Some((&how, rest)) = data.split_first() else {
        return Ok(PoolWireSeen::default());
    };
    let mut seen = PoolWireSeen::default();
    if how & 1 == 1 {
        let mut job = [0u8; 8];
        copy_prefix(&mut job, rest);
        let rest = rest.get(8..).unwrap_or_default();
        let chunks = usize::from((how >> 3) & 3) + 1;
        let mut counts = [0u8; 4];
        copy_prefix(&mut counts[..chunks], rest);
        let stream = rest.get(chunks..).unwrap_or_default();
        let sent: Vec<_> = (0..chunks).map(|i| (u64::from_le_bytes(job), i as u32, 0, u32::from(counts[i]))).collect();
        match (how >> 1) & 3 {
            0 => dispatcher_reads::<u64>(&sent, stream, &mut seen)?,
            1 => dispatcher_reads::<String>(&sent, stream, &mut seen)?,
            2 => dispatcher_reads::<(u16, String)>(&sent, stream, &mut seen)?,
            _ => dispatcher_reads::<Vec<u8>>(&sent, stream, &mut seen)?,
        }
        return Ok(seen);
    }
    let track_usage = how & 2 == 2;
    if how & 4 == 0 {
        seen.sent = worker_reads(rest, track_usage)?;
        return Ok(seen);
    }
    let mut mask = [0u8; 16];
    copy_prefix(&mut mask, rest);
    let count = u32::from(rest.get(16).copied().unwrap_or(0));
    let task = probe_task(1, 0, count, mask, rest.get(17..).unwrap_or_default());
    seen.probe = Some((count, mask == [0; 16]));
    seen.sent = worker_reads(&task, track_usage)?;
    let sent = seen.sent.clone();
    dispatcher_reads::<u64>(&[(1, 0, 0, count)], &sent, &mut seen)?;
    Ok(seen)
}

fn copy_prefix(to: &mut [u8], from: &[u8]) {
    let n = to.len().min(from.len());
    to[..n].copy_from_slice(&from[..n]);
}

thread_local! {
    /// The worker's status page and its next chunk number: a worker keeps
    /// both for its life.
    static WORKER: RefCell<Option<(StatusPage, WorkerPage, u64)>> = const { RefCell::new(None) };
}

/// Runs `stream` as a pool worker runs its task stream once it is ready:
/// each `TASK` in turn, until `EXIT` or the end of the bytes. Returns the
/// bytes it sends back.
fn worker_reads(stream: &[u8], track_usage: bool) -> Result<Vec<u8>> {
    WORKER.with_borrow_mut(|worker| {
        if worker.is_none() {
            let status = StatusPage::new()?;
            let page = WorkerPage::attach(status.for_worker()?)
                .map_err(|e| Error::io("attaching a pool worker's status page", e))?;
            runtime::quiet_panics();
            *worker = Some((status, page, 0));
        }
        let (_, page, seq) = worker.as_mut().expect("made above");
        let ran = run_stream(stream, track_usage, page, seq);
        let mut sent = Vec::new();
        page.flush(|bytes| {
            sent.extend_from_slice(bytes);
            Ok(())
        })
        .map_err(|e| Error::io("taking a pool worker's results", e))?;
        ran.map(|()| sent)
    })
}

/// The body of `worker::run`'s loop, without its pacing and accounting.
fn run_stream(stream: &[u8], track_usage: bool, page: &mut WorkerPage, seq: &mut u64) -> Result<()> {
    let mut frames = FrameStream::new(codec::max_frame_size());
    frames.push(stream);
    while let Some(frame) = frames.next_buffered("the pool's task stream")? {
        match Order::of(&frame)? {
            Order::Task(payload) => {
                *seq += 1;
                let run = if track_usage { wire::run_task_measured } else { wire::run_task };
                run(payload, *seq - 1, page)?;
            }
            Order::Exit => break,
        }
    }
    Ok(())
}

/// Reads `stream` as the dispatcher reads a worker that holds the chunks
/// `sent` (job id, index, first item, item count), in the order they were
/// sent; the rest of a chunk the worker stopped early is sent to it again.
/// Then takes the finished chunks and decodes their items as `R`.
fn dispatcher_reads<R: DeserializeOwned + 'static>(
    sent: &[(u64, u32, u32, u32)],
    stream: &[u8],
    seen: &mut PoolWireSeen,
) -> Result<()> {
    let job = Job::new();
    for &(_, index, _, count) in sent {
        job.add_chunk(index, count);
    }
    let mut in_flight: VecDeque<_> = sent.iter().copied().collect();
    let mut frames = FrameStream::new(codec::max_frame_size());
    frames.push(stream);
    while let Some(frame) = frames.next_buffered("a pool worker's results")? {
        match frame.kind {
            wire::RESULT => {
                let (_, index, first, count) = match (wire::result_head(&frame.payload), in_flight.front()) {
                    (Ok(head), Some(&front)) if wire::answers(head, front) => head,
                    _ => {
                        return Err(Error::new(
                            ErrorKind::Protocol,
                            "a pool worker sent a result that matches no task it holds; its stream is corrupt",
                        ));
                    }
                };
                let (sent_job, _, _, sent_count) = in_flight.pop_front().expect("matched above");
                if count < sent_count {
                    in_flight.push_back((sent_job, index, first + count, sent_count - count));
                }
                let _failed = wire::failed_items(&frame.payload);
                job.finish_part(index, first, count, ChunkOutcome::Items(frame.payload));
            }
            wire::USAGE => {
                wire::usage(&frame.payload)?;
                seen.usage += 1;
            }
            wire::READY => seen.ready += 1,
            wire::INIT_FAILED => {
                let message = match codec::decode::<RemoteError>(&frame.payload, "an error report") {
                    Ok(remote) => remote.message,
                    Err(e) => e.to_string(),
                };
                seen.init_failed = Some(message);
            }
            other => {
                return Err(Error::new(ErrorKind::Protocol, format!("pool worker sent an unknown frame kind {other}")));
            }
        }
    }
    while let Ok(Some((_, chunk))) = job.take_any(Some(Instant::now())) {
        seen.items.extend(chunk.decode::<R>().into_iter().map(|item| item.map(drop)));
    }
    Ok(())
}

/// The probe's chunk target.
fn probe(arg: (String, Vec<u16>)) -> u64 {
    (arg.0.len() + arg.1.len()) as u64
}

/// A chunk target that panics, for the seeds' `PANIC` outcomes.
fn panics(arg: (String, Vec<u16>)) -> u64 {
    panic!("a fuzz seed's task panics on {:?}", arg.0)
}

fn chunk_id<F: Fn((String, Vec<u16>)) -> u64 + Copy + 'static>(_: F) -> TaskId {
    wire::chunk_task::<F, (String, Vec<u16>), u64>()
}

/// Encoded arguments, serialized as they are: one item that holds a run
/// of items already encoded.
struct Encoded(Vec<u8>);

impl Serialize for Encoded {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        let mut t = s.serialize_tuple(self.0.len())?;
        for b in &self.0 {
            t.serialize_element(b)?;
        }
        t.end()
    }
}

/// The `TASK` frame of chunk `index` of job `job` for `task`, with `count`
/// items whose encoded arguments are `items`, made by the dispatcher's
/// encoder.
fn task_frame(job: u64, index: u32, task: TaskId, count: u32, items: &[u8]) -> Vec<u8> {
    let head = ChunkHead { job, index, task, delivery: Delivery::Prompt };
    let mut frame = Vec::new();
    let all = std::iter::once(Encoded(items.to_vec())).chain(std::iter::repeat_with(|| Encoded(Vec::new())));
    wire::append_task(&mut frame, &head, all.take(count as usize)).expect("a chunk within the frame-size limit");
    frame
}

/// The probe's `TASK` frame, its id XORed with `mask`.
fn probe_task(job: u64, index: u32, count: u32, mask: [u8; 16], items: &[u8]) -> Vec<u8> {
    let id = chunk_id(probe);
    let word = |at: usize| u64::from_le_bytes(mask[at..at + 8].try_into().expect("8 bytes"));
    task_frame(job, index, TaskId { offset: id.offset ^ word(0), tag: id.tag ^ word(8) }, count, items)
}

/// Seed inputs for `pool_wire`, named, made by the real encoders: the
/// dispatcher's `TASK` and `EXIT` frames, and what a worker sends back
/// (`READY`, `INIT_FAILED`, `USAGE`, `RESULT`s of values, errors, panics
/// and a chunk stopped early), plus a few edge cases.
pub(crate) fn seeds() -> Result<Vec<(&'static str, Vec<u8>)>> {
    let item = |s: &str, v: &[u16]| codec::encode(&(s.to_owned(), v.to_vec()), "a seed");
    let first = item("hello", &[1, 2, 3])?;
    let items = [first.clone(), item("", &[])?, item("wide", &[u16::MAX; 4])?].concat();
    let mut exit = Vec::new();
    codec::append_frame(&mut exit, wire::EXIT, |_| Ok(()))?;
    let ready = codec::frame_of(wire::READY, &(), "a ready note")?;
    let init_failed =
        wire::init_failed(&Failure::Error(Error::new(ErrorKind::Io, "the initializer could not open its file")));
    let mut short_usage = Vec::new();
    codec::append_frame(&mut short_usage, wire::USAGE, |b| {
        b.extend_from_slice(&[0; 4]);
        Ok(())
    })?;
    let huge = |kind: u8| ((u64::from(kind) << 56) | 1 << 40).to_le_bytes().to_vec();
    // The first crash `pool_wire` found: an id that does not resolve, and
    // 2^32 - 1 items to refuse.
    let mut countless = Vec::new();
    codec::append_frame(&mut countless, wire::TASK, |b| {
        b.extend_from_slice(&[0; 16]);
        b.extend_from_slice(&u32::MAX.to_le_bytes());
        b.extend_from_slice(&[0; 20]);
        Ok(())
    })?;
    // Chunks 0 and 1 of job 7: three values, then two refusals (a wrong
    // id); or a chunk stopped after its second argument (cut short), then
    // two panics.
    let good = probe_task(7, 0, 3, [0; 16], &items);
    let refused = probe_task(7, 1, 2, [1; 16], &items);
    let cut = probe_task(7, 0, 3, [0; 16], &items[..first.len() + 1]);
    let panicking = task_frame(7, 1, chunk_id(panics), 2, &items);
    let mut seeds = vec![
        ("worker-tasks-then-exit", [&[0u8][..], &good, &refused, &exit].concat()),
        ("worker-usage", [&[2u8][..], &good].concat()),
        ("worker-cut-argument", [&[0u8][..], &cut].concat()),
        ("worker-unknown-kind", [&[0u8][..], &codec::frame_of(99, &(), "a seed")?].concat()),
        ("worker-short-task", [&[0u8][..], &good[..codec::HEADER + 12]].concat()),
        ("worker-huge-frame", [&[0u8][..], &huge(wire::TASK)].concat()),
        ("worker-foreign-id-countless", [&[2u8][..], &countless].concat()),
        ("probe-intact", [&[4u8][..], &[0; 16], &[3], &items].concat()),
        ("probe-masked", [&[4u8][..], &[0x80; 16], &[2], &items].concat()),
        ("probe-measured", [&[6u8][..], &[0; 16], &[1], &items].concat()),
    ];
    let served = worker_reads(&[&good[..], &refused].concat(), true)?;
    let stopped = worker_reads(&[&cut[..], &panicking].concat(), false)?;
    // A dispatcher that sent `counts` items in chunks 0.. of job `job`,
    // decoding results as `R` (0: `u64`, 1: `String`).
    let parent = |decode: u8, job: u64, counts: &[u8], stream: &[&[u8]]| {
        let how = 1 | decode << 1 | ((counts.len() as u8 - 1) << 3);
        [&[how][..], &job.to_le_bytes(), counts, &stream.concat()].concat()
    };
    seeds.extend([
        ("parent-ready-usage-results", parent(0, 7, &[3, 2], &[&ready, &served])),
        ("parent-stopped-early-panics", parent(0, 7, &[3, 2], &[&stopped])),
        ("parent-as-strings", parent(1, 7, &[3, 2], &[&served])),
        ("parent-init-failed", parent(0, 7, &[1], &[&init_failed])),
        ("parent-other-job", parent(0, 8, &[3, 2], &[&served])),
        ("parent-short-usage", parent(0, 7, &[1], &[&short_usage])),
        ("parent-huge-frame", parent(0, 7, &[1], &[&huge(wire::RESULT)])),
    ]);
    Ok(seeds)
}
