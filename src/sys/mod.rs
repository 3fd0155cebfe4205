//! Every operating-system call multiproc makes, and the only module that may
//! use `unsafe`.
//!
//! Each function here is safe to call, `pub(crate)`, and returns
//! `io::Result` or owns its fds; the exceptions are the raw views of a
//! `SharedMemory` (`buf`/`buf_mut`), public `unsafe fn`s whose callers
//! promise that nobody writes the bytes meanwhile. Code that runs in a forked child before
//! `execve` says why it is async-signal-safe. Linux is the only target.

#![allow(unsafe_code)]

mod cast;
mod counting_alloc;
mod elf;
mod env;
mod exit;
mod fd;
mod fork;
mod net;
mod posix_shm;
mod process;
mod shm;
mod signal;
mod title;

pub(crate) use cast::{as_bytes, as_str, downcast_ref};
pub use counting_alloc::{CountingAlloc, largest_allocation};
pub(crate) use elf::build_id;
pub(crate) use env::{Environ, remove_var};
pub(crate) use exit::{at_exit, exit_now, flush_c_stdio};
pub(crate) use fd::{
    MAX_FDS, PollFd, PollFlags, close_all_except, close_raw, eventfd, pipe, poll, read, recv_append, recv_fds, retire,
    send_all, send_fds, send_nonblocking, send_vectored_all, set_nonblocking, shutdown_both, shutdown_read,
    shutdown_write, socketpair_seqpacket, socketpair_stream, take_inherited, write_all,
};
pub(crate) use fork::{CHILD_FD, ExecSpec, Forked, fork, raw_fork_and_wait, spawn_exec};
pub(crate) use net::{
    accept, connect_tcp, connect_unix_abstract, connect_unix_path, listen_tcp, listen_unix_abstract, listen_unix_path,
    local_tcp_addr, set_nodelay,
};
pub(crate) use posix_shm::{
    FileId, SharedMap, detach, file_id, free_bytes, parent_pidfd, raw_fd_is, set_len, shm_create, shm_open, shm_unlink,
};
pub(crate) use process::{
    ExitStatus, cpu_count, getpid, gettid, is_main_thread, is_own_thread, kill_and_reap, pidfd_open, pidfd_signal,
    pidfd_wait, set_parent_death_kill,
};
pub(crate) use shm::{
    Locked, MUTEX_BYTES, Mapping, RobustMutex, file_len, futex_wait, futex_wake, grow_file, memfd, random_bytes,
};
#[cfg(test)]
pub(crate) use signal::block_sigterm_in_this_thread;
pub(crate) use signal::{
    SIGKILL, SIGTERM, ignore_sigint, ignore_sigpipe, reset_signal_mask, signal_name, watch_parent,
    watch_parent_from_thread,
};
pub(crate) use title::{prepare_title, set_title};

pub(crate) use rustix::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
