//! `Listener` and `Client`, as Python's `multiprocessing.connection`: a
//! server on TCP with an authkey, a client in another process that sends
//! requests and reads the replies, and a client with the wrong key, refused
//! on both sides (Python's `AuthenticationError`).
//!
//! ```text
//! cargo run --example listener_client
//! ```
//!
//! The wire format and the handshake are Python's, so a Python process can
//! be either peer. Use `send_bytes`/`recv_bytes` there: Python's
//! `send`/`recv` pickle, and pickle is not spoken here. Against
//! `cargo run --example listener_client -- serve`:
//!
//! ```python
//! from multiprocessing.connection import Client
//! with Client(("127.0.0.1", 6000), authkey=b"secret") as conn:
//!     conn.send_bytes(b"Python")
//!     print(conn.recv_bytes())  # b'hello, Python'
//! ```
//!
//! And a Python server for `cargo run --example listener_client -- connect`:
//!
//! ```python
//! from multiprocessing.connection import Listener
//! with Listener(("127.0.0.1", 6000), authkey=b"secret") as listener:
//!     with listener.accept() as conn:
//!         while True:
//!             try:
//!                 conn.send_bytes(b"hello, " + conn.recv_bytes())
//!             except EOFError:
//!                 break
//! ```

use std::time::Duration;

use multiproc::connection::{Client, Connection, Listener, wait};
use multiproc::{ErrorKind, Process};

const KEY: &[u8] = b"secret";
/// Where `serve` listens and `connect` connects.
const PYTHON_PEER: &str = "127.0.0.1:6000";
/// Bounds every wait: a bug fails the program instead of hanging it.
const LIMIT: Duration = Duration::from_secs(30);

/// Answers each request until the client hangs up; returns how many.
fn serve(conn: &Connection) -> multiproc::Result<usize> {
    let mut served = 0;
    loop {
        match conn.recv_bytes() {
            Ok(name) => conn.send_bytes(&[b"hello, ".as_slice(), &name].concat())?,
            Err(e) if e.kind() == ErrorKind::Eof => return Ok(served),
            Err(e) => return Err(e),
        }
        served += 1;
    }
}

/// Python: `conn = Client(address, authkey=key)`, then a `send_bytes` and a
/// `recv_bytes` per name.
fn client((address, key, names): (String, Vec<u8>, Vec<String>)) -> multiproc::Result<Vec<String>> {
    let conn = Client(address, Some(&key))?;
    let mut replies = Vec::new();
    for name in names {
        conn.send_bytes(name.as_bytes())?;
        replies.push(String::from_utf8_lossy(&conn.recv_bytes()?).into_owned());
    }
    Ok(replies)
}

/// `accept`, once `wait` says a client is there (`accept` has no timeout).
fn accept(listener: &Listener) -> multiproc::Result<Connection> {
    assert!(!wait(&[listener], Some(LIMIT))?.is_empty(), "no client came in {LIMIT:?}");
    listener.accept()
}

fn main() -> multiproc::Result<()> {
    let names = vec!["Ada".to_string(), "Grace".to_string()];
    match std::env::args().nth(1).as_deref() {
        Some("serve") => {
            let listener = Listener::bind(PYTHON_PEER, Some(KEY))?;
            println!("listening on {}", listener.address());
            println!("served {} requests", serve(&listener.accept()?)?);
            return Ok(());
        }
        Some("connect") => {
            client((PYTHON_PEER.into(), KEY.into(), names))?.iter().for_each(|r| println!("{r}"));
            return Ok(());
        }
        _ => {}
    }

    // Python: Listener(("127.0.0.1", 0), authkey=b"secret"); port 0 picks
    // a free port, and `address()` tells which.
    let listener = Listener::bind("127.0.0.1:0", Some(KEY))?;
    let address = listener.address().to_string();
    let child = Process::new(client, (address.clone(), KEY.to_vec(), names)).start()?;
    println!("server: served {} requests", serve(&accept(&listener)?)?);
    for reply in child.join_timeout(LIMIT)?? {
        println!("client got: {reply}");
    }

    let child = Process::new(client, (address, b"wrong".to_vec(), Vec::new())).start()?;
    let refused = accept(&listener).expect_err("a wrong key must be refused");
    println!("server: refused a client ({:?})", refused.kind());
    let refused = child.join_timeout(LIMIT)?.expect_err("a wrong key must be refused");
    println!("client with the wrong key: refused ({:?})", refused.kind());
    Ok(())
}
