//! The token budget that nested pools share, as GNU make's jobserver: a
//! process-shared semaphore holding one token per worker allowed to run at
//! once, across a pool and every pool created inside its tasks (and inside
//! theirs). A worker takes a token before each chunk and gives it back
//! after; a task that waits for a pool of its own lends its token while it
//! waits, so that the inner pool's workers can run (no deadlock when every
//! outer task waits for inner work).
//!
//! A top-level pool makes its budget with `max(processes, cpu_count())`
//! tokens: its own workers are never held back, and pools nested inside
//! them add no more busy workers. Its workers receive the semaphore with
//! their configuration, and every pool they create shares it. Independent
//! top-level pools have budgets of their own.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crate::context::cpu_count;
use crate::error::Result;
use crate::synchronize::Semaphore;
use crate::sys::WordSlot;

/// A pool's choice of budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Tokens {
    /// The process's shared budget (made here if there is none yet).
    Shared,
    /// A budget of its own, with this many tokens.
    Own(u32),
    /// No budget: its workers run whenever they have work.
    Off,
}

/// The budget this process's pool worker was given: the pools its tasks
/// create share it. A process that is not a pool worker has none, and
/// each of its pools makes its own (independent pools never hold each
/// other back).
static BUDGET: Mutex<Option<Semaphore>> = Mutex::new(None);

/// Whether this process (a pool worker running a chunk) holds a token.
static HOLDING: AtomicBool = AtomicBool::new(false);
/// Where a worker mirrors `HOLDING` for its parent (a word of its status
/// page): a worker that dies holding a token has it given back for it.
static MIRROR: WordSlot = WordSlot::new();

fn set_holding(held: bool) {
    HOLDING.store(held, Ordering::Release);
    MIRROR.store(u64::from(held));
}

/// Mirrors this worker's holding in `word` until [`forget_mirror`].
pub(crate) fn mirror_in(word: &AtomicU64) {
    MIRROR.set(word);
}

pub(crate) fn forget_mirror() {
    MIRROR.clear();
}

fn budget() -> std::sync::MutexGuard<'static, Option<Semaphore>> {
    BUDGET.lock().unwrap_or_else(|p| p.into_inner())
}

/// This process's budget, if it adopted one (the lock is held only for
/// the clone: never across a syscall, so that a fork from another thread
/// finds it free — see also [`hold_across_fork`]).
fn adopted() -> Option<Semaphore> {
    budget().clone()
}

/// Holds the budget's lock across a fork: a fork child that found it held
/// by a thread that does not exist in the child would wait for ever for it
/// (a pool worker adopts its budget first thing).
pub(crate) fn hold_across_fork() -> std::sync::MutexGuard<'static, Option<Semaphore>> {
    budget()
}

/// The semaphore a pool of `processes` workers gives its workers.
pub(crate) fn for_pool(tokens: Tokens, processes: usize) -> Result<Option<Semaphore>> {
    match tokens {
        Tokens::Off => Ok(None),
        Tokens::Own(n) => Semaphore::new(n).map(Some),
        Tokens::Shared => match adopted() {
            Some(s) => Ok(Some(s)),
            None => Semaphore::new(processes.max(cpu_count()).min(u32::MAX as usize) as u32).map(Some),
        },
    }
}

/// A pool worker takes on the budget it was given: the pools its tasks
/// create share it.
pub(crate) fn adopt(s: &Semaphore) {
    *budget() = Some(s.clone());
}

/// A worker takes a token before a chunk (waiting for one).
pub(crate) fn take(s: &Semaphore) {
    if s.acquire().is_ok() {
        set_holding(true);
    }
}

/// A worker gives its token back after a chunk.
pub(crate) fn give_back(s: &Semaphore) {
    if HOLDING.load(Ordering::Acquire) {
        set_holding(false);
        let _ = s.release();
    }
}

/// Before a wait for a pool's results: gives this process's token back for
/// the wait, if it holds one; true if it did (then [`take_back`] after).
pub(crate) fn lend() -> bool {
    if !HOLDING.load(Ordering::Acquire) {
        return false;
    }
    set_holding(false);
    match adopted() {
        Some(s) => s.release().is_ok(),
        None => false,
    }
}

/// After a wait that [`lend`] lent a token for: takes one again (waiting
/// for it). Call it holding no lock that the pool's threads need.
pub(crate) fn take_back() {
    if let Some(s) = adopted() {
        take(&s);
    }
}
