//! The frame-size limit: oversized arguments and results are refused with
//! a typed error, on either side, and children inherit the limit.
//!
//! The limit is process-wide, so these tests live in their own binary and
//! all set the same value.

mod common;

use common::LONG;
use multiproc::{ErrorKind, Process, StartMethod};

const LIMIT: u64 = 1 << 20;

fn set_limit() {
    multiproc::set_max_frame_size(LIMIT).unwrap();
}

fn length(data: Vec<u8>) -> usize {
    data.len()
}

fn make(n: usize) -> Vec<u8> {
    vec![7; n]
}

fn limit_seen(_: ()) -> u64 {
    multiproc::max_frame_size()
}

per_method! {
    fn an_oversized_argument_is_refused_before_starting(method: StartMethod) {
        set_limit();
        let err = Process::new(length, vec![0u8; 2 << 20]).start_method(method).start().unwrap_err();
        assert_eq!(err.kind(), ErrorKind::FrameTooLarge, "{err}");
        assert!(err.to_string().contains("set_max_frame_size"), "{err}");
        // Just under the limit is fine.
        let child = Process::new(length, vec![0u8; 1000]).start_method(method).start().unwrap();
        assert_eq!(child.join_timeout(LONG).unwrap(), 1000);
    }
}

per_method! {
    fn an_oversized_result_is_refused_by_the_child(method: StartMethod) {
        set_limit();
        let child = Process::new(make, 2 << 20).start_method(method).start().unwrap();
        let err = child.join_timeout(LONG).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::FrameTooLarge, "{err}");
        assert_eq!(err.exitcode(), Some(1));
        assert_eq!(child.exitcode(), Some(1));
    }
}

per_method! {
    fn children_inherit_the_limit(method: StartMethod) {
        set_limit();
        let child = Process::new(limit_seen, ()).start_method(method).start().unwrap();
        assert_eq!(child.join_timeout(LONG).unwrap(), LIMIT);
    }
}

#[test]
fn out_of_range_limits_are_refused() {
    assert_eq!(multiproc::set_max_frame_size(0).unwrap_err().kind(), ErrorKind::InvalidInput);
    assert_eq!(multiproc::set_max_frame_size(u64::MAX).unwrap_err().kind(), ErrorKind::InvalidInput);
}

#[test]
fn oversized_queue_items_and_messages_are_refused_and_nothing_breaks() {
    set_limit();
    let q = multiproc::Queue::<Vec<u8>>::new().unwrap();
    assert_eq!(q.put(&vec![0; 2 << 20]).unwrap_err().kind(), ErrorKind::FrameTooLarge);
    q.put(&vec![1; 10]).unwrap();
    assert_eq!(q.get().unwrap(), [1; 10]);
    let (a, b) = multiproc::Pipe(true).unwrap();
    assert_eq!(a.send(&vec![0u8; 2 << 20]).unwrap_err().kind(), ErrorKind::FrameTooLarge);
    // send_bytes sends what it is given (from a thread: the socket buffer is
    // smaller than the message); the receiver refuses it unread.
    let sender = std::thread::spawn(move || a.send_bytes(&vec![0u8; 2 << 20]).map(|()| a));
    assert!(b.poll(Some(std::time::Duration::from_secs(10))).unwrap());
    assert_eq!(b.recv_bytes().unwrap_err().kind(), ErrorKind::FrameTooLarge);
    assert_eq!(b.recv_bytes().unwrap_err().kind(), ErrorKind::Protocol, "the stream is unusable after that");
    drop(b);
    // With the receiver gone, the blocked sender gets an error, not a hang.
    assert!(sender.join().unwrap().is_err());
}
