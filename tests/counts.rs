//! Process-wide leak counts that would see other tests' objects if they
//! ran beside them (issue 18): conditions and barriers, pipes, listeners
//! and clients, made and dropped in rounds, with one `LeakGuard` around
//! each. One test in its own binary, so that nothing else runs meanwhile.

mod common;

use multiproc::connection::{Client, Listener};
use multiproc::{Barrier, Condition, Pipe};

/// Runs `round` once (to warm up what is made once), then `n` more times
/// inside a leak guard.
fn rounds(what: &str, n: usize, round: impl Fn()) {
    round();
    let guard = common::LeakGuard::new();
    for _ in 0..n {
        round();
    }
    guard.check(what);
}

#[test]
fn made_and_dropped_objects_leave_nothing_behind() {
    let _w = common::watchdog("counts");
    rounds("conditions and barriers (memfd objects put nothing in /dev/shm)", 50, || {
        let c = Condition::new().unwrap();
        c.acquire().unwrap().notify_all();
        let b = Barrier::new(1).unwrap();
        b.wait().unwrap();
    });
    rounds("pipes, listeners and clients", 20, || {
        let (a, b) = Pipe(true).unwrap();
        let (r, w) = Pipe(false).unwrap();
        a.send_bytes(b"x").unwrap();
        w.send_bytes(b"y").unwrap();
        assert_eq!((b.recv_bytes().unwrap(), r.recv_bytes().unwrap()), (b"x".to_vec(), b"y".to_vec()));
        let l = Listener::bind("127.0.0.1:0", Some(b"k")).unwrap();
        let address = l.address().clone();
        let t = std::thread::spawn(move || Client(address, Some(b"k")).map(drop));
        drop(l.accept().unwrap());
        t.join().unwrap().unwrap();
    });
}
