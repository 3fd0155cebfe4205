//! Rank 0's side: which ranks serve which pool, the thread that receives
//! every message from the workers, and [`RankLink`], the dispatcher's end of
//! one rank's worker.
//!
//! The dispatcher talks to a rank exactly as to a local worker, through a
//! stream socket: the bridge (one socket pair per worker) carries the
//! frames, a sender thread per worker forwards what the dispatcher writes
//! as `DATA` messages, and the receiver thread writes the `DATA` that
//! comes back into the socket. An eventfd says when the worker has ended.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use mpi::topology::Communicator;

use super::world::{self, DATA, GONE, HELLO, Hello, QUIT, START, STOP, Start, lock};
use crate::codec;
use crate::error::{Error, ErrorKind, Result};
use crate::runtime::{self, TaskId};
use crate::sys::{self, AsFd, BorrowedFd, ExitStatus, OwnedFd, PollFd, PollFlags};

/// How long a rank may take to answer `START`.
const HELLO_LIMIT: Duration = Duration::from_secs(120);
/// The most bytes of small frames that one `DATA` message carries.
const DATA_MAX: usize = 1 << 20;
/// A frame this large goes in a message of its own, without a copy.
const ALONE: usize = 64 << 10;

/// What a worker rank is doing, as rank 0 knows it.
enum Slot {
    Idle,
    /// `START` was sent; the answer goes to the channel, and the rank's
    /// `DATA` to the bridge once it has answered.
    Starting(mpsc::Sender<Answer>, Arc<Bridge>),
    Busy(Arc<Bridge>),
    /// It runs another build: it serves no pool (why).
    Refused(String),
}

/// A rank's answer to `START`, with its bridge.
type Answer = Result<(Hello, Arc<Bridge>)>;

struct Master {
    /// By rank; rank 0's own slot is unused.
    slots: Vec<Slot>,
    receiver: Option<JoinHandle<()>>,
}

static MASTER: Mutex<Master> = Mutex::new(Master { slots: Vec::new(), receiver: None });

/// Rank 0's end of one worker's bridge, shared with the MPI threads.
struct Bridge {
    rank: i32,
    /// The other end of the dispatcher's socket, which carries nothing: the
    /// frames go through `outgoing` and `incoming`, and the socket is only
    /// there for the dispatcher's poll.
    _peer: OwnedFd,
    /// Readable once the worker has ended.
    ended: OwnedFd,
    /// Its exit code, once it has ended.
    code: Mutex<Option<i32>>,
    /// Frames for the rank, in order (the chunk keeps each, so a frame is
    /// sent from where it is), and whether the dispatcher let go of it.
    outgoing: Mutex<(VecDeque<Arc<Vec<u8>>>, bool)>,
    more: Condvar,
    /// Bytes from the rank that the dispatcher has not taken yet.
    incoming: Mutex<Vec<u8>>,
    /// Called after bytes are added to `incoming`.
    on_data: Box<dyn Fn() + Send + Sync>,
}

/// The dispatcher's end of a worker on another rank.
#[derive(Debug)]
pub(crate) struct RankLink {
    pub(crate) rank: u32,
    pub(crate) host: String,
    pub(crate) pid: i32,
    pub(crate) name: String,
    control: OwnedFd,
    bridge: Arc<Bridge>,
    stopped: AtomicBool,
}

impl std::fmt::Debug for Bridge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bridge").field("rank", &self.rank).finish_non_exhaustive()
    }
}

impl Drop for RankLink {
    fn drop(&mut self) {
        lock(&self.bridge.outgoing).1 = true;
        self.bridge.more.notify_all();
    }
}

impl RankLink {
    pub(crate) fn control(&self) -> BorrowedFd<'_> {
        self.control.as_fd()
    }

    /// Queues frames for the rank's sender thread.
    pub(crate) fn post(&self, frames: impl Iterator<Item = Arc<Vec<u8>>>) {
        lock(&self.bridge.outgoing).0.extend(frames);
        self.bridge.more.notify_one();
    }

    /// Gives `take` the bytes that came from the rank since the last call.
    pub(crate) fn take_incoming(&self, take: impl FnOnce(&[u8])) {
        let bytes = std::mem::take(&mut *lock(&self.bridge.incoming));
        if !bytes.is_empty() {
            take(&bytes);
        }
    }

    pub(crate) fn ended_fd(&self) -> BorrowedFd<'_> {
        self.bridge.ended.as_fd()
    }

    /// Its exit status, once its loop has ended.
    pub(crate) fn status(&self) -> Option<ExitStatus> {
        lock(&self.bridge.code).map(ExitStatus::Code)
    }

    /// A rank cannot be signalled: an ending signal (`SIGKILL`, `SIGTERM`)
    /// stops it instead: it skips every task it has not started
    /// and leaves after the one it runs.
    pub(crate) fn signal(&self, sig: i32) -> Result<()> {
        if ![sys::SIGKILL, sys::SIGTERM].contains(&sig) {
            return Err(Error::new(
                ErrorKind::Unsupported,
                format!("{} cannot be sent to MPI rank {} on {}", sys::signal_name(sig), self.rank, self.host),
            ));
        }
        if self.status().is_none() && !self.stopped.swap(true, Ordering::AcqRel) {
            let world = world::master()?;
            world::send(&world.comm().process_at_rank(self.rank as i32), &[0u8; 0][..], STOP);
        }
        Ok(())
    }

    /// Waits until its loop has ended, or until `deadline`.
    pub(crate) fn wait(&self, deadline: Option<Instant>) -> Result<Option<ExitStatus>> {
        loop {
            if let Some(status) = self.status() {
                return Ok(Some(status));
            }
            let Some(left) = crate::synchronize::time_left(deadline) else { return Ok(None) };
            let mut fds = [PollFd::new(&self.bridge.ended, PollFlags::IN)];
            sys::poll(&mut fds, left).map_err(|e| Error::io(&format!("waiting for MPI rank {}", self.rank), e))?;
        }
    }
}

/// How many ranks a pool of `wanted` workers gets (the default: every
/// free worker rank), or why it cannot have them.
pub(crate) fn worker_ranks(wanted: Option<usize>) -> Result<usize> {
    let world = world::master()?;
    let m = lock(&MASTER);
    let free = (1..world.size as usize).filter(|&r| m.slots.get(r).is_none_or(|s| matches!(s, Slot::Idle))).count();
    let refused: String = m
        .slots
        .iter()
        .enumerate()
        .filter_map(|(r, s)| match s {
            Slot::Refused(why) => Some(format!("; rank {r} serves no pool: {why}")),
            _ => None,
        })
        .collect();
    let n = wanted.unwrap_or(free);
    if n == 0 || n > free {
        return Err(Error::new(
            ErrorKind::InvalidInput,
            format!(
                "an MPI pool of {n} workers was asked for, and {free} of the job's {} worker ranks are free (one \
                 worker per rank; other pools hold the rest{refused}); start more ranks with `mpirun -np N`, or ask \
                 for fewer",
                world.size - 1
            ),
        ));
    }
    Ok(n)
}

/// Starts a pool worker on a free rank: sends it `START`, and waits for its
/// answer. `on_data` is called (on the MPI receiver thread) whenever
/// results from the rank are ready to take, with `RankLink::take_incoming`.
pub(crate) fn start_worker(
    initializer: Option<(TaskId, codec::Encoded)>,
    config: &crate::pool::Config,
    on_data: Box<dyn Fn() + Send + Sync>,
) -> Result<RankLink> {
    let world = world::master()?;
    let initializer = match initializer {
        Some((_, arg)) if !arg.fds.is_empty() => {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                "the initializer's argument holds handles (a Pipe, a Queue, a Lock...) whose fds cannot travel to \
                 another host; pass plain data to an MPI pool's initializer",
            ));
        }
        Some((id, arg)) => Some((id, arg.bytes)),
        None => None,
    };
    let start = Start {
        fingerprint: runtime::fingerprint().to_vec(),
        initializer,
        max_tasks: config.max_tasks,
        max_memory: config.max_memory,
        memory_limit: config.memory_limit,
        track_usage: config.track_usage,
        max_frame: codec::max_frame_size(),
    };
    let start = codec::encode(&start, "an MPI worker's start message")?;
    let (control, bridge) = new_bridge(on_data).map_err(|e| Error::io("making the bridge to an MPI worker", e))?;
    let (tx, rx) = mpsc::channel();
    let rank = {
        let mut m = lock(&MASTER);
        if m.slots.len() < world.size as usize {
            m.slots.resize_with(world.size as usize, || Slot::Idle);
        }
        if m.receiver.is_none() {
            let thread = std::thread::Builder::new()
                .name("multiproc-mpi-recv".into())
                .spawn(receive)
                .map_err(|e| Error::io("starting the MPI receiver thread", e))?;
            m.receiver = Some(thread);
        }
        let Some(rank) = (1..m.slots.len()).find(|&r| matches!(m.slots[r], Slot::Idle)) else {
            return Err(Error::new(
                ErrorKind::BrokenPool,
                "no MPI rank is free for a pool worker (every worker rank serves a pool, or runs another build); \
                 start more ranks with `mpirun -np N`",
            ));
        };
        m.slots[rank] = Slot::Starting(tx, Arc::new(Bridge { rank: rank as i32, ..bridge }));
        rank
    };
    world::send(&world.comm().process_at_rank(rank as i32), &start[..], START);
    let Ok(hello) = rx.recv_timeout(HELLO_LIMIT) else {
        lock(&MASTER).slots[rank] = Slot::Refused("it did not answer a pool's start message".into());
        return Err(Error::new(
            ErrorKind::Timeout,
            format!("MPI rank {rank} did not answer a pool's start message in {HELLO_LIMIT:?}; is it stuck in a task?"),
        ));
    };
    let (hello, bridge) = hello?;
    if let Some(why) = hello.refused {
        return Err(Error::new(
            ErrorKind::BuildMismatch,
            format!(
                "MPI rank {rank} on host {} (pid {}) cannot serve this pool: {why}. Every rank must run the identical \
                 binary: build once and start the same file on every host",
                hello.host, hello.pid
            ),
        ));
    }
    let sender = Arc::clone(&bridge);
    std::thread::Builder::new()
        .name(format!("multiproc-mpi-send-{rank}"))
        .spawn(move || send(&sender))
        .map_err(|e| Error::io("starting an MPI sender thread", e))?;
    Ok(RankLink {
        rank: rank as u32,
        name: format!("MpiPoolWorker-{rank}@{}", hello.host),
        host: hello.host,
        pid: hello.pid as i32,
        control,
        bridge,
        stopped: AtomicBool::new(false),
    })
}

/// A bridge (its rank set later) and the dispatcher's end of it.
fn new_bridge(on_data: Box<dyn Fn() + Send + Sync>) -> std::io::Result<(OwnedFd, Bridge)> {
    let (control, peer) = sys::socketpair_stream()?;
    // The dispatcher never blocks on a worker's socket.
    sys::set_nonblocking(control.as_fd(), true)?;
    let bridge = Bridge {
        rank: 0,
        _peer: peer,
        ended: sys::eventfd()?,
        code: Mutex::new(None),
        outgoing: Mutex::new((VecDeque::new(), false)),
        more: Condvar::new(),
        incoming: Mutex::new(Vec::new()),
        on_data,
    };
    Ok((control, bridge))
}

/// A sender thread: sends the frames the dispatcher posts to the worker's
/// rank, until the dispatcher lets go of it. Small frames go together in
/// one message; a large one goes alone, from where it is.
fn send(bridge: &Bridge) {
    let Some(world) = world::world() else { return };
    let comm = world.comm();
    let to = comm.process_at_rank(bridge.rank);
    let mut buf = Vec::with_capacity(64 << 10);
    loop {
        let frames: Vec<Arc<Vec<u8>>> = {
            let mut out = lock(&bridge.outgoing);
            while out.0.is_empty() && !out.1 {
                out = bridge.more.wait(out).unwrap_or_else(|p| p.into_inner());
            }
            if out.1 {
                return;
            }
            out.0.drain(..).collect()
        };
        for frame in frames {
            if frame.len() >= ALONE {
                if !buf.is_empty() {
                    world::send(&to, &buf[..], DATA);
                    buf.clear();
                }
                world::send(&to, &frame[..], DATA);
            } else {
                buf.extend_from_slice(&frame);
                if buf.len() >= DATA_MAX {
                    world::send(&to, &buf[..], DATA);
                    buf.clear();
                }
            }
        }
        if !buf.is_empty() {
            world::send(&to, &buf[..], DATA);
            buf.clear();
        }
    }
}

/// The receiver thread: every message to rank 0, until `QUIT`.
fn receive() {
    let Some(world) = world::world() else { return };
    let comm = world.comm();
    loop {
        let (bytes, status) = world::next_message(&comm.any_process());
        let from = status.source_rank() as usize;
        match status.tag() {
            QUIT if from == 0 => return,
            DATA => {
                let bridge = match lock(&MASTER).slots.get(from) {
                    Some(Slot::Busy(b)) => Arc::clone(b),
                    _ => continue,
                };
                {
                    let mut incoming = lock(&bridge.incoming);
                    if incoming.is_empty() {
                        *incoming = bytes;
                    } else {
                        incoming.extend_from_slice(&bytes);
                    }
                }
                (bridge.on_data)();
            }
            HELLO => {
                let mut m = lock(&MASTER);
                let Some(slot) = m.slots.get_mut(from) else { continue };
                let Slot::Starting(tx, bridge) = std::mem::replace(slot, Slot::Idle) else { continue };
                // The slot changes here, before the rank's first `DATA`
                // (which it sends after this answer) is taken.
                let answer = codec::decode::<Hello>(&bytes, "an MPI worker's answer");
                *slot = match &answer {
                    Ok(h) if h.refused.is_none() => Slot::Busy(Arc::clone(&bridge)),
                    Ok(h) => Slot::Refused(h.refused.clone().unwrap_or_default()),
                    Err(e) => Slot::Refused(e.to_string()),
                };
                let _ = tx.send(answer.map(|h| (h, bridge)));
            }
            GONE => {
                let code = bytes.get(..4).map_or(1, |b| i32::from_le_bytes(b.try_into().expect("4 bytes")));
                let mut m = lock(&MASTER);
                if let Some(slot) = m.slots.get_mut(from) {
                    if let Slot::Busy(bridge) = std::mem::replace(slot, Slot::Idle) {
                        *lock(&bridge.code) = Some(code);
                        let _ = sys::write_all(bridge.ended.as_fd(), &1u64.to_ne_bytes());
                    }
                }
            }
            _ => {}
        }
    }
}

/// At rank 0's exit: every worker rank leaves, then MPI ends.
pub(crate) extern "C" fn at_exit() {
    let Some(world) = world::world() else { return };
    let comm = world.comm();
    for r in 1..world.size {
        world::send(&comm.process_at_rank(r), &[0u8; 0][..], QUIT);
    }
    let receiver = lock(&MASTER).receiver.take();
    if let Some(thread) = receiver {
        world::send(&comm.process_at_rank(0), &[0u8; 0][..], QUIT);
        let _ = thread.join();
    }
    world.finalize();
}
