//! Any bytes from a peer, read back as messages: each receive gives a whole
//! message or a typed error, never a panic, a hang or a huge allocation.
//!
//! The first byte picks how each message is received; the rest is what
//! the peer writes before it closes.

#![no_main]

use std::io::Write;
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use multiproc::ErrorKind;

/// The frame-size limit: a header may claim at most this much.
const CAP: u64 = 1 << 20;

fuzz_target!(|data: &[u8]| {
    let Some((&ways, bytes)) = data.split_first() else {
        return;
    };
    multiproc::set_max_frame_size(CAP).unwrap();
    let (conn, peer) = multiproc::Pipe(true).unwrap();
    let mut raw = UnixStream::from(peer.as_fd().try_clone_to_owned().unwrap());
    drop(peer);
    // libFuzzer's inputs are a few KiB at most: the socket buffer takes
    // them whole, so one thread writes and then reads.
    raw.write_all(bytes).unwrap();
    drop(raw);
    // Each message takes a header of 4 bytes or more: the stream ends in time.
    for i in 0..=bytes.len() / 4 + 1 {
        assert!(conn.poll(Some(Duration::from_secs(5))).unwrap(), "nothing to read after the peer closed");
        let got = match (ways >> (i % 4 * 2)) & 3 {
            0 => conn.recv_bytes().map(drop),
            1 => conn.recv_bytes_max(usize::from(ways)).map(drop),
            2 => conn.recv::<String>().map(drop),
            _ => conn.recv::<Vec<(u16, String)>>().map(drop),
        };
        match got {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::Deserialize => {}
            Err(e) => {
                let kind = e.kind();
                assert!(
                    matches!(kind, ErrorKind::Eof | ErrorKind::Protocol | ErrorKind::FrameTooLarge),
                    "unexpected error: {e}"
                );
                // The stream is over, and stays so.
                let again = conn.recv_bytes().unwrap_err().kind();
                assert_eq!(again, if kind == ErrorKind::Eof { ErrorKind::Eof } else { ErrorKind::Protocol });
                return;
            }
        }
    }
    panic!("more messages than {} bytes can hold", bytes.len());
});
