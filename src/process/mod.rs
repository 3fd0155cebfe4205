//! Processes: [`Process`] builds one, [`Child`] is the handle on it, and
//! [`current_process`], [`parent_process`] and [`active_children`] say who
//! is who. [`MemoryCap`] is how a child's memory limit is kept.

mod builder;
mod handle;
mod info;
mod memory;

pub use builder::Process;
pub use handle::Child;
pub use info::{ParentProcess, ProcessInfo, active_children, current_process, parent_process};
pub use memory::MemoryCap;
pub(crate) use memory::{ChildMemory, MemoryPlan, memory_exceeded};
