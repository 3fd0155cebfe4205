//! What the dispatcher and a pool worker say to each other, and the typed
//! code that runs a chunk in the worker.
//!
//! Frames (`codec::frame` headers) on the worker's control socket:
//! - parent → worker `TASK`: job id (u64), chunk index (u32), item count
//!   (u32), chunk trampoline id (offset u64, tag u64), delivery (u32: 0
//!   prompt, 1 bulk), then the encoded items one after another;
//! - parent → worker `EXIT`: leave once this frame is read;
//! - worker → parent `RESULT`: job id, chunk index, item count, failed
//!   item count (u32), then one outcome per item: a tag byte (`OK`,
//!   `PANIC`, `ERROR`) and the encoded value, `PanicInfo` or `RemoteError`;
//! - worker → parent `INIT_FAILED`: the initializer's `RemoteError`.
//!
//! All integers are little-endian. A worker runs its frames in order, so
//! results come back in the order the chunks were sent to it.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::codec;
use crate::error::{Error, ErrorKind, PanicInfo, RemoteError, Result};
use crate::runtime::{self, ChunkTrampoline, Failure, TaskId};

pub(crate) const TASK: u8 = 16;
pub(crate) const EXIT: u8 = 17;
pub(crate) const RESULT: u8 = 18;
pub(crate) const INIT_FAILED: u8 = 19;
/// A worker is set up (started, initializer done): its tasks' timeouts
/// start counting.
pub(crate) const READY: u8 = 20;

const OK: u8 = 0;
const PANIC: u8 = 1;
const ERROR: u8 = 2;

/// Bytes before the items of a `TASK` payload.
const TASK_HEAD: usize = 36;

/// How soon the caller wants a chunk's result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Delivery {
    /// As soon as it is ready (`apply_async`, `imap`): someone may be
    /// waiting for this very result.
    Prompt,
    /// With others, in fewer writes (`map`): the caller needs them all,
    /// and every write wakes the parent, whose CPU the workers need.
    Bulk,
}

/// Where a chunk goes: its job, its index there, its task, and how its
/// result should come back.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ChunkHead {
    pub(crate) job: u64,
    pub(crate) index: u32,
    pub(crate) task: TaskId,
    pub(crate) delivery: Delivery,
}
/// Bytes before the outcomes of a `RESULT` payload.
const RESULT_HEAD: usize = 20;

/// The chunk entry point of target `F`, as an id a worker can resolve.
pub(crate) fn chunk_task<F, A, R>() -> TaskId
where
    F: Fn(A) -> R + Copy + 'static,
    A: DeserializeOwned + 'static,
    R: Serialize + 'static,
{
    let (offset, tag) = runtime::chunk_id_of(run_chunk::<F, A, R>);
    TaskId { offset, tag }
}

/// Runs `F` over `count` encoded arguments, appending one outcome per item.
/// Each item is guarded on its own: a panic or an error fails that item,
/// and the next one runs. The failed-item count goes into the 4 bytes
/// `out` holds for it just before the outcomes.
///
/// The panic guard covers a run of items, not each one: catching costs
/// nothing until something panics, and then the run resumes after the item
/// that panicked.
fn run_chunk<F, A, R>(items: &[u8], count: u32, out: &mut Vec<u8>)
where
    F: Fn(A) -> R + Copy + 'static,
    A: DeserializeOwned + 'static,
    R: Serialize + 'static,
{
    let f: F = runtime::conjure::<F, A, R>();
    let failed_at = out.len() - 4;
    let mut failed = 0u32;
    let mut args = codec::Decoder::new(items);
    let mut enc = codec::Encoder::new(out);
    let mut broken: Option<Error> = None;
    let mut next = 0u32;
    // Where the current item's outcome starts, to undo it after a panic.
    let mut start = 0usize;
    while next < count {
        let run = runtime::catch_panic(|| {
            while next < count {
                start = enc.buf().len();
                next += 1;
                let arg = match &broken {
                    // The rest of the chunk cannot be found in the bytes:
                    // every remaining item gets the error.
                    Some(e) => Err(e.duplicate()),
                    None => args.next_item::<A>("a task's argument"),
                };
                let failure = match arg {
                    Ok(arg) => {
                        enc.buf().push(OK);
                        match enc.push_item(&f(arg), "a task's return value") {
                            Ok(()) => continue,
                            Err(e) => {
                                enc.buf().truncate(start);
                                Failure::Error(e)
                            }
                        }
                    }
                    Err(e) => {
                        broken.get_or_insert(e.duplicate());
                        Failure::Error(e)
                    }
                };
                push_failure(enc.buf(), &failure);
                failed += 1;
            }
        });
        if let Err(panic) = run {
            enc.buf().truncate(start);
            push_failure(enc.buf(), &Failure::Panic(panic));
            failed += 1;
        }
    }
    out[failed_at..failed_at + 4].copy_from_slice(&failed.to_le_bytes());
}

fn push_failure(out: &mut Vec<u8>, failure: &Failure) {
    match failure {
        Failure::Panic(p) => {
            out.push(PANIC);
            codec::encode_into(p, out, "a panic").expect("a PanicInfo always serializes");
        }
        Failure::Error(e) => {
            out.push(ERROR);
            codec::encode_into(&RemoteError::from(e), out, "an error").expect("a RemoteError always serializes");
        }
    }
}

/// Appends a `TASK` frame for the chunk `head` describes, whose items are
/// `items`; returns the item count.
pub(crate) fn append_task<I, A>(out: &mut Vec<u8>, head: &ChunkHead, items: I) -> Result<u32>
where
    I: IntoIterator<Item = A>,
    A: Serialize + 'static,
{
    let mut count = 0u32;
    codec::append_frame(out, TASK, |buf| {
        let at = buf.len();
        buf.extend_from_slice(&[0; TASK_HEAD]);
        let mut enc = codec::Encoder::new(buf);
        for item in items {
            enc.push_item(&item, "a task's argument")?;
            count += 1;
        }
        let h = &mut buf[at..at + TASK_HEAD];
        h[0..8].copy_from_slice(&head.job.to_le_bytes());
        h[8..12].copy_from_slice(&head.index.to_le_bytes());
        h[12..16].copy_from_slice(&count.to_le_bytes());
        h[16..24].copy_from_slice(&head.task.offset.to_le_bytes());
        h[24..32].copy_from_slice(&head.task.tag.to_le_bytes());
        h[32..36].copy_from_slice(&u32::from(head.delivery == Delivery::Bulk).to_le_bytes());
        Ok(())
    })?;
    Ok(count)
}

/// How the result of a `TASK` payload should be delivered.
pub(crate) fn delivery(payload: &[u8]) -> Delivery {
    match payload.get(32..36) {
        Some(b) if b == 1u32.to_le_bytes() => Delivery::Bulk,
        _ => Delivery::Prompt,
    }
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

fn short(what: &str) -> Error {
    Error::new(ErrorKind::Protocol, format!("a {what} frame is too short; the stream is corrupt"))
}

/// Runs a `TASK` payload in the worker and appends the `RESULT` frame.
pub(crate) fn run_task(payload: &[u8], out: &mut Vec<u8>) -> Result<()> {
    if payload.len() < TASK_HEAD {
        return Err(short("task"));
    }
    let (job, index, count) = (u64_at(payload, 0), u32_at(payload, 8), u32_at(payload, 12));
    let call: ChunkTrampoline = runtime::resolve_chunk(u64_at(payload, 16), u64_at(payload, 24)).ok_or_else(|| {
        Error::new(ErrorKind::Protocol, "refused a pool task whose id does not match this build; nothing was run")
    })?;
    // Results are about as big as the arguments: reserve that much once.
    out.reserve(payload.len() + 64);
    codec::append_frame(out, RESULT, |buf| {
        buf.extend_from_slice(&job.to_le_bytes());
        buf.extend_from_slice(&index.to_le_bytes());
        buf.extend_from_slice(&count.to_le_bytes());
        buf.extend_from_slice(&0u32.to_le_bytes());
        call(&payload[TASK_HEAD..], count, buf);
        Ok(())
    })
}

/// The head of a `RESULT` payload: job id, chunk index, item count.
pub(crate) fn result_head(payload: &[u8]) -> Result<(u64, u32, u32)> {
    if payload.len() < RESULT_HEAD {
        return Err(short("result"));
    }
    Ok((u64_at(payload, 0), u32_at(payload, 8), u32_at(payload, 12)))
}

/// How many items of a `RESULT` payload failed.
pub(crate) fn failed_items(payload: &[u8]) -> u32 {
    if payload.len() < RESULT_HEAD {
        return u32::MAX;
    }
    u32_at(payload, 16)
}

/// The outcomes of a `RESULT` payload, decoded one item at a time.
pub(crate) struct Outcomes<'a> {
    de: codec::Decoder<'a>,
}

impl std::fmt::Debug for Outcomes<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outcomes").finish_non_exhaustive()
    }
}

impl<'a> Outcomes<'a> {
    /// The outcomes that follow the head of a `RESULT` payload.
    pub(crate) fn of(payload: &'a [u8]) -> Self {
        Outcomes { de: codec::Decoder::new(payload.get(RESULT_HEAD..).unwrap_or_default()) }
    }

    /// The next item's outcome.
    #[inline]
    pub(crate) fn next_item<R: DeserializeOwned + 'static>(&mut self) -> Result<R> {
        let tag = self.de.next_byte().ok_or_else(|| short("result"))?;
        match tag {
            OK => self.de.next_item::<R>("a task's return value"),
            PANIC => {
                let panic: PanicInfo = self.de.next("a panic report")?;
                Err(Error::new(
                    ErrorKind::Panicked,
                    format!("a pool task {panic}; the worker survived. Fix the target, or catch the panic inside it"),
                )
                .with_panic(panic))
            }
            ERROR => {
                let remote: RemoteError = self.de.next("an error report")?;
                Err(Error::new(remote.kind, format!("in a pool worker: {}", remote.message)))
            }
            other => Err(Error::new(
                ErrorKind::Protocol,
                format!("a pool result has an unknown outcome tag {other}; the stream is corrupt"),
            )),
        }
    }
}

/// The `INIT_FAILED` frame for an initializer that failed.
pub(crate) fn init_failed(failure: &Failure) -> Vec<u8> {
    let err = match failure {
        Failure::Panic(p) => RemoteError { kind: ErrorKind::Panicked, message: format!("the pool's initializer {p}") },
        Failure::Error(e) => RemoteError::from(e),
    };
    codec::frame_of(INIT_FAILED, &err, "an error").expect("a RemoteError always serializes")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task_of<F: Fn(u32) -> u32 + Copy + 'static>(_: F) -> TaskId {
        chunk_task::<F, u32, u32>()
    }

    fn halve(x: u32) -> u32 {
        assert!(x.is_multiple_of(2), "odd: {x}");
        x / 2
    }

    #[test]
    fn a_chunk_round_trips_with_per_item_outcomes() {
        let mut frame = Vec::new();
        let head = ChunkHead { job: 7, index: 3, task: task_of(halve), delivery: Delivery::Bulk };
        let count = append_task(&mut frame, &head, [4u32, 5, 6]).unwrap();
        assert_eq!(count, 3);
        let parsed = codec::parse_frame(&frame, 1 << 20, "t").unwrap();
        assert_eq!(parsed.kind, TASK);
        assert_eq!(delivery(&parsed.payload), Delivery::Bulk);
        let mut out = Vec::new();
        run_task(&parsed.payload, &mut out).unwrap();
        let result = codec::parse_frame(&out, 1 << 20, "r").unwrap();
        assert_eq!(result.kind, RESULT);
        assert_eq!(result_head(&result.payload).unwrap(), (7, 3, 3));
        assert_eq!(failed_items(&result.payload), 1);
        let mut items = Outcomes::of(&result.payload);
        assert_eq!(items.next_item::<u32>().unwrap(), 2);
        let err = items.next_item::<u32>().unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Panicked);
        assert_eq!(err.panic_info().unwrap().message(), "odd: 5");
        assert_eq!(items.next_item::<u32>().unwrap(), 3);
        assert_eq!(items.next_item::<u32>().unwrap_err().kind(), ErrorKind::Protocol);
    }

    #[test]
    fn a_corrupt_task_is_refused() {
        let mut out = Vec::new();
        assert_eq!(run_task(&[0; 8], &mut out).unwrap_err().kind(), ErrorKind::Protocol);
        assert_eq!(run_task(&[0; 40], &mut out).unwrap_err().kind(), ErrorKind::Protocol);
        assert!(out.is_empty());
    }
}
