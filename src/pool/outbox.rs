//! What the dispatcher has yet to write to one worker: whole frames, each
//! shared with the chunk that keeps it for sending again if the worker
//! dies, and written from where it is (one `sendmsg` with an iovec per
//! frame) instead of being copied into a buffer first.

use std::collections::VecDeque;
use std::io;
use std::sync::Arc;

use crate::sys::{self, BorrowedFd};

/// Frames written per `sendmsg`, at most.
const IOVECS: usize = 64;

#[derive(Debug, Default)]
pub(crate) struct Outbox {
    frames: VecDeque<Arc<Vec<u8>>>,
    /// How much of the first frame is written already.
    written: usize,
}

impl Outbox {
    /// Queues `frame` after the others.
    pub(crate) fn push(&mut self, frame: Arc<Vec<u8>>) {
        if !frame.is_empty() {
            self.frames.push_back(frame);
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    /// Takes every frame, none of them written yet (an MPI rank's frames
    /// are handed over whole).
    #[cfg(feature = "mpi")]
    pub(crate) fn drain(&mut self) -> impl Iterator<Item = Arc<Vec<u8>>> + '_ {
        debug_assert_eq!(self.written, 0);
        self.frames.drain(..)
    }

    /// Forgets what is left (the worker is gone).
    pub(crate) fn clear(&mut self) {
        self.frames.clear();
        self.written = 0;
    }

    /// Writes what the socket takes without blocking.
    pub(crate) fn flush(&mut self, fd: BorrowedFd<'_>) -> io::Result<()> {
        while !self.frames.is_empty() {
            let parts: Vec<&[u8]> = self
                .frames
                .iter()
                .take(IOVECS)
                .enumerate()
                .map(|(i, f)| if i == 0 { &f[self.written..] } else { &f[..] })
                .collect();
            let mut n = sys::send_vectored_nonblocking(fd, &parts)?;
            if n == 0 {
                return Ok(());
            }
            while n > 0 {
                let left = self.frames[0].len() - self.written;
                if n < left {
                    self.written += n;
                    break;
                }
                n -= left;
                self.frames.pop_front();
                self.written = 0;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::AsFd;

    #[test]
    fn frames_arrive_whole_and_in_order_across_partial_writes() {
        let (a, b) = sys::socketpair_stream().unwrap();
        sys::set_nonblocking(a.as_fd(), true).unwrap();
        let frames: Vec<Arc<Vec<u8>>> = (0..200u32).map(|i| Arc::new(vec![i as u8; 1000 + i as usize * 37])).collect();
        let mut out = Outbox::default();
        for f in &frames {
            out.push(Arc::clone(f));
        }
        let want: Vec<u8> = frames.iter().flat_map(|f| f.iter().copied()).collect();
        sys::set_nonblocking(b.as_fd(), true).unwrap();
        let mut got = Vec::new();
        // The socket takes far less than the 1.5 MB queued: flushes and
        // reads alternate until all is through.
        while got.len() < want.len() {
            out.flush(a.as_fd()).unwrap();
            while sys::read(b.as_fd(), &mut got, 1 << 16).is_ok_and(|n| n > 0) {}
        }
        assert!(out.is_empty());
        assert_eq!(got.len(), want.len());
        assert!(got == want);
    }
}
