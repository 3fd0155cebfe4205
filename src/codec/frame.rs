//! Length-prefixed frames.
//!
//! A frame is an 8-byte little-endian header, `kind << 56 | length`, then
//! `length` payload bytes. A length above the frame-size limit is rejected
//! from the header alone, before anything is allocated; below it, the
//! buffer grows only as bytes actually arrive, so a lying header cannot
//! make the reader allocate much more than the peer really sent.

use serde::Serialize;

use super::{Sink, max_frame_size};
use crate::error::{Error, ErrorKind, Result};
use crate::sys::{self, BorrowedFd};

/// Bytes in a frame header.
pub(crate) const HEADER: usize = 8;
/// The largest length a header can carry.
pub(crate) const LEN_MASK: u64 = (1 << 56) - 1;

/// Frame kinds. Each protocol uses its own subset.
pub(crate) mod kind {
    /// Parent to child: a task header followed by the encoded argument.
    pub(crate) const TASK: u8 = 1;
    /// Child to parent: the encoded return value.
    pub(crate) const VALUE: u8 = 2;
    /// Child to parent: an encoded `PanicInfo`.
    pub(crate) const PANIC: u8 = 3;
    /// Child to parent: an encoded `RemoteError`.
    pub(crate) const ERROR: u8 = 4;
}

/// A frame being built: the header is reserved up front and patched by
/// [`FrameBuf::finish`], so the whole frame leaves in one write.
#[derive(Debug)]
pub(crate) struct FrameBuf {
    buf: Vec<u8>,
}

impl FrameBuf {
    pub(crate) fn new() -> Self {
        let mut buf = Vec::with_capacity(64);
        buf.extend_from_slice(&[0; HEADER]);
        FrameBuf { buf }
    }

    /// Appends raw payload bytes.
    pub(crate) fn extend(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// Appends `value`, serialized.
    pub(crate) fn push<T: Serialize + ?Sized>(&mut self, value: &T, what: &str) -> Result<()> {
        super::encode_into(value, &mut self.buf, what)
    }

    /// Writes the header and returns the finished frame.
    pub(crate) fn finish(mut self, kind: u8) -> Vec<u8> {
        let len = (self.buf.len() - HEADER) as u64;
        debug_assert!(len <= LEN_MASK);
        let header = (u64::from(kind) << 56) | (len & LEN_MASK);
        self.buf[..HEADER].copy_from_slice(&header.to_le_bytes());
        self.buf
    }
}

/// A one-shot frame of `kind` holding `value`.
pub(crate) fn frame_of<T: Serialize + ?Sized>(kind: u8, value: &T, what: &str) -> Result<Vec<u8>> {
    let mut f = FrameBuf::new();
    f.push(value, what)?;
    Ok(f.finish(kind))
}

/// The kind byte of a finished frame.
pub(crate) fn kind_of(frame: &[u8]) -> u8 {
    frame.get(HEADER - 1).copied().unwrap_or(0)
}

/// Checks a frame against the limit before sending it, so that the peer is
/// never asked to refuse it.
pub(crate) fn check_outgoing(frame: &[u8], what: &str) -> Result<()> {
    check_outgoing_len((frame.len() - HEADER) as u64, what)
}

/// Checks a payload of `len` bytes about to be sent against the limit.
pub(crate) fn check_outgoing_len(len: u64, what: &str) -> Result<()> {
    check_len(len, max_frame_size(), what)
}

pub(crate) fn check_len(len: u64, limit: u64, what: &str) -> Result<()> {
    if len > limit {
        return Err(too_large(what, len, limit));
    }
    Ok(())
}

fn too_large(what: &str, len: u64, limit: u64) -> Error {
    Error::new(
        ErrorKind::FrameTooLarge,
        format!(
            "{what} is {len} bytes, above the frame-size limit of {limit} bytes; send less data per \
             call, or raise the limit with multiproc::set_max_frame_size"
        ),
    )
}

/// A frame received whole.
#[derive(Debug)]
pub(crate) struct Frame {
    pub(crate) kind: u8,
    pub(crate) payload: Vec<u8>,
}

/// What one attempt to read a frame produced.
#[derive(Debug)]
pub(crate) enum ReadOutcome {
    /// A whole frame arrived.
    Frame(Frame),
    /// No more bytes for now (non-blocking fd).
    Pending,
    /// The peer closed; `partial` says whether a frame was cut short.
    Eof {
        /// A frame had begun and was cut short.
        partial: bool,
    },
}

/// Reassembles frames from a stream, over as many reads as it takes.
#[derive(Debug)]
pub(crate) struct FrameReader {
    header: Vec<u8>,
    payload: Vec<u8>,
    want: Option<(u8, usize)>,
    limit: u64,
}

/// The first allocation for a payload; it doubles from there as bytes come.
const FIRST_CHUNK: usize = 64 * 1024;

impl FrameReader {
    /// A reader that refuses frames above `limit` bytes.
    pub(crate) fn new(limit: u64) -> Self {
        FrameReader { header: Vec::with_capacity(HEADER), payload: Vec::new(), want: None, limit }
    }

    /// Reads from `fd` until a whole frame is assembled, the fd would block,
    /// or the peer closes. `what` names the stream in errors.
    pub(crate) fn read_from(&mut self, fd: BorrowedFd<'_>, what: &str) -> Result<ReadOutcome> {
        self.read_collecting(fd, what, None)
    }

    /// [`read_from`](FrameReader::read_from), with `recvmsg` when `fds` is
    /// given: the fds attached to the bytes read are appended to it.
    fn read_collecting(
        &mut self,
        fd: BorrowedFd<'_>,
        what: &str,
        mut fds: Option<&mut Vec<sys::OwnedFd>>,
    ) -> Result<ReadOutcome> {
        loop {
            match self.want {
                None => {
                    let need = HEADER - self.header.len();
                    match read_some(fd, &mut self.header, need, what, fds.as_deref_mut())? {
                        None => return Ok(ReadOutcome::Pending),
                        Some(0) => {
                            return Ok(ReadOutcome::Eof { partial: !self.header.is_empty() });
                        }
                        Some(_) if self.header.len() < HEADER => continue,
                        Some(_) => self.parse_header(what)?,
                    }
                }
                Some((kind, len)) => {
                    if self.payload.len() == len {
                        self.want = None;
                        self.header.clear();
                        let payload = std::mem::take(&mut self.payload);
                        return Ok(ReadOutcome::Frame(Frame { kind, payload }));
                    }
                    let room = self.payload.capacity() - self.payload.len();
                    if room == 0 {
                        let grow = self.payload.capacity().max(FIRST_CHUNK).min(len - self.payload.len());
                        self.payload.reserve_exact(grow);
                    }
                    let room = (self.payload.capacity() - self.payload.len()).min(len - self.payload.len());
                    match read_some(fd, &mut self.payload, room, what, fds.as_deref_mut())? {
                        None => return Ok(ReadOutcome::Pending),
                        Some(0) => return Ok(ReadOutcome::Eof { partial: true }),
                        Some(_) => {}
                    }
                }
            }
        }
    }

    fn parse_header(&mut self, what: &str) -> Result<()> {
        let raw = u64::from_le_bytes(self.header[..HEADER].try_into().expect("8 header bytes"));
        let kind = (raw >> 56) as u8;
        let len = raw & LEN_MASK;
        check_len(len, self.limit, what)?;
        let len = usize::try_from(len).map_err(|_| too_large(what, len, usize::MAX as u64))?;
        self.payload = Vec::with_capacity(len.min(FIRST_CHUNK));
        self.want = Some((kind, len));
        Ok(())
    }
}

/// One read of up to `max` bytes appended to `buf`: `None` if it would
/// block, `Some(0)` at end of file. With `fds`, a `recvmsg` that appends
/// the fds attached to those bytes.
fn read_some(
    fd: BorrowedFd<'_>,
    buf: &mut Vec<u8>,
    max: usize,
    what: &str,
    fds: Option<&mut Vec<sys::OwnedFd>>,
) -> Result<Option<usize>> {
    let read = match fds {
        Some(fds) => sys::recv_append(fd, buf, max, fds),
        None => sys::read(fd, buf, max),
    };
    match read {
        Ok(n) => Ok(Some(n)),
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Ok(None),
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => Ok(Some(0)),
        Err(e) => Err(Error::io(&format!("reading {what}"), e)),
    }
}

/// Reads one frame from a blocking stream socket, with the fds that came
/// attached to it (see [`write_frame_with_fds`]). `Ok(None)` at end of file
/// before a frame.
pub(crate) fn read_frame_with_fds(
    fd: BorrowedFd<'_>,
    limit: u64,
    what: &str,
) -> Result<Option<(Frame, Vec<sys::OwnedFd>)>> {
    let mut reader = FrameReader::new(limit);
    let mut fds = Vec::new();
    match reader.read_collecting(fd, what, Some(&mut fds))? {
        ReadOutcome::Frame(frame) => Ok(Some((frame, fds))),
        ReadOutcome::Eof { partial: false } if fds.is_empty() => Ok(None),
        ReadOutcome::Eof { .. } => Err(Error::new(
            ErrorKind::Protocol,
            format!("{what} ended in the middle of a frame; the peer died or wrote a corrupt frame"),
        )),
        ReadOutcome::Pending => {
            Err(Error::new(ErrorKind::Protocol, format!("{what} is non-blocking where a blocking read was expected")))
        }
    }
}

/// Writes a whole frame to a blocking stream socket, with `fds` attached
/// (`SCM_RIGHTS`), for [`read_frame_with_fds`].
///
/// One message carries at most [`sys::MAX_FDS`] fds, so more go in
/// batches: batch `i` rides on byte `i` of the frame alone, and the last
/// one on the rest of the header (or on its own byte past it). A Unix
/// stream socket ends a read after bytes that carry fds, so the reader
/// gets each batch with its own `recvmsg` and none is cut off. The frame
/// has a byte for every batch: each handle's slot index takes one.
pub(crate) fn write_frame_with_fds(fd: BorrowedFd<'_>, frame: &[u8], fds: &[sys::OwnedFd]) -> std::io::Result<()> {
    use sys::AsFd;
    if fds.is_empty() {
        return sys::send_all(fd, frame);
    }
    let batches = fds.len().div_ceil(sys::MAX_FDS);
    let carriers = HEADER.max(batches);
    if frame.len() < carriers {
        return Err(std::io::Error::other(format!(
            "{} fds need {carriers} bytes to ride on, and the frame has {}",
            fds.len(),
            frame.len()
        )));
    }
    for (i, batch) in fds.chunks(sys::MAX_FDS).enumerate() {
        let bytes = if i + 1 == batches { &frame[i..carriers] } else { &frame[i..=i] };
        let borrowed: Vec<BorrowedFd<'_>> = batch.iter().map(AsFd::as_fd).collect();
        sys::send_fds(fd, bytes, &borrowed)?;
    }
    sys::send_all(fd, &frame[carriers..])
}

/// Appends one frame of `kind` to `out`, whose payload `body` appends; on
/// error `out` is left as it was. For batching many frames into one write.
pub(crate) fn append_frame<S: Sink + ?Sized>(
    out: &mut S,
    kind: u8,
    body: impl FnOnce(&mut S) -> Result<()>,
) -> Result<()> {
    let start = out.len();
    out.extend_from_slice(&[0; HEADER]);
    if let Err(e) = body(out) {
        out.truncate(start);
        return Err(e);
    }
    let len = (out.len() - start - HEADER) as u64;
    let header = (u64::from(kind) << 56) | (len & LEN_MASK);
    out.written_mut()[start..start + HEADER].copy_from_slice(&header.to_le_bytes());
    Ok(())
}

/// Reads a stream that carries many frames, in large reads: frames that
/// fit the buffer are cut out of it, so a read returns dozens of small
/// frames at once; a larger one is read into its own allocation, which
/// grows only as its bytes arrive. Lengths are checked against the limit
/// from the header, before anything is allocated.
#[derive(Debug)]
pub(crate) struct FrameStream {
    buf: Vec<u8>,
    pos: usize,
    big: Option<(u8, usize, Vec<u8>)>,
    limit: u64,
    /// Bytes of the stream handed out as whole frames so far.
    consumed: u64,
}

/// The stream buffer; frames larger than half of it are read on their own.
const STREAM_BUF: usize = 64 * 1024;
/// The first allocation for a frame read on its own: a stream's peer is a
/// worker of ours, so the header is trusted up to this size, which saves
/// reallocating a result of a few MiB again and again as it arrives.
const STREAM_FIRST: usize = 16 << 20;

impl FrameStream {
    pub(crate) fn new(limit: u64) -> Self {
        FrameStream { buf: Vec::with_capacity(STREAM_BUF), pos: 0, big: None, limit, consumed: 0 }
    }

    /// How many bytes of the stream were handed out as whole frames: where
    /// the first frame not handed out yet starts.
    pub(crate) fn consumed(&self) -> u64 {
        self.consumed
    }

    /// Whether a whole frame is already read and waiting.
    pub(crate) fn has_buffered(&self) -> bool {
        if let Some((_, want, payload)) = &self.big {
            return payload.len() >= *want;
        }
        let avail = &self.buf[self.pos..];
        if avail.len() < HEADER {
            return false;
        }
        let raw = u64::from_le_bytes(avail[..HEADER].try_into().expect("8 header bytes"));
        avail.len() - HEADER >= (raw & LEN_MASK) as usize
    }

    /// The next frame already read, without reading more.
    pub(crate) fn next_buffered(&mut self, what: &str) -> Result<Option<Frame>> {
        if let Some((kind, want, payload)) = &mut self.big {
            if payload.len() < *want {
                return Ok(None);
            }
            let (kind, payload) = (*kind, std::mem::take(payload));
            self.big = None;
            self.consumed += (HEADER + payload.len()) as u64;
            return Ok(Some(Frame { kind, payload }));
        }
        let avail = &self.buf[self.pos..];
        if avail.len() < HEADER {
            return Ok(None);
        }
        let raw = u64::from_le_bytes(avail[..HEADER].try_into().expect("8 header bytes"));
        let kind = (raw >> 56) as u8;
        let len = raw & LEN_MASK;
        check_len(len, self.limit, what)?;
        let len = usize::try_from(len).map_err(|_| too_large(what, len, usize::MAX as u64))?;
        if avail.len() - HEADER >= len {
            let payload = avail[HEADER..HEADER + len].to_vec();
            self.pos += HEADER + len;
            self.consumed += (HEADER + len) as u64;
            return Ok(Some(Frame { kind, payload }));
        }
        if len > STREAM_BUF / 2 {
            let mut payload = Vec::with_capacity(len.min(STREAM_FIRST));
            payload.extend_from_slice(&avail[HEADER..]);
            self.pos = self.buf.len();
            self.big = Some((kind, len, payload));
        }
        Ok(None)
    }

    /// Adds bytes of the stream that arrived some other way (an MPI
    /// message): the next bytes after what it holds.
    #[cfg(any(feature = "mpi", feature = "fuzzing", test))]
    pub(crate) fn push(&mut self, mut bytes: &[u8]) {
        if let Some((_, want, payload)) = &mut self.big {
            let n = (*want - payload.len()).min(bytes.len());
            payload.extend_from_slice(&bytes[..n]);
            bytes = &bytes[n..];
        }
        if bytes.is_empty() {
            return;
        }
        if self.pos > 0 && (self.pos == self.buf.len() || self.pos > STREAM_BUF / 2) {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// One read from `fd`: `Some(0)` at end of file, `None` if it would
    /// block.
    pub(crate) fn fill(&mut self, fd: BorrowedFd<'_>, what: &str) -> Result<Option<usize>> {
        if let Some((_, want, payload)) = &mut self.big {
            let missing = *want - payload.len();
            if payload.capacity() == payload.len() {
                let grow = payload.capacity().max(FIRST_CHUNK).min(missing);
                payload.reserve_exact(grow);
            }
            let room = (payload.capacity() - payload.len()).min(missing);
            return read_some(fd, payload, room, what, None);
        }
        if self.pos > 0 && (self.pos == self.buf.len() || self.pos > STREAM_BUF / 2) {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        let room = STREAM_BUF.saturating_sub(self.buf.len()).max(HEADER);
        read_some(fd, &mut self.buf, room, what, None)
    }
}

/// Parses one whole frame held in memory (header included).
pub(crate) fn parse_frame(bytes: &[u8], limit: u64, what: &str) -> Result<Frame> {
    let header: [u8; HEADER] = bytes
        .get(..HEADER)
        .and_then(|h| h.try_into().ok())
        .ok_or_else(|| Error::new(ErrorKind::Protocol, format!("{what} is shorter than a frame header")))?;
    let raw = u64::from_le_bytes(header);
    let len = raw & LEN_MASK;
    check_len(len, limit, what)?;
    if len != (bytes.len() - HEADER) as u64 {
        return Err(Error::new(
            ErrorKind::Protocol,
            format!("{what} declares {len} bytes but holds {}; the frame is corrupt", bytes.len() - HEADER),
        ));
    }
    Ok(Frame { kind: (raw >> 56) as u8, payload: bytes[HEADER..].to_vec() })
}

/// Writes a whole frame to `fd`.
pub(crate) fn write_frame(fd: BorrowedFd<'_>, frame: &[u8], what: &str) -> Result<()> {
    sys::send_all(fd, frame).map_err(|e| Error::io(&format!("writing {what}"), e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::{DEFAULT_MAX_FRAME_SIZE, Point, decode};
    use crate::sys::{AsFd, socketpair_stream};

    #[test]
    fn frames_round_trip_over_a_socket() {
        let (a, b) = socketpair_stream().unwrap();
        let frame = frame_of(kind::VALUE, &Point { x: 1, name: "b".into() }, "v").unwrap();
        assert_eq!(kind_of(&frame), kind::VALUE);
        write_frame(a.as_fd(), &frame, "test").unwrap();
        write_frame(a.as_fd(), &frame, "test").unwrap();
        drop(a);
        let mut r = FrameReader::new(1024);
        for _ in 0..2 {
            match r.read_from(b.as_fd(), "test").unwrap() {
                ReadOutcome::Frame(f) => {
                    assert_eq!(f.kind, kind::VALUE);
                    assert_eq!(decode::<Point>(&f.payload, "v").unwrap().x, 1);
                }
                other => panic!("{other:?}"),
            }
        }
        assert!(matches!(r.read_from(b.as_fd(), "test").unwrap(), ReadOutcome::Eof { partial: false }));
    }

    /// More fds than one message carries (`SCM_MAX_FD`, 253) travel in
    /// batches, each with its own byte; a second frame follows intact.
    /// (Before, an argument with more than 253 handles was refused.)
    #[test]
    fn a_frame_carries_more_fds_than_one_message_can() {
        // 1,200 fds are open at the peak; a soft limit is often 1,024.
        let mut limit = rustix::process::getrlimit(rustix::process::Resource::Nofile);
        limit.current = limit.maximum.map(|m| m.min(4_096));
        let _ = rustix::process::setrlimit(rustix::process::Resource::Nofile, limit);
        let (a, b) = socketpair_stream().unwrap();
        for n in [1, sys::MAX_FDS, sys::MAX_FDS + 1, 600] {
            let files: Vec<sys::OwnedFd> = (0..n).map(|_| sys::memfd("batch", 0).unwrap()).collect();
            let ids: Vec<u64> = files.iter().map(|f| sys::file_id(f.as_fd()).unwrap().0.ino).collect();
            // One byte per fd, as the handles' slot indices take.
            let frame = frame_of(kind::TASK, &vec![7u8; n], "v").unwrap();
            let writer = {
                let a = a.try_clone().unwrap();
                std::thread::spawn(move || {
                    write_frame_with_fds(a.as_fd(), &frame, &files).unwrap();
                    write_frame(a.as_fd(), &frame_of(kind::VALUE, &5u32, "v").unwrap(), "test").unwrap();
                })
            };
            let (f, fds) = read_frame_with_fds(b.as_fd(), 1 << 20, "test").unwrap().unwrap();
            assert_eq!((f.kind, decode::<Vec<u8>>(&f.payload, "v").unwrap()), (kind::TASK, vec![7u8; n]));
            let got: Vec<u64> = fds.iter().map(|f| sys::file_id(f.as_fd()).unwrap().0.ino).collect();
            assert_eq!(got, ids, "{n} fds, in order");
            let (f, fds) = read_frame_with_fds(b.as_fd(), 1 << 20, "test").unwrap().unwrap();
            assert_eq!((f.kind, decode::<u32>(&f.payload, "v").unwrap(), fds.len()), (kind::VALUE, 5, 0));
            writer.join().unwrap();
        }
        drop(a);
        assert!(read_frame_with_fds(b.as_fd(), 1 << 20, "test").unwrap().is_none());
    }

    #[test]
    fn a_frame_of_2_pow_40_declared_bytes_is_refused_before_allocating() {
        let (a, b) = socketpair_stream().unwrap();
        let header = (u64::from(kind::VALUE) << 56) | (1u64 << 40);
        sys::send_all(a.as_fd(), &header.to_le_bytes()).unwrap();
        let mut r = FrameReader::new(DEFAULT_MAX_FRAME_SIZE);
        let err = r.read_from(b.as_fd(), "the result stream").unwrap_err();
        assert_eq!(err.kind(), ErrorKind::FrameTooLarge);
        assert!(err.to_string().contains("1099511627776"), "{err}");
        assert_eq!(r.payload.capacity(), 0);
    }

    #[test]
    fn a_lying_header_allocates_only_what_arrives() {
        let (a, b) = socketpair_stream().unwrap();
        sys::set_nonblocking(b.as_fd(), true).unwrap();
        let header = (u64::from(kind::VALUE) << 56) | (512u64 << 20);
        sys::send_all(a.as_fd(), &header.to_le_bytes()).unwrap();
        sys::send_all(a.as_fd(), &[7; 100]).unwrap();
        let mut r = FrameReader::new(DEFAULT_MAX_FRAME_SIZE);
        assert!(matches!(r.read_from(b.as_fd(), "s").unwrap(), ReadOutcome::Pending));
        assert!(r.payload.capacity() <= FIRST_CHUNK);
        drop(a);
        assert!(matches!(r.read_from(b.as_fd(), "s").unwrap(), ReadOutcome::Eof { partial: true }));
    }

    #[test]
    fn outgoing_frames_are_checked_against_the_limit() {
        let frame = frame_of(kind::VALUE, &vec![0u8; 100], "v").unwrap();
        assert!(check_outgoing(&frame, "v").is_ok());
        assert!(check_len(100, 100, "v").is_ok());
        assert_eq!(check_len(101, 100, "v").unwrap_err().kind(), ErrorKind::FrameTooLarge);
    }

    #[test]
    fn pushed_bytes_cut_anywhere_come_out_as_their_frames() {
        let frames: Vec<(u8, Vec<u8>)> = vec![(1, vec![1; 3]), (2, vec![]), (3, vec![7; STREAM_BUF]), (4, vec![9; 10])];
        let mut bytes = Vec::new();
        for (kind, payload) in &frames {
            bytes.extend_from_slice(&((u64::from(*kind) << 56) | payload.len() as u64).to_le_bytes());
            bytes.extend_from_slice(payload);
        }
        for cut in [1, 7, 100, 4096, STREAM_BUF / 2 + 3, bytes.len()] {
            let mut stream = FrameStream::new(DEFAULT_MAX_FRAME_SIZE);
            let mut out = Vec::new();
            for part in bytes.chunks(cut) {
                stream.push(part);
                while let Some(f) = stream.next_buffered("a test stream").unwrap() {
                    out.push((f.kind, f.payload));
                }
            }
            assert_eq!(out, frames, "cut every {cut} bytes");
            assert_eq!(stream.consumed(), bytes.len() as u64);
        }
    }

    #[test]
    fn a_stream_cuts_many_frames_from_one_read_and_big_ones_apart() {
        let (a, b) = socketpair_stream().unwrap();
        let mut out = Vec::new();
        for i in 0..50u32 {
            append_frame(&mut out, kind::VALUE, |buf| {
                buf.extend_from_slice(&i.to_le_bytes());
                Ok(())
            })
            .unwrap();
        }
        let big = vec![9u8; 200_000];
        append_frame(&mut out, kind::TASK, |buf| {
            buf.extend_from_slice(&big);
            Ok(())
        })
        .unwrap();
        let writer = std::thread::spawn(move || {
            sys::send_all(a.as_fd(), &out).unwrap();
        });
        let mut s = FrameStream::new(1 << 20);
        let mut got = Vec::new();
        while got.len() < 51 {
            match s.next_buffered("t").unwrap() {
                Some(f) => got.push(f),
                None => assert!(s.fill(b.as_fd(), "t").unwrap().unwrap() > 0),
            }
        }
        writer.join().unwrap();
        assert_eq!(got[7].payload, 7u32.to_le_bytes());
        assert_eq!((got[50].kind, got[50].payload.len()), (kind::TASK, 200_000));
        // A refused body leaves the buffer as it was.
        let mut out = vec![1, 2, 3];
        let err = append_frame(&mut out, kind::VALUE, |buf| {
            buf.push(4);
            Err(Error::new(ErrorKind::Serialize, "no"))
        });
        assert!(err.is_err());
        assert_eq!(out, [1, 2, 3]);
    }

    #[test]
    fn a_stream_refuses_an_oversized_header() {
        let (a, b) = socketpair_stream().unwrap();
        let header = (u64::from(kind::VALUE) << 56) | (1u64 << 40);
        sys::send_all(a.as_fd(), &header.to_le_bytes()).unwrap();
        let mut s = FrameStream::new(1 << 20);
        s.fill(b.as_fd(), "t").unwrap();
        assert_eq!(s.next_buffered("t").unwrap_err().kind(), ErrorKind::FrameTooLarge);
    }

    #[test]
    fn frames_in_memory_are_checked_whole() {
        let frame = frame_of(kind::TASK, &7u32, "t").unwrap();
        let parsed = parse_frame(&frame, 1024, "t").unwrap();
        assert_eq!((parsed.kind, decode::<u32>(&parsed.payload, "t").unwrap()), (kind::TASK, 7));
        assert_eq!(parse_frame(&frame[..frame.len() - 1], 1024, "t").unwrap_err().kind(), ErrorKind::Protocol);
        assert_eq!(parse_frame(&frame[..3], 1024, "t").unwrap_err().kind(), ErrorKind::Protocol);
        assert_eq!(parse_frame(&frame, 0, "t").unwrap_err().kind(), ErrorKind::FrameTooLarge);
    }
}

#[cfg(test)]
mod proptests {
    use proptest::prelude::*;

    use super::*;
    use crate::codec::DEFAULT_MAX_FRAME_SIZE;
    use crate::sys::{AsFd, OwnedFd, socketpair_stream};

    fn config() -> ProptestConfig {
        ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() }
    }

    fn header(kind: u8, len: u64) -> [u8; HEADER] {
        ((u64::from(kind) << 56) | (len & LEN_MASK)).to_le_bytes()
    }

    /// A stream of frames, whole or torn, lying headers and loose bytes.
    fn stream() -> impl Strategy<Value = Vec<u8>> {
        let small = (any::<u8>(), prop::collection::vec(any::<u8>(), 0..64))
            .prop_map(|(kind, payload)| [&header(kind, payload.len() as u64)[..], &payload].concat());
        // Above half the stream buffer, so FrameStream reads it on its own.
        let big = (any::<u8>(), 30_000..70_000usize, any::<u8>())
            .prop_map(|(kind, len, fill)| [&header(kind, len as u64)[..], &vec![fill; len]].concat());
        let lying = (any::<u8>(), any::<u64>()).prop_map(|(kind, len)| header(kind, len).to_vec());
        let loose = prop::collection::vec(any::<u8>(), 0..16);
        let piece = prop_oneof![6 => small, 1 => big, 2 => lying, 2 => loose];
        let pieces = prop::collection::vec(piece, 0..6);
        (pieces, any::<prop::sample::Index>(), any::<bool>()).prop_map(|(pieces, cut, torn)| {
            let bytes = pieces.concat();
            // Sometimes cut the stream anywhere, through a frame.
            if torn && !bytes.is_empty() {
                let at = cut.index(bytes.len());
                bytes[..at].to_vec()
            } else {
                bytes
            }
        })
    }

    fn limits() -> impl Strategy<Value = u64> {
        prop_oneof![0..=64u64, 0..=80_000u64, Just(DEFAULT_MAX_FRAME_SIZE), Just(LEN_MASK)]
    }

    /// How a stream ends after its last whole frame.
    #[derive(Debug, PartialEq, Clone, Copy)]
    enum End {
        /// At a frame boundary.
        Clean,
        /// In the middle of a header or a payload.
        Torn,
        /// At a header above the limit.
        TooLarge,
    }

    /// What a correct reader makes of `bytes`: its whole frames, then how
    /// it ends.
    fn model(mut rest: &[u8], limit: u64) -> (Vec<(u8, Vec<u8>)>, End) {
        let mut frames = Vec::new();
        loop {
            if rest.is_empty() {
                return (frames, End::Clean);
            }
            let Some(h) = rest.first_chunk::<HEADER>() else {
                return (frames, End::Torn);
            };
            let raw = u64::from_le_bytes(*h);
            let len = raw & LEN_MASK;
            if len > limit {
                return (frames, End::TooLarge);
            }
            let body = &rest[HEADER..];
            if (body.len() as u64) < len {
                return (frames, End::Torn);
            }
            let len = len as usize;
            frames.push(((raw >> 56) as u8, body[..len].to_vec()));
            rest = &body[len..];
        }
    }

    /// A socket whose peer writes `bytes` from a thread, then closes.
    fn feed(bytes: Vec<u8>) -> (OwnedFd, std::thread::JoinHandle<()>) {
        let (ours, theirs) = socketpair_stream().unwrap();
        let writer = std::thread::spawn(move || {
            // The reader may stop early and close: a failed write is fine.
            let _ = sys::send_all(theirs.as_fd(), &bytes);
        });
        (ours, writer)
    }

    /// The most a payload buffer may hold after `sent` bytes arrived:
    /// `first` (the first allocation), else twice what came, never above
    /// the declared length.
    fn bound(first: usize, sent: usize, declared: usize) -> usize {
        first.max(2 * sent).min(declared)
    }

    proptest! {
        #![proptest_config(config())]

        #[test]
        fn parse_frame_on_any_bytes_gives_the_frame_or_a_typed_error(bytes in stream(), limit in limits()) {
            match parse_frame(&bytes, limit, "t") {
                Ok(frame) => {
                    prop_assert_eq!(model(&bytes, limit), (vec![(frame.kind, frame.payload)], End::Clean));
                }
                Err(e) => {
                    let kind = e.kind();
                    prop_assert!(matches!(kind, ErrorKind::Protocol | ErrorKind::FrameTooLarge), "{:?}", kind);
                    let (frames, end) = model(&bytes, limit);
                    prop_assert!(!(frames.len() == 1 && end == End::Clean));
                    if kind == ErrorKind::FrameTooLarge {
                        prop_assert!(frames.is_empty() && end == End::TooLarge);
                    }
                }
            }
        }

        #[test]
        fn frames_appended_parse_back_whole(kind in any::<u8>(), payload in prop::collection::vec(any::<u8>(), 0..300)) {
            let mut out = Vec::new();
            append_frame(&mut out, kind, |buf| {
                buf.extend_from_slice(&payload);
                Ok(())
            })
            .unwrap();
            let frame = parse_frame(&out, payload.len() as u64, "t").unwrap();
            prop_assert_eq!((frame.kind, frame.payload), (kind, payload));
        }

        #[test]
        fn a_frame_reader_cuts_any_stream_as_the_format_says_and_allocates_only_what_arrives(
            bytes in stream(),
            limit in limits(),
        ) {
            let expected = model(&bytes, limit);
            let sent = bytes.len();
            let (fd, writer) = feed(bytes);
            let mut r = FrameReader::new(limit);
            let mut frames = Vec::new();
            let end = loop {
                let outcome = r.read_from(fd.as_fd(), "s");
                if let Some((_, len)) = r.want {
                    prop_assert!(r.payload.capacity() <= bound(FIRST_CHUNK, sent, len));
                }
                match outcome {
                    Ok(ReadOutcome::Frame(f)) => frames.push((f.kind, f.payload)),
                    Ok(ReadOutcome::Eof { partial }) => break if partial { End::Torn } else { End::Clean },
                    Ok(ReadOutcome::Pending) => prop_assert!(false, "a blocking socket never says pending"),
                    Err(e) => {
                        prop_assert_eq!(e.kind(), ErrorKind::FrameTooLarge);
                        break End::TooLarge;
                    }
                }
            };
            drop(fd);
            writer.join().unwrap();
            prop_assert_eq!((frames, end), expected);
        }

        #[test]
        fn a_frame_stream_cuts_any_stream_as_the_format_says_and_allocates_at_most_its_first_chunk(
            bytes in stream(),
            limit in limits(),
        ) {
            let expected = model(&bytes, limit);
            let sent = bytes.len();
            let (fd, writer) = feed(bytes);
            let mut s = FrameStream::new(limit);
            let mut frames = Vec::new();
            let end = loop {
                match s.next_buffered("s") {
                    Ok(Some(f)) => frames.push((f.kind, f.payload)),
                    Ok(None) => match s.fill(fd.as_fd(), "s").unwrap() {
                        Some(0) => break if s.pos < s.buf.len() || s.big.is_some() { End::Torn } else { End::Clean },
                        Some(_) => {}
                        None => prop_assert!(false, "a blocking socket never says pending"),
                    },
                    Err(e) => {
                        prop_assert_eq!(e.kind(), ErrorKind::FrameTooLarge);
                        break End::TooLarge;
                    }
                }
                if let Some((_, len, payload)) = &s.big {
                    prop_assert!(payload.capacity() <= bound(STREAM_FIRST, sent, *len));
                }
                prop_assert!(s.buf.capacity() <= 2 * STREAM_BUF);
            };
            drop(fd);
            writer.join().unwrap();
            prop_assert_eq!((frames, end), expected);
        }

        #[test]
        fn blocking_reads_of_any_stream_give_frames_then_none_or_a_typed_error(bytes in stream(), limit in limits()) {
            let (expected, expected_end) = model(&bytes, limit);
            let (fd, writer) = feed(bytes);
            let mut frames = Vec::new();
            let end = loop {
                match read_frame_with_fds(fd.as_fd(), limit, "s") {
                    Ok(Some((f, fds))) => {
                        prop_assert!(fds.is_empty());
                        frames.push((f.kind, f.payload));
                    }
                    Ok(None) => break End::Clean,
                    Err(e) if e.kind() == ErrorKind::Protocol => break End::Torn,
                    Err(e) => {
                        prop_assert_eq!(e.kind(), ErrorKind::FrameTooLarge);
                        break End::TooLarge;
                    }
                }
            };
            drop(fd);
            writer.join().unwrap();
            prop_assert_eq!((frames, end), (expected, expected_end));
        }
    }
}
