//! Log records of pool workers in the parent (features `log` and
//! `tracing`), and Python's `log_to_stderr` (feature `log`).
//!
//! A worker of a pool built with
//! [`forward_output`](crate::PoolBuilder::forward_output) installs, when it
//! has no logger (spawn and fork-server workers never do; a fork worker
//! has its parent's if one was set), a `log` logger and a `tracing`
//! subscriber that send each record, as a frame, through a pipe that the
//! parent's output reader thread reads: the parent emits it again through
//! its own logger or subscriber, the worker's name and pid added. A fork
//! worker that inherited its parent's logger logs through it, to its
//! stderr, which is forwarded as lines.

#[cfg(feature = "log")]
use std::io::Write;

use serde::{Deserialize, Serialize};

#[cfg(any(feature = "log", feature = "tracing"))]
use crate::codec;
#[cfg(any(feature = "log", feature = "tracing"))]
use crate::sys::{self, AsFd, OwnedFd};

/// One record as it travels from a worker to its parent.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Forwarded {
    /// Which facade it came through.
    pub(crate) origin: Origin,
    /// 1 (error) to 5 (trace), as both facades count.
    pub(crate) level: u8,
    pub(crate) target: String,
    pub(crate) message: String,
    pub(crate) module_path: Option<String>,
    pub(crate) file: Option<String>,
    pub(crate) line: Option<u32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Origin {
    Log,
    Tracing,
}

/// The levels a worker forwards, as its parent had them when the pool
/// was made (0: off).
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub(crate) struct Levels {
    log: u8,
    tracing: u8,
}

impl Levels {
    /// The parent's levels now.
    pub(crate) fn current() -> Levels {
        #[allow(unused_mut)]
        let mut levels = Levels::default();
        #[cfg(feature = "log")]
        {
            levels.log = log::max_level() as u8;
        }
        #[cfg(feature = "tracing")]
        {
            levels.tracing = tracing::level_filters::LevelFilter::current().into_level().map_or(0, level_number);
        }
        levels
    }
}

/// The frame kind of a forwarded record.
#[cfg(any(feature = "log", feature = "tracing"))]
const RECORD: u8 = 1;

/// Where a worker's records go: its end of the records pipe.
#[cfg(any(feature = "log", feature = "tracing"))]
static SINK: std::sync::Mutex<Option<OwnedFd>> = std::sync::Mutex::new(None);

/// In a worker: sends each record to `fd` from now on, through a logger
/// and a subscriber installed if none is yet.
#[cfg_attr(not(any(feature = "log", feature = "tracing")), allow(unused_variables))]
pub(crate) fn forward_from_worker(fd: std::os::fd::OwnedFd, levels: Levels) {
    #[cfg(any(feature = "log", feature = "tracing"))]
    {
        *SINK.lock().unwrap_or_else(|p| p.into_inner()) = Some(fd);
        #[cfg(feature = "log")]
        FORWARDING.store(true, std::sync::atomic::Ordering::Relaxed);
        #[cfg(feature = "log")]
        // log_to_stderr's logger, which in a worker that forwards sends
        // each record to the parent.
        if levels.log > 0 && log::set_boxed_logger(Box::new(StderrLogger)).is_ok() {
            log::set_max_level(log_filter(levels.log));
        }
        #[cfg(feature = "tracing")]
        if let Some(level) = tracing_level(levels.tracing) {
            let max = tracing::level_filters::LevelFilter::from_level(level);
            let dispatch = tracing::Dispatch::new(TracingForwarder { max });
            // The worker's own thread, where tasks run, forwards even when
            // a fork worker inherited its parent's global subscriber; other
            // threads use the global one (this one, if there was none).
            let _ = tracing::dispatcher::set_global_default(dispatch.clone());
            std::mem::forget(tracing::dispatcher::set_default(&dispatch));
        }
    }
}

/// Whether this process is a pool worker that forwards its records.
#[cfg(feature = "log")]
fn forwarding() -> bool {
    FORWARDING.load(std::sync::atomic::Ordering::Relaxed)
}

/// Set once [`SINK`] is.
#[cfg(feature = "log")]
static FORWARDING: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Holds the record pipe's lock across a fork (features `log`,
/// `tracing`): a child that forwards too takes it first thing, and would
/// wait for ever for a lock held by a thread that does not exist in it.
pub(crate) fn hold_across_fork() -> RecordsHeld {
    RecordsHeld {
        #[cfg(any(feature = "log", feature = "tracing"))]
        _guard: SINK.lock().unwrap_or_else(|p| p.into_inner()),
    }
}

/// [`hold_across_fork`]'s hold, until dropped (nothing without the
/// features: there is no record pipe).
pub(crate) struct RecordsHeld {
    #[cfg(any(feature = "log", feature = "tracing"))]
    _guard: std::sync::MutexGuard<'static, Option<OwnedFd>>,
}

#[cfg(not(any(feature = "log", feature = "tracing")))]
impl Drop for RecordsHeld {
    fn drop(&mut self) {}
}

/// Sends one record to the parent (dropped if the pipe is gone).
#[cfg(any(feature = "log", feature = "tracing"))]
fn send(record: &Forwarded) {
    let Ok(frame) = codec::frame_of(RECORD, record, "a log record") else { return };
    let sink = SINK.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(fd) = sink.as_ref() {
        let _ = sys::write_all(fd.as_fd(), &frame);
    }
}

/// In the parent: the whole records framed in `bytes` (the rest stays for
/// the next read), emitted again tagged with the worker's `name` and `pid`.
pub(crate) fn reemit_all(bytes: &mut Vec<u8>, name: &str, pid: i32) {
    let mut used = 0;
    while let Some(len) = whole_frame(&bytes[used..]) {
        let frame = &bytes[used..used + len];
        if let Ok(f) = crate::codec::parse_frame(frame, u64::MAX >> 8, "a forwarded log record") {
            if let Ok(record) = crate::codec::decode::<Forwarded>(&f.payload, "a forwarded log record") {
                reemit(&record, name, pid);
            }
        }
        used += len;
    }
    bytes.drain(..used);
}

/// The length of the frame at the start of `bytes`, if it is all there
/// (all of `bytes` if its header is past any record's size: not a record
/// stream, dropped rather than held).
fn whole_frame(bytes: &[u8]) -> Option<usize> {
    let header: [u8; 8] = bytes.get(..8)?.try_into().ok()?;
    let len = (u64::from_le_bytes(header) & (u64::MAX >> 8)).saturating_add(8);
    if len > LONGEST_RECORD {
        return Some(bytes.len());
    }
    (bytes.len() as u64 >= len).then_some(len as usize)
}

/// A forwarded record's largest frame.
const LONGEST_RECORD: u64 = 64 << 20;

/// Emits `record` of worker `name` (`pid`) through this process's logger
/// or subscriber.
#[cfg_attr(not(any(feature = "log", feature = "tracing")), allow(unused_variables))]
fn reemit(record: &Forwarded, name: &str, pid: i32) {
    match record.origin {
        #[cfg(feature = "log")]
        Origin::Log => {
            let Some(level) = log_level(record.level) else { return };
            if level > log::max_level() {
                return;
            }
            let message = format!("[{name} {pid}] {}", record.message);
            FROM.with(|from| *from.borrow_mut() = Some((name.to_owned(), record.message.clone())));
            log::logger().log(
                &log::Record::builder()
                    .level(level)
                    .target(&record.target)
                    .module_path(record.module_path.as_deref())
                    .file(record.file.as_deref())
                    .line(record.line)
                    .args(format_args!("{message}"))
                    .build(),
            );
            FROM.with(|from| *from.borrow_mut() = None);
        }
        #[cfg(feature = "tracing")]
        Origin::Tracing => {
            macro_rules! at {
                ($level:expr) => {
                    tracing::event!(target: "multiproc::worker", $level, worker = name, pid = pid, target = record.target.as_str(), "{}", record.message)
                };
            }
            match tracing_level(record.level) {
                Some(tracing::Level::ERROR) => at!(tracing::Level::ERROR),
                Some(tracing::Level::WARN) => at!(tracing::Level::WARN),
                Some(tracing::Level::INFO) => at!(tracing::Level::INFO),
                Some(tracing::Level::DEBUG) => at!(tracing::Level::DEBUG),
                Some(_) => at!(tracing::Level::TRACE),
                None => {}
            }
        }
        #[allow(unreachable_patterns)]
        _ => {}
    }
}

#[cfg(feature = "log")]
thread_local! {
    /// While a worker's record is emitted again: the worker's name and the
    /// record's own message, for `log_to_stderr`'s logger to print as
    /// Python does (`[INFO/ForkPoolWorker-1] ...`).
    static FROM: std::cell::RefCell<Option<(String, String)>> = const { std::cell::RefCell::new(None) };
}

#[cfg(feature = "log")]
fn log_level(n: u8) -> Option<log::Level> {
    [log::Level::Error, log::Level::Warn, log::Level::Info, log::Level::Debug, log::Level::Trace]
        .get(usize::from(n).checked_sub(1)?)
        .copied()
}

#[cfg(feature = "log")]
fn log_filter(n: u8) -> log::LevelFilter {
    log_level(n).map_or(log::LevelFilter::Off, |l| l.to_level_filter())
}

#[cfg(feature = "tracing")]
fn tracing_level(n: u8) -> Option<tracing::Level> {
    use tracing::Level;
    [Level::ERROR, Level::WARN, Level::INFO, Level::DEBUG, Level::TRACE].get(usize::from(n).checked_sub(1)?).copied()
}

#[cfg(feature = "tracing")]
fn level_number(level: tracing::Level) -> u8 {
    match level {
        tracing::Level::ERROR => 1,
        tracing::Level::WARN => 2,
        tracing::Level::INFO => 3,
        tracing::Level::DEBUG => 4,
        _ => 5,
    }
}

#[cfg(feature = "log")]
fn send_log(record: &log::Record<'_>) {
    send(&Forwarded {
        origin: Origin::Log,
        level: record.level() as u8,
        target: record.target().to_owned(),
        message: record.args().to_string(),
        module_path: record.module_path().map(str::to_owned),
        file: record.file().map(str::to_owned),
        line: record.line(),
    });
}

/// A `log` logger that, in a pool worker whose output is forwarded
/// ([`forward_output`](crate::PoolBuilder::forward_output)), sends each
/// record to the parent, which emits it again through its own logger (this
/// one: `inner` there), with the worker's name and pid at the start of the
/// message; anywhere else it is `inner`.
///
/// Spawn and fork-server workers have no logger of their own and forward
/// with none of this; a fork worker has its parent's logger, and forwards
/// records as records only if that logger is wrapped in this one (or is
/// [`log_to_stderr`]'s). Otherwise its records go through the inherited
/// logger, to its stderr, which is forwarded as lines.
///
/// # Examples
///
/// ```
/// struct Plain;
/// impl log::Log for Plain {
///     fn enabled(&self, _: &log::Metadata) -> bool { true }
///     fn log(&self, r: &log::Record) { eprintln!("{} {}", r.level(), r.args()) }
///     fn flush(&self) {}
/// }
/// log::set_boxed_logger(Box::new(multiproc::ForwardingLogger::new(Plain))).unwrap();
/// log::set_max_level(log::LevelFilter::Info);
/// fn work(x: u32) -> u32 { log::info!("working on {x}"); x }
/// let pool = multiproc::Pool::builder().processes(1).forward_output().build()?;
/// pool.apply(work, 7)?;   // stderr: INFO [ForkPoolWorker-1 4242] working on 7
/// # Ok::<(), multiproc::Error>(())
/// ```
#[cfg(feature = "log")]
#[derive(Debug)]
pub struct ForwardingLogger<L> {
    inner: L,
}

#[cfg(feature = "log")]
impl<L: log::Log> ForwardingLogger<L> {
    /// `inner`, forwarding in pool workers.
    ///
    /// # Examples
    ///
    /// ```
    /// struct Quiet;
    /// impl log::Log for Quiet {
    ///     fn enabled(&self, _: &log::Metadata) -> bool { false }
    ///     fn log(&self, _: &log::Record) {}
    ///     fn flush(&self) {}
    /// }
    /// let logger = multiproc::ForwardingLogger::new(Quiet);
    /// ```
    pub fn new(inner: L) -> Self {
        ForwardingLogger { inner }
    }
}

#[cfg(feature = "log")]
impl<L: log::Log> log::Log for ForwardingLogger<L> {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        if forwarding() { metadata.level() <= log::max_level() } else { self.inner.enabled(metadata) }
    }

    fn log(&self, record: &log::Record<'_>) {
        match forwarding() {
            true if record.level() <= log::max_level() => send_log(record),
            true => {}
            false => self.inner.log(record),
        }
    }

    fn flush(&self) {
        self.inner.flush();
    }
}

/// The `tracing` subscriber of a worker that forwards: events only (a
/// span's fields are not sent).
#[cfg(feature = "tracing")]
struct TracingForwarder {
    max: tracing::level_filters::LevelFilter,
}

#[cfg(feature = "tracing")]
impl tracing::Subscriber for TracingForwarder {
    fn enabled(&self, metadata: &tracing::Metadata<'_>) -> bool {
        self.max >= *metadata.level()
    }

    fn max_level_hint(&self) -> Option<tracing::level_filters::LevelFilter> {
        Some(self.max)
    }

    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }

    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}

    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}

    fn event(&self, event: &tracing::Event<'_>) {
        struct Fields(String, String);
        impl tracing::field::Visit for Fields {
            fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
                use std::fmt::Write;
                if field.name() == "message" {
                    let _ = write!(self.0, "{value:?}");
                } else {
                    let _ = write!(self.1, " {}={value:?}", field.name());
                }
            }
        }
        let mut fields = Fields(String::new(), String::new());
        event.record(&mut fields);
        let meta = event.metadata();
        send(&Forwarded {
            origin: Origin::Tracing,
            level: level_number(*meta.level()),
            target: meta.target().to_owned(),
            message: fields.0 + &fields.1,
            module_path: meta.module_path().map(str::to_owned),
            file: meta.file().map(str::to_owned),
            line: meta.line(),
        });
    }

    fn enter(&self, _: &tracing::span::Id) {}

    fn exit(&self, _: &tracing::span::Id) {}
}

/// The level `log_to_stderr` set in this process (0: not called), which
/// spawn and fork-server children take over as Python's children do.
static STDERR_LEVEL: std::sync::atomic::AtomicU8 = std::sync::atomic::AtomicU8::new(0);

/// The level for a new child's `log_to_stderr`, if it was called here.
pub(crate) fn inherited_level() -> Option<u8> {
    Some(STDERR_LEVEL.load(std::sync::atomic::Ordering::Relaxed)).filter(|&l| l > 0)
}

/// In a child: `log_to_stderr` as its parent called it (a fork child has
/// the logger already).
#[cfg_attr(not(feature = "log"), allow(unused_variables))]
pub(crate) fn inherit(level: Option<u8>) {
    #[cfg(feature = "log")]
    if let Some(level) = level {
        let _ = log_to_stderr(log_filter(level));
    }
}

/// Python's `multiprocessing.log_to_stderr(level)`: a `log` logger in this
/// process that writes each record to stderr as Python's does,
/// `[INFO/MainProcess] message`, one write per record; children started
/// afterwards log the same way (spawn and fork-server children get it at
/// their start, fork children have it). Records that pool workers forward
/// ([`forward_output`](crate::PoolBuilder::forward_output)) print with the
/// worker's name: `[INFO/SpawnPoolWorker-1] message`.
///
/// # Errors
///
/// [`ErrorKind::InvalidState`](crate::ErrorKind::InvalidState) if this
/// process already has another `log` logger (a process has one).
///
/// # Examples
///
/// ```
/// multiproc::log_to_stderr(log::LevelFilter::Info)?;
/// log::info!("starting");   // stderr: [INFO/MainProcess] starting
/// # Ok::<(), multiproc::Error>(())
/// ```
#[cfg(feature = "log")]
#[doc(alias("get_logger"))]
pub fn log_to_stderr(level: log::LevelFilter) -> crate::Result<()> {
    if log::set_boxed_logger(Box::new(StderrLogger)).is_err() && inherited_level().is_none() {
        return Err(crate::Error::new(
            crate::ErrorKind::InvalidState,
            "log_to_stderr: this process already has a log logger, and a process has one; log through that one, \
             or call log_to_stderr before any other logger is installed",
        ));
    }
    log::set_max_level(level);
    STDERR_LEVEL.store(level as u8, std::sync::atomic::Ordering::Relaxed);
    Ok(())
}

/// `log_to_stderr`'s logger.
#[cfg(feature = "log")]
struct StderrLogger;

#[cfg(feature = "log")]
impl log::Log for StderrLogger {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &log::Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        if forwarding() {
            send_log(record);
            return;
        }
        let level = match record.level() {
            log::Level::Warn => "WARNING",
            other => other.as_str(),
        };
        let line = FROM.with(|from| match &*from.borrow() {
            Some((worker, message)) => format!("[{level}/{worker}] {message}\n"),
            None => format!("[{level}/{}] {}\n", crate::current_process().name(), record.args()),
        });
        let _ = std::io::stderr().lock().write_all(line.as_bytes());
    }

    fn flush(&self) {}
}
