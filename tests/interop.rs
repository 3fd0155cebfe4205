//! Interop with CPython's `multiprocessing.connection`: a Python `Client`
//! against our `Listener` and our `Client` against a Python `Listener`, on
//! TCP and on a Unix socket path, with the authkey handshake; messages both
//! ways (binary, empty, 1 MiB); the `-1` long-form header both ways; and a
//! wrong authkey refused on both sides, in both roles.
//!
//! Each test runs against `python3` and against every
//! `/root/.pyenv/versions/*/bin/python3` (one run per distinct interpreter).
//! Every Python child is killed 30 s after it starts, which ends any of our
//! calls blocked on it; `accept` runs in a thread with a timeout.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::AsFd;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;
use std::{fs, thread};

use multiproc::ErrorKind;
use multiproc::connection::{Address, Client, Connection, Listener};

/// The ceiling on every wait, and a Python child's lifetime.
const LIMIT: Duration = Duration::from_secs(30);
const KEY: &str = "interop key";

/// The Python side: `ROLE ADDRESS KEY STEPS`. ROLE `listen` binds ADDRESS
/// (`tcp` for 127.0.0.1 and a free port, else a path), prints the address
/// as `host:port` or the path and accepts; ROLE `connect` connects to
/// ADDRESS. It prints `AuthenticationError` (and exits 0) if the handshake
/// fails, `authenticated` if not, then runs STEPS and prints `done`.
const SCRIPT: &str = r#"
import struct, sys
from multiprocessing.connection import AuthenticationError, Client, Listener

role, address, key, steps = sys.argv[1:]
key = key.encode()
pattern = bytes(range(256))
try:
    if role == "listen":
        listener = Listener(("127.0.0.1", 0) if address == "tcp" else address, authkey=key)
        a = listener.address
        print("%s:%d" % a if isinstance(a, tuple) else a, flush=True)
        conn = listener.accept()
    else:
        host, _, port = address.rpartition(":")
        conn = Client(address if address.startswith("/") else (host, int(port)), authkey=key)
except AuthenticationError:
    print("AuthenticationError", flush=True)
    sys.exit(0)
print("authenticated", flush=True)
for step in steps.split(","):
    if step == "talk":
        for m in (pattern, b"", pattern * 4096):
            conn.send_bytes(m)
        for _ in range(3):
            conn.send_bytes(b"got:" + conn.recv_bytes())
    elif step == "send_long":
        conn._send(struct.pack("!i", -1) + struct.pack("!Q", len(pattern)) + pattern)
        conn.send_bytes(b"after")
    elif step == "echo":
        conn.send_bytes(b"got:" + conn.recv_bytes())
print("done", flush=True)
"#;

/// One Python interpreter to test against.
struct Python {
    exe: String,
    version: (u32, u32),
    label: String,
}

/// `python3` (required) and the pyenv interpreters, one per executable.
fn pythons() -> &'static [Python] {
    static FOUND: OnceLock<Vec<Python>> = OnceLock::new();
    FOUND.get_or_init(|| {
        let mut candidates = vec!["python3".to_string()];
        if let Ok(dir) = fs::read_dir("/root/.pyenv/versions") {
            let mut more: Vec<_> = dir.flatten().map(|e| e.path().join("bin/python3")).filter(|p| p.exists()).collect();
            more.sort();
            candidates.extend(more.iter().map(|p| p.display().to_string()));
        }
        let (mut found, mut seen) = (Vec::new(), Vec::new());
        for exe in candidates {
            let probe = "import sys; print(sys.executable); print('%d.%d.%d' % sys.version_info[:3])";
            let lines = Py::spawn(&exe, probe, &[]).finish();
            let [real, version] = &lines[..] else { panic!("{exe} printed {lines:?}") };
            let mut parts = version.split('.').map(|n| n.parse::<u32>().expect("a version number"));
            let pair = (parts.next().unwrap(), parts.next().unwrap());
            if !seen.contains(real) {
                seen.push(real.clone());
                found.push(Python { label: format!("Python {version} ({real})"), exe, version: pair });
            }
        }
        println!("interop: testing against {:?}", found.iter().map(|p| &p.label).collect::<Vec<_>>());
        found
    })
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A running Python child: its stdout as lines, its stderr for failure
/// messages. Killed after [`LIMIT`], and on drop.
struct Py {
    child: Arc<Mutex<Child>>,
    lines: mpsc::Receiver<String>,
    stderr: Option<thread::JoinHandle<String>>,
    /// Dropping it stops the thread that kills the child after [`LIMIT`].
    _cancel: mpsc::Sender<()>,
    /// Set by that thread when it killed the child.
    timed_out: Arc<AtomicBool>,
    what: String,
}

impl Py {
    fn spawn(exe: &str, script: &str, args: &[&str]) -> Py {
        let mut child = Command::new(exe)
            .arg("-c")
            .arg(script)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run `{exe}`: {e}; these tests need CPython 3 as `python3` on PATH"));
        let (out, mut err) = (child.stdout.take().unwrap(), child.stderr.take().unwrap());
        let (tx, lines) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let stderr = thread::spawn(move || {
            let mut s = String::new();
            let _ = err.read_to_string(&mut s);
            s
        });
        let child = Arc::new(Mutex::new(child));
        let (cancel, cancelled) = mpsc::channel::<()>();
        let (victim, timed_out) = (Arc::clone(&child), Arc::new(AtomicBool::new(false)));
        let flag = Arc::clone(&timed_out);
        thread::spawn(move || {
            if let Err(RecvTimeoutError::Timeout) = cancelled.recv_timeout(LIMIT) {
                flag.store(true, Ordering::SeqCst);
                let _ = lock(&victim).kill();
            }
        });
        let what = format!("`{exe}` {args:?}");
        Py { child, lines, stderr: Some(stderr), _cancel: cancel, timed_out, what }
    }

    /// The next line the child prints.
    fn line(&mut self) -> String {
        match self.lines.recv_timeout(LIMIT) {
            Ok(line) => line,
            Err(e) => self.fail(&format!("no line on its stdout ({e:?})")),
        }
    }

    /// Waits for the child to exit with status 0; returns the lines it
    /// printed that were not read yet.
    fn finish(mut self) -> Vec<String> {
        let mut rest = Vec::new();
        loop {
            match self.lines.recv_timeout(LIMIT) {
                Ok(line) => rest.push(line),
                Err(RecvTimeoutError::Disconnected) => break,
                Err(RecvTimeoutError::Timeout) => self.fail("it did not close its stdout"),
            }
        }
        // Stdout is closed, so it is exiting; the killer bounds this anyway.
        let status = loop {
            let polled = lock(&self.child).try_wait();
            match polled {
                Ok(Some(status)) => break status,
                Ok(None) => thread::sleep(Duration::from_millis(5)),
                Err(e) => self.fail(&format!("try_wait failed: {e}")),
            }
        };
        if !status.success() {
            self.fail(&format!("it exited with {status} after printing {rest:?}"));
        }
        rest
    }

    /// Kills the child and panics with `why` and its stderr.
    fn fail(&mut self, why: &str) -> ! {
        {
            let mut child = lock(&self.child);
            let _ = child.kill();
            let _ = child.wait();
        }
        let stderr = self.stderr.take().map(|t| t.join().unwrap_or_default()).unwrap_or_default();
        let hung = if self.timed_out.load(Ordering::SeqCst) {
            format!(" (it was killed after {LIMIT:?})")
        } else {
            String::new()
        };
        panic!("{}: {why}{hung}\n--- its stderr ---\n{stderr}", self.what)
    }
}

impl Drop for Py {
    fn drop(&mut self) {
        let mut child = lock(&self.child);
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Python {
    /// Runs [`SCRIPT`] with `role address key steps`.
    fn run(&self, role: &str, address: &str, key: &str, steps: &str) -> Py {
        let mut py = Py::spawn(&self.exe, SCRIPT, &[role, address, key, steps]);
        py.what = format!("{} {role} {address} {steps:?}", self.label);
        py
    }
}

/// A fresh directory under the temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let name = format!("multiproc-interop-{}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed));
        let path = std::env::temp_dir().join(name);
        fs::create_dir(&path).expect("creating a temp dir");
        TempDir(path)
    }

    fn socket(&self) -> PathBuf {
        self.0.join("sock")
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// `listener.accept()` with a timeout: on timeout the listener is closed
/// (which wakes the accepting thread) and the test fails.
fn accept(listener: &Listener, py: &mut Py) -> multiproc::Result<Connection> {
    thread::scope(|s| {
        let (tx, rx) = mpsc::channel();
        s.spawn(move || tx.send(listener.accept()));
        rx.recv_timeout(LIMIT).unwrap_or_else(|_| {
            listener.close();
            py.fail("our accept() did not return")
        })
    })
}

/// Receives one message, waiting at most [`LIMIT`], and checks it is `want`.
fn expect(conn: &Connection, py: &mut Py, want: &[u8]) {
    let got = match conn.poll(Some(LIMIT)) {
        Ok(true) => conn.recv_bytes().unwrap_or_else(|e| py.fail(&format!("our recv_bytes failed: {e}"))),
        other => py.fail(&format!("no message from Python within {LIMIT:?} ({other:?})")),
    };
    if got != want {
        let at = got.iter().zip(want).position(|(a, b)| a != b).unwrap_or(got.len().min(want.len()));
        let window = |b: &[u8]| b.iter().skip(at).take(16).copied().collect::<Vec<u8>>();
        let (g, w) = (window(&got), window(want));
        py.fail(&format!(
            "received {} bytes, expected {}; from byte {at}: {g:?}, expected {w:?}",
            got.len(),
            want.len()
        ));
    }
}

fn send(conn: &Connection, py: &mut Py, msg: &[u8], long_form: bool) {
    let sent = if long_form { send_long_form(conn, msg) } else { conn.send_bytes(msg).map_err(Into::into) };
    sent.unwrap_or_else(|e| py.fail(&format!("our send_bytes failed: {e}")));
}

/// Sends `msg` in the long form of Python's framing (a length of -1, then
/// the length in 8 bytes, big-endian), which `send_bytes` uses only above
/// 2 GiB: written by hand on the connection's socket, so that Python's
/// long-form reader is reached with a small message.
fn send_long_form(conn: &Connection, msg: &[u8]) -> std::io::Result<()> {
    let mut frame = (-1i32).to_be_bytes().to_vec();
    frame.extend_from_slice(&(msg.len() as u64).to_be_bytes());
    frame.extend_from_slice(msg);
    std::fs::File::from(conn.as_fd().try_clone_to_owned()?).write_all(&frame)
}

/// Our half of the `talk` step: three messages each way, every one checked.
fn talk(conn: &Connection, py: &mut Py) {
    let pattern: Vec<u8> = (0..=255).collect();
    for want in [pattern.clone(), vec![], pattern.repeat(4096)] {
        expect(conn, py, &want);
    }
    for msg in [b"from rust \0\xff\n".to_vec(), vec![], (0..1 << 20).map(|i: u32| (i % 251) as u8).collect()] {
        send(conn, py, &msg, false);
        expect(conn, py, &[b"got:", &msg[..]].concat());
    }
}

#[test]
fn a_python_client_talks_to_our_listener() {
    for python in pythons() {
        let dir = TempDir::new();
        for address in [Address::Tcp("127.0.0.1:0".parse().unwrap()), Address::Unix(dir.socket())] {
            let listener = Listener::bind(address, Some(KEY.as_bytes())).unwrap();
            let mut py = python.run("connect", &listener.address().to_string(), KEY, "talk");
            let conn = accept(&listener, &mut py).unwrap_or_else(|e| py.fail(&format!("accept failed: {e}")));
            talk(&conn, &mut py);
            assert_eq!(py.finish(), ["authenticated", "done"]);
        }
        assert!(!dir.socket().exists(), "our listener left its socket file behind");
        // "localhost:0" is TCP, as Python's ("localhost", 0) is, and a
        // Python Client that names the host connects to it.
        let listener = Listener::bind("localhost:0", Some(KEY.as_bytes())).unwrap();
        let Address::Tcp(addr) = listener.address() else { panic!("localhost:0 made {}", listener.address()) };
        assert!(addr.ip().is_loopback() && addr.port() != 0);
        let mut py = python.run("connect", &format!("localhost:{}", addr.port()), KEY, "talk");
        let conn = accept(&listener, &mut py).unwrap_or_else(|e| py.fail(&format!("accept failed: {e}")));
        talk(&conn, &mut py);
        assert_eq!(py.finish(), ["authenticated", "done"]);
        assert!(!std::path::Path::new("localhost:0").exists(), "a socket file named localhost:0 was made");
    }
}

#[test]
fn our_client_talks_to_a_python_listener() {
    for python in pythons() {
        let dir = TempDir::new();
        for address in ["tcp".to_string(), dir.socket().display().to_string()] {
            let mut py = python.run("listen", &address, KEY, "talk");
            let printed = py.line();
            if address != "tcp" {
                assert_eq!(printed, address);
            }
            let conn = Client(printed.as_str(), Some(KEY.as_bytes()))
                .unwrap_or_else(|e| py.fail(&format!("our Client to {printed} failed: {e}")));
            talk(&conn, &mut py);
            assert_eq!(py.finish(), ["authenticated", "done"]);
        }
    }
}

#[test]
fn long_form_headers_are_read_both_ways() {
    for python in pythons() {
        // Python reads the long form since 3.8; 3.6 and 3.7 take its -1 for
        // an empty message and lose the stream, so only they send it here.
        let python_reads_it = python.version >= (3, 8);
        let listener = Listener::bind("127.0.0.1:0", Some(KEY.as_bytes())).unwrap();
        let steps = if python_reads_it { "send_long,echo,echo" } else { "send_long" };
        let mut py = python.run("connect", &listener.address().to_string(), KEY, steps);
        let conn = accept(&listener, &mut py).unwrap_or_else(|e| py.fail(&format!("accept failed: {e}")));
        expect(&conn, &mut py, &(0..=255).collect::<Vec<u8>>());
        expect(&conn, &mut py, b"after");
        if python_reads_it {
            let msg = b"sent in long form \0\x01\xfe\xff";
            send(&conn, &mut py, msg, true);
            expect(&conn, &mut py, &[b"got:", &msg[..]].concat());
            send(&conn, &mut py, b"then short", false);
            expect(&conn, &mut py, b"got:then short");
        }
        assert_eq!(py.finish(), ["authenticated", "done"]);
    }
}

#[test]
fn a_python_client_with_the_wrong_key_is_refused_and_the_listener_goes_on() {
    for python in pythons() {
        let listener = Listener::bind("127.0.0.1:0", Some(b"key A")).unwrap();
        let address = listener.address().to_string();
        let mut py = python.run("connect", &address, "key B", "");
        match accept(&listener, &mut py) {
            Err(e) if e.kind() == ErrorKind::Authentication => {}
            other => py.fail(&format!("accept returned {other:?}, not an Authentication error")),
        }
        assert_eq!(py.finish(), ["AuthenticationError"]);
        let mut py = python.run("connect", &address, "key A", "");
        accept(&listener, &mut py).unwrap_or_else(|e| py.fail(&format!("accept after a refusal failed: {e}")));
        assert_eq!(py.finish(), ["authenticated", "done"]);
    }
}

#[test]
fn our_client_with_the_wrong_key_is_refused_by_a_python_listener() {
    for python in pythons() {
        let mut py = python.run("listen", "tcp", "key A", "");
        let address = py.line();
        match Client(address.as_str(), Some(b"key B")) {
            Err(e) if e.kind() == ErrorKind::Authentication => {}
            other => py.fail(&format!("our Client returned {other:?}, not an Authentication error")),
        }
        assert_eq!(py.finish(), ["AuthenticationError"]);
    }
}
