//! Processes: [`Process`] builds one, [`Child`] is the handle on it, and
//! [`current_process`], [`parent_process`] and [`active_children`] say who
//! is who.

mod builder;
mod handle;
mod info;

pub use builder::Process;
pub use handle::Child;
pub use info::{ParentProcess, ProcessInfo, active_children, current_process, parent_process};
