//! What the dispatcher and a pool worker say to each other, and the typed
//! code that runs a chunk in the worker.
//!
//! Frames (`codec::frame` headers) on the worker's control socket:
//! - parent → worker `TASK`: job id (u64), chunk index (u32), first item
//!   (u32: where these items start in the chunk, which is more than 0 for
//!   the rest of a chunk sent again), item count (u32), chunk trampoline
//!   id (offset u64, tag u64), delivery (u32: 0 prompt, 1 bulk), then the
//!   encoded items one after another;
//! - parent → worker `EXIT`: leave once this frame is read;
//! - worker → parent `RESULT`: job id, chunk index, first item, item count,
//!   failed item count (u32), then one outcome per item: a tag byte (`OK`,
//!   `PANIC`, `ERROR`) and the encoded value, `PanicInfo` or `RemoteError`.
//!   The count may be lower than the task's: the worker stops a chunk after
//!   an item whose argument it could not decode (it no longer knows where
//!   the next one starts), and the parent sends the rest again;
//! - worker → parent `INIT_FAILED`: the initializer's `RemoteError`;
//! - worker → parent `READY`: started and initialized.
//!
//! All integers are little-endian. A worker runs its frames in order, so
//! results come back in the order the chunks were sent to it. Every frame
//! a worker sends passes through its status page's buffer (`status.rs`).

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::status::WorkerPage;
use crate::codec::{self, Sink};
use crate::error::{Error, ErrorKind, PanicInfo, RemoteError, Result};
use crate::runtime::{self, ChunkTrampoline, Failure, TaskId};
use crate::sys;

pub(crate) const TASK: u8 = 16;
pub(crate) const EXIT: u8 = 17;
pub(crate) const RESULT: u8 = 18;
pub(crate) const INIT_FAILED: u8 = 19;
/// A worker is set up (started, initializer done).
pub(crate) const READY: u8 = 20;
/// The CPU time and peak memory of the chunk whose `RESULT` follows
/// (pools with `track_usage`).
pub(crate) const USAGE: u8 = 21;
/// Bytes of a `USAGE` payload: job, chunk index, CPU nanoseconds, peak
/// resident bytes.
pub(crate) const USAGE_LEN: usize = 28;

const OK: u8 = 0;
const PANIC: u8 = 1;
const ERROR: u8 = 2;

/// Bytes before the items of a `TASK` payload.
const TASK_HEAD: usize = 40;
/// Bytes before the outcomes of a `RESULT` payload.
pub(crate) const RESULT_HEAD: usize = 24;

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

/// Where each item's encoded argument starts in a `TASK` frame's items,
/// so that the parent can send the rest of a chunk again from any item
/// without decoding anything. Items of one size (plain numbers) need no
/// list.
#[derive(Debug, Clone)]
pub(crate) enum ItemOffsets {
    /// Item `i` starts at `i * stride`.
    Stride(usize),
    /// Item `i` starts at `list[i]`.
    List(Vec<u32>),
}

impl ItemOffsets {
    fn at(&self, i: u32) -> usize {
        match self {
            ItemOffsets::Stride(stride) => i as usize * stride,
            ItemOffsets::List(list) => list.get(i as usize).map_or(usize::MAX, |&o| o as usize),
        }
    }

    /// The offsets of the items from `skip` on, from where they start.
    fn after(&self, skip: u32) -> ItemOffsets {
        match self {
            ItemOffsets::Stride(stride) => ItemOffsets::Stride(*stride),
            ItemOffsets::List(list) => {
                let from = list.get(skip as usize).copied().unwrap_or(0);
                ItemOffsets::List(list.iter().skip(skip as usize).map(|&o| o - from).collect())
            }
        }
    }
}

/// The chunk entry point of target `F`, as an id a worker can resolve.
pub(crate) fn chunk_task<F, A, R>() -> TaskId
where
    F: Fn(A) -> R + Copy + 'static,
    A: DeserializeOwned + 'static,
    R: Serialize + 'static,
{
    let (offset, tag) = runtime::chunk_id_of::<WorkerPage>(run_chunk::<F, A, R>);
    TaskId { offset, tag }
}

/// Runs `F` over `count` encoded arguments, appending one outcome per item
/// to the page's buffer and logging each item's start and end in its
/// header (see `status.rs`). Each item is guarded on its own: a panic or an
/// error in `F`, or in encoding its value, fails that item and the next one
/// runs. An argument that cannot be decoded (an error, or a panic in its
/// `Deserialize`) fails its item and ends the chunk there: where the next
/// argument starts is then unknown, so the parent sends the rest again.
///
/// The panic guard covers a run of items, not each one: catching costs
/// nothing until something panics, and then the run resumes after the item
/// that panicked.
fn run_chunk<F, A, R>(items: &[u8], count: u32, page: &mut WorkerPage)
where
    F: Fn(A) -> R + Copy + 'static,
    A: DeserializeOwned + 'static,
    R: Serialize + 'static,
{
    let f: F = runtime::conjure::<F, A, R>();
    let WorkerPage { out, log, .. } = page;
    let mut args = codec::Decoder::new(items);
    let mut next = 0u32;
    // Where the current item's outcome starts, to undo it after a panic.
    // An item whose outcome is still empty there panicked while decoding
    // its argument (its `OK` tag goes in before the target runs).
    let mut start = 0usize;
    let mut stop = false;
    while next < count && !stop {
        let run = runtime::catch_panic(|| {
            let mut enc = codec::Encoder::new(&mut *out);
            log.start_item(next);
            while next < count {
                let item = next;
                next += 1;
                start = enc.buf().len();
                let failed = match args.next_item::<A>("a task's argument") {
                    Ok(arg) => {
                        enc.buf().push(OK);
                        match enc.push_item(&f(arg), "a task's return value") {
                            Ok(()) => false,
                            Err(e) => {
                                enc.buf().truncate(start);
                                push_failure(enc.buf(), &Failure::Error(e));
                                true
                            }
                        }
                    }
                    Err(e) => {
                        stop = true;
                        push_failure(enc.buf(), &Failure::Error(e));
                        true
                    }
                };
                // One log entry ends this item and starts the next.
                if next < count && !stop {
                    log.next_item(item, failed, enc.buf().len());
                } else {
                    log.finish_item(item, failed, enc.buf().len());
                    return;
                }
            }
        });
        if let Err(panic) = run {
            stop |= out.len() == start;
            out.truncate(start);
            push_failure(out, &Failure::Panic(panic));
            log.finish_item(next - 1, true, out.len());
        }
    }
}

fn push_failure<S: Sink + ?Sized>(out: &mut S, failure: &Failure) {
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
/// `items`: their count, and where each starts.
pub(crate) fn append_task<I, A>(out: &mut Vec<u8>, head: &ChunkHead, items: I) -> Result<(u32, ItemOffsets)>
where
    I: IntoIterator<Item = A>,
    A: Serialize + 'static,
{
    let mut count = 0u32;
    let mut offsets = None;
    let mut stride = None;
    codec::append_frame(out, TASK, |buf| {
        let at = buf.len();
        buf.extend_from_slice(&[0; TASK_HEAD]);
        let items_at = buf.len();
        let mut enc = codec::Encoder::new(buf);
        if let Some(size) = codec::fixed_item_size::<A>() {
            // Every item has the same size: nothing to track per item.
            stride = Some(size);
            for item in items {
                enc.push_item(&item, "a task's argument")?;
                count = count.checked_add(1).ok_or_else(too_many_items)?;
            }
            write_task_head(&mut buf[at..at + TASK_HEAD], head, 0, count);
            return Ok(());
        }
        for item in items {
            let begin = enc.buf().len() - items_at;
            enc.push_item(&item, "a task's argument")?;
            let len = enc.buf().len() - items_at - begin;
            // Offsets are kept only once items differ in size.
            match (&mut offsets, stride) {
                (None, None) => stride = Some(len),
                (None, Some(s)) if s == len => {}
                (None, Some(s)) => {
                    let mut list: Vec<u32> = (0..count).map(|i| (i as usize * s) as u32).collect();
                    list.push(begin as u32);
                    offsets = Some(list);
                }
                (Some(list), _) => list.push(begin as u32),
            }
            count = count.checked_add(1).ok_or_else(too_many_items)?;
        }
        if buf.len() - items_at > u32::MAX as usize && offsets.is_some() {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                "a chunk's encoded arguments are above 4 GiB; use a smaller chunksize",
            ));
        }
        write_task_head(&mut buf[at..at + TASK_HEAD], head, 0, count);
        Ok(())
    })?;
    let offsets = match offsets {
        Some(list) => ItemOffsets::List(list),
        None => ItemOffsets::Stride(stride.unwrap_or(0)),
    };
    Ok((count, offsets))
}

fn too_many_items() -> Error {
    Error::new(ErrorKind::InvalidInput, "more than 2^32 items in one chunk; use a smaller chunksize")
}

fn write_task_head(h: &mut [u8], head: &ChunkHead, first: u32, count: u32) {
    h[0..8].copy_from_slice(&head.job.to_le_bytes());
    h[8..12].copy_from_slice(&head.index.to_le_bytes());
    h[12..16].copy_from_slice(&first.to_le_bytes());
    h[16..20].copy_from_slice(&count.to_le_bytes());
    h[20..28].copy_from_slice(&head.task.offset.to_le_bytes());
    h[28..36].copy_from_slice(&head.task.tag.to_le_bytes());
    h[36..40].copy_from_slice(&u32::from(head.delivery == Delivery::Bulk).to_le_bytes());
}

/// The `TASK` frame for items `skip..` of the chunk whose whole frame is
/// `frame`, and where its items start: the rest of a chunk, to send again.
pub(crate) fn rest_of_task(frame: &[u8], offsets: &ItemOffsets, skip: u32) -> (Vec<u8>, ItemOffsets) {
    let payload = &frame[codec::HEADER..];
    let (first, count) = (u32_at(payload, 12), u32_at(payload, 16));
    let items = &payload[TASK_HEAD..];
    let from = offsets.at(skip).min(items.len());
    let mut out = Vec::with_capacity(codec::HEADER + TASK_HEAD + items.len() - from);
    codec::append_frame(&mut out, TASK, |buf| {
        buf.extend_from_slice(&payload[..TASK_HEAD]);
        let h = &mut buf[codec::HEADER..codec::HEADER + TASK_HEAD];
        h[12..16].copy_from_slice(&(first + skip).to_le_bytes());
        h[16..20].copy_from_slice(&(count - skip).to_le_bytes());
        buf.extend_from_slice(&items[from..]);
        Ok(())
    })
    .expect("copying bytes cannot fail");
    (out, offsets.after(skip))
}

/// How the result of a `TASK` payload should be delivered.
pub(crate) fn delivery(payload: &[u8]) -> Delivery {
    match payload.get(36..40) {
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

/// The entry point a `TASK` payload names, checked before anything is
/// written: `None` for an id that does not resolve here, whose items are
/// then refused one by one, in a result frame within the frame-size limit.
fn open_task(payload: &[u8]) -> Result<Option<ChunkTrampoline<WorkerPage>>> {
    if payload.len() < TASK_HEAD {
        return Err(short("task"));
    }
    let call = runtime::resolve_chunk(u64_at(payload, 20), u64_at(payload, 28));
    if call.is_none() {
        // A count no result frame can answer is not believed: the id is
        // corrupt, and so may the count be (2^32 refusals are hundreds of
        // GiB).
        let count = u32_at(payload, 16);
        let result = (RESULT_HEAD as u64).saturating_add(u64::from(count).saturating_mul(refusal().len() as u64));
        if result > codec::max_frame_size() {
            return Err(Error::new(
                ErrorKind::Protocol,
                format!(
                    "refused a pool task whose id does not match this build and whose {count} items are more than \
                     a result frame can refuse; the stream is corrupt, and nothing was run"
                ),
            ));
        }
    }
    Ok(call)
}

/// Runs a `TASK` payload, the worker's chunk number `seq`, and appends
/// its `RESULT` frame to the page's buffer (whole once this returns).
pub(crate) fn run_task(payload: &[u8], seq: u64, page: &mut WorkerPage) -> Result<()> {
    let call = open_task(payload)?;
    run_opened(payload, call, seq, page);
    Ok(())
}

fn run_opened(payload: &[u8], call: Option<ChunkTrampoline<WorkerPage>>, seq: u64, page: &mut WorkerPage) {
    let (job, index, first, count) = (u64_at(payload, 0), u32_at(payload, 8), u32_at(payload, 12), u32_at(payload, 16));
    // Results are about as big as the arguments: reserve that much once.
    page.out.reserve(payload.len() + 64);
    let frame_start = page.out.len();
    page.out.extend_from_slice(&[0; codec::HEADER]);
    let head_at = page.out.len();
    page.out.extend_from_slice(&job.to_le_bytes());
    page.out.extend_from_slice(&index.to_le_bytes());
    page.out.extend_from_slice(&first.to_le_bytes());
    page.out.extend_from_slice(&[0; 8]);
    page.log.begin_chunk(seq, frame_start, page.out.len());
    match call {
        Some(call) => call(&payload[TASK_HEAD..], count, page),
        None => refuse_all(count, page),
    }
    let (done, failed) = page.log.done();
    let len = (page.out.len() - head_at) as u64;
    let written = page.out.written_mut();
    written[head_at + 16..head_at + 20].copy_from_slice(&done.to_le_bytes());
    written[head_at + 20..head_at + 24].copy_from_slice(&failed.to_le_bytes());
    let header = (u64::from(RESULT) << 56) | (len & codec::LEN_MASK);
    written[frame_start..head_at].copy_from_slice(&header.to_le_bytes());
    page.commit();
}

/// Runs a `TASK` chunk like [`run_task`], and puts a `USAGE` frame before
/// its `RESULT`: the CPU time of the chunk and the worker's peak resident
/// memory while it ran.
pub(crate) fn run_task_measured(payload: &[u8], seq: u64, page: &mut WorkerPage) -> Result<()> {
    let call = open_task(payload)?;
    let at = page.out.len();
    page.out.extend_from_slice(&((u64::from(USAGE) << 56) | USAGE_LEN as u64).to_le_bytes());
    page.out.extend_from_slice(&payload[..12]);
    page.out.extend_from_slice(&[0; 16]);
    sys::reset_peak_rss();
    let cpu = sys::thread_cpu_time();
    run_opened(payload, call, seq, page);
    let cpu = (sys::thread_cpu_time().saturating_sub(cpu)).as_nanos().min(u128::from(u64::MAX)) as u64;
    let peak = sys::peak_rss().unwrap_or(0);
    let written = page.out.written_mut();
    written[at + codec::HEADER + 12..at + codec::HEADER + 20].copy_from_slice(&cpu.to_le_bytes());
    written[at + codec::HEADER + 20..at + codec::HEADER + 28].copy_from_slice(&peak.to_le_bytes());
    Ok(())
}

/// A `USAGE` payload: job id, chunk index, CPU time, peak resident bytes.
pub(crate) fn usage(payload: &[u8]) -> Result<(u64, u32, std::time::Duration, u64)> {
    if payload.len() < USAGE_LEN {
        return Err(short("usage"));
    }
    Ok((
        u64_at(payload, 0),
        u32_at(payload, 8),
        std::time::Duration::from_nanos(u64_at(payload, 12)),
        u64_at(payload, 20),
    ))
}

/// The outcome of an item of a chunk whose task id does not resolve here.
fn refusal() -> Vec<u8> {
    let refused = Failure::Error(Error::new(
        ErrorKind::Protocol,
        "refused a pool task whose id does not match this build; nothing was run",
    ));
    let mut outcome = Vec::new();
    push_failure(&mut outcome, &refused);
    outcome
}

/// Fails every item of a chunk whose task id does not resolve here.
fn refuse_all(count: u32, page: &mut WorkerPage) {
    let refused = refusal();
    for item in 0..count {
        page.log.start_item(item);
        page.out.extend_from_slice(&refused);
        page.log.finish_item(item, true, page.out.len());
    }
}

/// The head of a `RESULT` payload: job id, chunk index, first item, item
/// count.
pub(crate) fn result_head(payload: &[u8]) -> Result<(u64, u32, u32, u32)> {
    if payload.len() < RESULT_HEAD {
        return Err(short("result"));
    }
    Ok((u64_at(payload, 0), u32_at(payload, 8), u32_at(payload, 12), u32_at(payload, 16)))
}

/// Whether a `RESULT` whose head is `head` (job id, chunk index, first
/// item, item count) answers the chunk `sent` (the same, as it was sent):
/// the same chunk from the same item, with no more items than were sent.
pub(crate) fn answers(head: (u64, u32, u32, u32), sent: (u64, u32, u32, u32)) -> bool {
    let ((job, index, first, count), (sent_job, sent_index, sent_first, sent_count)) = (head, sent);
    job == sent_job && index == sent_index && first == sent_first && count <= sent_count
}

/// A `RESULT` payload for the first `count` outcomes of a chunk that a
/// worker did not finish, made from the outcome bytes it left behind.
pub(crate) fn partial_result(job: u64, index: u32, first: u32, count: u32, failed: u32, outcomes: &[u8]) -> Vec<u8> {
    let mut payload = Vec::with_capacity(RESULT_HEAD + outcomes.len());
    payload.extend_from_slice(&job.to_le_bytes());
    payload.extend_from_slice(&index.to_le_bytes());
    payload.extend_from_slice(&first.to_le_bytes());
    payload.extend_from_slice(&count.to_le_bytes());
    payload.extend_from_slice(&failed.to_le_bytes());
    payload.extend_from_slice(outcomes);
    payload
}

/// How many items of a `RESULT` payload failed.
pub(crate) fn failed_items(payload: &[u8]) -> u32 {
    if payload.len() < RESULT_HEAD {
        return u32::MAX;
    }
    u32_at(payload, 20)
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
        Failure::Panic(p) => RemoteError::new(ErrorKind::Panicked, format!("the pool's initializer {p}")),
        Failure::Error(e) => RemoteError::from(e),
    };
    codec::frame_of(INIT_FAILED, &err, "an error").expect("a RemoteError always serializes")
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;
    use crate::pool::status::StatusPage;

    fn task_of<F: Fn(u32) -> u32 + Copy + 'static>(_: F) -> TaskId {
        chunk_task::<F, u32, u32>()
    }

    fn halve(x: u32) -> u32 {
        assert!(x.is_multiple_of(2), "odd: {x}");
        x / 2
    }

    fn page() -> (StatusPage, WorkerPage) {
        let status = StatusPage::new().unwrap();
        let page = WorkerPage::attach(status.for_worker().unwrap()).unwrap();
        (status, page)
    }

    /// Runs `frame` as the worker's chunk `seq`; the `RESULT` frame.
    fn run(frame: &[u8], seq: u64, page: &mut WorkerPage) -> codec::Frame {
        let parsed = codec::parse_frame(frame, 1 << 20, "t").unwrap();
        assert_eq!(parsed.kind, TASK);
        let at = page.out.len();
        run_task(&parsed.payload, seq, page).unwrap();
        codec::parse_frame(&page.out.as_slice()[at..], 1 << 20, "r").unwrap()
    }

    #[test]
    fn a_chunk_round_trips_with_per_item_outcomes_and_a_status_trail() {
        let (status, mut page) = page();
        let mut frame = Vec::new();
        let head = ChunkHead { job: 7, index: 3, task: task_of(halve), delivery: Delivery::Bulk };
        let (count, offsets) = append_task(&mut frame, &head, [4u32, 5, 6]).unwrap();
        assert_eq!(count, 3);
        assert!(matches!(offsets, ItemOffsets::Stride(4)), "{offsets:?}");
        assert_eq!(delivery(&codec::parse_frame(&frame, 1 << 20, "t").unwrap().payload), Delivery::Bulk);
        let result = run(&frame, 9, &mut page);
        assert_eq!(result.kind, RESULT);
        assert_eq!(result_head(&result.payload).unwrap(), (7, 3, 0, 3));
        assert_eq!(failed_items(&result.payload), 1);
        let mut items = Outcomes::of(&result.payload);
        assert_eq!(items.next_item::<u32>().unwrap(), 2);
        let err = items.next_item::<u32>().unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Panicked);
        assert_eq!(err.panic_info().unwrap().message(), "odd: 5");
        assert_eq!(items.next_item::<u32>().unwrap(), 3);
        assert_eq!(items.next_item::<u32>().unwrap_err().kind(), ErrorKind::Protocol);
        let snap = status.snapshot();
        assert_eq!((snap.chunk, snap.progress.seq(), snap.progress.item(), snap.progress.running()), (9, 9, 3, false));
        assert_eq!((snap.committed, snap.failed, snap.items), (page.out.len() as u64, 1, 3));
    }

    /// A string that refuses to be decoded when it says so.
    #[derive(Debug, Serialize)]
    struct Touchy(String);

    impl<'de> Deserialize<'de> for Touchy {
        fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
            let s = String::deserialize(d)?;
            match s.as_str() {
                "refuse" => Err(serde::de::Error::custom("refused")),
                "panic" => panic!("a Deserialize that panics"),
                _ => Ok(Touchy(s)),
            }
        }
    }

    fn len_of(t: Touchy) -> usize {
        t.0.len()
    }

    #[test]
    fn an_argument_that_does_not_decode_fails_alone_and_the_rest_can_be_sent_again() {
        for bad in ["refuse", "panic"] {
            let (_status, mut page) = page();
            let words = ["a", "bb", bad, "dddd", "eeeee"];
            let mut frame = Vec::new();
            let head = ChunkHead { job: 1, index: 0, task: task_for(len_of), delivery: Delivery::Prompt };
            let items: Vec<Touchy> = words.iter().map(|w| Touchy(w.to_string())).collect();
            let (count, offsets) = append_task(&mut frame, &head, items).unwrap();
            assert_eq!(count, 5);
            assert!(matches!(offsets, ItemOffsets::List(_)), "{offsets:?}");
            let result = run(&frame, 0, &mut page);
            let (_, _, first, ran) = result_head(&result.payload).unwrap();
            assert_eq!((first, ran), (0, 3), "{bad}: the chunk stops after the item it cannot decode");
            let mut items = Outcomes::of(&result.payload);
            assert_eq!(items.next_item::<usize>().unwrap(), 1);
            assert_eq!(items.next_item::<usize>().unwrap(), 2);
            assert!(items.next_item::<usize>().is_err());
            // The parent sends the rest again, cut without decoding.
            let (rest, _) = rest_of_task(&frame, &offsets, 3);
            let result = run(&rest, 1, &mut page);
            assert_eq!(result_head(&result.payload).unwrap(), (1, 0, 3, 2));
            let mut items = Outcomes::of(&result.payload);
            assert_eq!((items.next_item::<usize>().unwrap(), items.next_item::<usize>().unwrap()), (4, 5));
        }
    }

    fn task_for<F: Fn(Touchy) -> usize + Copy + 'static>(_: F) -> TaskId {
        chunk_task::<F, Touchy, usize>()
    }

    /// Found by the `pool_wire` fuzz target: a `TASK` whose id does not
    /// resolve and whose count says 2^32 - 1 items had the worker write a
    /// refusal per item, hundreds of GiB, for a result no dispatcher takes.
    #[test]
    fn a_foreign_task_id_with_more_items_than_a_result_can_refuse_is_refused_whole() {
        let (_status, mut page) = page();
        let mut payload = [0u8; TASK_HEAD];
        payload[16..20].copy_from_slice(&u32::MAX.to_le_bytes());
        for run in [run_task, run_task_measured] {
            let started = std::time::Instant::now();
            let err = run(&payload, 0, &mut page).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::Protocol, "{err}");
            assert!(err.to_string().contains("nothing was run"), "{err}");
            assert_eq!(page.out.len(), 0, "nothing is written for a task refused whole");
            assert!(started.elapsed() < std::time::Duration::from_secs(1), "{:?}", started.elapsed());
        }
        // As many refusals as a result frame holds are still sent, each item
        // failing on its own.
        let mut frame = Vec::new();
        let mut task = task_of(halve);
        task.offset ^= 8;
        let head = ChunkHead { job: 3, index: 0, task, delivery: Delivery::Prompt };
        append_task(&mut frame, &head, std::iter::repeat_n(2u32, 1000)).unwrap();
        let result = run(&frame, 1, &mut page);
        assert_eq!(result_head(&result.payload).unwrap(), (3, 0, 0, 1000));
        assert_eq!(failed_items(&result.payload), 1000);
    }

    #[test]
    fn a_corrupt_task_is_refused_and_a_foreign_task_id_fails_each_item() {
        let (_status, mut page) = page();
        assert_eq!(run_task(&[0; 8], 0, &mut page).unwrap_err().kind(), ErrorKind::Protocol);
        assert_eq!(page.out.len(), 0);
        let mut frame = Vec::new();
        let mut task = task_of(halve);
        task.tag ^= 1;
        let head = ChunkHead { job: 2, index: 0, task, delivery: Delivery::Prompt };
        append_task(&mut frame, &head, [2u32, 4, 6]).unwrap();
        let result = run(&frame, 0, &mut page);
        assert_eq!(result_head(&result.payload).unwrap(), (2, 0, 0, 3));
        assert_eq!(failed_items(&result.payload), 3);
        let mut items = Outcomes::of(&result.payload);
        for _ in 0..3 {
            let err = items.next_item::<u32>().unwrap_err();
            assert_eq!(err.kind(), ErrorKind::Protocol, "{err}");
            assert!(err.to_string().contains("does not match this build"), "{err}");
        }
    }
}
