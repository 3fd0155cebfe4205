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
