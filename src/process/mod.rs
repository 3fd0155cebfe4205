//! Processes: [`Process`] builds one, [`Child`] is the handle on it, and
//! [`current_process`], [`parent_process`] and [`active_children`] say who
//! is who.

mod builder;
mod handle;
mod info;
mod launch;
pub(crate) mod reaper;
mod shared;
mod test;

pub use builder::Process;
pub use handle::Child;
pub use info::{ParentProcess, ProcessInfo, active_children, current_process, parent_process};
pub(crate) use shared::ChildShared;
