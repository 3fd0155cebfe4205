//! Entry points for the fuzz targets in `fuzz/` (feature `fuzzing`, off by
//! default; not a stable API). Each hands bytes to the real decoder of one
//! of multiproc's private wires, as its receiving side does, and stops
//! before anything would run:
//!
//! - [`task_envelope`]: the task frame a spawn or fork-server child reads
//!   to learn what to run (`runtime/serve.rs`), task id resolution included;
//! - [`pool_wire`]: the frames a pool worker reads from the dispatcher,
//!   and those the dispatcher reads from a worker (`pool/wire.rs`).
//!
//! The two public wires are fuzzed through the public API (a [`Pipe`]'s
//! frames, a [`Listener`](crate::connection::Listener)'s handshake).
//! [`seeds`] makes the committed seed corpora with the real encoders.

use std::io::Read;
use std::os::unix::net::UnixStream;

use crate::connection::Connection;
pub use crate::pool::fuzz::{PoolWireSeen, pool_wire};
pub use crate::runtime::fuzz::{TaskEnvelope, task_envelope};
use crate::sys::AsFd;
use crate::{Error, Pipe, Result};

/// A seed input: the fuzz target it is for, its file name, its bytes.
#[derive(Debug)]
pub struct Seed {
    /// The fuzz target's name (`frames`, `handshake`, `task_envelope`,
    /// `pool_wire`).
    pub target: &'static str,
    /// The file name in the target's corpus.
    pub name: &'static str,
    /// The input.
    pub bytes: Vec<u8>,
}

/// Every target's seed inputs: valid inputs made by the real encoders,
/// and a few edge cases. Task ids and build fingerprints in them are
/// those of the program that runs this.
///
/// # Errors
///
/// If an encoder or a socket fails.
pub fn seeds() -> Result<Vec<Seed>> {
    let mut all = Vec::new();
    let mut add = |target: &'static str, seeds: Vec<(&'static str, Vec<u8>)>| {
        all.extend(seeds.into_iter().map(|(name, bytes)| Seed { target, name, bytes }));
    };
    add("frames", frames_seeds()?);
    add("handshake", handshake_seeds()?);
    add("task_envelope", crate::runtime::fuzz::seeds()?);
    add("pool_wire", crate::pool::fuzz::seeds()?);
    Ok(all)
}

/// The bytes a peer writes when it calls `send` on its end of a pipe.
fn written(send: impl FnOnce(&Connection) -> Result<()>) -> Result<Vec<u8>> {
    let (ours, theirs) = Pipe(true)?;
    send(&ours)?;
    drop(ours);
    let fd = theirs.as_fd().try_clone_to_owned().map_err(|e| Error::io("reading a seed", e))?;
    let mut raw = UnixStream::from(fd);
    drop(theirs);
    let mut bytes = Vec::new();
    raw.read_to_end(&mut bytes).map_err(|e| Error::io("reading a seed", e))?;
    Ok(bytes)
}

/// The `frames` target's input: one byte that picks how each message is
/// received (two bits per message: `recv_bytes`, `recv_bytes_max(that
/// byte)`, `recv::<String>`, `recv::<Vec<(u16, String)>>`), then what the
/// peer wrote.
fn frames_seeds() -> Result<Vec<(&'static str, Vec<u8>)>> {
    let ways = |w: [u8; 4]| w[0] | w[1] << 2 | w[2] << 4 | w[3] << 6;
    let input = |w: [u8; 4], bytes: Vec<u8>| [vec![ways(w)], bytes].concat();
    let each_way = written(|c| {
        c.send_bytes(b"raw bytes")?;
        c.send_bytes(b"at most the ways byte")?;
        c.send("hello")?;
        c.send(&vec![(1u16, "one".to_owned()), (2, String::new())])
    })?;
    let strings = written(|c| ["", "é", "a longer string, still short"].iter().try_for_each(|s| c.send(*s)))?;
    let empties = written(|c| (0..4).try_for_each(|_| c.send_bytes(b"")))?;
    let mut cut = written(|c| c.send_bytes(&[7; 64]))?;
    cut.truncate(20);
    Ok(vec![
        ("each-way", input([0, 1, 2, 3], each_way)),
        ("strings", input([2, 2, 2, 2], strings)),
        ("empty-messages", input([0, 0, 0, 0], empties)),
        ("cut-short", input([0, 0, 0, 0], cut)),
        ("not-utf8", input([2, 2, 2, 2], written(|c| c.send_bytes(b"\x05\xff\xfe\xfd\xfc\xfb"))?)),
        // Python's long header (-1, then 8 bytes), a negative length, and a
        // length above any limit.
        ("long-header", input([0, 0, 0, 0], [&[0xff; 4][..], &3u64.to_be_bytes(), b"abc"].concat())),
        ("negative-length", input([0, 0, 0, 0], (-2i32).to_be_bytes().to_vec())),
        ("huge-length", input([0, 0, 0, 0], i32::MAX.to_be_bytes().to_vec())),
    ])
}

/// The `handshake` target's input: what a client that does not know the
/// key writes to a listener before it reads anything.
fn handshake_seeds() -> Result<Vec<(&'static str, Vec<u8>)>> {
    let message = |bytes: Vec<u8>| written(|c| c.send_bytes(&bytes));
    let challenge = [&b"#CHALLENGE#{sha256}"[..], &[0x5a; 40]].concat();
    Ok(vec![
        ("sha256-answer", message([&b"{sha256}"[..], &[0xab; 32]].concat())?),
        ("md5-answer", message([&b"{md5}"[..], &[0xab; 16]].concat())?),
        ("legacy-answer", message(vec![0xab; 16])?),
        ("sha3-answer", message([&b"{sha3_256}"[..], &[0xab; 32]].concat())?),
        ("no-digest", message(b"hello".to_vec())?),
        ("oversized", message(vec![b'{'; 300])?),
        ("answer-then-challenge", [message([&b"{sha256}"[..], &[0xab; 32]].concat())?, message(challenge)?].concat()),
        ("empty-message", message(Vec::new())?),
    ])
}
