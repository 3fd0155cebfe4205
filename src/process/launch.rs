//! Starting a child with each start method.

use std::ffi::{CString, OsString};
use std::io::Write;
use std::sync::Arc;

use crate::bootstrap::{self, Role};
use crate::child::{self, ChildInfo};
use crate::codec;
use crate::context::StartMethod;
use crate::error::{Error, Result};
use crate::forkserver;
use crate::process::shared::{ChildShared, Waiter};
use crate::registry;
use crate::sys::{self, AsFd, Forked, OwnedFd};
use crate::task::Task;

/// Everything needed to start one child.
pub(crate) struct Launch<'a> {
    pub(crate) task: Task,
    /// The encoded argument.
    pub(crate) arg: &'a [u8],
    pub(crate) name: Option<String>,
    pub(crate) daemon: Option<bool>,
    pub(crate) method: StartMethod,
    pub(crate) env: &'a [(OsString, OsString)],
}

/// Starts the child and records it in the registry.
pub(crate) fn launch(l: Launch<'_>) -> Result<Arc<ChildShared>> {
    child::install_panic_hook();
    match l.method {
        StartMethod::Fork => fork(l),
        StartMethod::Spawn => spawn(l),
        StartMethod::ForkServer => via_server(l),
    }
}

fn env_bytes(env: &[(OsString, OsString)]) -> Vec<(Vec<u8>, Vec<u8>)> {
    use std::os::unix::ffi::OsStrExt;
    env.iter()
        .map(|(k, v)| (k.as_bytes().to_vec(), v.as_bytes().to_vec()))
        .collect()
}

fn socketpair() -> Result<(OwnedFd, OwnedFd)> {
    sys::socketpair_stream().map_err(|e| Error::io("creating a control socket for the child", e))
}

fn fork(l: Launch<'_>) -> Result<Arc<ChildShared>> {
    sys::prepare_title();
    let parent_death = sys::is_main_thread();
    let parent_pid = sys::getpid();
    // Hold stdout, stderr and the registry across fork(), so that the child
    // finds them unlocked and consistent, and flush so that it does not
    // print the parent's pending output again.
    let mut out = std::io::stdout().lock();
    let mut err = std::io::stderr().lock();
    let _ = out.flush();
    let _ = err.flush();
    sys::flush_c_stdio();
    let mut reg = registry::lock();
    let info = reg.next_child_info(l.name, l.daemon, StartMethod::Fork, env_bytes(l.env));
    let (parent_end, child_end) = socketpair()?;
    match sys::fork().map_err(|e| Error::io("fork()", e))? {
        Forked::Child => {
            drop(parent_end);
            reg.reset_after_fork();
            drop(reg);
            drop(err);
            drop(out);
            if parent_death && !sys::set_parent_death_kill(parent_pid) {
                sys::exit_now(255);
            }
            sys::ignore_sigint();
            child::run(child_end, info, l.task.call, l.arg)
        }
        Forked::Parent(pid) => {
            drop(child_end);
            let child = track(pid, Waiter::Direct, parent_end, info)?;
            sys::set_nonblocking(child.control(), true)
                .map_err(|e| Error::io("configuring the control socket", e))?;
            reg.add(Arc::clone(&child));
            Ok(child)
        }
    }
}

fn spawn(l: Launch<'_>) -> Result<Arc<ChildShared>> {
    let info = registry::lock().next_child_info(l.name, l.daemon, StartMethod::Spawn, Vec::new());
    let frame = child::task_frame(l.task, &info, l.arg)?;
    let child = exec_child(info, l.env)?;
    send_task(&child, &frame)?;
    registry::lock().add(Arc::clone(&child));
    Ok(child)
}

fn via_server(l: Launch<'_>) -> Result<Arc<ChildShared>> {
    let info = registry::lock().next_child_info(
        l.name,
        l.daemon,
        StartMethod::ForkServer,
        env_bytes(l.env),
    );
    let frame = child::task_frame(l.task, &info, l.arg)?;
    let inline = frame.len() <= forkserver::INLINE_TASK;
    let child = server_child(info, inline.then_some(&frame[..]))?;
    send_task(&child, if inline { &[] } else { &frame })?;
    registry::lock().add(Arc::clone(&child));
    Ok(child)
}

/// A re-exec'd child, waiting for its task on the control socket.
pub(crate) fn exec_child(
    info: ChildInfo,
    env: &[(OsString, OsString)],
) -> Result<Arc<ChildShared>> {
    let title = CString::new(format!("multiproc: {}", info.name).replace('\0', ""))
        .expect("NULs were removed");
    let spec = bootstrap::exec_spec(
        vec![title],
        Role::Spawn {
            max_frame: codec::max_frame_size(),
        },
        env,
    )?;
    let (parent_end, child_end) = socketpair()?;
    let pid = sys::spawn_exec(&spec, child_end.as_fd(), sys::is_main_thread())
        .map_err(|e| Error::io("starting a child with fork() + execve(/proc/self/exe)", e))?;
    drop(child_end);
    track(pid, Waiter::Direct, parent_end, info)
}

/// A child of the fork server, started with its task frame if it is
/// `inline`, or else waiting for it on the control socket.
pub(crate) fn server_child(info: ChildInfo, inline: Option<&[u8]>) -> Result<Arc<ChildShared>> {
    let (parent_end, child_end) = socketpair()?;
    let forked = forkserver::fork_child(&child_end, inline)?;
    drop(child_end);
    Ok(Arc::new(ChildShared::new(
        forked.pid,
        forked.pidfd,
        Waiter::Server(forked.status),
        parent_end,
        info.name,
        info.daemon,
    )))
}

/// Builds the record of a direct child. If its pidfd cannot be opened the
/// child is killed and reaped, so that nothing is left behind.
fn track(
    pid: i32,
    waiter: Waiter,
    parent_end: OwnedFd,
    info: ChildInfo,
) -> Result<Arc<ChildShared>> {
    let pidfd = match sys::pidfd_open(pid) {
        Ok(fd) => fd,
        Err(e) => {
            sys::kill_and_reap(pid);
            return Err(Error::io("opening a pidfd for the new child", e));
        }
    };
    Ok(Arc::new(ChildShared::new(
        pid,
        pidfd,
        waiter,
        parent_end,
        info.name,
        info.daemon,
    )))
}

/// Writes the task frame (blocking: the child reads it as it comes), then
/// makes the control socket non-blocking for the reply. A child that died
/// before reading it is not an error here: `join` reports how it ended.
pub(crate) fn send_task(child: &ChildShared, frame: &[u8]) -> Result<()> {
    let control = child.control();
    match sys::send_all(control, frame) {
        Ok(()) => {}
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::BrokenPipe | std::io::ErrorKind::ConnectionReset
            ) => {}
        Err(e) => {
            let _ = child.signal(sys::SIGKILL);
            let _ = child.wait(None);
            return Err(Error::io("sending the task to the child", e));
        }
    }
    sys::set_nonblocking(control, true).map_err(|e| Error::io("configuring the control socket", e))
}
