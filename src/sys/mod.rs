//! Every operating-system call multiproc makes, grouped by area as rustix
//! groups them, and the only module where `unsafe` is allowed throughout
//! (the other places are listed in the crate's documentation).
//!
//! | file | area |
//! |---|---|
//! | `fd.rs` | pipes, eventfds, reads and writes, `poll` and epoll, closing, `fstat`/`ftruncate` |
//! | `net.rs` | socket pairs, sends and receives, `SCM_RIGHTS`, listen/connect/accept |
//! | `mm.rs` | `memfd`, POSIX `shm_open`, and [`Mapping`], the one owner of a shared mapping (with [`GuardedMapping`] for bytes a lock guards) |
//! | `futex.rs` | futex waits and wakes, process-shared robust mutexes |
//! | `process.rs` | `fork`, `execve`, detaching, pidfds, waiting, exit status, `_exit`/`atexit`, the environment |
//! | `signal.rs` | dispositions, masks, the parent-death watch, signal names |
//! | `rand.rs` | `getrandom` |
//! | `title.rs` | process titles (`argv[0]`, `PR_SET_NAME`) |
//! | `elf.rs` | the executable's GNU build-id |
//! | `cgroup.rs` | memory cgroups (v2, or v1's memory controller): a group per child with a limit, its OOM kills and peak |
//!
//! Each function here is safe to call, `pub(crate)`, and returns
//! `io::Result` or owns its fds, as rustix's do; the exceptions are
//! [`Mapping::as_slice`] and [`Mapping::as_mut_slice`], `unsafe fn`s whose
//! callers promise that nobody writes the bytes meanwhile, and the plain
//! byte access of a [`GuardedMapping`], which is sound because its users
//! (a queue's ring, a `Value`) reach those bytes only under their
//! process-shared lock. Code that runs in a forked child before `execve`
//! says why it is async-signal-safe. Linux is the only target.

#![allow(unsafe_code)]

mod cgroup;
mod elf;
mod fd;
mod futex;
mod mm;
mod net;
mod process;
mod rand;
mod signal;
mod title;

pub(crate) use cgroup::{MemoryGroup, join_memory_group, memory_group_usage, memory_groups};
pub(crate) use elf::build_id;
pub(crate) use fd::{
    FileId, PollFd, PollFlags, Poller, close_all_except, close_raw, close_raw_all, dup_onto_stderr, dup_onto_stdout,
    eventfd, file_id, file_len, grow_file, is_out_of_fds, page_size, pipe, poll, raw_fd_is, read, read_file_at, retire,
    set_len, set_nonblocking, take_inherited, write_all,
};
pub(crate) use futex::{Locked, MUTEX_BYTES, RobustMutex, futex_wait, futex_wake};
pub(crate) use mm::{
    GuardedMapping, Mapping, ShmVec, free_bytes, keep_freed_memory, memfd, shm_create, shm_open, shm_unlink,
};
pub(crate) use net::{
    MAX_FDS, accept, connect_tcp, connect_unix_abstract, connect_unix_path, listen_tcp, listen_unix_abstract,
    listen_unix_path, local_tcp_addr, peer_tcp_addr, recv_append, recv_fds, send_all, send_fds, send_vectored_all,
    send_vectored_nonblocking, set_nodelay, shutdown_both, shutdown_read, shutdown_write, socketpair_seqpacket,
    socketpair_stream,
};
pub(crate) use process::{
    CHILD_FD, Environ, ExecSpec, ExitStatus, Forked, at_exit, cpu_count, detach, exit_now, flush_c_stdio, fork, getpid,
    gettid, has_exited, is_main_thread, is_own_thread, is_stopped_or_gone, kill_and_reap, own_pid, parent_pidfd,
    peak_rss, pidfd_open, pidfd_signal, pidfd_wait, remove_var, reset_peak_rss, rss_of, set_parent_death_kill,
    spawn_exec, thread_cpu_time,
};
pub(crate) use rand::random_bytes;
#[cfg(test)]
pub(crate) use signal::block_sigterm_in_this_thread;
pub(crate) use signal::{
    SIGABRT, SIGCONT, SIGINT, SIGKILL, SIGSTOP, SIGTERM, forget_out_of_memory, hold_sigint, hold_sigint_for_fork,
    ignore_sigpipe, interrupt_only_when_sent, limit_data_growth, note_out_of_memory, reply_on_out_of_memory,
    reset_signal_mask, signal_name, watch_parent, watch_parent_from_thread,
};
pub(crate) use title::{prepare_title, set_title};

pub(crate) use rustix::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
