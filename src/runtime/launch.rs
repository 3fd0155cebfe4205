//! Starting a child with each start method.

use std::ffi::{CString, OsString};
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::sync::Arc;

use super::bootstrap::{self, Role};
use super::record::{ChildRecord, Waiter};
use super::serve::{self, ChildInfo};
use super::task::Task;
use super::{forkserver, registry};
use crate::codec;
use crate::context::StartMethod;
use crate::error::{Error, Result};
use crate::process::MemoryPlan;
use crate::sys::{self, AsFd, Environ, Forked, OwnedFd};

/// Everything needed to start one child.
pub(crate) struct Launch<'a> {
    pub(crate) task: Task,
    /// The encoded argument, with the fds of the handles in it.
    pub(crate) arg: &'a codec::Encoded,
    pub(crate) name: Option<String>,
    pub(crate) daemon: Option<bool>,
    pub(crate) method: StartMethod,
    pub(crate) env: &'a [(OsString, OsString)],
    /// The caller reads the control socket itself (a pool worker).
    pub(crate) exclusive: bool,
    /// The child's hard memory limit, and the cgroup made for it.
    pub(crate) memory: Option<MemoryPlan>,
    /// The child's output goes to the parent, with log records at these
    /// levels (its pipes are the last fds of `arg`).
    pub(crate) forward_output: Option<crate::logging::Levels>,
}

/// Starts the child and records it in the registry.
pub(crate) fn launch(mut l: Launch<'_>) -> Result<Arc<ChildRecord>> {
    serve::install_panic_hook();
    // The record keeps the child's group until the child has been waited
    // for (if the start fails, the group goes now).
    let group = l.memory.as_mut().and_then(|m| m.group.take());
    let child = match l.method {
        StartMethod::Fork => fork(l),
        StartMethod::Spawn => spawn(l),
        StartMethod::ForkServer => via_server(l),
    }?;
    if let Some(group) = group {
        child.keep_memory_group(group);
    }
    Ok(child)
}

fn env_bytes(env: &[(OsString, OsString)]) -> Vec<(Vec<u8>, Vec<u8>)> {
    env.iter().map(|(k, v)| (k.as_bytes().to_vec(), v.as_bytes().to_vec())).collect()
}

fn socketpair() -> Result<(OwnedFd, OwnedFd)> {
    sys::socketpair_stream().map_err(|e| Error::io("creating a control socket for the child", e))
}

fn fork(l: Launch<'_>) -> Result<Arc<ChildRecord>> {
    sys::prepare_title();
    let parent_death = sys::is_main_thread();
    let parent_pid = sys::getpid();
    let environ = Environ::with_additions(&env_bytes(l.env));
    // No other thread may hold an unregistered internal fd across the
    // fork; then stdout, stderr and the registry are held across it, so
    // that the child finds them unlocked and consistent, and stdio is
    // flushed so that the child does not print pending output again.
    let windows = registry::no_fd_windows();
    let links = crate::manager::hold_across_fork();
    let budget = crate::pool::tokens::hold_across_fork();
    let records = crate::logging::hold_across_fork();
    let mut out = std::io::stdout().lock();
    let mut err = std::io::stderr().lock();
    let _ = out.flush();
    let _ = err.flush();
    sys::flush_c_stdio();
    let mut reg = registry::lock();
    let info = reg
        .next_child_info(l.name, l.daemon, StartMethod::Fork, Vec::new())
        .with_launch(l.memory.as_ref(), l.forward_output);
    let (parent_end, child_end) = socketpair()?;
    // A SIGINT before the child's handler is in place would end it (the
    // default action): held across the fork, it waits for the handler.
    let held = sys::hold_sigint_for_fork();
    let forked = sys::fork().map_err(|e| Error::io("fork()", e));
    match forked {
        // The child's mask is set by `interrupt_only_when_sent` below.
        Ok(Forked::Child) => std::mem::forget(held),
        _ => drop(held),
    }
    match forked? {
        Forked::Child => {
            drop(parent_end);
            reg.reset_after_fork();
            drop(reg);
            drop(err);
            drop(out);
            links.forget_parents_connections();
            drop(budget);
            drop(records);
            drop(windows);
            if parent_death && !sys::set_parent_death_kill(parent_pid) {
                sys::exit_now(255);
            }
            sys::interrupt_only_when_sent();
            sys::reset_signal_mask();
            // The handles' fds were inherited: the child takes them over,
            // and lets go of the parent's originals.
            let fds = l.arg.take_in_fork_child();
            serve::run(child_end, info, environ, l.task.call, &l.arg.bytes, fds)
        }
        Forked::Parent(pid) => {
            drop(child_end);
            let child = track(pid, parent_end, &info, l.exclusive)?;
            if let Err(e) = sys::set_nonblocking(child.control(), true) {
                return Err(abort_start(&child, "configuring the control socket", e));
            }
            reg.add(Arc::clone(&child));
            Ok(child)
        }
    }
}

fn spawn(l: Launch<'_>) -> Result<Arc<ChildRecord>> {
    let info = registry::lock()
        .next_child_info(l.name, l.daemon, StartMethod::Spawn, Vec::new())
        .with_launch(l.memory.as_ref(), l.forward_output);
    let frame = serve::task_frame(l.task.id(), &info, &l.arg.bytes)?;
    let _window = registry::fd_window();
    let child = exec_child(&info, l.env, l.exclusive)?;
    send_task(&child, &frame, &l.arg.fds)?;
    registry::lock().add(Arc::clone(&child));
    Ok(child)
}

fn via_server(l: Launch<'_>) -> Result<Arc<ChildRecord>> {
    let info = registry::lock()
        .next_child_info(l.name, l.daemon, StartMethod::ForkServer, env_bytes(l.env))
        .with_launch(l.memory.as_ref(), l.forward_output);
    let frame = serve::task_frame(l.task.id(), &info, &l.arg.bytes)?;
    // Handles need their fds sent on the control socket with the frame.
    let inline = frame.len() <= forkserver::INLINE_TASK && l.arg.fds.is_empty();
    let _window = registry::fd_window();
    let child = server_child(&info, inline.then_some(&frame[..]), l.exclusive)?;
    send_task(&child, if inline { &[] } else { &frame }, &l.arg.fds)?;
    registry::lock().add(Arc::clone(&child));
    Ok(child)
}

/// A re-exec'd child, waiting for its task on the control socket. Its argv
/// is its title followed by this process's arguments, so that `ps` shows
/// it and `std::env::args()` in it goes on like the parent's.
pub(crate) fn exec_child(info: &ChildInfo, env: &[(OsString, OsString)], exclusive: bool) -> Result<Arc<ChildRecord>> {
    let title = CString::new(format!("multiproc: {}", info.name).replace('\0', "")).expect("NULs were removed");
    let mut argv = vec![title];
    argv.extend(std::env::args_os().skip(1).filter_map(|a| CString::new(a.as_bytes()).ok()));
    let spec = bootstrap::exec_spec(argv, Role::Spawn { max_frame: codec::max_frame_size() }, env)?;
    let (parent_end, child_end) = socketpair()?;
    let pid = sys::spawn_exec(&spec, child_end.as_fd(), sys::is_main_thread())
        .map_err(|e| Error::io("starting a child with fork() + execve(/proc/self/exe)", e))?;
    drop(child_end);
    track(pid, parent_end, info, exclusive)
}

/// A child of the fork server, started with its task frame if it is
/// `inline`, or else waiting for it on the control socket.
pub(crate) fn server_child(info: &ChildInfo, inline: Option<&[u8]>, exclusive: bool) -> Result<Arc<ChildRecord>> {
    let forked = forkserver::fork_child(inline)?;
    Ok(Arc::new(ChildRecord::new(
        forked.pid,
        forked.pidfd,
        Waiter::Server(forked.status),
        forked.control,
        info,
        exclusive,
    )))
}

/// Builds the record of a direct child. If its pidfd cannot be opened the
/// child is killed and reaped, so that nothing is left behind.
fn track(pid: i32, parent_end: OwnedFd, info: &ChildInfo, exclusive: bool) -> Result<Arc<ChildRecord>> {
    let pidfd = match sys::pidfd_open(pid) {
        Ok(fd) => fd,
        Err(e) => {
            sys::kill_and_reap(pid);
            return Err(Error::io("opening a pidfd for the new child", e));
        }
    };
    Ok(Arc::new(ChildRecord::new(pid, pidfd, Waiter::Direct, parent_end, info, exclusive)))
}

/// Writes the task frame (blocking: the child reads it as it comes), with
/// the fds of the handles in its argument, then makes the control socket
/// non-blocking for the reply. A child that died before reading it is not
/// an error here: `join` reports how it ended.
pub(crate) fn send_task(child: &ChildRecord, frame: &[u8], fds: &[OwnedFd]) -> Result<()> {
    let control = child.control();
    match codec::write_frame_with_fds(control, frame, fds) {
        Ok(()) => {}
        Err(e) if matches!(e.kind(), std::io::ErrorKind::BrokenPipe | std::io::ErrorKind::ConnectionReset) => {}
        Err(e) => return Err(abort_start(child, "sending the task to the child", e)),
    }
    sys::set_nonblocking(control, true).map_err(|e| abort_start(child, "configuring the control socket", e))
}

/// Kills and reaps a child whose start failed half-way, so that nothing is
/// left behind, and returns the error.
fn abort_start(child: &ChildRecord, what: &str, e: std::io::Error) -> Error {
    let _ = child.signal(sys::SIGKILL);
    let _ = child.wait(None);
    Error::io(what, e)
}
