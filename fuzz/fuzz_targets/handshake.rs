//! Any bytes from a client that does not know the key: the listener's
//! handshake refuses it with a typed error, and never lets it in.

#![no_main]

use std::io::Write;
use std::net::Shutdown;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixStream};
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use multiproc::ErrorKind;
use multiproc::connection::{Address, Listener};

fn name() -> Vec<u8> {
    format!("multiproc-fuzz-handshake-{}", std::process::id()).into_bytes()
}

fuzz_target!(|data: &[u8]| {
    static LISTENER: OnceLock<Listener> = OnceLock::new();
    let listener = LISTENER.get_or_init(|| Listener::bind(Address::Abstract(name()), Some(b"key")).unwrap());
    let mut raw = UnixStream::connect_addr(&SocketAddr::from_abstract_name(name()).unwrap()).unwrap();
    // A few KiB at most: the socket buffer takes them before accept.
    raw.write_all(data).unwrap();
    // The client stops writing but still takes what comes, so every read of
    // the handshake ends at once and none of its writes fails.
    raw.shutdown(Shutdown::Write).unwrap();
    let e = listener.accept().expect_err("a client without the key passed the handshake");
    assert!(matches!(e.kind(), ErrorKind::Authentication | ErrorKind::Protocol), "unexpected error: {e}");
});
