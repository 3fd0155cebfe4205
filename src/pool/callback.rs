//! The pool's callback thread: Python's `callback=`, `error_callback=` and
//! `add_done_callback` run there, once each, after their result is ready.
//!
//! A result with callbacks registers a waker on its job; when the job
//! finishes (in the dispatcher thread, or in a caller that cancels it), the
//! waker queues the result here, and this thread runs its callbacks. The
//! thread exists only while callbacks are queued or running; `join()` on
//! the pool waits for it, so callbacks that collect results have run when
//! `close()` + `join()` return, as in Python.

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::task::Wake;
use std::thread::ThreadId;

/// Something whose callbacks are due.
pub(crate) trait Fire: Send + Sync {
    /// Runs the callbacks registered so far, each once.
    fn fire(self: Arc<Self>);
}

#[derive(Default)]
struct State {
    queue: VecDeque<Arc<dyn Fire>>,
    /// The thread runs (and is not idle yet).
    running: bool,
    thread: Option<ThreadId>,
}

/// The queue and the thread that empties it.
#[derive(Default)]
pub(crate) struct Runner {
    state: Mutex<State>,
    idle: Condvar,
}

impl std::fmt::Debug for Runner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let st = self.lock();
        f.debug_struct("Runner").field("queued", &st.queue.len()).field("running", &st.running).finish()
    }
}

impl Runner {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues `item`, starting the thread if it is not running.
    pub(crate) fn push(self: &Arc<Self>, item: Arc<dyn Fire>) {
        let mut st = self.lock();
        st.queue.push_back(item);
        if st.running {
            return;
        }
        st.running = true;
        drop(st);
        let runner = Arc::clone(self);
        let spawned = std::thread::Builder::new().name("multiproc-callbacks".into()).spawn(move || runner.run());
        if spawned.is_err() {
            // No thread to be had: run them here rather than never.
            self.run();
        }
    }

    fn run(&self) {
        self.lock().thread = Some(std::thread::current().id());
        loop {
            let item = {
                let mut st = self.lock();
                match st.queue.pop_front() {
                    Some(item) => item,
                    None => {
                        st.running = false;
                        st.thread = None;
                        self.idle.notify_all();
                        return;
                    }
                }
            };
            // A panic while firing (in a result's Deserialize, say) must
            // not take the thread, and every later callback, with it: the
            // result records it (see `Fire`), and the next one runs.
            let _ = crate::runtime::catch_panic(|| item.fire());
        }
    }

    /// Waits until every queued callback has run. From a callback itself
    /// (which would wait for itself) it returns at once.
    pub(crate) fn drain(&self) {
        let mut st = self.lock();
        if st.thread == Some(std::thread::current().id()) {
            return;
        }
        while st.running {
            st = self.idle.wait(st).unwrap_or_else(|p| p.into_inner());
        }
    }
}

/// A waker that queues `item` on `runner`: what a result with callbacks
/// registers on its job.
pub(crate) struct QueueOnWake {
    pub(crate) item: Arc<dyn Fire>,
    pub(crate) runner: Arc<Runner>,
}

impl Wake for QueueOnWake {
    fn wake(self: Arc<Self>) {
        self.runner.push(Arc::clone(&self.item));
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.runner.push(Arc::clone(&self.item));
    }
}

/// Runs one callback, reporting a panic instead of passing it on: a
/// failing callback must not stop the others, or the pool.
pub(crate) fn run_guarded(what: &str, f: impl FnOnce()) {
    if let Err(panic) = crate::runtime::catch_panic(f) {
        eprintln!("multiproc: a pool's {what} {panic}; the other callbacks and the pool go on");
    }
}
