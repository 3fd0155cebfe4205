//! Task identity: a target function as a number that means the same thing
//! in every process that runs this executable.
//!
//! `trampoline::<F, A, R>` decodes an `A`, calls the zero-sized `F`, and
//! encodes the `R` (or the panic) as a reply frame. Its id, an offset from
//! a fixed anchor plus a tag checked against this build, is made and
//! resolved by `trampoline.rs`, which explains why the offset is the same
//! in every process and when an id is accepted.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::serve;
use super::trampoline::{self, Trampoline};
use crate::codec::{self, kind};
use crate::error::{Error, ErrorKind, Result};

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
        let () = super::trampoline::Nameable::<F>::CHECK;
        Task { call: trampoline::<F, A, R> }
    }

    /// This task's id, valid in any process running this executable.
    pub(crate) fn id(&self) -> TaskId {
        let (offset, tag) = trampoline::id_of(self.call);
        TaskId { offset, tag }
    }
}

/// A task as it travels: an offset from the anchor, and its tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct TaskId {
    pub(crate) offset: u64,
    pub(crate) tag: u64,
}

impl TaskId {
    /// The trampoline this id names, if its tag is right for this build.
    pub(crate) fn resolve(self) -> Result<Trampoline> {
        trampoline::resolve(self.offset, self.tag).ok_or_else(|| {
            Error::new(
                ErrorKind::Protocol,
                format!(
                    "refused task id {:#x}: its tag does not match this build; the id is corrupt or comes from \
                     another executable, so nothing was run",
                    self.offset
                ),
            )
        })
    }
}

/// Runs target `F` on an encoded argument and returns the reply frame.
fn trampoline<F, A, R>(input: &[u8]) -> Vec<u8>
where
    F: Fn(A) -> R + Copy + 'static,
    A: DeserializeOwned + 'static,
    R: Serialize + 'static,
{
    let f: F = trampoline::conjure::<F, A, R>();
    serve::run_guarded(move || {
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
        assert_eq!(codec::decode::<u64>(&reply[codec::HEADER..], "x").unwrap(), 42);
    }

    #[test]
    fn a_garbage_task_id_is_refused_without_calling_anything() {
        let id = Task::of::<_, u64, u64>(double).id();
        for bad in [
            TaskId { offset: id.offset, tag: id.tag ^ 1 },
            TaskId { offset: id.offset + 8, tag: id.tag },
            TaskId { offset: 0xdead_beef, tag: 0x1234 },
        ] {
            assert_eq!(bad.resolve().unwrap_err().kind(), ErrorKind::Protocol);
        }
    }
}
