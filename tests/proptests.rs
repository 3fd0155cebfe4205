//! Property tests of what a peer can send: random and corrupt bytes on a
//! connection, and on both sides of the authkey handshake, give the
//! messages they hold and then a typed error; never a panic, a hang, or an
//! allocation above the frame-size limit.
//!
//! Its own binary: it lowers the process-wide frame-size limit to [`CAP`],
//! and it counts allocations with a global allocator of its own.

mod common;

use std::io::{Read, Write};
use std::net::Shutdown;
use std::os::fd::AsFd;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixListener, UnixStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use common::LONG;
use multiproc::connection::{Address, Client, Connection, Listener};
use multiproc::{ErrorKind, Pipe};
use proptest::prelude::*;

/// The frame-size limit in this binary.
const CAP: u64 = 1 << 20;
/// What a receive may allocate beyond [`CAP`] at once: its read buffer.
const SLACK: usize = 256 << 10;
/// How long a `poll` before each receive may wait; the peer has always
/// written and closed by then, so it never should.
const POLL: Duration = Duration::from_secs(5);
/// The longest any test here may run before it is taken for a hang.
const WATCHDOG: Duration = Duration::from_secs(600);

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig { cases, failure_persistence: None, ..ProptestConfig::default() }
}

fn set_limit() {
    multiproc::set_max_frame_size(CAP).unwrap();
}

// ---- Counting the largest allocation ------------------------------------

#[global_allocator]
static ALLOCATOR: common::counting_alloc::CountingAlloc = common::counting_alloc::CountingAlloc;

use common::counting_alloc::largest_allocation;

// ---- Raw peers -----------------------------------------------------------

/// A fresh name in the abstract Unix namespace (no file to clean up).
fn unique_name() -> Vec<u8> {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    format!("multiproc-proptests-{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed)).into_bytes()
}

fn connect_raw(name: &[u8]) -> UnixStream {
    UnixStream::connect_addr(&SocketAddr::from_abstract_name(name).unwrap()).unwrap()
}

/// A connection and a raw socket on its other end: a [`Pipe`] end's fd, or
/// a client of a [`Listener`] without a key.
fn connection_with_raw_peer(through_listener: bool) -> (Connection, UnixStream) {
    if through_listener {
        let name = unique_name();
        let listener = Listener::bind(Address::Abstract(name.clone()), None).unwrap();
        let raw = connect_raw(&name);
        // The client is already queued: this returns at once.
        (listener.accept().unwrap(), raw)
    } else {
        let (ours, theirs) = Pipe(true).unwrap();
        let raw = UnixStream::from(theirs.as_fd().try_clone_to_owned().unwrap());
        (ours, raw)
    }
}

/// Writes `bytes` into `raw` from a thread, then closes it; the receiver is
/// told when the writer is done.
fn write_then_close(mut raw: UnixStream, bytes: Vec<u8>) -> mpsc::Receiver<()> {
    let (done, finished) = mpsc::channel();
    thread::spawn(move || {
        // The receiver may stop early and close: a failed write is fine.
        let _ = raw.write_all(&bytes);
        drop(raw);
        let _ = done.send(());
    });
    finished
}

// ---- Python's framing, and a model reader of it -------------------------

fn short_frame(payload: &[u8]) -> Vec<u8> {
    [&(payload.len() as i32).to_be_bytes()[..], payload].concat()
}

fn long_frame(payload: &[u8]) -> Vec<u8> {
    [&(-1i32).to_be_bytes()[..], &(payload.len() as u64).to_be_bytes(), payload].concat()
}

fn long_header(len: u64) -> Vec<u8> {
    [&(-1i32).to_be_bytes()[..], &len.to_be_bytes()].concat()
}

/// A `Vec<u8>` or `String` as a connection sends it (postcard's form).
fn plain(bytes: &[u8]) -> Vec<u8> {
    [varint(bytes.len() as u64), bytes.to_vec()].concat()
}

/// A `Vec<u64>` as a connection sends it (postcard's form).
fn plain_u64s(v: &[u64]) -> Vec<u8> {
    postcard::to_allocvec(v).unwrap()
}

/// What postcard makes of a whole message as a `T`, written back in
/// postcard's (canonical) form; `None` if it is not exactly one `T`.
fn postcard_reads<T: serde::de::DeserializeOwned + serde::Serialize>(msg: &[u8]) -> Option<Vec<u8>> {
    match postcard::take_from_bytes::<T>(msg) {
        Ok((value, [])) => Some(postcard::to_allocvec(&value).unwrap()),
        _ => None,
    }
}

/// A postcard varint of `n`.
fn varint(mut n: u64) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let byte = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(byte);
            return out;
        }
        out.push(byte | 0x80);
    }
}

/// A message payload: random, or shaped like a typed value, with honest
/// or lying lengths inside.
fn payloads() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        3 => prop::collection::vec(any::<u8>(), 0..64),
        2 => prop::collection::vec(any::<u8>(), 0..32).prop_map(|b| plain(&b)),
        2 => "\\PC{0,16}".prop_map(|s| plain(s.as_bytes())),
        1 => (any::<u64>(), prop::collection::vec(any::<u8>(), 0..16))
            .prop_map(|(n, b)| [&n.to_le_bytes()[..], &b].concat()),
        1 => (0..8u32, any::<u64>(), prop::collection::vec(any::<u8>(), 0..16))
            .prop_map(|(shift, n, b)| [varint(n >> shift), b].concat()),
        1 => prop::collection::vec(any::<u64>(), 0..8).prop_map(|v| plain_u64s(&v)),
        1 => any::<u64>().prop_map(|n| n.to_le_bytes().to_vec()),
    ]
}

/// A piece of a byte stream: whole messages in either header form, lying
/// headers (huge, negative, just under the limit), and loose bytes.
fn pieces() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        12 => payloads().prop_map(|p| short_frame(&p)),
        4 => payloads().prop_map(|p| long_frame(&p)),
        1 => (70_000..200_000usize, any::<u8>()).prop_map(|(len, fill)| short_frame(&vec![fill; len])),
        1 => any::<i32>().prop_map(|n| n.to_be_bytes().to_vec()),
        1 => (i32::MIN..-1).prop_map(|n| n.to_be_bytes().to_vec()),
        1 => any::<u64>().prop_map(long_header),
        1 => (CAP - 1000..=CAP).prop_map(long_header),
        1 => prop::collection::vec(any::<u8>(), 0..16),
    ]
}

/// A whole stream, sometimes cut anywhere (through a header or a message).
fn streams() -> impl Strategy<Value = Vec<u8>> {
    (prop::collection::vec(pieces(), 0..8), any::<prop::sample::Index>(), prop::bool::weighted(0.25)).prop_map(
        |(pieces, cut, torn)| {
            let bytes = pieces.concat();
            if torn && !bytes.is_empty() { bytes[..cut.index(bytes.len())].to_vec() } else { bytes }
        },
    )
}

/// What a correct receiver makes of a stream whose writer has closed.
struct Model<'a> {
    rest: &'a [u8],
    broken: bool,
}

impl Model<'_> {
    /// The next message, or the kind of error a receive must give.
    fn next(&mut self, limit: u64) -> Result<Vec<u8>, ErrorKind> {
        if self.broken {
            return Err(ErrorKind::Protocol);
        }
        let Some(short) = self.rest.first_chunk::<4>() else {
            return Err(ErrorKind::Eof);
        };
        let (head, len) = match i32::from_be_bytes(*short) {
            -1 => match self.rest.get(4..12) {
                Some(long) => (12, u64::from_be_bytes(long.try_into().unwrap())),
                None => return Err(ErrorKind::Eof),
            },
            n if n >= 0 => (4, n as u64),
            _ => {
                self.broken = true;
                return Err(ErrorKind::Protocol);
            }
        };
        if len > limit {
            self.broken = true;
            return Err(ErrorKind::FrameTooLarge);
        }
        let body = &self.rest[head..];
        if (body.len() as u64) < len {
            self.rest = &[];
            return Err(ErrorKind::Eof);
        }
        let (msg, rest) = body.split_at(len as usize);
        self.rest = rest;
        Ok(msg.to_vec())
    }
}

/// One way to receive.
#[derive(Debug, Clone, Copy)]
enum Op {
    Bytes,
    BytesMax(usize),
    Into(usize),
    VecU8,
    Text,
    U64,
    VecU64,
    Pair,
    Texts,
}

fn ops() -> impl Strategy<Value = Op> {
    prop_oneof![
        Just(Op::Bytes),
        (0..200_000usize).prop_map(Op::BytesMax),
        (0..100usize).prop_map(Op::Into),
        Just(Op::VecU8),
        Just(Op::Text),
        Just(Op::U64),
        Just(Op::VecU64),
        Just(Op::Pair),
        Just(Op::Texts),
    ]
}

/// Receives once with `op`, and checks the outcome against the model's
/// next message; the error kind on failure.
fn receive_and_check(conn: &Connection, op: Op, model: &mut Model<'_>) -> Result<(), ErrorKind> {
    let limit = match op {
        Op::BytesMax(max) => (max as u64).min(CAP),
        _ => CAP,
    };
    let expected = model.next(limit);
    let mut buf = vec![0u8; if let Op::Into(n) = op { n } else { 0 }];
    assert!(conn.poll(Some(POLL)).unwrap(), "poll found nothing though the peer has closed");
    // `Ok(None)`: a value whose decoding the model does not predict.
    let (got, largest) = largest_allocation(|| -> multiproc::Result<Option<Vec<u8>>> {
        Ok(match op {
            Op::Bytes => Some(conn.recv_bytes()?),
            Op::BytesMax(max) => Some(conn.recv_bytes_max(max)?),
            Op::Into(_) => {
                let n = conn.recv_bytes_into(&mut buf)?;
                Some(buf[..n].to_vec())
            }
            Op::VecU8 => Some(postcard::to_allocvec(&conn.recv::<Vec<u8>>()?).unwrap()),
            Op::Text => Some(postcard::to_allocvec(&conn.recv::<String>()?).unwrap()),
            Op::U64 => Some(postcard::to_allocvec(&conn.recv::<u64>()?).unwrap()),
            Op::VecU64 => Some(postcard::to_allocvec(&conn.recv::<Vec<u64>>()?).unwrap()),
            Op::Pair => conn.recv::<(u8, String)>().map(|_| None)?,
            Op::Texts => conn.recv::<Vec<String>>().map(|_| None)?,
        })
    });
    assert!(largest <= CAP as usize + SLACK, "{op:?} allocated {largest} bytes at once, above the limit of {CAP}");
    let msg = match expected {
        Ok(msg) => msg,
        Err(want) => {
            let kind = got.expect_err("a receive succeeded where the stream holds no message").kind();
            assert_eq!(kind, want, "{op:?}");
            return Err(kind);
        }
    };
    // A whole message: what each way of receiving must make of it. Typed
    // receives succeed exactly where postcard reads one whole value, and
    // give postcard's value.
    let (decodes, msg) = match op {
        Op::Bytes | Op::BytesMax(_) => (true, msg),
        Op::Into(n) => (msg.len() <= n, msg),
        Op::VecU8 => postcard_reads::<Vec<u8>>(&msg).map_or((false, msg), |v| (true, v)),
        Op::Text => postcard_reads::<String>(&msg).map_or((false, msg), |v| (true, v)),
        Op::U64 => postcard_reads::<u64>(&msg).map_or((false, msg), |v| (true, v)),
        Op::VecU64 => postcard_reads::<Vec<u64>>(&msg).map_or((false, msg), |v| (true, v)),
        Op::Pair | Op::Texts => {
            if let Err(e) = got {
                assert_eq!(e.kind(), ErrorKind::Deserialize, "{op:?}: {e}");
            }
            return Ok(());
        }
    };
    match got {
        Ok(value) if decodes => assert_eq!(value, Some(msg), "{op:?}"),
        Ok(value) => panic!("{op:?} received {value:?} from a message it should refuse: {msg:?}"),
        Err(e) if decodes => panic!("{op:?} failed on a message it should take: {e}"),
        Err(e) if matches!(op, Op::Into(_)) => {
            assert_eq!(e.kind(), ErrorKind::BufferTooShort, "{e}");
            assert_eq!(e.data(), Some(&msg[..]));
        }
        Err(e) => assert_eq!(e.kind(), ErrorKind::Deserialize, "{op:?}: {e}"),
    }
    Ok(())
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn random_bytes_on_a_connection_give_the_messages_they_hold_then_a_typed_error(
        stream in streams(),
        through_listener in any::<bool>(),
        ops in prop::collection::vec(ops(), 1..8),
    ) {
        set_limit();
        let _w = common::watchdog_for("random bytes on a connection", WATCHDOG);
        let (conn, raw) = connection_with_raw_peer(through_listener);
        let mut model = Model { rest: &stream, broken: false };
        let writer = write_then_close(raw, stream.clone());
        let mut ended = None;
        for op in ops.iter().cycle().take(64) {
            if let Err(kind) = receive_and_check(&conn, *op, &mut model) {
                ended = Some(kind);
                break;
            }
        }
        let kind = ended.expect("64 receives and the stream has not ended");
        // The error stays: a broken stream is refused, an ended one is over.
        let again = if kind == ErrorKind::Eof { ErrorKind::Eof } else { ErrorKind::Protocol };
        prop_assert!(conn.poll(Some(POLL)).unwrap());
        prop_assert_eq!(conn.recv_bytes().unwrap_err().kind(), again);
        drop(conn);
        prop_assert!(writer.recv_timeout(LONG).is_ok(), "the writer is stuck");
    }

    #[test]
    fn a_header_claiming_more_than_the_limit_is_refused_without_allocating_it(
        len in prop_oneof![
            Just(1u64 << 40),
            Just(u64::MAX),
            CAP + 1..=i32::MAX as u64,
            CAP + 1..=u64::MAX,
        ],
        through_listener in any::<bool>(),
        tail in prop::collection::vec(any::<u8>(), 0..64),
    ) {
        set_limit();
        let _w = common::watchdog_for("a header claiming too much", WATCHDOG);
        let (conn, raw) = connection_with_raw_peer(through_listener);
        // Both header forms where the length fits the short one.
        let header = if len <= i32::MAX as u64 && tail.len() % 2 == 0 {
            (len as i32).to_be_bytes().to_vec()
        } else {
            long_header(len)
        };
        let writer = write_then_close(raw, [header, tail].concat());
        prop_assert!(conn.poll(Some(POLL)).unwrap());
        let (got, largest) = largest_allocation(|| conn.recv_bytes());
        let e = got.unwrap_err();
        prop_assert_eq!(e.kind(), ErrorKind::FrameTooLarge);
        prop_assert!(e.to_string().contains(&len.to_string()), "{}", e);
        prop_assert!(largest < SLACK, "refusing {} bytes allocated {} at once", len, largest);
        prop_assert_eq!(conn.recv_bytes().unwrap_err().kind(), ErrorKind::Protocol);
        drop(conn);
        prop_assert!(writer.recv_timeout(LONG).is_ok(), "the writer is stuck");
    }
}

// ---- The handshake -------------------------------------------------------

const CHALLENGE: &[u8] = b"#CHALLENGE#";

/// Random bytes, of a length or a range of lengths.
fn random(size: impl Into<prop::collection::SizeRange>) -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), size)
}

/// A message of the handshake as a peer without the key might send it:
/// answers and challenges of every digest, verdicts, and junk.
fn handshake_messages() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        random(32).prop_map(|mac| [&b"{sha256}"[..], &mac].concat()),
        random(16).prop_map(|mac| [&b"{md5}"[..], &mac].concat()),
        random(16),
        random(40).prop_map(|nonce| [CHALLENGE, b"{sha256}", &nonce].concat()),
        random(20).prop_map(|nonce| [CHALLENGE, &nonce].concat()),
        random(40).prop_map(|nonce| [CHALLENGE, b"{md5}", &nonce].concat()),
        random(40).prop_map(|nonce| [CHALLENGE, b"{sha3_256}", &nonce].concat()),
        random(0..20).prop_map(|nonce| [CHALLENGE, &nonce].concat()),
        Just(b"#WELCOME#".to_vec()),
        Just(b"#FAILURE#".to_vec()),
        random(0..400),
    ]
}

/// Everything a peer sends in one go: handshake messages, framed in
/// either form or not at all, and lying headers.
fn handshake_streams() -> impl Strategy<Value = Vec<u8>> {
    let piece = prop_oneof![
        4 => handshake_messages().prop_map(|m| short_frame(&m)),
        1 => handshake_messages().prop_map(|m| long_frame(&m)),
        1 => handshake_messages(),
        1 => any::<i32>().prop_map(|n| n.to_be_bytes().to_vec()),
        1 => any::<u64>().prop_map(long_header),
    ];
    prop::collection::vec(piece, 0..5).prop_map(|pieces| pieces.concat())
}

/// How a raw peer leaves after writing: shutting only its write side (it
/// still takes what comes), or closing outright.
fn leave(raw: UnixStream, close: bool) -> Option<UnixStream> {
    if close {
        return None;
    }
    // The other side may have closed already: nothing to shut then.
    let _ = raw.shutdown(Shutdown::Write);
    Some(raw)
}

fn assert_refused(kind: ErrorKind) {
    assert!(
        matches!(kind, ErrorKind::Authentication | ErrorKind::Protocol | ErrorKind::Eof),
        "the handshake failed with {kind:?}, not a handshake error"
    );
}

proptest! {
    #![proptest_config(config(128))]

    #[test]
    fn random_bytes_from_a_client_never_pass_the_listeners_handshake(
        stream in handshake_streams(),
        close in any::<bool>(),
    ) {
        set_limit();
        let _w = common::watchdog_for("random bytes to a listener", WATCHDOG);
        let name = unique_name();
        let listener = Listener::bind(Address::Abstract(name.clone()), Some(b"key")).unwrap();
        let mut raw = connect_raw(&name);
        // Two KiB at most: the socket buffer takes them before accept.
        raw.write_all(&stream).unwrap();
        let raw = leave(raw, close);
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            let _ = tx.send(listener.accept().map(drop));
        });
        let got = rx.recv_timeout(LONG).expect("accept hangs on a peer that has stopped writing");
        assert_refused(got.expect_err("a peer without the key passed the handshake").kind());
        drop(raw);
    }

    #[test]
    fn a_fake_server_sending_random_frames_never_passes_the_clients_handshake(
        stream in handshake_streams(),
        close in any::<bool>(),
    ) {
        set_limit();
        let _w = common::watchdog_for("a fake server", WATCHDOG);
        let name = unique_name();
        let fake = UnixListener::bind_addr(&SocketAddr::from_abstract_name(&name).unwrap()).unwrap();
        let (served, server_done) = mpsc::channel();
        thread::spawn(move || {
            let (mut raw, _) = fake.accept().unwrap();
            // The client may give up and close before all of it is written.
            let _ = raw.write_all(&stream);
            if let Some(mut raw) = leave(raw, close) {
                // Take whatever the client says until it hangs up.
                let _ = raw.read_to_end(&mut Vec::new());
            }
            let _ = served.send(());
        });
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            let _ = tx.send(Client(Address::Abstract(name), Some(b"key")).map(drop));
        });
        let got = rx.recv_timeout(LONG).expect("Client hangs on a server that has stopped writing");
        assert_refused(got.expect_err("a server without the key passed the handshake").kind());
        prop_assert!(server_done.recv_timeout(LONG).is_ok(), "the fake server is stuck");
    }
}

#[test]
fn the_allocation_counter_is_live() {
    let (v, largest) = largest_allocation(|| std::hint::black_box(vec![7u8; 300_000]));
    assert_eq!(v.len(), 300_000);
    assert!(largest >= 300_000, "the counting allocator is not installed: {largest}");
}
