//! Python's `callback=`, `error_callback=` and `add_done_callback`: each
//! runs exactly once, in a thread of the pool's (not the caller's), after
//! its result is ready; `close()` + `join()` return after every callback;
//! a panicking callback is reported and the pool goes on. Ported from the
//! shapes Python programs collect results in, under every start method.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::thread::ThreadId;
use std::time::Duration;

use common::LONG;
use multiproc::{ErrorKind, Pool, StartMethod};

fn pool(method: StartMethod, n: usize) -> Pool {
    Pool::builder().processes(n).start_method(method).build().unwrap()
}

fn square(x: u64) -> u64 {
    x * x
}

fn fail_on((x, bad): (u64, u64)) -> u64 {
    assert!(x != bad, "bad {x}");
    x
}

fn nap(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

/// Where a callback ran: its thread's id and name.
fn here() -> (ThreadId, Option<String>) {
    let t = std::thread::current();
    (t.id(), t.name().map(str::to_owned))
}

per_method! {
    fn collecting_results_with_callbacks_ports_line_for_line(method: StartMethod) {
        // results = []
        // for x in range(20): pool.apply_async(square, (x,), callback=results.append)
        // pool.close(); pool.join()
        let results = Arc::new(Mutex::new(Vec::new()));
        let threads = Arc::new(Mutex::new(Vec::new()));
        let pool = pool(method, 2);
        for x in 0..20 {
            let (results, threads) = (Arc::clone(&results), Arc::clone(&threads));
            pool.apply_async(square, x).unwrap().callback(move |y| {
                threads.lock().unwrap().push(here());
                results.lock().unwrap().push(y);
            });
        }
        pool.close();
        pool.join().unwrap();
        let mut got = results.lock().unwrap().clone();
        got.sort();
        assert_eq!(got, (0..20).map(|x| x * x).collect::<Vec<u64>>(), "each callback ran exactly once");
        let me = std::thread::current().id();
        for (id, name) in threads.lock().unwrap().iter() {
            assert_ne!(*id, me, "not in the caller's thread");
            assert_eq!(name.as_deref(), Some("multiproc-callbacks"), "in the pool's thread");
        }
    }
}

per_method! {
    fn map_async_gives_its_callback_the_whole_vec_and_errors_go_to_error_callback(method: StartMethod) {
        let pool = pool(method, 2);
        let (tx, rx) = mpsc::channel();
        let tx2 = tx.clone();
        let whole = pool
            .chunksize(3)
            .map_async(square, 0..10)
            .unwrap()
            .callback(move |v| tx.send(Ok(v)).unwrap())
            .error_callback(move |e| tx2.send(Err(e.kind())).unwrap());
        assert_eq!(rx.recv_timeout(LONG).unwrap(), Ok((0..10).map(|x| x * x).collect::<Vec<u64>>()));
        assert_eq!(whole.get().unwrap_err().kind(), ErrorKind::InvalidState, "the value went to the callback");

        let (tx, rx) = mpsc::channel();
        let value_seen = Arc::new(AtomicUsize::new(0));
        let seen = Arc::clone(&value_seen);
        let failing = pool
            .map_async(fail_on, (0..10).map(|x| (x, 7)))
            .unwrap()
            .callback(move |_| {
                seen.fetch_add(1, Ordering::SeqCst);
            })
            .error_callback(move |e| tx.send(e).unwrap());
        let e = rx.recv_timeout(LONG).unwrap();
        assert_eq!(e.kind(), ErrorKind::Panicked);
        assert_eq!(e.panic_info().unwrap().message(), "bad 7");
        let again = failing.get().unwrap_err();
        assert_eq!(again.kind(), ErrorKind::Panicked, "the error stays for get(): {again}");
        pool.close();
        pool.join().unwrap();
        assert_eq!(value_seen.load(Ordering::SeqCst), 0, "a failed map does not call callback");
        assert!(rx.try_recv().is_err(), "the error callback ran once");
    }
}

per_method! {
    fn done_callbacks_run_in_order_even_when_added_after_the_result_is_ready(method: StartMethod) {
        let pool = pool(method, 1);
        let order = Arc::new(Mutex::new(Vec::new()));
        let f = pool.submit(square, 12).unwrap();
        f.wait();
        for tag in ["first", "second"] {
            let order = Arc::clone(&order);
            f.add_done_callback(move |r| order.lock().unwrap().push((tag, r.ready(), here().1)));
        }
        let (tx, rx) = mpsc::channel();
        f.add_done_callback(move |r| tx.send(r.get().unwrap()).unwrap());
        assert_eq!(rx.recv_timeout(LONG).unwrap(), 144, "a done callback may take the value");
        pool.close();
        pool.join().unwrap();
        let order = order.lock().unwrap().clone();
        let callbacks = Some("multiproc-callbacks".to_string());
        assert_eq!(order, [("first", true, callbacks.clone()), ("second", true, callbacks)]);
    }
}

per_method! {
    fn a_panicking_callback_is_reported_and_the_pool_goes_on(method: StartMethod) {
        let pool = pool(method, 2);
        let ran = Arc::new(AtomicUsize::new(0));
        for x in 0..6 {
            let ran = Arc::clone(&ran);
            pool.apply_async(square, x).unwrap().callback(move |y| {
                ran.fetch_add(1, Ordering::SeqCst);
                assert!(y != 9, "a callback that panics on purpose");
            });
        }
        assert_eq!(pool.map(square, 0..5).unwrap(), [0, 1, 4, 9, 16], "the pool goes on");
        pool.close();
        pool.join().unwrap();
        assert_eq!(ran.load(Ordering::SeqCst), 6, "every other callback still ran");
    }
}

per_method! {
    fn cancelled_and_terminated_tasks_reach_their_error_callbacks(method: StartMethod) {
        let pool = pool(method, 1);
        let (tx, rx) = mpsc::channel();
        let _busy: Vec<_> = (0..4).map(|_| pool.apply_async(nap, 300).unwrap()).collect();
        let tx2 = tx.clone();
        let queued = pool.apply_async(square, 3).unwrap().error_callback(move |e| tx2.send(("queued", e.kind())).unwrap());
        assert!(queued.cancel());
        assert_eq!(rx.recv_timeout(LONG).unwrap(), ("queued", ErrorKind::Cancelled));
        let _slow = pool.apply_async(nap, 60_000).unwrap().error_callback(move |e| tx.send(("slow", e.kind())).unwrap());
        pool.terminate();
        pool.join().unwrap();
        assert_eq!(rx.try_recv().unwrap(), ("slow", ErrorKind::BrokenPool), "join waited for the callback");
    }
}

fn mul((a, b): (u64, u64)) -> u64 {
    a * b
}

#[test]
fn wait_returns_after_the_callback_has_run_as_in_python() {
    // A = []; r = pool.apply_async(mul, (7, 8), callback=A.append); r.wait()
    // -- and A == [56]: Python runs the callback before the result is ready.
    let _w = common::watchdog("callback before ready");
    let pool = multiproc::Pool::new(1).unwrap();
    let got = Arc::new(Mutex::new(Vec::new()));
    let (started_tx, started) = std::sync::mpsc::channel();
    let (go, gate) = std::sync::mpsc::channel::<()>();
    let sink = Arc::clone(&got);
    let r = pool.apply_async(mul, (7, 8)).unwrap().callback(move |v| {
        started_tx.send(()).unwrap();
        gate.recv().unwrap();
        sink.lock().unwrap().push(v);
    });
    started.recv_timeout(common::LONG).unwrap();
    // The task is done and its callback runs: the result is not ready yet.
    assert!(!r.ready());
    assert!(!r.wait_timeout(std::time::Duration::from_millis(10)));
    go.send(()).unwrap();
    r.wait();
    assert!(r.ready());
    assert_eq!(*got.lock().unwrap(), [56]);
    let a = pool.map_async(mul, (0..4).map(|i| (i, i * i))).unwrap();
    let sink = Arc::clone(&got);
    let a = a.callback(move |v: Vec<u64>| sink.lock().unwrap().extend(v));
    a.wait();
    assert_eq!(*got.lock().unwrap(), [56, 0, 1, 8, 27]);
}
