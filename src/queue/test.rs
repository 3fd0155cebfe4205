//! A producer killed at a chosen point inside a put, which needs a hook
//! into the ring: every message stays whole or absent, and the lock goes
//! on working, under every start method.

use std::time::Duration;

use super::Queue;
use crate::codec;
use crate::connection::{Connection, Pipe};
use crate::context::StartMethod;
use crate::error::ErrorKind;
use crate::process::Process;

/// The ceiling on any single blocking call here.
const LONG: Duration = Duration::from_secs(30);

impl<T: serde::Serialize + 'static> Queue<T> {
    /// Starts a put, writes half of `item` under the queue's lock, calls
    /// `inside`, and never returns, so that a test can kill the process in
    /// the middle of a put.
    fn put_half_then_hang(&self, item: &T, inside: impl FnOnce()) -> ! {
        let mut buf = Vec::new();
        codec::Encoder::new(&mut buf).push_item(item, "a queue item").expect("a test item serializes");
        self.ring.put_half_then_hang(&buf, inside)
    }
}

fn hang_in_put((q, signal): (Queue<Vec<u8>>, Connection)) {
    q.put_half_then_hang(&vec![0xab; 4 << 20], || signal.send_bytes(b"inside put").unwrap());
}

fn put_one((q, v): (Queue<Vec<u8>>, u8)) -> crate::Result<()> {
    q.put(&vec![v; 1 << 20])
}

#[test]
fn a_producer_killed_in_the_middle_of_a_put_leaves_every_message_whole_or_absent() {
    for method in [StartMethod::Fork, StartMethod::Spawn, StartMethod::ForkServer] {
        let q = Queue::<Vec<u8>>::new().unwrap();
        q.put(&vec![1; 1000]).unwrap();
        let (here, there) = Pipe(true).unwrap();
        let child = Process::new(hang_in_put, (q.clone(), there)).start_method(method).start().unwrap();
        assert!(here.poll(Some(LONG)).unwrap(), "{method}: the producer never got inside its put");
        assert_eq!(here.recv_bytes().unwrap(), b"inside put");
        // It holds the lock, with half of 4 MiB written: kill it there.
        child.kill().unwrap();
        assert_eq!(child.join_timeout(LONG).unwrap_err().exitcode(), Some(-9));
        assert_eq!(q.get_timeout(LONG).unwrap(), vec![1; 1000]);
        assert_eq!(q.try_get().unwrap_err().kind(), ErrorKind::Empty, "{method}: the torn message must be absent");
        // Nothing stays locked, for this process or another.
        q.put_timeout(&vec![2; 10], LONG).unwrap();
        let other = Process::new(put_one, (q.clone(), 3)).start_method(method).start().unwrap();
        other.join_timeout(LONG).unwrap().unwrap();
        assert_eq!(q.get_timeout(LONG).unwrap(), vec![2; 10]);
        assert_eq!(q.get_timeout(LONG).unwrap(), vec![3; 1 << 20]);
        assert!(q.empty());
    }
}
