//! What runs inside a child: reading the task, running it, replying, and
//! leaving.

use std::cell::Cell;
use std::io::Write;
use std::panic::AssertUnwindSafe;

use serde::{Deserialize, Serialize};

use super::registry;
use super::task::TaskId;
use super::trampoline::{self, Trampoline};
use crate::codec::{self, Frame, FrameBuf, kind};
use crate::context::StartMethod;
use crate::error::{Error, ErrorKind, PanicInfo, RemoteError, Result};
use crate::process::{ChildMemory, MemoryPlan};
use crate::sys::{self, AsFd, AsRawFd, OwnedFd};

/// Who a child is, as its parent describes it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct ChildInfo {
    pub(crate) name: String,
    pub(crate) daemon: bool,
    /// Python's `_identity`: the parent's identity plus this child's index.
    pub(crate) identity: Vec<u32>,
    pub(crate) parent_pid: i32,
    pub(crate) parent_name: String,
    pub(crate) start_method: StartMethod,
    /// The parent's process-wide default start method, if it was set or
    /// used: a spawn or fork-server child takes it as its own, as Python's
    /// children do (a fork child has it in the memory it inherited).
    pub(crate) default_method: Option<StartMethod>,
    /// Environment additions the child applies to itself (fork and fork
    /// server; a spawned child gets them from `execve`).
    pub(crate) env: Vec<(Vec<u8>, Vec<u8>)>,
    /// The child's hard memory limit, if it has one.
    pub(crate) memory: Option<ChildMemory>,
    /// The level of its parent's `log_to_stderr`, if it was called.
    pub(crate) log_level: Option<u8>,
    /// Its output goes to its parent (`forward_output`), with log records
    /// at these levels: the pipes are its last fds.
    pub(crate) forward_output: Option<crate::logging::Levels>,
}

impl ChildInfo {
    /// Adds what the launch says of the child's memory and output.
    pub(crate) fn with_launch(mut self, memory: Option<&MemoryPlan>, output: Option<crate::logging::Levels>) -> Self {
        self.memory = memory.map(|p| p.child.clone());
        self.forward_output = output;
        self
    }
}

/// The first thing a re-exec'd or fork-server child reads.
#[derive(Debug, Serialize, Deserialize)]
struct TaskHeader {
    magic: u32,
    fingerprint: Vec<u8>,
    task: TaskId,
    info: ChildInfo,
}

/// Changes whenever the task protocol does.
pub(super) const MAGIC: u32 = 0x6d70_0002;

/// The exit code of a child whose parent vanished before sending a task.
const PARENT_GONE_EXIT: i32 = 255;

/// The frame a parent sends to a spawn or fork-server child: the task
/// header, then the encoded argument as raw bytes.
pub(crate) fn task_frame(task: TaskId, info: &ChildInfo, arg: &[u8]) -> Result<Vec<u8>> {
    let header = TaskHeader { magic: MAGIC, fingerprint: trampoline::fingerprint().to_vec(), task, info: info.clone() };
    let mut frame = FrameBuf::new();
    frame.push(&header, "the task header")?;
    frame.extend(arg);
    let frame = frame.finish(kind::TASK);
    codec::check_outgoing(&frame, "the task (its encoded argument)")?;
    Ok(frame)
}

/// Serves a spawn or fork-server child on its control socket: checks the
/// task, runs it, replies, exits. The task frame is `inline` when the fork
/// server received it with the request (the child finds it in the memory
/// it inherited), and is read from the socket otherwise.
pub(crate) fn serve(control: OwnedFd, inline: Option<&[u8]>) -> ! {
    sys::ignore_sigpipe();
    sys::interrupt_only_when_sent();
    install_panic_hook();
    let limit = codec::max_frame_size();
    let (frame, fds) = match inline {
        Some(bytes) => (codec::parse_frame(bytes, limit, "the task"), Vec::new()),
        None => match codec::read_frame_with_fds(control.as_fd(), limit, "the task stream") {
            Ok(Some((frame, fds))) => (Ok(frame), fds),
            Ok(None) => sys::exit_now(PARENT_GONE_EXIT),
            Err(e) => (Err(e), Vec::new()),
        },
    };
    let frame = match frame {
        Ok(frame) => frame,
        Err(e) => refuse(&control, &e),
    };
    let (info, call, arg) = match open_task(&frame) {
        Ok(task) => task,
        Err(e) => refuse(&control, &e),
    };
    let environ = sys::Environ::with_additions(&info.env);
    run(control, info, environ, call, arg, fds)
}

/// Opens a task frame as a spawn or fork-server child does: checks its
/// kind, the header's magic, the build fingerprint and the task id's tag,
/// and gives who the child is, what it runs and the encoded argument.
/// Nothing is called: an id whose tag does not match is refused here.
pub(crate) fn open_task(frame: &Frame) -> Result<(ChildInfo, Trampoline, &[u8])> {
    if frame.kind != kind::TASK {
        return Err(Error::new(
            ErrorKind::Protocol,
            format!("the child expected a task frame and got kind {}; the stream is corrupt", frame.kind),
        ));
    }
    let (header, arg) = codec::decode_prefix::<TaskHeader>(&frame.payload, "the task header")?;
    if header.magic != MAGIC {
        return Err(Error::new(
            ErrorKind::Protocol,
            "the parent speaks another version of the multiproc task protocol; run the same build on both sides",
        ));
    }
    if header.fingerprint != trampoline::fingerprint() {
        return Err(Error::new(
            ErrorKind::BuildMismatch,
            "the child runs a different build of the executable than its parent (build fingerprints differ); \
             the task was refused. Rebuild and restart so that both run the same binary",
        ));
    }
    let call = header.task.resolve()?;
    Ok((header.info, call, arg))
}

/// Puts this child under its memory limit: into the cgroup made for it,
/// or under `RLIMIT_DATA` with a refused allocation answered on `control`
/// by a `MemoryExceeded` reply (and exit code 1, as Python's child after
/// a `MemoryError`).
fn limit_memory(memory: &ChildMemory, control: &OwnedFd) -> Result<()> {
    if let Some(group) = &memory.group {
        return sys::join_memory_group(group).map_err(|e| Error::io("joining the child's memory cgroup", e));
    }
    sys::limit_data_growth(memory.limit).map_err(|e| Error::io("setting the child's memory_limit (RLIMIT_DATA)", e))?;
    // Encoded now, with room at its end for the peak, which the abort
    // handler fills in.
    let mut report = RemoteError::new(ErrorKind::MemoryExceeded, "memory_limit");
    report.memory = Some((memory.limit, [0; 8]));
    sys::reply_on_out_of_memory(control.as_raw_fd(), error_frame_of(&report));
    Ok(())
}

/// The memory cgroup this process was put in at its start, if any.
pub(crate) fn own_memory_group() -> Option<std::path::PathBuf> {
    registry::lock().current.as_ref()?.memory.as_ref()?.group.clone()
}

/// Replies with `err` and exits with code 1, without running anything.
fn refuse(control: &OwnedFd, err: &Error) -> ! {
    let _ = codec::write_frame(control.as_fd(), &error_frame(err), "the reply");
    finish(1)
}

/// Runs the task in this (child) process, replies, and exits: 0 after a
/// returned value, 1 after a panic or an error, as Python's child exits 1
/// after an uncaught exception. `environ`, built before the fork when
/// there are environment additions, is installed first. `fds` are those of
/// the handles in the argument.
pub(crate) fn run(
    control: OwnedFd,
    info: ChildInfo,
    environ: Option<sys::Environ>,
    call: Trampoline,
    arg: &[u8],
    fds: Vec<OwnedFd>,
) -> ! {
    if let Some(environ) = environ {
        environ.install();
    }
    if let Some(memory) = &info.memory {
        if let Err(e) = limit_memory(memory, &control) {
            refuse(&control, &e);
        }
    }
    crate::logging::inherit(info.log_level);
    let mut fds = fds;
    if let Some(levels) = info.forward_output {
        let ends = fds.split_off(fds.len().saturating_sub(crate::pool::output::PIPES));
        crate::pool::output::redirect(ends, levels);
    }
    sys::set_title(&format!("multiproc: {}", info.name));
    sys::watch_parent(control.as_raw_fd());
    if info.start_method != StartMethod::Fork {
        if let Some(method) = info.default_method {
            crate::context::force_start_method(method);
        }
    }
    let link = registry::enter_child(info, control);
    let reply = codec::with_incoming(fds, || call(arg));
    let code = if codec::kind_of(&reply) == kind::VALUE { 0 } else { 1 };
    // A parent that has gone away cannot be told; the exit is the same.
    let _ = codec::write_frame(link.as_fd(), &reply, "the reply");
    finish(code)
}

/// Leaves the child: daemon children are terminated and the others waited
/// for (as Python's `_exit_function` does), stdio is flushed, and the
/// process ends with `_exit(code)`, skipping destructors and `atexit`
/// handlers inherited from the parent.
pub(crate) fn finish(code: i32) -> ! {
    let _ = std::panic::catch_unwind(registry::exit_children);
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
    sys::flush_c_stdio();
    sys::exit_now(code)
}

/// Where the last panic on a thread happened: its file (cut to 255
/// bytes), line and column. A plain `Copy` value, so that the thread-local
/// holding it has no destructor to register: registering one costs a
/// dynamic symbol lookup, which a forked child would pay at every start.
#[derive(Clone, Copy)]
struct Spot {
    file: [u8; 255],
    len: u8,
    line: u32,
    column: u32,
}

impl Spot {
    fn new(file: &str, line: u32, column: u32) -> Spot {
        let mut cut = file.len().min(255);
        while !file.is_char_boundary(cut) {
            cut -= 1;
        }
        let mut spot = Spot { file: [0; 255], len: cut as u8, line, column };
        spot.file[..cut].copy_from_slice(&file.as_bytes()[..cut]);
        spot
    }

    fn into_parts(self) -> (String, u32, u32) {
        let file = String::from_utf8_lossy(&self.file[..self.len as usize]).into_owned();
        (file, self.line, self.column)
    }
}

thread_local! {
    static PANIC_LOCATION: Cell<Option<Spot>> = const { Cell::new(None) };
    static QUIET_PANICS: Cell<bool> = const { Cell::new(false) };
}

/// Stops this thread's panics from being printed by the panic hook (their
/// message and location still reach the parent): a pool worker's panics
/// are its tasks' results, which Python's Pool does not print either.
pub(crate) fn quiet_panics() {
    QUIET_PANICS.with(|q| q.set(true));
}

/// Wraps the current panic hook, once per process, so that it also records
/// where a panic happened, for the reply of the task that panicked. The
/// wrapped hook still prints the message on stderr (in a child, as Python
/// prints a child's traceback).
///
/// It is installed in the parent before the first child starts, never in
/// a forked child: replacing a hook takes a lock that another thread of
/// the parent may have held (while panicking) at the moment of the fork.
pub(crate) fn install_panic_hook() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(wrap_panic_hook);
}

fn wrap_panic_hook() {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if let Some(loc) = info.location() {
            let spot = Spot::new(loc.file(), loc.line(), loc.column());
            let _ = PANIC_LOCATION.try_with(|l| l.set(Some(spot)));
        }
        if !QUIET_PANICS.try_with(Cell::get).unwrap_or(false) {
            previous(info);
        }
    }));
}

/// How a guarded call failed.
#[derive(Debug)]
pub(crate) enum Failure {
    /// It panicked.
    Panic(PanicInfo),
    /// It returned an error.
    Error(Error),
}

/// Runs `f`, catching a panic with its message and location.
pub(crate) fn catch<T>(f: impl FnOnce() -> Result<T>) -> std::result::Result<T, Failure> {
    match catch_panic(f) {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => Err(Failure::Error(e)),
        Err(panic) => Err(Failure::Panic(panic)),
    }
}

/// Runs `f`, turning a panic into its message and location.
pub(crate) fn catch_panic<T>(f: impl FnOnce() -> T) -> std::result::Result<T, PanicInfo> {
    let _ = PANIC_LOCATION.try_with(|l| l.set(None));
    std::panic::catch_unwind(AssertUnwindSafe(f)).map_err(|payload| {
        let message = if let Some(s) = payload.downcast_ref::<&str>() {
            (*s).to_owned()
        } else if let Some(s) = payload.downcast_ref::<String>() {
            s.clone()
        } else {
            "Box<dyn Any>".to_owned()
        };
        let location = PANIC_LOCATION.try_with(Cell::take).ok().flatten().map(Spot::into_parts);
        // A payload whose destructor panics must not take the child down.
        let _ = std::panic::catch_unwind(AssertUnwindSafe(move || drop(payload)));
        PanicInfo::new(message, location)
    })
}

/// Runs `f`, turning an error or a panic into the matching reply frame.
pub(crate) fn run_guarded(f: impl FnOnce() -> Result<Vec<u8>>) -> Vec<u8> {
    match catch(f) {
        Ok(frame) => match codec::check_outgoing(&frame, "the return value") {
            Ok(()) => frame,
            Err(e) => error_frame(&e),
        },
        Err(Failure::Error(e)) => error_frame(&e),
        Err(Failure::Panic(p)) => codec::frame_of(kind::PANIC, &p, "a panic").expect("a PanicInfo always serializes"),
    }
}

/// The reply frame for an error raised in the child.
fn error_frame(err: &Error) -> Vec<u8> {
    error_frame_of(&RemoteError::from(err))
}

fn error_frame_of(report: &RemoteError) -> Vec<u8> {
    codec::frame_of(kind::ERROR, report, "an error").expect("a RemoteError always serializes")
}
