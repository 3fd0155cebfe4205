//! Pipe/Connection, `wait`, and Listener/Client: Python's calls and errors,
//! connections passed to children under every start method, raw peers that
//! send corrupt or oversized headers, socket files and their modes, and the
//! authkey handshake between our own ends. (Python peers: tests/interop.rs.)

mod common;

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use common::LONG;
use multiproc::connection::{Address, Client, Connection, Listener, wait};
use multiproc::{ErrorKind, Pipe, Process, Queue, StartMethod};

/// Receives after checking, with a ceiling, that something is there.
fn recv_bytes(c: &Connection) -> multiproc::Result<Vec<u8>> {
    assert!(c.poll(Some(LONG))?, "nothing arrived within {LONG:?}");
    c.recv_bytes()
}

/// Accepts after checking, with a ceiling, that a client is waiting.
fn accept(l: &Listener) -> multiproc::Result<Connection> {
    assert_eq!(wait(&[l], Some(LONG))?, [0], "no client within {LONG:?}");
    l.accept()
}

#[test]
fn pipes_follow_python() {
    let _w = common::watchdog("pipes_follow_python");
    let (a, b) = Pipe(true).unwrap();
    assert!(!b.poll(Some(Duration::ZERO)).unwrap(), "a zero timeout only looks");
    let t = Instant::now();
    assert!(!b.poll(Some(Duration::from_millis(50))).unwrap());
    assert!(t.elapsed() >= Duration::from_millis(50), "poll returned early");

    a.send(&(1u8, "two".to_string(), vec![3.0f32])).unwrap();
    assert!(b.poll(Some(LONG)).unwrap());
    assert_eq!(b.recv::<(u8, String, Vec<f32>)>().unwrap(), (1, "two".to_string(), vec![3.0]));
    b.send_bytes(b"back").unwrap();
    assert_eq!(recv_bytes(&a).unwrap(), b"back");
    b.send_bytes(b"").unwrap();
    assert_eq!(recv_bytes(&a).unwrap(), b"", "empty messages are messages");

    // recv_bytes_into: fits, and too short (the message is consumed and kept).
    a.send_bytes(b"abc").unwrap();
    let mut buf = [0u8; 3];
    assert_eq!(b.recv_bytes_into(&mut buf).unwrap(), 3);
    assert_eq!(&buf, b"abc");
    a.send_bytes(b"abcdef").unwrap();
    let err = b.recv_bytes_into(&mut buf).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::BufferTooShort);
    assert_eq!(err.data(), Some(&b"abcdef"[..]));
    assert!(err.to_string().contains("6 bytes"), "{err}");

    // Unsized values: a str from a local String, a byte slice.
    let name = String::from("local");
    a.send(name.as_str()).unwrap();
    a.send(&[1u8, 2][..]).unwrap();
    assert!(b.poll(Some(LONG)).unwrap());
    assert_eq!(b.recv::<String>().unwrap(), "local");
    assert_eq!(b.recv::<Vec<u8>>().unwrap(), [1, 2]);

    // The receiver names its own type; serde-compatible ones read alike.
    a.send(&"borrowed").unwrap();
    a.send(&&b"bytes"[..]).unwrap();
    a.send(&7u32).unwrap();
    assert!(b.poll(Some(LONG)).unwrap());
    assert_eq!(b.recv::<String>().unwrap(), "borrowed");
    assert_eq!(b.recv::<Vec<u8>>().unwrap(), b"bytes");
    assert_eq!(b.recv::<u64>().unwrap(), 7);

    // The wrong type is a typed error, and the next message is intact.
    a.send(&"text".to_string()).unwrap();
    a.send(&5u64).unwrap();
    assert_eq!(b.recv::<bool>().unwrap_err().kind(), ErrorKind::Deserialize);
    assert_eq!(b.recv::<u64>().unwrap(), 5);

    // Messages sent before the peer went away are still delivered, then EOF.
    a.send_bytes(b"last").unwrap();
    drop(a);
    assert_eq!(recv_bytes(&b).unwrap(), b"last");
    assert!(b.poll(Some(Duration::ZERO)).unwrap(), "EOF is ready");
    assert_eq!(b.recv_bytes().unwrap_err().kind(), ErrorKind::Eof);
    assert!(b.send_bytes(b"x").is_err(), "sending to a closed peer is an error, not a signal");

    // Use after close.
    b.close();
    assert!(b.closed());
    for err in [b.send_bytes(b"x").unwrap_err(), b.recv_bytes().unwrap_err(), b.poll(None).unwrap_err()] {
        assert_eq!(err.kind(), ErrorKind::InvalidState);
        assert!(err.to_string().contains("close"), "{err}");
    }
}

#[test]
fn one_way_pipes_refuse_the_wrong_direction() {
    let (r, w) = Pipe(false).unwrap();
    assert!(r.readable() && !r.writable() && w.writable() && !w.readable());
    assert_eq!(r.send_bytes(b"x").unwrap_err().kind(), ErrorKind::InvalidState);
    assert_eq!(w.recv_bytes().unwrap_err().kind(), ErrorKind::InvalidState);
    assert_eq!(w.poll(Some(Duration::ZERO)).unwrap_err().kind(), ErrorKind::InvalidState);
    w.send(&[1u16, 2]).unwrap();
    assert!(r.poll(Some(LONG)).unwrap());
    assert_eq!(r.recv::<[u16; 2]>().unwrap(), [1, 2]);
    drop(w);
    assert_eq!(r.recv_bytes().unwrap_err().kind(), ErrorKind::Eof);
}

#[test]
fn big_messages_cross_whole() {
    let _w = common::watchdog("big_messages_cross_whole");
    let (a, b) = Pipe(true).unwrap();
    let big: Vec<u8> = (0..20 << 20).map(|i: u32| (i % 251) as u8).collect();
    let sent = big.clone();
    let t = std::thread::spawn(move || a.send_bytes(&sent).and_then(|()| a.send(&sent)));
    assert_eq!(recv_bytes(&b).unwrap(), big);
    assert_eq!(b.recv::<Vec<u8>>().unwrap(), big);
    t.join().unwrap().unwrap();
}

fn echo(conn: Connection) -> multiproc::Result<u32> {
    let mut n = 0;
    loop {
        assert!(conn.poll(Some(LONG))?, "the parent sent nothing");
        let word: String = conn.recv()?;
        if word == "stop" {
            return Ok(n);
        }
        conn.send(&word.to_uppercase())?;
        n += 1;
    }
}

fn write_three(w: Connection) -> multiproc::Result<()> {
    for i in 0..3u8 {
        w.send_bytes(&[i; 3])?;
    }
    Ok(())
}

per_method! {
    fn connections_travel_to_children(method: StartMethod) {
        // One end of a duplex pipe.
        let (mine, theirs) = Pipe(true).unwrap();
        let child = Process::new(echo, theirs).start_method(method).start().unwrap();
        for word in ["a", "bc"] {
            mine.send(&word.to_string()).unwrap();
            assert!(mine.poll(Some(LONG)).unwrap());
            assert_eq!(mine.recv::<String>().unwrap(), word.to_uppercase());
        }
        mine.send(&"stop".to_string()).unwrap();
        assert_eq!(child.join_timeout(LONG).unwrap().unwrap(), 2);

        // The writing end of a one-way pipe; read after the child is gone.
        let (r, w) = Pipe(false).unwrap();
        let child = Process::new(write_three, w).start_method(method).start().unwrap();
        child.join_timeout(LONG).unwrap().unwrap();
        for i in 0..3u8 {
            assert_eq!(recv_bytes(&r).unwrap(), [i; 3]);
        }
        assert_eq!(r.recv_bytes().unwrap_err().kind(), ErrorKind::Eof, "the child's copy of the writer is closed");

        // An accepted TCP connection: the child answers the client.
        let listener = Listener::bind("127.0.0.1:0", Some(b"k")).unwrap();
        let client = {
            let address = listener.address().clone();
            std::thread::spawn(move || Client(address, Some(b"k")))
        };
        let served = accept(&listener).unwrap();
        let client = client.join().unwrap().unwrap();
        let child = Process::new(echo, served).start_method(method).start().unwrap();
        client.send(&"tcp".to_string()).unwrap();
        assert!(client.poll(Some(LONG)).unwrap());
        assert_eq!(client.recv::<String>().unwrap(), "TCP");
        client.send(&"stop".to_string()).unwrap();
        assert_eq!(child.join_timeout(LONG).unwrap().unwrap(), 1);
    }
}

fn wait_for_word(conn: Connection) -> multiproc::Result<()> {
    assert!(conn.poll(Some(LONG))?, "no word from the parent");
    conn.recv_bytes().map(drop)
}

#[test]
fn wait_watches_connections_queues_listeners_and_processes() {
    let _w = common::watchdog("wait_watches_connections_queues_listeners_and_processes");
    let (a1, b1) = Pipe(true).unwrap();
    let (r2, w2) = Pipe(false).unwrap();
    let q = Queue::<u8>::new().unwrap();
    let listener = Listener::bind("127.0.0.1:0", None).unwrap();
    let (go, child_end) = Pipe(true).unwrap();
    let child = Process::new(wait_for_word, child_end).start().unwrap();
    let objects: [&dyn multiproc::connection::Waitable; 5] = [&b1, &r2, &q, &listener, &child];

    assert_eq!(wait(&objects, Some(Duration::ZERO)).unwrap(), Vec::<usize>::new());
    let t = Instant::now();
    assert_eq!(wait(&objects, Some(Duration::from_millis(50))).unwrap(), Vec::<usize>::new());
    assert!(t.elapsed() >= Duration::from_millis(50), "wait returned early");

    a1.send_bytes(b"1").unwrap();
    assert_eq!(wait(&objects, Some(LONG)).unwrap(), [0]);
    b1.recv_bytes().unwrap();

    q.put(&3).unwrap();
    assert_eq!(wait(&objects, Some(LONG)).unwrap(), [2]);
    assert_eq!(wait(&objects, Some(LONG)).unwrap(), [2], "ready until the item is taken");
    q.get().unwrap();

    let client = Client(listener.address().clone(), None).unwrap();
    assert_eq!(wait(&objects, Some(LONG)).unwrap(), [3]);
    let served = listener.accept().unwrap();

    go.send_bytes(b"go").unwrap();
    assert_eq!(wait(&objects, Some(LONG)).unwrap(), [4], "the sentinel fires when the child ends");
    child.join_timeout(LONG).unwrap().unwrap();

    // Several at once, in order; end of file counts as ready.
    drop(w2);
    a1.send_bytes(b"2").unwrap();
    q.put(&4).unwrap();
    let ready = common::wait_until(LONG, || wait(&objects, Some(LONG)).unwrap() == [0, 1, 2, 4]);
    assert!(ready, "{:?}", wait(&objects, Some(Duration::ZERO)).unwrap());
    assert_eq!(r2.recv_bytes().unwrap_err().kind(), ErrorKind::Eof);
    drop((client, served));
}

#[test]
fn unix_socket_files_are_private_and_removed() {
    let _w = common::watchdog("unix_socket_files_are_private_and_removed");
    let dir = common::temp_dir("sock");
    let path = dir.join("s.sock");
    let listener = Listener::bind(path.as_path(), Some(b"key")).unwrap();
    assert_eq!(listener.address(), &Address::Unix(path.clone()));
    let mode = std::fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "mode {mode:o}");

    let err = Listener::bind(path.as_path(), None).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Io);
    assert!(err.to_string().contains("s.sock"), "{err}");

    let t = std::thread::spawn({
        let path = path.clone();
        move || -> multiproc::Result<Vec<u8>> {
            let c = Client(path.as_path(), Some(b"key"))?;
            c.send_bytes(b"over unix")?;
            recv_bytes(&c)
        }
    });
    let conn = accept(&listener).unwrap();
    assert_eq!(recv_bytes(&conn).unwrap(), b"over unix");
    conn.send_bytes(b"ok").unwrap();
    assert_eq!(t.join().unwrap().unwrap(), b"ok");

    listener.close();
    assert!(!path.exists(), "close removes the socket file");
    assert_eq!(listener.accept().unwrap_err().kind(), ErrorKind::InvalidState);
    assert_eq!(Client(path.as_path(), None).unwrap_err().kind(), ErrorKind::Io);

    // Dropping removes it too, but never someone else's file.
    let listener = Listener::bind(path.as_path(), None).unwrap();
    drop(listener);
    assert!(!path.exists());
    let listener = Listener::bind(path.as_path(), None).unwrap();
    std::fs::remove_file(&path).unwrap();
    std::fs::write(&path, b"not ours").unwrap();
    drop(listener);
    assert_eq!(std::fs::read(&path).unwrap(), b"not ours");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn abstract_and_tcp_addresses_connect() {
    let _w = common::watchdog("abstract_and_tcp_addresses_connect");
    let name = format!("\0multiproc-test-{}", std::process::id());
    for address in [name.parse::<Address>().unwrap(), "127.0.0.1:0".parse::<Address>().unwrap()] {
        let listener = Listener::bind(address, None).unwrap();
        let address = listener.address().clone();
        let t = std::thread::spawn(move || -> multiproc::Result<u64> {
            let c = Client(address, None)?;
            c.send(&41u64)?;
            assert!(c.poll(Some(LONG))?);
            c.recv()
        });
        let conn = accept(&listener).unwrap();
        assert!(conn.poll(Some(LONG)).unwrap());
        conn.send(&(conn.recv::<u64>().unwrap() + 1)).unwrap();
        assert_eq!(t.join().unwrap().unwrap(), 42);
    }
    let taken = Listener::bind(name.as_str(), None).unwrap();
    assert_eq!(Listener::bind(name.as_str(), None).unwrap_err().kind(), ErrorKind::Io);
    drop(taken);
}

#[test]
fn mismatched_keys_fail_on_both_sides_and_the_listener_goes_on() {
    let _w = common::watchdog("mismatched_keys_fail_on_both_sides_and_the_listener_goes_on");
    let listener = Listener::bind("127.0.0.1:0", Some(b"right")).unwrap();
    let connect = |key: Option<&'static [u8]>| {
        let address = listener.address().clone();
        std::thread::spawn(move || Client(address, key))
    };

    let t = connect(Some(b"wrong"));
    let err = accept(&listener).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Authentication);
    assert!(err.to_string().contains("authkey"), "{err}");
    assert_eq!(t.join().unwrap().unwrap_err().kind(), ErrorKind::Authentication);

    // A client with no key reads the challenge as a message; the listener
    // fails once that client goes away without answering.
    let conn = connect(None).join().unwrap().unwrap();
    std::thread::scope(|s| {
        let server = s.spawn(|| accept(&listener));
        assert!(recv_bytes(&conn).unwrap().starts_with(b"#CHALLENGE#"));
        drop(conn);
        assert_eq!(server.join().unwrap().unwrap_err().kind(), ErrorKind::Authentication);
    });

    // The right key still gets in.
    let t = connect(Some(b"right"));
    let conn = accept(&listener).unwrap();
    conn.send_bytes(b"in").unwrap();
    assert_eq!(recv_bytes(&t.join().unwrap().unwrap()).unwrap(), b"in");

    // A client with a key against a listener without one: the listener's
    // side closes, and the client's handshake fails instead of hanging.
    let open = Listener::bind("127.0.0.1:0", None).unwrap();
    let address = open.address().clone();
    let t = std::thread::spawn(move || Client(address, Some(b"right")));
    drop(accept(&open).unwrap());
    assert_eq!(t.join().unwrap().unwrap_err().kind(), ErrorKind::Authentication);
}

/// A raw peer on a fresh Unix listener: the accepted connection and the
/// peer's stream.
fn raw_peer(key: Option<&[u8]>) -> (Listener, UnixStream, std::path::PathBuf) {
    let dir = common::temp_dir("raw");
    let path = dir.join("raw.sock");
    let listener = Listener::bind(path.as_path(), key).unwrap();
    let stream = UnixStream::connect(&path).unwrap();
    stream.set_read_timeout(Some(LONG)).unwrap();
    (listener, stream, dir)
}

#[test]
fn corrupt_and_oversized_headers_are_refused_before_allocation() {
    let _w = common::watchdog("corrupt_and_oversized_headers_are_refused_before_allocation");
    let headers: [(&[u8], ErrorKind); 4] = [
        (&(-5i32).to_be_bytes(), ErrorKind::Protocol),
        (&i32::MAX.to_be_bytes(), ErrorKind::FrameTooLarge),
        (&[0xff, 0xff, 0xff, 0xff, 0, 0, 1, 0, 0, 0, 0, 0], ErrorKind::FrameTooLarge),
        (&[0, 0, 0, 9, b'p', b'a'], ErrorKind::Eof),
    ];
    for (header, kind) in headers {
        let (listener, mut peer, dir) = raw_peer(None);
        let conn = accept(&listener).unwrap();
        peer.write_all(header).unwrap();
        if kind == ErrorKind::Eof {
            peer.shutdown(std::net::Shutdown::Write).unwrap();
        }
        assert!(conn.poll(Some(LONG)).unwrap());
        let err = conn.recv_bytes().unwrap_err();
        assert_eq!(err.kind(), kind, "{header:?}: {err}");
        std::fs::remove_dir_all(dir).unwrap();
    }
}

#[test]
fn nothing_is_read_beyond_a_short_message_before_authentication() {
    let _w = common::watchdog("nothing_is_read_beyond_a_short_message_before_authentication");
    let (listener, mut peer, dir) = raw_peer(Some(b"key"));
    let t = std::thread::spawn(move || {
        // Read the challenge, then claim a 1 GiB answer.
        let mut head = [0u8; 4];
        peer.read_exact(&mut head).unwrap();
        let mut challenge = vec![0u8; u32::from_be_bytes(head) as usize];
        peer.read_exact(&mut challenge).unwrap();
        peer.write_all(&(1i32 << 30).to_be_bytes()).unwrap();
        let _ = peer.write_all(&[0; 1024]); // the listener may have hung up already
        challenge
    });
    let err = accept(&listener).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Authentication);
    assert!(err.to_string().contains("256 bytes"), "{err}");
    assert!(t.join().unwrap().starts_with(b"#CHALLENGE#{sha256}"));
    std::fs::remove_dir_all(dir).unwrap();
}

fn close_my_copy(w: Connection) {
    w.close();
    assert!(w.send_bytes(b"x").is_err());
}

per_method! {
    fn closing_one_processs_copy_leaves_the_others_working(method: StartMethod) {
        let (r, w) = Pipe(false).unwrap();
        let child = Process::new(close_my_copy, w.try_clone().unwrap()).start_method(method).start().unwrap();
        child.join_timeout(LONG).unwrap();
        w.send_bytes(b"still open").unwrap();
        assert_eq!(recv_bytes(&r).unwrap(), b"still open");
        w.close();
        assert!(r.poll(Some(LONG)).unwrap());
        assert_eq!(r.recv_bytes().unwrap_err().kind(), ErrorKind::Eof, "every copy let go");
    }
}

/// Starts a thread that receives on `b`, and returns once it sleeps in the
/// kernel (holding the connection's reader).
fn blocked_receiver(b: &std::sync::Arc<Connection>) -> std::thread::JoinHandle<multiproc::Result<Vec<u8>>> {
    let (tx, rx) = std::sync::mpsc::channel();
    let b = b.clone();
    let t = std::thread::spawn(move || {
        tx.send(std::fs::read_link("/proc/thread-self").unwrap()).unwrap();
        b.recv_bytes()
    });
    let me = rx.recv_timeout(LONG).unwrap();
    let stat = std::path::Path::new("/proc").join(me).join("stat");
    let asleep = || {
        std::fs::read_to_string(&stat)
            .is_ok_and(|s| s.rsplit(')').next().is_some_and(|r| r.trim_start().starts_with('S')))
    };
    assert!(common::wait_until(LONG, asleep), "the receiver never blocked");
    t
}

#[test]
fn poll_and_wait_keep_their_timeout_while_another_thread_receives() {
    let _w = common::watchdog("poll_and_wait_keep_their_timeout_while_another_thread_receives");
    let (a, b) = Pipe(true).unwrap();
    let b = std::sync::Arc::new(b);
    let receiver = blocked_receiver(&b);
    let t = Instant::now();
    assert!(!b.poll(Some(Duration::from_millis(100))).unwrap());
    assert!(wait(&[&*b], Some(Duration::from_millis(100))).unwrap().is_empty());
    assert!(t.elapsed() < Duration::from_secs(5), "poll/wait waited for the receiver: {:?}", t.elapsed());
    a.send_bytes(b"done").unwrap();
    assert_eq!(receiver.join().unwrap().unwrap(), b"done");
}

#[test]
fn close_wakes_a_thread_blocked_in_a_receive() {
    let _w = common::watchdog("close_wakes_a_thread_blocked_in_a_receive");
    let (_a, b) = Pipe(true).unwrap();
    let b = std::sync::Arc::new(b);
    let receiver = blocked_receiver(&b);
    b.close();
    let err = receiver.join().unwrap().unwrap_err();
    assert!(matches!(err.kind(), ErrorKind::InvalidState | ErrorKind::Eof), "{err}");
}

fn send_drop_and_wait((w, done): (Connection, multiproc::Event)) -> multiproc::Result<()> {
    w.send_bytes(b"last words")?;
    drop(w);
    assert!(done.wait(Some(LONG))?, "the parent never said done");
    Ok(())
}

per_method! {
    fn a_child_dropping_its_writer_gives_end_of_file_while_it_lives(method: StartMethod) {
        let (r, w) = Pipe(false).unwrap();
        let done = multiproc::Event::new().unwrap();
        let child = Process::new(send_drop_and_wait, (w, done.clone())).start_method(method).start().unwrap();
        assert_eq!(recv_bytes(&r).unwrap(), b"last words");
        assert!(r.poll(Some(LONG)).unwrap(), "no end of file while the child lives");
        assert_eq!(r.recv_bytes().unwrap_err().kind(), ErrorKind::Eof);
        assert!(child.is_alive());
        done.set();
        child.join_timeout(LONG).unwrap().unwrap();
    }
}

#[test]
fn addresses_mean_what_they_say() {
    use multiproc::connection::ToAddress;
    let _w = common::watchdog("addresses");
    // host:port is TCP (names resolved), never a file in the working
    // directory; a path needs a '/' or "unix:"; anything else is refused.
    assert!(
        matches!("localhost:6000".to_address().unwrap(), Address::Tcp(a) if a.port() == 6000 && a.ip().is_loopback())
    );
    assert!(matches!(("localhost", 7).to_address().unwrap(), Address::Tcp(a) if a.port() == 7));
    assert!(matches!("[::1]:80".to_address().unwrap(), Address::Tcp(a) if a.is_ipv6()));
    assert_eq!("./app.sock".to_address().unwrap(), Address::Unix("./app.sock".into()));
    assert_eq!("unix:app.sock".to_address().unwrap(), Address::Unix("app.sock".into()));
    for bad in ["app.sock", "localhost", "host:port", ":80", ""] {
        let err = bad.to_address().unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput, "{bad:?}: {err}");
        assert!(err.to_string().contains("host:port"), "{err}");
        let err = Listener::bind(bad, None).err().unwrap();
        assert_eq!(err.kind(), ErrorKind::InvalidInput);
        assert!(!std::path::Path::new(bad).exists() || bad.is_empty(), "{bad:?} became a file");
    }
    let err = "no-such-host.invalid:80".to_address().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
    assert!(err.to_string().contains("no-such-host.invalid"), "{err}");
    // Listening on localhost:0 is TCP; a Client by name reaches it.
    let listener = Listener::bind("localhost:0", None).unwrap();
    let Address::Tcp(addr) = listener.address().clone() else { panic!("not TCP") };
    let t = std::thread::spawn(move || Client(format!("localhost:{}", addr.port()), None).unwrap().send(&5u8).unwrap());
    assert_eq!(listener.accept().unwrap().recv::<u8>().unwrap(), 5);
    t.join().unwrap();
}

#[test]
fn values_that_borrow_can_be_sent() {
    let _w = common::watchdog("borrowed send");
    let (a, b) = multiproc::Pipe(true).unwrap();
    let owned = String::from("worker-1");
    let borrowed: (u32, &str) = (7, &owned);
    a.send(&borrowed).unwrap();
    assert_eq!(b.recv::<(u32, String)>().unwrap(), (7, owned.clone()));
    // Plain fast paths still apply to what is plain inside a borrow.
    let bytes: &[u8] = &[1, 2, 3];
    a.send(bytes).unwrap();
    assert_eq!(b.recv::<Vec<u8>>().unwrap(), [1, 2, 3]);
    a.send(&owned.as_str()).unwrap();
    assert_eq!(b.recv::<String>().unwrap(), owned);
    a.send(&vec![&owned[..1], &owned[1..]]).unwrap();
    assert_eq!(b.recv::<Vec<String>>().unwrap(), ["w", "orker-1"]);
}

fn send_typed_pairs(conn: Connection) {
    let conn = conn.typed::<(u8, String)>();
    conn.send(&(1, "one".into())).unwrap();
    conn.send(&(2, "two".into())).unwrap();
}

per_method! {
    fn a_checked_connection_refuses_a_mismatched_type(method: StartMethod) {
        // Agreeing ends, across processes.
        let (mine, theirs) = multiproc::Pipe(true).unwrap();
        let child = Process::new(send_typed_pairs, theirs).start_method(method).start().unwrap();
        let typed = mine.typed::<(u8, String)>();
        assert_eq!(typed.recv().unwrap(), (1, "one".to_string()));
        assert_eq!(typed.recv().unwrap(), (2, "two".to_string()));
        child.join_timeout(LONG).unwrap();
        // The mismatch a plain recv lets through: (u8, &str) as Vec<String>.
        let (mine, theirs) = multiproc::Pipe(true).unwrap();
        let child = Process::new(send_typed_pairs, theirs).start_method(method).start().unwrap();
        let typed = mine.typed::<Vec<String>>();
        let err = typed.recv().unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Deserialize);
        let text = err.to_string();
        assert!(text.contains("(u8, alloc::string::String)") && text.contains("Vec<alloc::string::String>"), "{text}");
        child.join_timeout(LONG).unwrap();
    }
}

#[test]
fn last_accepted_is_the_peers_address() {
    let _w = common::watchdog("last_accepted");
    let listener = Listener::bind("127.0.0.1:0", None).unwrap();
    let addr = listener.address().clone();
    let t = std::thread::spawn(move || {
        let stream = std::net::TcpStream::connect(match addr {
            Address::Tcp(a) => a,
            other => panic!("{other}"),
        })
        .unwrap();
        let local = stream.local_addr().unwrap();
        (stream, local)
    });
    let _conn = listener.accept().unwrap();
    let (_stream, client_addr) = t.join().unwrap();
    assert_eq!(listener.last_accepted(), Some(Address::Tcp(client_addr)));
    let dir = std::env::temp_dir().join(format!("multiproc-last-accepted-{}", std::process::id()));
    let unix = Listener::bind(dir.as_path(), None).unwrap();
    let _c = Client(unix.address(), None).unwrap();
    let _conn = unix.accept().unwrap();
    assert_eq!(unix.last_accepted(), None, "a Unix client has no address");
}

#[test]
fn wait_on_a_listener_wakes_for_a_handshake_that_moves_on() {
    // Two clients connect at once; `accept` returns the first whose
    // handshake ends. The other's handshake goes on between calls: `wait`
    // on the listener sees it move, with no new client coming.
    let _w = common::watchdog("wait_on_a_listener_wakes_for_a_handshake_that_moves_on");
    let listener = Listener::bind("\0multiproc-test-wait-handshakes", Some(b"key")).unwrap();
    let clients: Vec<_> = (0..2u8)
        .map(|i| {
            std::thread::spawn(move || -> multiproc::Result<()> {
                let conn = Client("\0multiproc-test-wait-handshakes", Some(b"key"))?;
                conn.send(&i)?;
                Ok(())
            })
        })
        .collect();
    let mut got = Vec::new();
    for _ in 0..2 {
        let conn = accept(&listener).unwrap();
        assert!(conn.poll(Some(LONG)).unwrap());
        got.push(conn.recv::<u8>().unwrap());
    }
    got.sort();
    assert_eq!(got, [0, 1]);
    for c in clients {
        c.join().unwrap().unwrap();
    }
}

/// In a (spawned) child with almost no fds to spare: binds `path`, says "ready" on
/// `to_parent`, and accepts until an honest client says "ping"; answers
/// "pong" and returns how many handshakes were dropped to make room.
fn serve_with_few_fds((path, to_parent): (String, Connection)) -> multiproc::Result<u32> {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let listener = Listener::bind(path.as_str(), Some(b"k"))?;
    let open: Vec<u64> = std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u64>().ok())
        .collect();
    // New fds take the lowest free numbers, below the limit: leave five
    // (six once the listing's own fd is closed) for the listener's epoll
    // set and its clients, no more.
    let sixth_free = (0..).filter(|n| !open.contains(n)).nth(5).unwrap();
    let mut limit = getrlimit(Resource::Nofile);
    limit.current = Some(sixth_free);
    setrlimit(Resource::Nofile, limit).unwrap();
    to_parent.send_bytes(b"ready")?;
    let mut dropped = 0;
    loop {
        match accept(&listener) {
            Ok(conn) => {
                assert_eq!(recv_bytes(&conn)?, b"ping");
                conn.send_bytes(b"pong")?;
                return Ok(dropped);
            }
            Err(e) => {
                assert_eq!(e.kind(), ErrorKind::Authentication, "{e}");
                assert!(e.to_string().contains("ran out of file descriptors"), "{e}");
                dropped += 1;
            }
        }
    }
}

#[test]
fn a_listener_out_of_fds_drops_its_oldest_handshake_for_a_new_client() {
    let _w = common::watchdog("a_listener_out_of_fds_drops_its_oldest_handshake_for_a_new_client");
    let path = common::temp_dir("few-fds").join("s.sock");
    let (ours, theirs) = Pipe(true).unwrap();
    // Spawn, not fork: a fork child would inherit, for its whole life, the
    // fds of the tests running beside it (say, a listener whose address
    // another test then binds again).
    let child = Process::new(serve_with_few_fds, (path.to_str().unwrap().to_string(), theirs))
        .start_method(StartMethod::Spawn)
        .start()
        .unwrap();
    assert_eq!(recv_bytes(&ours).unwrap(), b"ready");
    // Twenty peers that connect and say nothing: more than the child has
    // fds for.
    let idle: Vec<UnixStream> = (0..20).map(|_| UnixStream::connect(&path).unwrap()).collect();
    let honest = {
        let path = path.clone();
        std::thread::spawn(move || -> multiproc::Result<Vec<u8>> {
            let conn = Client(path.as_path(), Some(b"k"))?;
            conn.send_bytes(b"ping")?;
            recv_bytes(&conn)
        })
    };
    let dropped = child.join_timeout(LONG).unwrap().expect("the child ended within LONG");
    assert_eq!(honest.join().unwrap().unwrap(), b"pong");
    assert!(dropped >= 14, "only {dropped} handshakes were dropped, yet the child had fds for at most six clients");
    drop(idle);
}
