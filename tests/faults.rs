//! The fault matrix (issue 18): for each party of each protocol, each
//! fault — SIGKILL, SIGSEGV, abort, `exit(3)`, a panic, SIGSTOP for longer
//! than the other side's timeout — at each step of its protocol, run under
//! each start method. The cases come from one table ([`PARTIES`] ×
//! [`FAULTS`] × each party's steps); each checks the outcome the README
//! promises, within 2 s of the fault (or of the timeout, for a stopped
//! peer), with no hang, nothing lost or run twice, and, after the whole
//! matrix, no fd, child, zombie or `/dev/shm` entry left.
//!
//! One test in its own binary, so that the leak counts see nothing else
//! (and no other test's thread panics while this one forks: a fork child
//! that panics while its parent's other thread held std's backtrace lock
//! at the fork would wait for it for ever). `docs/reliability.md` lists
//! the same table; the test checks at its end that it is current
//! (`MULTIPROC_BLESS=1` rewrites it).

mod common;

use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use multiproc::connection::Connection;
use multiproc::{Barrier, Condition, ErrorKind, Lock, Manager, Pipe, Pool, Process, Queue, SharedMemory, StartMethod};
use serde::{Deserialize, Serialize};

/// A fault a party suffers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
enum Fault {
    Kill,
    Segv,
    Abort,
    Exit,
    Panic,
    /// SIGSTOP, for longer than the other side waits.
    Stop,
}

const FAULTS: [Fault; 6] = [Fault::Kill, Fault::Segv, Fault::Abort, Fault::Exit, Fault::Panic, Fault::Stop];

impl Fault {
    fn label(self) -> &'static str {
        match self {
            Fault::Kill => "SIGKILL",
            Fault::Segv => "SIGSEGV",
            Fault::Abort => "abort",
            Fault::Exit => "exit(3)",
            Fault::Panic => "panic",
            Fault::Stop => "SIGSTOP",
        }
    }
}

/// Sends `sig` to this process with kill(1), as something outside would.
fn signal_self(sig: &str) {
    let _ = Command::new("kill").args([&format!("-{sig}"), &std::process::id().to_string()]).status();
}

/// The fault, in this process, now. Returns only after a SIGSTOP that was
/// continued (the test then kills the process anyway).
fn inject(fault: Fault) {
    match fault {
        Fault::Kill => signal_self("KILL"),
        Fault::Segv => common::crash::segfault(),
        Fault::Abort => std::process::abort(),
        Fault::Exit => std::process::exit(3),
        Fault::Panic => panic!("injected fault"),
        Fault::Stop => signal_self("STOP"),
    }
    // A signal is delivered before kill(1) returns to us; only a stopped
    // process comes back here, and it is killed while it waits.
    loop {
        std::thread::park();
    }
}

/// For a party blocked in a call (it cannot fault itself meanwhile): a
/// thread of its own waits for the word on `trigger`, then injects the
/// fault (a panic would end that thread only, so it is not injected so).
fn fault_on_word(trigger: Connection, fault: Fault) {
    std::thread::spawn(move || {
        if trigger.recv::<()>().is_ok() {
            inject(fault);
        }
    });
}

/// Waits until process `pid`'s main thread sleeps in a call (state `S`),
/// then tells its fault thread to go.
fn when_blocked(pid: u32, trigger: &Connection) -> Result<(), String> {
    if !common::wait_until(common::LONG, || matches!(common::stat(pid), Some(('S', _)))) {
        return Err("the party never blocked".into());
    }
    trigger.send(&()).map_err(|e| format!("could not trigger the fault: {e}"))
}

/// How a case ended, checked against what is promised.
type Outcome = Result<(), String>;

fn check(cond: bool, what: impl FnOnce() -> String) -> Outcome {
    if cond { Ok(()) } else { Err(what()) }
}

/// A typed error of `kind` (any kind when `None`), within `limit`.
fn typed<T: std::fmt::Debug>(r: multiproc::Result<T>, kinds: &[ErrorKind], since: Instant, limit: Duration) -> Outcome {
    let took = since.elapsed();
    match r {
        Ok(v) => {
            let v = format!("{v:?}");
            let v = if v.len() > 200 { format!("{}… ({} characters)", &v[..200], v.len()) } else { v };
            Err(format!("expected an error of {kinds:?}, got Ok({v})"))
        }
        Err(e) if kinds.contains(&e.kind()) && took <= limit => Ok(()),
        Err(e) if took > limit => Err(format!("the error came after {took:?}: {e}")),
        Err(e) => Err(format!("expected {kinds:?}, got {:?}: {e}", e.kind())),
    }
}

/// What a child that suffered `fault` (after a SIGSTOP, a kill) reports at
/// its join.
fn death_kinds(fault: Fault) -> &'static [ErrorKind] {
    match fault {
        Fault::Exit => &[ErrorKind::Exited],
        Fault::Panic => &[ErrorKind::Panicked],
        _ => &[ErrorKind::Signaled],
    }
}

const TWO_S: Duration = Duration::from_secs(2);
/// The other side's timeout when the party is stopped.
const STOP_WAIT: Duration = Duration::from_millis(300);

/// Joins `child` (killing it first if it was stopped) and checks how it
/// ended.
fn bury<R: multiproc::Message + std::fmt::Debug>(child: &multiproc::Child<R>, fault: Fault) -> Outcome {
    if fault == Fault::Stop {
        child.kill().map_err(|e| format!("kill: {e}"))?;
        let r = child.join_timeout(common::LONG);
        return typed(r, &[ErrorKind::Signaled], Instant::now(), common::LONG);
    }
    let since = Instant::now();
    typed(child.join_timeout(common::LONG), death_kinds(fault), since, TWO_S)
}

// ---------------------------------------------------------------- parties

/// A plain child whose target suffers the fault.
fn child_target(fault: Fault) -> u32 {
    inject(fault);
    0
}

fn child_case(fault: Fault, _step: &str, method: StartMethod) -> Outcome {
    let since = Instant::now();
    let child = Process::new(child_target, fault).start_method(method).start().map_err(|e| e.to_string())?;
    if fault == Fault::Stop {
        typed(child.join_timeout(STOP_WAIT), &[ErrorKind::Timeout], since, STOP_WAIT + TWO_S)?;
        check(child.is_alive(), || "a stopped child is still alive".into())?;
    } else {
        // The error comes as soon as the child is gone.
        typed(child.join_timeout(common::LONG), death_kinds(fault), since, TWO_S)?;
        let code = child.exitcode();
        let want = match fault {
            Fault::Kill => -9,
            Fault::Segv => -11,
            Fault::Abort => -6,
            Fault::Exit => 3,
            _ => 1,
        };
        check(code == Some(want), || format!("exit code {code:?}, expected {want}"))?;
        return Ok(());
    }
    bury(&child, fault)
}

/// A pool task: the item `bad` suffers the fault, the others return twice
/// themselves.
fn pool_task((item, bad, fault): (u32, u32, Fault)) -> u32 {
    if item == bad {
        inject(fault);
    }
    item * 2
}

fn pool_case(fault: Fault, step: &str, method: StartMethod) -> Outcome {
    let pool = Pool::builder().processes(2).start_method(method).build().map_err(|e| e.to_string())?;
    // "alone": one task per call; "mid-chunk": chunks of 4, the fault at
    // the second item of a chunk (its first item done, two not started).
    let chunk = if step == "mid-chunk" { 4 } else { 1 };
    let bad = 5;
    let calls = pool.chunksize(chunk).timeout(if fault == Fault::Stop { STOP_WAIT } else { common::LONG });
    let since = Instant::now();
    let results: Vec<multiproc::Result<u32>> =
        calls.imap(pool_task, (0..12).map(|i| (i, bad, fault))).map_err(|e| e.to_string())?.collect();
    for (i, r) in results.into_iter().enumerate() {
        let i = i as u32;
        if i == bad {
            let kinds: &[ErrorKind] = match fault {
                Fault::Panic => &[ErrorKind::Panicked],
                Fault::Stop => &[ErrorKind::Timeout],
                _ => &[ErrorKind::WorkerLost],
            };
            let limit = if fault == Fault::Stop { STOP_WAIT + TWO_S } else { TWO_S };
            typed(r, kinds, since, limit).map_err(|e| format!("item {i}: {e}"))?;
        } else {
            check(matches!(r, Ok(v) if v == i * 2), || format!("item {i}: {r:?}"))?;
        }
    }
    let stats = pool.stats();
    check(stats.done == 11 && stats.failed == 1, || format!("each item once: {stats:?}"))?;
    // The pool goes on.
    let again = pool.map(pool_task, (0..4).map(|i| (i, 99, fault))).map_err(|e| e.to_string())?;
    check(again == [0, 2, 4, 6], || format!("after the fault: {again:?}"))?;
    pool.close();
    pool.join().map_err(|e| e.to_string())
}

/// A queue producer that faults before or after its put.
fn producer((q, step, fault, told): (Queue<u64>, String, Fault, Connection)) {
    if step == "after put" {
        q.put(&42).unwrap();
    }
    told.send(&()).unwrap();
    inject(fault);
}

fn producer_case(fault: Fault, step: &str, method: StartMethod) -> Outcome {
    let q: Queue<u64> = Queue::new().map_err(|e| e.to_string())?;
    let (told, at_step) = Pipe(true).map_err(|e| e.to_string())?;
    let child = Process::new(producer, (q.clone(), step.to_owned(), fault, told))
        .start_method(method)
        .start()
        .map_err(|e| e.to_string())?;
    check(at_step.poll(Some(common::LONG)).unwrap_or(false), || "the producer never reached its step".into())?;
    let since = Instant::now();
    if step == "after put" {
        // A put that returned is published, whatever happens next.
        let got = q.get_timeout(TWO_S);
        check(matches!(got, Ok(42)), || format!("the item put before the fault: {got:?}"))?;
        check(since.elapsed() <= TWO_S, || "late".into())?;
    } else {
        typed(q.get_timeout(STOP_WAIT), &[ErrorKind::Empty, ErrorKind::Timeout], since, STOP_WAIT + TWO_S)?;
    }
    bury(&child, fault)?;
    // The queue is whole: a put and a get go through.
    q.put(&7).map_err(|e| e.to_string())?;
    let got = q.get_timeout(TWO_S);
    check(matches!(got, Ok(7)), || format!("the queue after the fault: {got:?}"))
}

/// A queue consumer, blocked in get when it faults.
fn consumer((q, fault, trigger): (Queue<u64>, Fault, Connection)) -> u64 {
    fault_on_word(trigger, fault);
    q.get().unwrap()
}

fn consumer_case(fault: Fault, _step: &str, method: StartMethod) -> Outcome {
    let q: Queue<u64> = Queue::new().map_err(|e| e.to_string())?;
    let (trigger, theirs) = Pipe(true).map_err(|e| e.to_string())?;
    let child =
        Process::new(consumer, (q.clone(), fault, theirs)).start_method(method).start().map_err(|e| e.to_string())?;
    when_blocked(child.pid(), &trigger)?;
    if fault == Fault::Stop {
        // A stopped consumer does not take an item it never woke for.
        common::wait_until(common::LONG, || matches!(common::stat(child.pid()), Some(('T', _))));
    } else {
        let since = Instant::now();
        common::wait_until(common::LONG, || !child.is_alive());
        check(since.elapsed() <= TWO_S, || "the consumer's death took too long".into())?;
    }
    let since = Instant::now();
    q.put(&42).map_err(|e| e.to_string())?;
    let got = q.get_timeout(TWO_S);
    check(matches!(got, Ok(42)), || format!("the item after the consumer's fault: {got:?}"))?;
    check(since.elapsed() <= TWO_S, || "late".into())?;
    if fault == Fault::Stop {
        bury(&child, fault)?;
    }
    Ok(())
}

/// A pipe peer: faults before it sends, or while blocked sending a message
/// bigger than the pipe holds (the parent then sees half a frame).
fn pipe_peer((conn, step, fault, trigger): (Connection, String, Fault, Connection)) {
    if step == "before send" {
        trigger.send(&()).unwrap();
        inject(fault);
    }
    fault_on_word(trigger, fault);
    conn.send_bytes(&vec![7u8; 8 << 20]).unwrap();
    loop {
        std::thread::park();
    }
}

fn pipe_case(fault: Fault, step: &str, method: StartMethod) -> Outcome {
    if step == "mid-frame" && fault == Fault::Panic {
        return Ok(()); // not injectable into a blocked thread (see fault_on_word)
    }
    let (mine, theirs) = Pipe(true).map_err(|e| e.to_string())?;
    let (trigger, their_trigger) = Pipe(true).map_err(|e| e.to_string())?;
    let child = Process::new(pipe_peer, (theirs, step.to_owned(), fault, their_trigger))
        .start_method(method)
        .start()
        .map_err(|e| e.to_string())?;
    if step == "before send" {
        check(trigger.poll(Some(common::LONG)).unwrap_or(false), || "the peer never reached its step".into())?;
    } else {
        when_blocked(child.pid(), &trigger)?;
    }
    let mine = Arc::new(mine);
    if fault == Fault::Stop {
        // A stopped peer: the receiver's wait runs out, nothing is taken
        // for a message; once the peer is killed, end of file.
        if step == "before send" {
            check(!mine.poll(Some(STOP_WAIT)).unwrap_or(true), || "data from a stopped peer".into())?;
        }
        bury(&child, fault)?;
        let since = Instant::now();
        return typed(mine.recv_bytes(), &[ErrorKind::Eof, ErrorKind::Protocol], since, TWO_S);
    }
    let since = Instant::now();
    match mine.recv_bytes() {
        // The fault takes a moment to land (the faulting thread runs
        // kill(1), or exit runs its handlers first), and this receive
        // unblocks the sender meanwhile: its message may end whole, and the
        // end of the stream follows.
        Ok(m) if step == "mid-frame" => {
            check(m.len() == 8 << 20 && m.iter().all(|&b| b == 7), || format!("a message of {} bytes", m.len()))?;
            typed(mine.recv_bytes(), &[ErrorKind::Eof, ErrorKind::Protocol], since, TWO_S)?;
        }
        r => typed(r, &[ErrorKind::Eof, ErrorKind::Protocol], since, TWO_S)?,
    }
    bury(&child, fault)
}

/// A lock holder that faults while it holds the lock.
fn holder((lock, fault, told): (Lock, Fault, Connection)) {
    let guard = lock.acquire().unwrap();
    told.send(&()).unwrap();
    inject(fault);
    drop(guard);
}

fn lock_case(fault: Fault, _step: &str, method: StartMethod) -> Outcome {
    let lock = Lock::new().map_err(|e| e.to_string())?;
    let (told, at_step) = Pipe(true).map_err(|e| e.to_string())?;
    let child =
        Process::new(holder, (lock.clone(), fault, told)).start_method(method).start().map_err(|e| e.to_string())?;
    check(at_step.poll(Some(common::LONG)).unwrap_or(false), || "the holder never held the lock".into())?;
    if fault == Fault::Stop {
        let since = Instant::now();
        typed(lock.acquire_timeout(STOP_WAIT).map(|_| ()), &[ErrorKind::Timeout], since, STOP_WAIT + TWO_S)?;
        bury(&child, fault)?;
    }
    // The lock is taken back within 2 s of the holder's death; a panic
    // unwinds and releases it, any other death leaves owner_died set.
    let since = Instant::now();
    let guard = lock.acquire_timeout(common::LONG).map_err(|e| format!("acquire after the fault: {e}"))?;
    check(since.elapsed() <= TWO_S, || format!("acquired after {:?}", since.elapsed()))?;
    let died = guard.owner_died();
    check(died == (fault != Fault::Panic), || format!("owner_died() = {died} after {}", fault.label()))?;
    drop(guard);
    if fault != Fault::Stop {
        bury(&child, fault)?;
    }
    Ok(())
}

/// A condition waiter that faults while it waits.
fn waiter((cond, fault, trigger): (Condition, Fault, Connection)) {
    fault_on_word(trigger, fault);
    let mut guard = cond.acquire().unwrap();
    let _ = guard.wait();
}

fn condition_case(fault: Fault, _step: &str, method: StartMethod) -> Outcome {
    if fault == Fault::Panic {
        return Ok(()); // not injectable into a blocked thread
    }
    let cond = Condition::new().map_err(|e| e.to_string())?;
    let (trigger, theirs) = Pipe(true).map_err(|e| e.to_string())?;
    let child =
        Process::new(waiter, (cond.clone(), fault, theirs)).start_method(method).start().map_err(|e| e.to_string())?;
    when_blocked(child.pid(), &trigger)?;
    if fault == Fault::Stop {
        common::wait_until(common::LONG, || matches!(common::stat(child.pid()), Some(('T', _))));
    } else {
        common::wait_until(common::LONG, || !child.is_alive());
    }
    // The condition's lock is free, and a live waiter is woken.
    let since = Instant::now();
    let cond2 = cond.clone();
    let live = std::thread::spawn(move || {
        let mut g = cond2.acquire().unwrap();
        g.wait_timeout(common::LONG).unwrap()
    });
    // Notified until it has woken (it may not be waiting yet at first).
    while !live.is_finished() && since.elapsed() < common::LONG {
        let g = cond.acquire_timeout(TWO_S).map_err(|e| format!("the condition's lock after the fault: {e}"))?;
        g.notify_all();
        drop(g);
        std::thread::yield_now();
    }
    let notified = live.join().map_err(|_| "the live waiter panicked".to_string())?;
    check(notified, || "the live waiter was not woken".into())?;
    check(since.elapsed() <= TWO_S, || format!("took {:?}", since.elapsed()))?;
    bury(&child, fault)
}

/// A barrier party that faults while it waits.
fn party((barrier, fault, trigger): (Barrier, Fault, Connection)) {
    fault_on_word(trigger, fault);
    let _ = barrier.wait();
}

fn barrier_case(fault: Fault, _step: &str, method: StartMethod) -> Outcome {
    if fault == Fault::Panic {
        return Ok(()); // not injectable into a blocked thread
    }
    let barrier = Barrier::new(3).map_err(|e| e.to_string())?;
    let (trigger, theirs) = Pipe(true).map_err(|e| e.to_string())?;
    let child = Process::new(party, (barrier.clone(), fault, theirs))
        .start_method(method)
        .start()
        .map_err(|e| e.to_string())?;
    when_blocked(child.pid(), &trigger)?;
    if fault != Fault::Stop {
        common::wait_until(common::LONG, || !child.is_alive());
    }
    // A party that is gone is not counted out by the others: they wait
    // until their timeout, and the barrier is broken, as in Python.
    let since = Instant::now();
    typed(barrier.wait_timeout(STOP_WAIT), &[ErrorKind::BrokenBarrier], since, STOP_WAIT + TWO_S)?;
    check(barrier.broken(), || "the barrier is not broken".into())?;
    barrier.reset().map_err(|e| e.to_string())?;
    check(!barrier.broken(), || "reset did not mend it".into())?;
    bury(&child, fault)
}

/// A shared-memory creator that faults after creating a named segment.
fn creator((fault, told): (Fault, Connection)) {
    let shm = SharedMemory::create(None, 4096).unwrap();
    shm.write_at(0, b"made").unwrap();
    told.send(&shm.name().unwrap().to_owned()).unwrap();
    inject(fault);
}

fn shm_case(fault: Fault, _step: &str, method: StartMethod) -> Outcome {
    let (told, at_step) = Pipe(true).map_err(|e| e.to_string())?;
    let child = Process::new(creator, (fault, told)).start_method(method).start().map_err(|e| e.to_string())?;
    let name: String = at_step.recv().map_err(|e| format!("the creator's segment name: {e}"))?;
    let entry = std::path::Path::new("/dev/shm").join(name.trim_start_matches('/'));
    if fault == Fault::Stop {
        // A stopped creator still owns it: it is there and readable.
        let shm = SharedMemory::open(&name).map_err(|e| format!("open while the creator is stopped: {e}"))?;
        let mut four = [0u8; 4];
        shm.read_at(0, &mut four).map_err(|e| e.to_string())?;
        check(&four == b"made", || "the segment's bytes".into())?;
    }
    bury(&child, fault)?;
    // The creator's tracker removes what it left, within 2 s.
    let since = Instant::now();
    let gone = common::wait_until(TWO_S, || !entry.exists());
    check(gone, || {
        format!("{} still there {:?} after the creator's {}", entry.display(), since.elapsed(), fault.label())
    })
}

/// Whether every thread of `pid` is stopped (state `T` in its stat).
fn all_threads_stopped(pid: u32) -> bool {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return false };
    tasks
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("stat")).ok())
        .all(|stat| stat.rsplit_once(") ").is_some_and(|(_, rest)| rest.starts_with('T')))
}

/// The server's object whose method suffers the fault.
struct Fragile;

/// SIGKILLs a process when dropped.
struct KillOnDrop(u32);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        common::sigkill(self.0);
    }
}

fn manager_server_case(fault: Fault, _step: &str, method: StartMethod) -> Outcome {
    let m = Manager::builder().start_method(method).start().map_err(|e| e.to_string())?;
    let d = m.dict::<u32, u32>().map_err(|e| e.to_string())?;
    d.insert(1, 1).map_err(|e| e.to_string())?;
    let fragile = m.create(|_: ()| Fragile, ()).map_err(|e| e.to_string())?;
    let pid = m.pid().ok_or("no server pid")?;
    // Cloning a proxy asks the server; done while it can answer.
    let d2 = d.clone();
    // A stopped server is killed on every way out of this case, before the
    // proxies above are dropped (a proxy's drop tells the server, and would
    // wait for ever for a stopped one).
    let _unstop = if fault == Fault::Stop { Some(KillOnDrop(pid)) } else { None };
    let since = Instant::now();
    match fault {
        Fault::Kill | Fault::Stop => {
            let sig = if fault == Fault::Kill { "KILL" } else { "STOP" };
            let sent = Command::new("kill").args([&format!("-{sig}"), &pid.to_string()]).status();
            check(sent.as_ref().is_ok_and(|s| s.success()), || format!("kill -{sig} {pid}: {sent:?}"))?;
            if fault == Fault::Stop {
                // A stop lands on each thread when it next runs: wait for
                // all of them, so that no call is answered meanwhile.
                let stopped = common::wait_until(common::LONG, || all_threads_stopped(pid));
                check(stopped, || format!("the server (pid {pid}) was not stopped within {:?}", common::LONG))?;
            }
        }
        _ => {
            let r = fragile.call(|_: &mut Fragile, f: Fault| inject(f), fault);
            if fault == Fault::Panic {
                // A panic in a method is that call's error; the server goes on.
                typed(r, &[ErrorKind::Panicked], since, TWO_S)?;
                let v = d.get(&1).map_err(|e| e.to_string())?;
                return check(v == Some(1), || format!("the server after a panic: {v:?}"));
            }
            typed(r, &[ErrorKind::ManagerGone], since, TWO_S)?;
        }
    }
    if fault == Fault::Stop {
        // A stopped server: a call waits; once the server is killed it
        // fails with ManagerGone.
        let (tid_tx, tid_rx) = std::sync::mpsc::channel();
        let call = std::thread::spawn(move || {
            let _ = tid_tx.send(std::fs::read_link("/proc/thread-self").ok());
            d2.get(&1)
        });
        // The caller is asleep in its call (its thread's state is S).
        let me = tid_rx.recv_timeout(common::LONG).ok().flatten().ok_or("the caller's thread id")?;
        let stat = std::path::Path::new("/proc").join(me).join("stat");
        let asleep =
            || std::fs::read_to_string(&stat).is_ok_and(|s| s.rsplit(") ").next().is_some_and(|r| r.starts_with('S')));
        check(common::wait_until(common::LONG, asleep), || "the caller never blocked".into())?;
        check(!call.is_finished(), || "a call answered by a stopped server".into())?;
        let _ = Command::new("kill").args(["-KILL", &pid.to_string()]).status();
        let since = Instant::now();
        let r = call.join().map_err(|_| "the caller panicked".to_string())?;
        return typed(r, &[ErrorKind::ManagerGone], since, TWO_S);
    }
    let since = Instant::now();
    typed(d.get(&1), &[ErrorKind::ManagerGone], since, TWO_S)
}

/// A manager client that faults in the middle of its work.
fn client((address, key, fault, told): (String, Vec<u8>, Fault, Connection)) {
    let m = Manager::connect(address.as_str(), &key).unwrap();
    let d = m.dict::<u32, u32>().unwrap();
    d.insert(9, 9).unwrap();
    told.send(&()).unwrap();
    inject(fault);
}

fn manager_client_case(fault: Fault, _step: &str, method: StartMethod) -> Outcome {
    let m = Manager::builder().start_method(method).start().map_err(|e| e.to_string())?;
    let d = m.dict::<u32, u32>().map_err(|e| e.to_string())?;
    let (told, at_step) = Pipe(true).map_err(|e| e.to_string())?;
    let child = Process::new(client, (m.address().to_owned(), m.authkey().to_vec(), fault, told))
        .start_method(method)
        .start()
        .map_err(|e| e.to_string())?;
    check(at_step.poll(Some(common::LONG)).unwrap_or(false), || "the client never worked".into())?;
    let since = Instant::now();
    // The server goes on serving everyone else.
    d.insert(1, 2).map_err(|e| format!("the server after a client's {}: {e}", fault.label()))?;
    let v = d.get(&1).map_err(|e| e.to_string())?;
    check(v == Some(2) && since.elapsed() <= TWO_S, || format!("{v:?} after {:?}", since.elapsed()))?;
    bury(&child, fault)?;
    // What the dead client made is released with its connection.
    let counted = common::wait_until(TWO_S, || m.object_count().is_ok_and(|n| n == 1));
    check(counted, || format!("objects left after the client died: {:?}", m.object_count()))
}

// ------------------------------------------------------------- the table

/// One party of one protocol.
struct Party {
    name: &'static str,
    /// The steps of its protocol where it faults.
    steps: &'static [&'static str],
    /// What the cases prove, for the table.
    promise: &'static str,
    run: fn(Fault, &str, StartMethod) -> Outcome,
    /// Faults that cannot be injected at some step (a panic in a blocked
    /// thread ends that thread only): these cases are not counted.
    skips: fn(Fault, &str) -> bool,
}

fn none(_: Fault, _: &str) -> bool {
    false
}

fn blocked_panic(f: Fault, step: &str) -> bool {
    f == Fault::Panic && step != "before send"
}

const PARTIES: &[Party] = &[
    Party {
        name: "child process",
        steps: &["running its target"],
        promise: "join gives Signaled / Exited / Panicked with the exit code (−9, −11, −6, 3, 1) within 2 s; a stopped child: join_timeout gives Timeout and the child is alive",
        run: child_case,
        skips: none,
    },
    Party {
        name: "pool worker",
        steps: &["alone", "mid-chunk"],
        promise: "the item fails alone (WorkerLost; Panicked for a panic; Timeout for a stopped worker) within 2 s; the 11 others succeed once each; the pool goes on",
        run: pool_case,
        skips: none,
    },
    Party {
        name: "queue producer",
        steps: &["before put", "after put"],
        promise: "an item whose put returned is delivered; none appears otherwise; the queue stays usable",
        run: producer_case,
        skips: none,
    },
    Party {
        name: "queue consumer",
        steps: &["blocked in get"],
        promise: "the dead (or stopped) consumer takes nothing: the next item reaches another consumer within 2 s",
        run: consumer_case,
        skips: blocked_panic,
    },
    Party {
        name: "pipe peer",
        steps: &["before send", "mid-frame"],
        promise: "recv gives Eof (or Protocol for half a frame) within 2 s, never a partial message (a message the fault did not stop in time arrives whole, then Eof); a stopped peer: poll times out, then Eof once it is killed",
        run: pipe_case,
        skips: blocked_panic,
    },
    Party {
        name: "lock holder",
        steps: &["holding the lock"],
        promise: "the lock is acquired within 2 s of the holder's death, owner_died() set (a panic unwinds and releases it cleanly); a stopped holder: acquire_timeout gives Timeout",
        run: lock_case,
        skips: none,
    },
    Party {
        name: "condition waiter",
        steps: &["waiting"],
        promise: "the condition's lock is free and a live waiter is notified within 2 s",
        run: condition_case,
        skips: blocked_panic,
    },
    Party {
        name: "barrier party",
        steps: &["waiting"],
        promise: "the others' wait ends at their timeout with BrokenBarrier (a dead party is not counted out, as in Python); reset mends it",
        run: barrier_case,
        skips: blocked_panic,
    },
    Party {
        name: "shared-memory creator",
        steps: &["after create"],
        promise: "its tracker unlinks the segment within 2 s of its death; while it is stopped the segment is there and readable",
        run: shm_case,
        skips: none,
    },
    Party {
        name: "manager server",
        steps: &["serving"],
        promise: "calls fail with ManagerGone within 2 s (a panic in a method is that call's Panicked, and the server goes on); calls to a stopped server wait, then ManagerGone once it is killed",
        run: manager_server_case,
        skips: none,
    },
    Party {
        name: "manager client",
        steps: &["after a call"],
        promise: "the server goes on serving the others, and what the dead client held is released within 2 s",
        run: manager_client_case,
        skips: none,
    },
];

/// The cases of the table: (party, step, fault).
fn cases() -> Vec<(&'static Party, &'static str, Fault)> {
    let mut out = Vec::new();
    for party in PARTIES {
        for &step in party.steps {
            for fault in FAULTS {
                if !(party.skips)(fault, step) {
                    out.push((party, step, fault));
                }
            }
        }
    }
    out
}

/// The table as `docs/reliability.md` shows it.
fn table() -> String {
    let mut out = String::from("| party | steps | faults | cases × start methods | promise |\n|---|---|---|---|---|\n");
    let all = cases();
    for party in PARTIES {
        let mine: Vec<_> = all.iter().filter(|c| std::ptr::eq(c.0, party)).collect();
        let mut faults: Vec<&str> = Vec::new();
        for c in &mine {
            if !faults.contains(&c.2.label()) {
                faults.push(c.2.label());
            }
        }
        out += &format!(
            "| {} | {} | {} | {} × 3 = {} | {} |\n",
            party.name,
            party.steps.join(", "),
            faults.join(", "),
            mine.len(),
            mine.len() * 3,
            party.promise
        );
    }
    out += &format!("| **all** | | | {} × 3 = **{}** | |\n", all.len(), all.len() * 3);
    out
}

#[test]
fn the_fault_matrix() {
    let _w = common::watchdog_for("fault matrix", Duration::from_secs(900));
    // Warm up (the fork server, lazy statics), then count.
    for method in common::METHODS {
        Process::new(child_target, Fault::Exit).start_method(method).start().unwrap().join_timeout(common::LONG).ok();
    }
    let leaks = common::LeakGuard::new();
    let mut failures = Vec::new();
    let mut ran = 0;
    let only = std::env::var("MULTIPROC_FAULTS").unwrap_or_default();
    for (party, step, fault) in cases() {
        if !party.name.contains(only.as_str()) {
            continue;
        }
        for method in common::METHODS {
            ran += 1;
            if let Err(why) = (party.run)(fault, step, method) {
                failures.push(format!("{} / {step} / {} / {method:?}: {why}", party.name, fault.label()));
            }
        }
    }
    assert!(failures.is_empty(), "{} of {ran} cases failed:\n{}", failures.len(), failures.join("\n"));
    // Nothing left behind: fds, threads, children (and zombies), mappings,
    // /dev/shm entries.
    leaks.check(&format!("the fault matrix ({ran} cases)"));
    common::check_published("fault-matrix", &table());
    println!("fault matrix: {ran} cases, all as promised, nothing left behind");
}
