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
    /// The answer to `Hello`: the server's identity.
    Welcome(u64),
}

/// How long a side looks for the other's next message before it sleeps:
/// a server answers a small call in a few microseconds, and a wake-up from
/// sleep costs more than that on both sides.
pub(crate) const SPIN: std::time::Duration = std::time::Duration::from_micros(50);

/// The most a large batch adds to [`SPIN`]: past it, the server's work
/// is long enough for a wake-up not to matter.
const MAX_EXTRA_SPIN: std::time::Duration = std::time::Duration::from_millis(1);

/// Looks (without sleeping) for a message on `conn` for up to `SPIN`.
pub(crate) fn spin_until_readable(conn: &Connection) {
    spin_for(conn, SPIN);
}

/// Looks (without sleeping) for a message on `conn` for up to `limit`.
fn spin_for(conn: &Connection, limit: std::time::Duration) {
    let start = std::time::Instant::now();
    while start.elapsed() < limit {
        if conn.poll(Some(std::time::Duration::ZERO)).unwrap_or(true) {
            return;
        }
        std::hint::spin_loop();
    }
}

/// Sends `request` and waits for its reply.
pub(crate) fn round_trip(conn: &Connection, request: &Request) -> Result<Reply> {
    send_request(conn, request).map_err(gone)?;
    // The server's work grows with the arguments (a batch of 10,000 items
    // takes it ~100 us): look for the answer for that long too.
    let args = match request {
        Request::Call { args, .. } | Request::Create { args, .. } => args.len(),
        _ => 0,
    };
    spin_for(conn, SPIN + std::time::Duration::from_nanos(args as u64).min(MAX_EXTRA_SPIN));
    conn.recv::<Reply>().map_err(gone)
}

/// Sends `request`; a call's arguments (its last field, a byte string)
/// go from where they are, not through a copy in the send buffer.
fn send_request(conn: &Connection, request: &Request) -> Result<()> {
    let Request::Call { id, op, method, args } = request else {
        return conn.send(request);
    };
    conn.send_parts(|out| encode_call_head(out, *id, *op, *method, args.len()), args)
}

/// The bytes of a `Request::Call` up to its arguments' bytes: the request
/// with no arguments, whose last byte (their length, 0) becomes their
/// length as postcard writes it.
fn encode_call_head(out: &mut Vec<u8>, id: u64, op: OpId, method: u32, args_len: usize) -> Result<()> {
    codec::Encoder::new(&mut *out).push_message(&Request::Call { id, op, method, args: Vec::new() }, "a request")?;
    out.pop();
    codec::put_varint(out, args_len);
    Ok(())
}

/// A number that names one wait (a condition's, a barrier's), unique
/// among the waits of every client: random, or, if the kernel has no
/// randomness to give, a per-process counter mixed with the pid and time.
pub(crate) fn ticket() -> u64 {
    let mut t = [0u8; 8];
    if crate::sys::random_bytes(&mut t).is_ok() {
        return u64::from_le_bytes(t);
    }
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ^ (u64::from(std::process::id()) << 40)
        ^ (now.as_nanos() as u64).rotate_left(20)
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

/// Appends a batch of items (an update, an extend, a dict's or a list's
/// contents): their count (8 bytes), then each item as `push` writes it
/// with [`codec::Encoder::push_item`]. Both ends are this build and name
/// the same types, so a number travels as its bytes, not as a varint, and
/// neither end builds a vector of the items on the way: the sender writes
/// them from its iterator, the receiver puts them straight where they go.
pub(crate) fn push_batch<I: IntoIterator>(
    out: &mut Vec<u8>,
    items: I,
    mut push: impl FnMut(&mut codec::Encoder<'_>, I::Item) -> Result<()>,
) -> Result<()> {
    let at = out.len();
    out.extend_from_slice(&[0; 8]);
    let mut count = 0u64;
    let mut enc = codec::Encoder::new(out);
    for item in items {
        push(&mut enc, item)?;
        count += 1;
    }
    out[at..at + 8].copy_from_slice(&count.to_le_bytes());
    Ok(())
}

/// The items of a batch of one type, from references.
pub(crate) fn encode_items<'a, T: Serialize + 'static>(items: impl IntoIterator<Item = &'a T>) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    push_batch(&mut out, items, |enc, item| enc.push_value(item, "a managed item"))?;
    Ok(out)
}

/// Starts reading a batch that [`push_batch`] wrote: how many items
/// follow (read each with [`codec::Decoder::next_item`]), and how many to
/// reserve room for (what the bytes can hold, not what a corrupt count
/// says).
pub(crate) fn batch_len<T>(dec: &mut codec::Decoder<'_>) -> Result<(u64, usize)> {
    let count = dec.next_item::<u64>("a batch's count")?;
    // Every item takes at least a byte, except zero-sized ones (`()`),
    // which may be as many as a Vec can hold.
    let most = if std::mem::size_of::<T>() == 0 { isize::MAX as u64 } else { dec.remaining() as u64 };
    if count > most {
        return Err(Error::new(
            ErrorKind::Protocol,
            format!("a manager's batch says {count} items in {} bytes; the stream is corrupt", dec.remaining()),
        ));
    }
    // Room for what the bytes can hold, at most 64Ki items up front (a
    // false count must not reserve gigabytes of large values).
    Ok((count, (count as usize).min(dec.remaining()).min(1 << 16)))
}

/// The items of a batch of one type ([`encode_items`]), as a vector.
pub(crate) fn decode_items<T: DeserializeOwned + 'static>(bytes: &[u8]) -> Result<Vec<T>> {
    let mut dec = codec::Decoder::new(bytes);
    let (n, _) = batch_len::<T>(&mut dec)?;
    dec.next_items::<T>(n as usize, "a managed item")
}

thread_local! {
    /// A request's argument buffer, kept for the next request of this
    /// thread: a large batch would otherwise take fresh pages from the
    /// kernel at every call (the allocator gives them back in between).
    static SCRATCH: std::cell::Cell<Vec<u8>> = const { std::cell::Cell::new(Vec::new()) };
}

/// The largest argument buffer kept between requests.
const SCRATCH_KEEP: usize = 4 << 20;

/// An empty buffer for a request's arguments (give it back with
/// [`recycle`]).
pub(crate) fn scratch() -> Vec<u8> {
    let mut buf = SCRATCH.take();
    buf.clear();
    buf
}

/// Keeps `buf` for the next [`scratch`] of this thread.
pub(crate) fn recycle(buf: Vec<u8>) {
    if buf.capacity() > SCRATCH_KEEP {
        return;
    }
    let kept = SCRATCH.take();
    SCRATCH.set(if kept.capacity() > buf.capacity() { kept } else { buf });
}

/// `value` encoded as a request's arguments, in a [`scratch`] buffer.
pub(crate) fn encode_args<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>> {
    let mut out = scratch();
    codec::Encoder::new(&mut out).push_message(value, "a manager's arguments")?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_call_sent_in_parts_is_the_call_serialized() {
        for len in [0usize, 1, 127, 128, 300, 70_000] {
            let args: Vec<u8> = (0..len).map(|i| i as u8).collect();
            let call = Request::Call { id: 300, op: (1 << 40, 7), method: 12, args: args.clone() };
            let mut whole = Vec::new();
            codec::Encoder::new(&mut whole).push_message(&call, "a request").unwrap();
            let mut parts = Vec::new();
            encode_call_head(&mut parts, 300, (1 << 40, 7), 12, len).unwrap();
            parts.extend_from_slice(&args);
            assert_eq!(parts, whole, "{len} bytes of arguments");
        }
    }

    #[test]
    fn batches_round_trip_and_corrupt_counts_are_refused() {
        let words = vec!["a".to_string(), String::new(), "ccc".into()];
        assert_eq!(decode_items::<String>(&encode_items(&words).unwrap()).unwrap(), words);
        let numbers: Vec<u64> = (0..1000).collect();
        let bytes = encode_items(&numbers).unwrap();
        assert_eq!(bytes.len(), 8 + 8 * 1000, "numbers travel as their bytes");
        assert_eq!(decode_items::<u64>(&bytes).unwrap(), numbers);

        // A count far above what the bytes hold is refused before any
        // room is made; one a little above runs out of bytes.
        let mut lying = u64::MAX.to_le_bytes().to_vec();
        lying.extend_from_slice(&[0; 16]);
        assert_eq!(decode_items::<u64>(&lying).unwrap_err().kind(), ErrorKind::Protocol);
        let mut short = 3u64.to_le_bytes().to_vec();
        short.extend_from_slice(&[0; 16]);
        assert_eq!(decode_items::<u64>(&short).unwrap_err().kind(), ErrorKind::Deserialize);
        assert_eq!(decode_items::<()>(&70_000u64.to_le_bytes()).unwrap().len(), 70_000);
        assert_eq!(decode_items::<()>(&u64::MAX.to_le_bytes()).unwrap_err().kind(), ErrorKind::Protocol);
    }
}
