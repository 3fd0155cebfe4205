//! A worker rank (every rank but 0): waits for rank 0's pools, and serves
//! each as one pool worker, running the same worker loop as a local worker
//! process (`pool::worker`) on one end of a socket pair; this rank's main
//! thread feeds the other end with the `DATA` that rank 0 sends, and a
//! sender thread sends back what the loop writes. The loop's status page is
//! this rank's own: the main thread marks each task frame queued as it
//! passes, so that a `STOP` can cancel what has not started.

use std::sync::Arc;
use std::sync::atomic::{AtomicI32, Ordering};

use mpi::topology::Communicator;

use super::world::{DATA, GONE, HELLO, Hello, QUIT, START, STOP, Start, World};
use crate::codec::{self, Encoded};
use crate::pool::{StatusPage, WorkerConfig, run_worker, wire_kind_task};
use crate::runtime;
use crate::sys::{self, AsFd, OwnedFd};

/// Serves pools until rank 0 says `QUIT`, then ends MPI and the process.
pub(crate) fn serve(world: &World) -> ! {
    // Where a task panics reaches rank 0 with its message, as from a
    // local worker; the rank does not print it.
    runtime::install_panic_hook();
    let comm = world.comm();
    let root = comm.process_at_rank(0);
    let mut current: Option<Serving> = None;
    loop {
        let (bytes, status) = super::world::next_message(&root);
        match status.tag() {
            START => {
                drop(current.take());
                let (hello, serving) = start(&bytes);
                let answer = codec::encode(&hello, "an MPI worker's answer").unwrap_or_default();
                super::world::send(&root, &answer[..], HELLO);
                // Only now may results follow: rank 0 takes this rank's
                // `DATA` once it has the answer.
                current = serving.map(Serving::send_results);
            }
            DATA => {
                if let Some(s) = &mut current {
                    s.feed(&bytes);
                }
            }
            STOP => {
                if let Some(s) = &mut current {
                    s.stop();
                }
            }
            QUIT => break,
            _ => {}
        }
    }
    drop(current);
    world.finalize();
    sys::exit_now(0)
}

/// One pool's worker on this rank.
struct Serving {
    /// The main thread's end of the loop's socket.
    stream: Arc<OwnedFd>,
    /// The loop's exit code, once it has ended.
    code: Arc<AtomicI32>,
    page: StatusPage,
    frames: FrameCounter,
    stopped: bool,
}

/// Checks `START` and starts the loop: the answer, and the worker if it
/// serves.
fn start(bytes: &[u8]) -> (Hello, Option<Serving>) {
    let host = super::world::host();
    let pid = std::process::id();
    let refuse = |why: String| (Hello { refused: Some(why), host: host.clone(), pid }, None);
    let start: Start = match codec::decode(bytes, "a pool's start message") {
        Ok(s) => s,
        Err(e) => return refuse(format!("its start message could not be read ({e})")),
    };
    let ours = runtime::fingerprint();
    if start.fingerprint != ours {
        return refuse(format!(
            "it runs another build of the program (build fingerprint {} here, {} on rank 0)",
            hex(ours),
            hex(&start.fingerprint)
        ));
    }
    let _ = codec::set_max_frame_size(start.max_frame);
    let made = (|| -> crate::error::Result<(Serving, OwnedFd, WorkerConfig)> {
        let (ours, theirs) =
            sys::socketpair_stream().map_err(|e| crate::error::Error::io("making a socket pair", e))?;
        let page = StatusPage::new()?;
        let cfg = WorkerConfig {
            initializer: start.initializer.map(|(id, bytes)| (id, Encoded { bytes, ..Encoded::default() })),
            max_tasks: start.max_tasks,
            status: page.for_worker()?,
        };
        let serving = Serving {
            stream: Arc::new(ours),
            code: Arc::new(AtomicI32::new(1)),
            page,
            frames: FrameCounter::default(),
            stopped: false,
        };
        Ok((serving, theirs, cfg))
    })();
    let (serving, theirs, cfg) = match made {
        Ok(m) => m,
        Err(e) => return refuse(format!("it could not set up a worker: {e}")),
    };
    let spawned = std::thread::Builder::new().name("multiproc-mpi-worker".into()).spawn({
        let code = Arc::clone(&serving.code);
        move || {
            runtime::quiet_panics();
            code.store(run_worker(theirs.as_fd(), cfg), Ordering::Release);
            drop(theirs);
        }
    });
    if let Err(e) = spawned {
        return refuse(format!("it could not start its worker thread: {e}"));
    }
    (Hello { refused: None, host, pid }, Some(serving))
}

/// Sends rank 0 what the loop writes, then `GONE` with its exit code.
fn send_back(stream: &OwnedFd, code: &AtomicI32) {
    let comm = mpi::topology::SimpleCommunicator::world();
    let root = comm.process_at_rank(0);
    let mut buf = Vec::with_capacity(64 << 10);
    loop {
        buf.clear();
        match sys::read(stream.as_fd(), &mut buf, 4 << 20) {
            Ok(0) | Err(_) => break,
            Ok(_) => super::world::send(&root, &buf[..], DATA),
        }
    }
    super::world::send(&root, &code.load(Ordering::Acquire).to_le_bytes()[..], GONE);
}

impl Serving {
    /// Starts the thread that sends the loop's output to rank 0 (a rank
    /// that cannot start one tells rank 0 its worker has gone).
    fn send_results(self) -> Serving {
        let stream = Arc::clone(&self.stream);
        let code = Arc::clone(&self.code);
        let sent =
            std::thread::Builder::new().name("multiproc-mpi-send".into()).spawn(move || send_back(&stream, &code));
        if sent.is_err() {
            let _ = sys::shutdown_both(self.stream.as_fd());
            let comm = mpi::topology::SimpleCommunicator::world();
            super::world::send(&comm.process_at_rank(0), &1i32.to_le_bytes()[..], GONE);
        }
        self
    }

    /// Passes rank 0's bytes to the loop, marking each task queued first.
    fn feed(&mut self, bytes: &[u8]) {
        if self.stopped {
            return;
        }
        let page = &self.page;
        self.frames.feed(bytes, |seq| page.queue(seq));
        // A loop that has ended reads no more: the bytes are not wanted.
        let _ = sys::send_all(self.stream.as_fd(), bytes);
    }

    /// Cancels every task not started, and ends the loop's input: it
    /// leaves after the task it runs.
    fn stop(&mut self) {
        if std::mem::replace(&mut self.stopped, true) {
            return;
        }
        let from = self.page.snapshot().chunk;
        for seq in from..self.frames.tasks {
            self.page.cancel(seq);
        }
        let _ = sys::shutdown_write(self.stream.as_fd());
    }
}

/// Follows the frame stream's headers to count task frames.
#[derive(Debug, Default)]
struct FrameCounter {
    /// Header bytes of the next frame seen so far.
    header: [u8; codec::HEADER],
    have: usize,
    /// Payload bytes of the current frame still to pass.
    skip: u64,
    /// Task frames whose header has passed: the next task's number.
    tasks: u64,
}

impl FrameCounter {
    fn feed(&mut self, mut bytes: &[u8], mut on_task: impl FnMut(u64)) {
        while !bytes.is_empty() {
            if self.skip > 0 {
                let n = (self.skip.min(bytes.len() as u64)) as usize;
                self.skip -= n as u64;
                bytes = &bytes[n..];
                continue;
            }
            let n = (codec::HEADER - self.have).min(bytes.len());
            self.header[self.have..self.have + n].copy_from_slice(&bytes[..n]);
            self.have += n;
            bytes = &bytes[n..];
            if self.have == codec::HEADER {
                let raw = u64::from_le_bytes(self.header);
                self.have = 0;
                self.skip = raw & codec::LEN_MASK;
                if (raw >> 56) as u8 == wire_kind_task() {
                    on_task(self.tasks);
                    self.tasks += 1;
                }
            }
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_counter_finds_task_frames_cut_anywhere() {
        let mut stream = Vec::new();
        for (kind, len) in [(wire_kind_task(), 3usize), (99, 0), (wire_kind_task(), 20)] {
            stream.extend_from_slice(&((u64::from(kind) << 56) | len as u64).to_le_bytes());
            stream.extend(std::iter::repeat_n(7u8, len));
        }
        for cut in 1..stream.len() {
            let mut c = FrameCounter::default();
            let mut seen = Vec::new();
            for part in stream.chunks(cut) {
                c.feed(part, |s| seen.push(s));
            }
            assert_eq!(seen, [0, 1], "cut every {cut} bytes");
        }
    }
}
