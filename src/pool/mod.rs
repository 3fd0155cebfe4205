//! Pools of worker processes: [`Pool`] (Python's `multiprocessing.Pool`
//! and `ProcessPoolExecutor` in one), its results ([`AsyncResult`],
//! [`IMap`], [`IMapUnordered`]) and the executor helpers ([`wait`],
//! [`as_completed`]).
//!
//! How it works: `dispatch.rs` (one thread per pool owns the workers'
//! sockets and pidfds), `worker.rs` (the loop in each worker process),
//! `wire.rs` (their frames), `job.rs` (result slots), and the handles.

mod builder;
mod dispatch;
mod executor;
mod handle;
mod iter;
mod job;
mod progress;
mod result;
mod star;
mod wire;
mod worker;

pub use builder::PoolBuilder;
pub use executor::{AsCompleted, Done, ReturnWhen, as_completed, wait};
pub use handle::{Calls, Pool};
pub use iter::{IMap, IMapUnordered};
pub use result::AsyncResult;
pub use star::StarFn;
