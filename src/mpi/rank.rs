//! A worker rank (every rank but 0): waits for rank 0's pools, and serves
//! each as one pool worker, running the same worker loop as a local worker
//! process (`pool::worker`) on this rank's main thread, its channel being
//! MPI messages instead of a socket: the `DATA` that rank 0 sends are the
//! bytes of the task stream, and the loop's results go back as `DATA`.
//! The loop's status page is this rank's own: each task frame is marked
//! queued as it arrives, so that a `STOP` can cancel what has not started.

use std::time::{Duration, Instant};

use mpi::point_to_point::{MatchedReceiveVec, Source};
use mpi::topology::{Communicator, Process};

use super::world::{self, DATA, GONE, HELLO, Hello, QUIT, START, STOP, Start, World};
use crate::codec::{self, Encoded, FrameStream};
use crate::pool::{Channel, StatusPage, WorkerConfig, run_worker, wire_kind_task};
use crate::runtime;
use crate::sys;

/// How often a running worker looks for a `STOP`, at most.
const STOP_LOOK: Duration = Duration::from_millis(1);

/// Serves pools until rank 0 says `QUIT`, then ends MPI and the process.
pub(crate) fn serve(world: &World) -> ! {
    // Where a task panics reaches rank 0 with its message, as from a
    // local worker; the rank does not print it.
    runtime::install_panic_hook();
    runtime::quiet_panics();
    let comm = world.comm();
    let root = comm.process_at_rank(0);
    loop {
        let (bytes, status) = world::next_message(&root);
        match status.tag() {
            START => {
                let (hello, worker) = start(&bytes);
                let answer = codec::encode(&hello, "an MPI worker's answer").unwrap_or_default();
                world::send(&root, &answer[..], HELLO);
                let Some((cfg, page)) = worker else { continue };
                let mut chan = Messages {
                    root: &root,
                    page: &page,
                    frames: FrameCounter::default(),
                    ended: false,
                    quit: false,
                    looked: Instant::now(),
                };
                let code = run_worker(&mut chan, cfg);
                world::send(&root, &code.to_le_bytes()[..], GONE);
                if chan.quit {
                    break;
                }
            }
            QUIT => break,
            // `DATA` or `STOP` for a worker that has ended: not wanted.
            _ => {}
        }
    }
    world.finalize();
    sys::exit_now(0)
}

/// Checks `START`: the answer, and the worker's set-up if it serves.
fn start(bytes: &[u8]) -> (Hello, Option<(WorkerConfig, StatusPage)>) {
    let host = world::host();
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
    let made = (|| -> crate::error::Result<(WorkerConfig, StatusPage)> {
        let page = StatusPage::new()?;
        let cfg = WorkerConfig {
            initializer: start.initializer.map(|(id, bytes)| (id, Encoded { bytes, ..Encoded::default() })),
            max_tasks: start.max_tasks,
            max_memory: start.max_memory,
            memory_limit: start.memory_limit,
            track_usage: start.track_usage,
            // A budget is a semaphore of this host: ranks have none.
            tokens: None,
            status: page.for_worker()?,
        };
        Ok((cfg, page))
    })();
    match made {
        Ok(m) => (Hello { refused: None, host, pid }, Some(m)),
        Err(e) => refuse(format!("it could not set up a worker: {e}")),
    }
}

/// The worker loop's channel on a rank: MPI messages from and to rank 0.
struct Messages<'a> {
    root: &'a Process<'a>,
    /// The parent's side of the loop's status page.
    page: &'a StatusPage,
    frames: FrameCounter,
    /// A `STOP` or `QUIT` came: no more input.
    ended: bool,
    quit: bool,
    /// When it last looked for a `STOP` while running tasks.
    looked: Instant,
}

impl Messages<'_> {
    /// Cancels every task not started; the loop leaves once its input
    /// runs dry.
    fn stop(&mut self) {
        self.ended = true;
        let from = self.page.snapshot().chunk;
        for seq in from..self.frames.tasks {
            self.page.cancel(seq);
        }
    }
}

impl Channel for Messages<'_> {
    fn refill(&mut self, stream: &mut FrameStream) -> bool {
        while !self.ended {
            let (bytes, status) = world::next_message(self.root);
            match status.tag() {
                DATA => {
                    let page = self.page;
                    self.frames.feed(&bytes, |seq| page.queue(seq));
                    stream.push(&bytes);
                    return true;
                }
                STOP => self.stop(),
                QUIT => {
                    self.quit = true;
                    self.ended = true;
                }
                _ => self.ended = true,
            }
        }
        false
    }

    fn send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        world::send(self.root, bytes, DATA);
        Ok(())
    }

    fn look_for_stop(&mut self) {
        if self.ended || self.looked.elapsed() < STOP_LOOK {
            return;
        }
        self.looked = Instant::now();
        if let Some(found) = self.root.immediate_matched_probe_with_tag(STOP) {
            let _ = found.matched_receive_vec::<u8>();
            self.stop();
        }
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
