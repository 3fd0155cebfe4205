//! The task envelope, for the fuzz targets (feature `fuzzing`): the bytes
//! a spawn or fork-server child reads to learn what to run, opened by the
//! child's own code (`serve::open_task`), which checks the frame, the
//! header, the build fingerprint and the task id's tag, and calls nothing.
//!
//! An input is one byte that says what to do, then its bytes. Bit 0 clear:
//! the rest is what the parent sent. Bit 0 set: the rest is an id mask
//! (16 bytes, missing ones read as zeros) and an encoded argument, made
//! into the task frame of this build for the probe target (which takes a
//! `(String, Vec<u16>)`), as a parent makes one but with the id XORed with
//! the mask. Bit 1 clear: the child is a fork-server child that has the
//! frame in memory (inline); set: it reads the frame from its control
//! socket, as a spawn child does.

use std::io::Write;
use std::os::unix::net::UnixStream;

use super::registry;
use super::serve::{self, ChildInfo, open_task};
use super::task::{Task, TaskId};
use super::trampoline::Trampoline;
use crate::codec::{self, FrameBuf, kind};
use crate::context::StartMethod;
use crate::error::{Error, Result};
use crate::sys::AsFd;

/// What a child learned from a task frame it accepted.
#[derive(Debug)]
pub struct TaskEnvelope {
    /// Whether the task id names the probe target, the one id the fuzz
    /// targets are given: an accepted id that does not was forged.
    pub is_probe: bool,
    /// The encoded argument the target would be called with.
    pub argument: Vec<u8>,
}

/// Opens one input's task frame (see the module documentation) as the
/// child does. `Ok(None)` when the parent closed the socket before a frame
/// began (the child then leaves at once, quietly).
///
/// # Errors
///
/// `FrameTooLarge` or `Protocol` for a bad frame, `Deserialize` for a
/// header that does not decode, `Protocol` for another protocol version or
/// an id whose tag does not match, `BuildMismatch` for another build.
pub fn task_envelope(data: &[u8]) -> Result<Option<TaskEnvelope>> {
    let Some((&how, rest)) = data.split_first() else {
        return Ok(None);
    };
    let probe;
    let bytes = if how & 1 == 1 {
        let mut mask = [0u8; 16];
        let n = rest.len().min(16);
        mask[..n].copy_from_slice(&rest[..n]);
        probe = probe_frame(mask, &rest[n..])?;
        &probe[..]
    } else {
        rest
    };
    let limit = codec::max_frame_size();
    let frame = if how & 2 == 0 {
        codec::parse_frame(bytes, limit, "the task")?
    } else {
        let (parent, child) = UnixStream::pair().map_err(|e| Error::io("creating a control socket", e))?;
        // Fuzz inputs are a few KiB: the socket buffer takes them whole.
        (&parent).write_all(bytes).map_err(|e| Error::io("writing the task", e))?;
        drop(parent);
        match codec::read_frame_with_fds(child.as_fd(), limit, "the task stream")? {
            Some((frame, _fds)) => frame,
            None => return Ok(None),
        }
    };
    let (_info, call, arg): (ChildInfo, Trampoline, &[u8]) = open_task(&frame)?;
    Ok(Some(TaskEnvelope { is_probe: call as usize == probe_task().call as usize, argument: arg.to_vec() }))
}

/// The probe target; nothing calls it.
fn probe(arg: (String, Vec<u16>)) -> u64 {
    (arg.0.len() + arg.1.len()) as u64
}

fn probe_task() -> Task {
    Task::of(probe)
}

/// The probe's task frame, its id XORed with `mask`.
fn probe_frame(mask: [u8; 16], arg: &[u8]) -> Result<Vec<u8>> {
    let id = probe_task().id();
    let word = |at: usize| u64::from_le_bytes(mask[at..at + 8].try_into().expect("8 bytes"));
    let id = TaskId { offset: id.offset ^ word(0), tag: id.tag ^ word(8) };
    let info = registry::lock().next_child_info(Some("fuzz".into()), Some(false), StartMethod::Spawn, Vec::new());
    serve::task_frame(id, &info, arg)
}

/// Seed inputs for `task_envelope`, named: the probe's frame as it is and
/// with its id changed, task frames as a parent sends them (refused by
/// any other build, the fuzz targets included, for their fingerprint),
/// and a few edge cases.
pub(crate) fn seeds() -> Result<Vec<(&'static str, Vec<u8>)>> {
    let arg = codec::encode(&("hello".to_owned(), vec![1u16, 2, 3]), "a seed")?;
    let mut one_bit = [0u8; 16];
    one_bit[8] = 1;
    let info = |method, env| registry::lock().next_child_info(Some("seed".into()), Some(true), method, env);
    let sent = serve::task_frame(probe_task().id(), &info(StartMethod::Spawn, Vec::new()), &arg)?;
    let env = vec![(b"MULTIPROC_SEED".to_vec(), b"1".to_vec()), (b"EMPTY".to_vec(), Vec::new())];
    let with_env = serve::task_frame(probe_task().id(), &info(StartMethod::ForkServer, env), &arg)?;
    let mut junk = FrameBuf::new();
    junk.extend(b"\xff\xfe\xfd not a task header");
    let huge = ((u64::from(kind::TASK) << 56) | 1 << 40).to_le_bytes();
    Ok(vec![
        ("probe-inline", [&[1u8][..], &[0; 16], &arg].concat()),
        ("probe-socket", [&[3u8][..], &[0; 16], &arg].concat()),
        ("probe-tag-bit", [&[1u8][..], &one_bit, &arg].concat()),
        ("probe-offset-8", [&[1u8][..], &[8], &[0; 15], &arg].concat()),
        ("probe-empty-argument", vec![1u8]),
        ("sent-inline", [&[0u8][..], &sent].concat()),
        ("sent-socket", [&[2u8][..], &sent].concat()),
        ("sent-with-env", [&[0u8][..], &with_env].concat()),
        ("sent-cut-short", [&[2u8][..], &sent[..sent.len() / 2]].concat()),
        ("sent-value-kind", [&[0u8][..], &FrameBuf::new().finish(kind::VALUE)].concat()),
        ("sent-junk-header", [&[0u8][..], &junk.finish(kind::TASK)].concat()),
        ("sent-huge-frame", [&[2u8][..], &huge].concat()),
        ("sent-nothing", vec![2u8]),
    ])
}
