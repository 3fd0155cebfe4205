//! The token budget that nested pools share, as GNU make's jobserver: a
//! table in shared memory holding one token per worker allowed to run at
//! once, across a pool and every pool created inside its tasks (and inside
//! theirs). A worker takes a token before each chunk and gives it back
//! after; a task that waits for a pool of its own lends its token while it
//! waits, so that the inner pool's workers can run (no deadlock when every
//! outer task waits for inner work).
//!
//! A top-level pool makes its budget with `max(processes, cpu_count())`
//! tokens: its own workers are never held back, and pools nested inside
//! them add no more busy workers. Its workers receive the budget with
//! their configuration, and every pool they create shares it. Independent
//! top-level pools have budgets of their own.
//!
//! Each token is a slot that holds the pid of the process that took it, so
//! that a worker that dies holding one (killed between any two of its
//! instructions) gives it back through its parent, which frees the slots
//! with the dead worker's pid when it buries it: a count of free tokens,
//! as in a semaphore, could not tell whether the dead worker had taken one.
//! A holder that ended with no pool to bury it (a nested pool's worker,
//! killed with the worker whose task made that pool) is found by the next
//! worker that waits for a token longer than a recheck: its token is
//! taken back.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::context::cpu_count;
use crate::error::{Error, Result};
use crate::synchronize::block::{Block, Kind, START, block_serde};
use crate::sys;

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

/// Bumped by every release that finds waiters: what they sleep on.
const OFF_RELEASES: usize = START;
/// How many processes sleep on it.
const OFF_WAITERS: usize = START + 4;
/// How many tokens (slots) the budget has.
const OFF_COUNT: usize = START + 8;
/// The slots: 0 when free, else the pid of the process that holds it.
const OFF_SLOTS: usize = START + 64;

/// A budget of tokens in shared memory, shared by the workers of a pool
/// and of the pools nested in it.
#[derive(Debug, Clone)]
pub(crate) struct Budget {
    block: Arc<Block>,
}

block_serde!(Budget, Kind::Tokens, "a pool's token budget", |b| Budget::attached(b), |s| &s.block);

/// Slots a budget has at most (256 KiB of them): more tokens than that
/// are as good as no limit, as no machine runs so many workers at once.
const MAX_TOKENS: u32 = 1 << 16;

impl Budget {
    pub(crate) fn new(tokens: u32) -> Result<Budget> {
        let tokens = tokens.min(MAX_TOKENS);
        let len = (OFF_SLOTS + 4 * tokens as usize).next_multiple_of(sys::page_size());
        let block = Block::new(Kind::Tokens, len, |m| {
            m.u32_at(OFF_COUNT).store(tokens, Ordering::Relaxed);
            Ok(())
        })?;
        Ok(Budget { block })
    }

    /// A budget that arrived from another process, checked for its size.
    fn attached<E: serde::de::Error>(block: Arc<Block>) -> std::result::Result<Budget, E> {
        let budget = Budget { block };
        let fits = OFF_SLOTS + 4 * budget.count() <= budget.block.map().len();
        if fits { Ok(budget) } else { Err(E::custom("a pool's token budget arrived with fewer slots than it counts")) }
    }

    fn word(&self, off: usize) -> &AtomicU32 {
        self.block.map().u32_at(off)
    }

    fn count(&self) -> usize {
        self.word(OFF_COUNT).load(Ordering::Relaxed) as usize
    }

    fn slot(&self, i: usize) -> &AtomicU32 {
        self.word(OFF_SLOTS + 4 * i)
    }

    /// Takes a free slot for `pid`, looking first where `pid` points (so
    /// that workers do not all race for the first one); its index.
    fn try_take(&self, pid: u32) -> Option<usize> {
        let n = self.count();
        let first = pid as usize % n.max(1);
        (0..n).map(|k| (first + k) % n).find(|&i| {
            let slot = self.slot(i);
            slot.load(Ordering::Relaxed) == 0
                && slot.compare_exchange(0, pid, Ordering::SeqCst, Ordering::Relaxed).is_ok()
        })
    }

    /// Waits for a free slot and takes it for `pid`; its index.
    fn take(&self, pid: u32) -> Result<usize> {
        for spin in 0..64 {
            if let Some(i) = self.try_take(pid) {
                return Ok(i);
            }
            for _ in 0..(1u32 << (spin / 8)) {
                std::hint::spin_loop();
            }
        }
        let (releases, waiters) = (self.word(OFF_RELEASES), self.word(OFF_WAITERS));
        let mut swept = std::time::Instant::now();
        loop {
            // A token whose holder ended with nobody to bury it (a nested
            // pool's worker, killed with the worker that made its pool)
            // comes back here, after a wait of a recheck.
            if swept.elapsed() >= crate::synchronize::RECHECK {
                self.sweep();
                swept = std::time::Instant::now();
            }
            waiters.fetch_add(1, Ordering::SeqCst);
            let seen = releases.load(Ordering::SeqCst);
            let taken = self.try_take(pid);
            let slept = match taken {
                Some(_) => Ok(()),
                None => sys::futex_wait(releases, seen, Some(crate::synchronize::RECHECK)),
            };
            waiters.fetch_sub(1, Ordering::SeqCst);
            slept.map_err(|e| Error::io("waiting for a token of the pool's budget", e))?;
            if let Some(i) = taken.or_else(|| self.try_take(pid)) {
                return Ok(i);
            }
        }
    }

    /// Frees the slots that `pid` holds in `slots`; how many it held.
    fn free(&self, pid: u32, slots: impl Iterator<Item = usize>) -> u32 {
        let freed = slots
            .filter(|&i| self.slot(i).compare_exchange(pid, 0, Ordering::SeqCst, Ordering::Relaxed).is_ok())
            .count() as u32;
        // A waiter counts itself before it looks at the slots, so that it
        // either sees a slot freed here or is counted here and woken.
        if freed > 0 && self.word(OFF_WAITERS).load(Ordering::SeqCst) > 0 {
            let releases = self.word(OFF_RELEASES);
            releases.fetch_add(1, Ordering::SeqCst);
            sys::futex_wake(releases, freed);
        }
        freed
    }

    /// Frees the tokens whose holders have ended (gone, or zombies):
    /// how many.
    fn sweep(&self) -> u32 {
        (0..self.count())
            .map(|i| match self.slot(i).load(Ordering::SeqCst) {
                0 => 0,
                pid if sys::has_exited(pid as i32) => self.free(pid, std::iter::once(i)),
                _ => 0,
            })
            .sum()
    }

    /// Gives back the tokens of process `pid`, which has ended (a pool's
    /// worker, buried by its pool): how many it held.
    pub(crate) fn reclaim(&self, pid: u32) -> u32 {
        self.free(pid, 0..self.count())
    }

    /// How many tokens are free now.
    #[cfg(test)]
    fn free_now(&self) -> usize {
        (0..self.count()).filter(|&i| self.slot(i).load(Ordering::SeqCst) == 0).count()
    }
}

/// The budget this process's pool worker was given: the pools its tasks
/// create share it. A process that is not a pool worker has none, and
/// each of its pools makes its own (independent pools never hold each
/// other back).
static BUDGET: Mutex<Option<Budget>> = Mutex::new(None);

/// The token this process holds, if it holds one: its pid in the high
/// half, its slot in the low (a forked child's copy names its parent).
static HELD: AtomicU64 = AtomicU64::new(0);

fn budget() -> std::sync::MutexGuard<'static, Option<Budget>> {
    BUDGET.lock().unwrap_or_else(|p| p.into_inner())
}

/// This process's budget, if it adopted one (the lock is held only for
/// the clone: never across a syscall, so that a fork from another thread
/// finds it free — see also [`hold_across_fork`]).
fn adopted() -> Option<Budget> {
    budget().clone()
}

/// Holds the budget's lock across a fork: a fork child that found it held
/// by a thread that does not exist in the child would wait for ever for it
/// (a pool worker adopts its budget first thing).
pub(crate) fn hold_across_fork() -> std::sync::MutexGuard<'static, Option<Budget>> {
    budget()
}

/// The budget a pool of `processes` workers gives its workers.
pub(crate) fn for_pool(tokens: Tokens, processes: usize) -> Result<Option<Budget>> {
    match tokens {
        Tokens::Off => Ok(None),
        Tokens::Own(n) => Budget::new(n).map(Some),
        Tokens::Shared => match adopted() {
            Some(s) => Ok(Some(s)),
            None => Budget::new(processes.max(cpu_count()).min(u32::MAX as usize) as u32).map(Some),
        },
    }
}

/// A pool worker takes on the budget it was given: the pools its tasks
/// create share it.
pub(crate) fn adopt(s: &Budget) {
    *budget() = Some(s.clone());
}

/// The holder and slot of the token noted in `HELD`, if one is.
fn held() -> Option<(u32, usize)> {
    let held = HELD.load(Ordering::Acquire);
    (held != 0).then_some(((held >> 32) as u32, held as u32 as usize))
}

/// A worker takes a token before a chunk (waiting for one).
pub(crate) fn take(s: &Budget) {
    let pid = sys::own_pid();
    if let Ok(i) = s.take(pid) {
        HELD.store(u64::from(pid) << 32 | i as u64, Ordering::Release);
    }
}

/// A worker gives its token back to `s` after a chunk: true if it held
/// one (the one noted in `HELD`).
pub(crate) fn give_back(s: &Budget) -> bool {
    let Some((pid, i)) = held() else { return false };
    HELD.store(0, Ordering::Release);
    s.free(pid, std::iter::once(i)) > 0
}

/// Before a wait for a pool's results: gives this process's token back for
/// the wait, if it holds one; true if it did (then [`take_back`] after).
/// (A process forked from a worker inherits its note, but not its token.)
pub(crate) fn lend() -> bool {
    held().is_some_and(|(pid, _)| pid == sys::own_pid()) && adopted().is_some_and(|s| give_back(&s))
}

/// After a wait that [`lend`] lent a token for: takes one again (waiting
/// for it). Call it holding no lock that the pool's threads need.
pub(crate) fn take_back() {
    if let Some(s) = adopted() {
        take(&s);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::{Event, Process, StartMethod};

    const LONG: Duration = Duration::from_secs(30);

    /// Takes a token of `budget` for this process, says so, and waits to
    /// be killed: the slot is its only record of the token (the budget
    /// travelled here as its argument, as to a pool's worker).
    fn take_and_wait((budget, taken): (Budget, Event)) {
        budget.take(std::process::id()).unwrap();
        taken.set();
        loop {
            std::thread::park();
        }
    }

    #[test]
    fn the_token_of_a_killed_process_comes_back_when_its_pid_is_reclaimed() {
        let budget = Budget::new(2).unwrap();
        let taken = Event::new().unwrap();
        for method in [StartMethod::Fork, StartMethod::Spawn, StartMethod::ForkServer] {
            taken.clear();
            let child =
                Process::new(take_and_wait, (budget.clone(), taken.clone())).start_method(method).start().unwrap();
            assert!(taken.wait(Some(LONG)).unwrap(), "{method}: the child took its token");
            assert_eq!(budget.free_now(), 1, "{method}");
            child.kill().unwrap();
            assert!(child.join_timeout(LONG).is_err(), "{method}: killed");
            // Another pid's tokens are not touched.
            assert_eq!(budget.reclaim(child.pid() + 1), 0, "{method}");
            assert_eq!(budget.reclaim(child.pid()), 1, "{method}");
            assert_eq!(budget.free_now(), 2, "{method}");
        }
    }

    #[test]
    fn a_waiter_takes_back_the_token_of_a_holder_that_ended_unburied() {
        // Tokens held by a process that was reaped, and by a zombie: no
        // pool buries either (say, the pool died with them).
        let budget = Budget::new(2).unwrap();
        let mut reaped = std::process::Command::new("true").spawn().unwrap();
        reaped.wait().unwrap();
        let mut zombie = std::process::Command::new("true").spawn().unwrap();
        let zombie_pid = zombie.id() as i32;
        let t0 = std::time::Instant::now();
        while !sys::has_exited(zombie_pid) {
            assert!(t0.elapsed() < LONG, "the child never ended");
            std::thread::yield_now();
        }
        budget.take(reaped.id()).unwrap();
        budget.take(zombie.id()).unwrap();
        assert!(!sys::has_exited(std::process::id() as i32));
        let (tx, rx) = std::sync::mpsc::channel();
        let waiter = budget.clone();
        let thread = std::thread::spawn(move || {
            let first = waiter.take(7).unwrap();
            let second = waiter.take(8).unwrap();
            tx.send((first, second))
        });
        let (first, second) = rx.recv_timeout(LONG).expect("the waiter took both tokens back");
        assert_ne!(first, second);
        thread.join().unwrap().unwrap();
        zombie.wait().unwrap();
    }

    #[test]
    fn a_huge_budget_is_capped_not_allocated() {
        let budget = Budget::new(u32::MAX).unwrap();
        assert_eq!(budget.count(), MAX_TOKENS as usize);
        assert!(budget.block.map().len() <= OFF_SLOTS + 4 * MAX_TOKENS as usize + sys::page_size());
        assert_eq!(budget.free_now(), MAX_TOKENS as usize);
    }

    #[test]
    fn a_waiter_gets_the_token_that_is_reclaimed() {
        let budget = Budget::new(1).unwrap();
        let gone = u32::MAX - 1;
        assert_eq!(budget.take(gone).unwrap(), 0);
        assert_eq!(budget.try_take(1), None, "the only token is held");
        let (tx, rx) = std::sync::mpsc::channel();
        let waiter = budget.clone();
        let thread = std::thread::spawn(move || tx.send(waiter.take(7).unwrap()));
        assert_eq!(budget.reclaim(gone), 1);
        assert_eq!(rx.recv_timeout(LONG).expect("the waiter got the token"), 0);
        thread.join().unwrap().unwrap();
        assert_eq!(budget.free(7, 0..1), 1);
        assert_eq!(budget.free_now(), 1);
    }
}
