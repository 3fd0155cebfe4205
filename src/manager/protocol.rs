//! What a manager's clients and its server say to each other, one request
//! and one reply at a time on an authenticated [`Connection`].
//!
//! An operation on a managed object is a typed function of this build (an
//! "op"), named by its id as pool tasks are: the server resolves it and
//! runs it on the object, so objects keep their Rust types on the server
//! (a `HashMap<K, V>`, a `Vec<T>`), and `sort` or a custom type's method
//! run as real code, not on opaque bytes.

use std::any::Any;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::codec;
use crate::connection::Connection;
use crate::error::{Error, ErrorKind, RemoteError, Result};
use crate::runtime::{self, ChunkTrampoline};

/// An op's id: its trampoline's offset and tag.
pub(crate) type OpId = (u64, u64);

/// Where an op finds its object and leaves its answer.
pub(crate) struct Slot {
    /// The object (`None` for a create op, which puts one here).
    pub(crate) object: Option<Box<dyn Any + Send>>,
    /// The encoded answer, or the error.
    pub(crate) reply: Result<Vec<u8>>,
    /// Set by an op that cannot go on yet (it changed nothing): a `Wait`
    /// request runs it again later.
    pub(crate) would_block: bool,
}

/// An op: decodes its arguments, runs method `method` on the slot's
/// object, and encodes the answer.
pub(crate) type Op = ChunkTrampoline<Slot>;

/// The id of `op`, for a request.
pub(crate) fn op_id(op: Op) -> OpId {
    runtime::chunk_id_of::<Slot>(op)
}

/// The op an id names, if it is one of this build's.
pub(crate) fn resolve(id: OpId) -> Result<Op> {
    runtime::resolve_chunk::<Slot>(id.0, id.1).ok_or_else(|| {
        Error::new(
            ErrorKind::Protocol,
            "a manager request named an operation that this build does not have; client and server must run the \
             same executable",
        )
    })
}

#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Request {
    /// The first request on a connection: the client process's token. A
    /// process may hold several connections (one per thread that calls at
    /// once); its references are the process's, given back when its last
    /// connection closes.
    Hello(u64),
    /// Makes an object with `op` (method 0) from `args`; this connection
    /// holds one reference to it.
    Create {
        op: OpId,
        #[serde(with = "crate::codec::byte_string")]
        args: Vec<u8>,
    },
    /// Runs method `method` of `op` on object `id`.
    Call {
        id: u64,
        op: OpId,
        method: u32,
        #[serde(with = "crate::codec::byte_string")]
        args: Vec<u8>,
    },
    /// As `Call`, for an operation that may have to wait (a `get` from an
    /// empty queue): the server runs it again each time another call
    /// changes something, until it does not have to wait or `timeout_us`
    /// (if any) passes.
    Wait {
        id: u64,
        op: OpId,
        method: u32,
        #[serde(with = "crate::codec::byte_string")]
        args: Vec<u8>,
        timeout_us: Option<u64>,
    },
    /// One more reference, held by this connection.
    IncRef(u64),
    /// One more reference, held by no connection yet: a proxy on its way
    /// to another process (a serialized proxy), which [`Request::Adopt`]
    /// gives to the connection that receives it.
    Hold(u64),
    /// Takes a held reference for this connection.
    Adopt(u64),
    /// One reference fewer for this connection.
    DecRef(u64),
    /// How many objects the server holds.
    Count,
    /// Stops the server.
    Shutdown,
}

#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Reply {
    Created(u64),
    Value(#[serde(with = "crate::codec::byte_string")] Vec<u8>),
    Done,
    Count(u64),
    Failed(RemoteError),
}

/// How long a side looks for the other's next message before it sleeps:
/// a server answers a small call in a few microseconds, and a wake-up from
/// sleep costs more than that on both sides.
pub(crate) const SPIN: std::time::Duration = std::time::Duration::from_micros(50);

/// Looks (without sleeping) for a message on `conn` for up to `SPIN`.
pub(crate) fn spin_until_readable(conn: &Connection) {
    let start = std::time::Instant::now();
    while start.elapsed() < SPIN {
        if conn.poll(Some(std::time::Duration::ZERO)).unwrap_or(true) {
            return;
        }
        std::hint::spin_loop();
    }
}

/// Sends `request` and waits for its reply.
pub(crate) fn round_trip(conn: &Connection, request: &Request) -> Result<Reply> {
    conn.send(request).map_err(gone)?;
    spin_until_readable(conn);
    conn.recv::<Reply>().map_err(gone)
}

/// A broken connection to the server: the manager is gone.
pub(crate) fn gone(err: Error) -> Error {
    match err.kind() {
        ErrorKind::Eof | ErrorKind::Io => Error::new(
            ErrorKind::ManagerGone,
            format!(
                "the manager's server process is gone ({err}); it was shut down or died, so its objects are lost: \
                 start a new Manager"
            ),
        ),
        _ => err,
    }
}

/// The answer of an op, decoded.
pub(crate) fn decode<T: DeserializeOwned + 'static>(bytes: &[u8]) -> Result<T> {
    let mut dec = codec::Decoder::new(bytes);
    dec.next_message::<T>("a manager's answer")
}

/// Encodes an op's answer.
pub(crate) fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    codec::Encoder::new(&mut out).push_message(value, "a manager's answer")?;
    Ok(out)
}

/// The object of `slot` as a `T`, or an error that says what it is not.
pub(crate) fn object<T: 'static>(slot: &mut Slot) -> Result<&mut T> {
    slot.object.as_mut().and_then(|o| o.downcast_mut::<T>()).ok_or_else(|| {
        Error::new(
            ErrorKind::InvalidInput,
            format!(
                "the managed object is not a `{}`: a proxy was read back as another type than it was made with",
                std::any::type_name::<T>()
            ),
        )
    })
}
