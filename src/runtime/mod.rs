//! The process machinery: how a child comes to exist, runs its task, and
//! is accounted for until it has been reaped. The public facades
//! ([`Process`](crate::Process), [`Pool`](crate::Pool), the shared-memory
//! tracker) are built on what is here; nothing here is public.
//!
//! ```text
//!  Process / Pool                  public API (src/process/, src/pool/)
//!    │
//!    ▼
//!  task.rs, trampoline.rs          a target fn item → an id that means the same
//!                                  function in every process of this executable
//!    │
//!  launch.rs                       start the child with its encoded argument:
//!    ├── Fork        sys::fork, then serve::run in the copy
//!    ├── Spawn       sys::spawn_exec of /proc/self/exe; bootstrap.rs serves it
//!    └── ForkServer  forkserver.rs asks its exec'd server to fork one
//!    │
//!  serve.rs                        the child's side: check the task, run it
//!                                  under catch_unwind, reply, leave
//!    │
//!  record.rs                       the parent's record of the child: its pidfd,
//!                                  control socket, reply, and how it ended
//!  registry.rs, reaper.rs          every unreaped child of this process, who this
//!                                  process is; a thread that reaps dropped children
//! ```
//!
//! - **Bootstrap** (`bootstrap.rs`): a constructor that runs before `main`
//!   in every executable linking multiproc. `MULTIPROC_BOOTSTRAP` in the
//!   environment turns a re-exec'd process into a spawn child, the fork
//!   server, or a shared-memory tracker, which serves and exits, so the
//!   user's `main` never runs there. That is why spawn and forkserver need
//!   no line in `main`, in binaries, examples, tests, benches and doctests.
//! - **Task identity** (`task.rs`, `trampoline.rs`): every process here runs
//!   the same executable, so the address of `trampoline::<F, A, R>` minus
//!   that of an anchor function is the same number in all of them, even
//!   under ASLR. A child accepts such an offset only with a tag keyed on
//!   its build fingerprint (the GNU build-id, or a hash of the executable),
//!   and refuses another build with `ErrorKind::BuildMismatch` before
//!   anything runs.
//! - **Start methods** (`launch.rs`, `forkserver.rs`): a fork child runs the
//!   target in the copy; a spawn child is this program re-executed with its
//!   control socket on fd 3; a fork-server child is forked by one exec'd,
//!   single-threaded server (its protocol is documented in
//!   `forkserver.rs`).
//! - **The child's side** (`serve.rs`): check magic, fingerprint and task
//!   tag, run the target, reply with its value, panic (message and
//!   `file:line:column`) or error, then terminate daemon children, wait for
//!   the others, flush stdio and `_exit`.
//! - **The parent's side** (`record.rs`, `registry.rs`, `reaper.rs`): a
//!   [`ChildRecord`] per child, shared by its handle, the registry and the
//!   reaper; the registry is held across `fork()` and reset in the child, so
//!   that a forked child never keeps another child's fds.

mod bootstrap;
mod forkserver;
#[cfg(feature = "fuzzing")]
pub(crate) mod fuzz;
mod launch;
mod reaper;
mod record;
pub(crate) mod registry;
mod serve;
mod task;
#[cfg(test)]
mod test;
mod trampoline;

pub(crate) use bootstrap::{Role, exec_spec};
pub(crate) use launch::{Launch, launch};
pub(crate) use reaper::adopt;
pub(crate) use record::ChildRecord;
#[cfg(feature = "mpi")]
pub(crate) use serve::install_panic_hook;
pub(crate) use serve::{Failure, catch_panic, finish, own_memory_group, quiet_panics};
pub(crate) use task::{Task, TaskId};
#[cfg(feature = "mpi")]
pub(crate) use trampoline::fingerprint;
pub(crate) use trampoline::{ChunkTrampoline, chunk_id_of, conjure, conjure_method, resolve_chunk};
