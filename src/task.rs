//! Task identity: a target function as a number that means the same thing
//! in every process that runs this executable.
//!
//! `trampoline::<F, A, R>` decodes an `A`, calls the zero-sized `F`, and
//! encodes the `R` (or the panic) as a reply frame. Its address minus the
//! address of [`anchor`] is the same in a forked, a re-exec'd and a
//! fork-server child, because ASLR moves the whole executable as one piece;
//! that offset is the task id. A child accepts an id only with a tag keyed
//! on the build fingerprint, so corrupt ids and other builds are refused
//! before anything is called.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::OnceLock;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::codec::{self, kind};
use crate::error::{Error, ErrorKind, Result};
use crate::{child, sys};

/// A reply-producing entry point: the encoded argument in, a whole reply
/// frame out.
pub(crate) type Trampoline = fn(&[u8]) -> Vec<u8>;

/// The fixed point that task offsets are measured from.
#[inline(never)]
fn anchor() -> u64 {
    // A distinctive body, so that the linker has no reason to fold it with
    // another function (folding would still be harmless: the address would
    // stay fixed within the executable).
    std::hint::black_box(0x6d75_6c74_6970_726f)
}

fn anchor_addr() -> usize {
    anchor as fn() -> u64 as usize
}

/// A target function, ready to run here or to be named to another process.
#[derive(Clone, Copy)]
pub(crate) struct Task {
    pub(crate) call: Trampoline,
}

impl std::fmt::Debug for Task {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Task").field("id", &self.id()).finish()
    }
}

impl Task {
    /// The task for target type `F`. Refuses, at compile time, any `F` that
    /// is not zero-sized: a closure that captures, or a fn pointer.
    pub(crate) fn of<F, A, R>(_target: F) -> Task
    where
        F: Fn(A) -> R + Copy + 'static,
        A: DeserializeOwned + 'static,
        R: Serialize + 'static,
    {
        const {
            assert!(
                std::mem::size_of::<F>() == 0,
                "multiproc: a process target must be a fn item or a closure that captures nothing. \
                 A capturing closure or a fn pointer cannot be named in another process; pass the \
                 captured values through the argument instead."
            )
        };
        Task {
            call: trampoline::<F, A, R>,
        }
    }

    /// This task's id, valid in any process running this executable.
    pub(crate) fn id(&self) -> TaskId {
        let offset = (self.call as usize).wrapping_sub(anchor_addr()) as u64;
        TaskId {
            offset,
            tag: tag(offset),
        }
    }
}

/// A task as it travels: an offset from the anchor, and its keyed tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct TaskId {
    pub(crate) offset: u64,
    pub(crate) tag: u64,
}

impl TaskId {
    /// The trampoline this id names, if its tag is right for this build.
    pub(crate) fn resolve(self) -> Result<Trampoline> {
        if self.tag != tag(self.offset) {
            return Err(Error::new(
                ErrorKind::Protocol,
                format!(
                    "refused task id {:#x}: its tag does not match this build; the id is corrupt or \
                     comes from another executable, so nothing was run",
                    self.offset
                ),
            ));
        }
        Ok(sys::fn_at(anchor_addr(), self.offset))
    }
}

fn tag(offset: u64) -> u64 {
    let mut h = DefaultHasher::new();
    fingerprint().hash(&mut h);
    offset.hash(&mut h);
    0x6d70u16.hash(&mut h);
    h.finish()
}

/// The build fingerprint of this executable: its GNU build-id, or, when the
/// linker wrote none, a hash of the executable file.
pub(crate) fn fingerprint() -> &'static [u8] {
    static FP: OnceLock<Vec<u8>> = OnceLock::new();
    FP.get_or_init(|| {
        sys::build_id().unwrap_or_else(|| {
            let mut h = DefaultHasher::new();
            match std::fs::read("/proc/self/exe") {
                Ok(bytes) => bytes.hash(&mut h),
                Err(_) => anchor_addr().hash(&mut h),
            }
            h.finish().to_le_bytes().to_vec()
        })
    })
}

/// Runs target `F` on an encoded argument and returns the reply frame.
fn trampoline<F, A, R>(input: &[u8]) -> Vec<u8>
where
    F: Fn(A) -> R + Copy + 'static,
    A: DeserializeOwned + 'static,
    R: Serialize + 'static,
{
    let f: F = sys::conjure::<F>();
    child::run_guarded(move || {
        let arg: A = codec::decode(input, "the argument")?;
        let value = f(arg);
        codec::frame_of(kind::VALUE, &value, "the return value")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn double(x: u64) -> u64 {
        x * 2
    }

    #[test]
    fn ids_resolve_to_the_same_function() {
        let task = Task::of::<_, u64, u64>(double);
        let call = task.id().resolve().unwrap();
        assert_eq!(call as usize, task.call as usize);
        let reply = call(&codec::encode(&21u64, "x").unwrap());
        assert_eq!(codec::kind_of(&reply), kind::VALUE);
        assert_eq!(
            codec::decode::<u64>(&reply[codec::HEADER..], "x").unwrap(),
            42
        );
    }

    #[test]
    fn a_garbage_task_id_is_refused_without_calling_anything() {
        let id = Task::of::<_, u64, u64>(double).id();
        for bad in [
            TaskId {
                offset: id.offset,
                tag: id.tag ^ 1,
            },
            TaskId {
                offset: id.offset + 8,
                tag: id.tag,
            },
            TaskId {
                offset: 0xdead_beef,
                tag: 0x1234,
            },
        ] {
            assert_eq!(bad.resolve().unwrap_err().kind(), ErrorKind::Protocol);
        }
    }

    #[test]
    fn fingerprint_is_stable_and_non_empty() {
        assert!(!fingerprint().is_empty());
        assert_eq!(fingerprint(), fingerprint());
    }
}
