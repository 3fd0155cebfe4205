//! Forked children while other threads panic and read the environment:
//! no lock those threads held is inherited. In a binary of its own, since
//! it sets the panic hook (which multiproc wraps when the first child
//! starts, to record panic locations): another test starting a child
//! first would have its wrapper replaced.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use common::LONG;
use multiproc::{Process, StartMethod};

fn read_var(key: String) -> Option<String> {
    std::env::var(key).ok()
}

fn boom(_: ()) {
    panic!("expected");
}

#[test]
fn forked_children_do_not_inherit_held_locks() {
    let _w = common::watchdog("fork_safety");
    // Quiet panics: thousands are coming.
    // Quiet the deliberate panics only, so that a failing assertion says
    // what failed.
    std::panic::set_hook(Box::new(|info| {
        let quiet = info.payload().downcast_ref::<&str>().is_some_and(|m| *m == "noise" || *m == "expected");
        if !quiet {
            eprintln!("{info}");
        }
    }));
    let stop = Arc::new(AtomicBool::new(false));
    let mut noise = Vec::new();
    for _ in 0..2 {
        let stop = Arc::clone(&stop);
        noise.push(std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let _ = std::panic::catch_unwind(|| panic!("noise"));
                let _ = std::env::var("HOME");
            }
        }));
    }
    for i in 0..100 {
        let child = Process::new(read_var, "FORK_SAFETY".to_string())
            .env("FORK_SAFETY", i.to_string())
            .start_method(StartMethod::Fork)
            .start()
            .unwrap();
        assert_eq!(child.join_timeout(LONG).unwrap(), Some(i.to_string()));
        // A panicking target still reports its location.
        let child = Process::new(boom, ()).start_method(StartMethod::Fork).start().unwrap();
        let err = child.join_timeout(LONG).unwrap_err();
        assert_eq!(err.panic_info().unwrap().message(), "expected");
        assert!(err.panic_info().unwrap().file().unwrap().ends_with("fork_panic_hook.rs"));
    }
    stop.store(true, Ordering::Relaxed);
    for t in noise {
        t.join().unwrap();
    }
}
