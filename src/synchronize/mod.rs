//! Shared state between processes (Python's `multiprocessing.synchronize`
//! and `sharedctypes`): locks, semaphores, events, and plain data in
//! shared memory. Each object is a small memfd that every holder maps, so
//! nothing is left in `/dev/shm`, and each travels to children in
//! `Process::new`'s or a pool initializer's argument as that fd.

mod barrier;
pub(crate) mod block;
mod condition;
mod event;
mod lock;
mod semaphore;
mod value;

pub use barrier::Barrier;
pub use condition::{Condition, ConditionGuard, MAX_WAITERS};
pub use event::Event;
pub use lock::{Lock, LockGuard, RLock, RLockGuard};
pub use semaphore::{BoundedSemaphore, Semaphore};
pub use value::{Array, AtomicInt, AtomicValue, Value};
