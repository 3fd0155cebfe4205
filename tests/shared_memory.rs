//! SharedMemory: Python's calls and errors, segments opened by name and
//! handles passed to children and pool initializers under every start
//! method, and who removes a segment: a SIGKILLed creator's tracked
//! segments are gone from /dev/shm within 2 s, untracked ones stay, an
//! opener never removes anything, a name taken again by a live process is
//! left alone, a forked child gets a tracker of its own, a pool worker's
//! tracked segment ends with the worker (unlike Python) while an untracked
//! one stays, and no tracker is ever anybody's zombie. Then the accessors:
//! read_at and write_at check their range and race safely with writes
//! through other handles, and the atomic words count across processes.
//! Every test checks that the names it made are gone from /dev/shm at its
//! end (it filters by name: the other tests run in parallel).
//!
//! Processes are sequenced with queues, never with sleeps; waiting for an
//! outside event (a name vanishing, a process ending) polls with a ceiling.

mod common;

use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::LONG;
use multiproc::{ErrorKind, Pool, Process, Queue, SharedMemory, StartMethod};

/// The promise: a SIGKILLed creator's tracked segments are gone within this.
const CLEANUP_BOUND: Duration = Duration::from_secs(2);

fn exists(name: &str) -> bool {
    Path::new("/dev/shm").join(name).exists()
}

/// The names a test made. The test asserts that none is left; whatever is
/// left when it fails is removed, so that a failed run leaves nothing.
struct Made(Vec<String>);

impl Made {
    fn new() -> Made {
        Made(Vec::new())
    }

    fn add(&mut self, name: &str) -> String {
        self.0.push(name.to_owned());
        name.to_owned()
    }

    fn assert_none_left(&self) {
        let left: Vec<&String> = self.0.iter().filter(|n| exists(n)).collect();
        assert!(left.is_empty(), "left in /dev/shm: {left:?}");
    }
}

impl Drop for Made {
    fn drop(&mut self) {
        for name in &self.0 {
            let _ = std::fs::remove_file(Path::new("/dev/shm").join(name));
        }
    }
}

/// The pid of the shared-memory tracker of process `creator`, found by its
/// title.
fn tracker_of(creator: u32) -> Option<u32> {
    let title = format!("multiproc: shared-memory tracker for {creator}");
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|entry| {
        let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
        let cmdline = std::fs::read(entry.path().join("cmdline")).ok()?;
        (cmdline.strip_suffix(b"\0").unwrap_or(&cmdline) == title.as_bytes()).then_some(pid)
    })
}

/// Waits (polling, with a ceiling) until the tracker `pid` has ended, and
/// checks that it was never our child.
fn assert_tracker_ends(pid: u32) {
    if let Some((_, ppid)) = common::stat(pid) {
        assert_ne!(ppid, std::process::id(), "the tracker is a child of the test process");
    }
    assert!(common::wait_until(LONG, || common::gone(pid)), "tracker {pid} did not exit after its creator");
}

fn open_err(name: &str) -> multiproc::Error {
    SharedMemory::open(name).unwrap_err()
}

/// `n` bytes of `shm` from `offset` on.
fn read(shm: &SharedMemory, offset: usize, n: usize) -> Vec<u8> {
    let mut out = vec![0; n];
    shm.read_at(offset, &mut out).unwrap();
    out
}

/// The byte at `offset` of `shm`.
fn byte(shm: &SharedMemory, offset: usize) -> u8 {
    read(shm, offset, 1)[0]
}

fn io_kind(err: &multiproc::Error) -> Option<std::io::ErrorKind> {
    std::error::Error::source(err)?.downcast_ref::<std::io::Error>().map(std::io::Error::kind)
}

#[test]
fn calls_and_errors_follow_python() {
    let _w = common::watchdog("calls_and_errors_follow_python");
    let mut made = Made::new();
    let a = SharedMemory::create(None, 1000).unwrap();
    let name = made.add(a.name().unwrap());
    assert!(name.starts_with("psm_") && name.len() == 12, "{name}");
    assert!(exists(&name));
    assert_eq!(a.size(), 1000);
    assert!(read(&a, 0, 1000).iter().all(|&b| b == 0), "a new segment is zeroed");
    a.write_at(999, &[7]).unwrap();

    let b = SharedMemory::open(&name).unwrap();
    assert_eq!((b.name(), b.size(), byte(&b, 999)), (Some(name.as_str()), 1000, 7));
    let slashed = SharedMemory::open(&format!("/{name}")).unwrap();
    assert_eq!(slashed.name(), Some(name.as_str()), "Python's /psm_ form opens the same segment");
    let c = b.try_clone().unwrap();
    a.write_at(0, &[1]).unwrap();
    assert_eq!((byte(&c, 0), byte(&slashed, 0)), (1, 1));
    assert!(format!("{c:?}").contains(&name));

    // Creating a taken name.
    let err = SharedMemory::create(Some(&name), 10).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Io);
    assert_eq!(io_kind(&err), Some(std::io::ErrorKind::AlreadyExists));
    assert!(err.to_string().contains("already exists") && err.to_string().contains("SharedMemory::open"), "{err}");
    assert_eq!(byte(&a, 999), 7, "the failed create left the segment alone");

    // Size 0 and malformed names.
    let err = SharedMemory::create(None, 0).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    assert!(err.to_string().contains("at least 1 byte"), "{err}");
    for bad in ["", "a/b", "..", "nul\0byte"] {
        assert_eq!(SharedMemory::create(Some(bad), 1).unwrap_err().kind(), ErrorKind::InvalidInput, "{bad:?}");
        assert_eq!(open_err(bad).kind(), ErrorKind::InvalidInput, "{bad:?}");
    }

    // Unlink: the name goes, the handles stay usable, twice is an error.
    b.unlink().unwrap();
    assert!(!exists(&name));
    assert_eq!(byte(&a, 999), 7);
    let err = open_err(&name);
    assert_eq!((err.kind(), io_kind(&err)), (ErrorKind::Io, Some(std::io::ErrorKind::NotFound)));
    assert!(err.to_string().contains("no shared memory segment named"), "{err}");
    let err = a.unlink().unwrap_err();
    assert_eq!(io_kind(&err), Some(std::io::ErrorKind::NotFound));
    assert!(err.to_string().contains("unlinked already"), "{err}");

    // The name taken again: the old handles' unlink leaves the new segment.
    let again = SharedMemory::create(Some(&name), 5).unwrap();
    again.write_at(0, &[9]).unwrap();
    let err = c.unlink().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidState);
    assert!(err.to_string().contains("another shared memory segment"), "{err}");
    assert_eq!(byte(&SharedMemory::open(&name).unwrap(), 0), 9);
    again.unlink().unwrap();

    // close() unmaps only.
    let d = SharedMemory::create_untracked(None, 3).unwrap();
    let d_name = made.add(d.name().unwrap());
    d.close();
    let d = SharedMemory::open(&d_name).unwrap();
    assert_eq!(d.size(), 3);
    d.unlink().unwrap();

    let anon = SharedMemory::anonymous(5).unwrap();
    assert_eq!((anon.name(), anon.size()), (None, 5));
    anon.unlink().unwrap();
    made.assert_none_left();
}

#[test]
fn read_at_and_write_at_check_their_range() {
    let _w = common::watchdog("read_at_and_write_at_check_their_range");
    let shm = SharedMemory::anonymous(10).unwrap();
    shm.write_at(7, b"xyz").unwrap();
    assert_eq!(read(&shm, 6, 4), b"\0xyz");
    for (offset, n) in [(8, 3), (11, 0), (0, 11), (usize::MAX, 2)] {
        let err = shm.write_at(offset, &vec![1; n]).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput, "write of {n} at {offset}");
        assert!(err.to_string().contains("of a shared memory segment of 10 bytes"), "{err}");
        let err = shm.read_at(offset, &mut vec![0; n]).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput, "read of {n} at {offset}");
    }
    assert_eq!(read(&shm, 0, 10), b"\0\0\0\0\0\0\0xyz", "a refused write writes nothing");
    shm.write_at(10, &[]).unwrap();
    assert_eq!(shm.as_atomic_u64().len(), 1);
}

/// The review's case, now in safe code: a writer through another handle
/// (a clone, in another thread) while this handle reads. Each copy may
/// tear between 8-byte words, never inside one, and never is undefined
/// behaviour; what the writer last wrote is what is read after.
#[test]
fn reads_racing_writes_through_another_handle_see_whole_words() {
    let _w = common::watchdog("reads_racing_writes_through_another_handle_see_whole_words");
    const LEN: usize = 4096;
    const ROUNDS: usize = 2000;
    let shm = SharedMemory::anonymous(LEN).unwrap();
    let clone = shm.try_clone().unwrap();
    let mut torn = 0;
    std::thread::scope(|s| {
        s.spawn(|| {
            for round in 0..ROUNDS {
                clone.write_at(0, &[if round % 2 == 0 { 0xAA } else { 0x55 }; LEN]).unwrap();
            }
        });
        let mut seen = vec![0; LEN];
        for _ in 0..ROUNDS {
            shm.read_at(0, &mut seen).unwrap();
            for word in seen.chunks_exact(8) {
                assert!(word.iter().all(|&b| b == word[0]), "a word torn inside: {word:?}");
            }
            torn += usize::from(seen.iter().any(|&b| b != seen[0]));
        }
    });
    assert_eq!(read(&shm, 0, LEN), vec![0x55; LEN]);
    eprintln!("{torn} of {ROUNDS} copies were torn between words");
}

fn add_to_counter(shm: SharedMemory) {
    for _ in 0..1000 {
        shm.as_atomic_u64()[1].fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
}

per_method! {
    fn atomic_words_count_across_processes(method: StartMethod) {
        let mut made = Made::new();
        let shm = SharedMemory::create(None, 20).unwrap();
        made.add(shm.name().unwrap());
        let children: Vec<_> = (0..3)
            .map(|_| Process::new(add_to_counter, shm.try_clone().unwrap()).start_method(method).start().unwrap())
            .collect();
        for child in children {
            child.join_timeout(LONG).unwrap();
        }
        assert_eq!(shm.as_atomic_u64()[1].load(std::sync::atomic::Ordering::Relaxed), 3000);
        assert_eq!(read(&shm, 8, 8), 3000u64.to_ne_bytes());
        shm.unlink().unwrap();
        made.assert_none_left();
    }
}

#[test]
fn a_segment_too_large_for_dev_shm_is_refused_and_not_left_behind() {
    let _w = common::watchdog("a_segment_too_large_for_dev_shm_is_refused_and_not_left_behind");
    let mut made = Made::new();
    let name = made.add(&format!("multiproc-test-huge-{}", std::process::id()));
    let err = SharedMemory::create(Some(&name), isize::MAX as usize).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Io, "{err}");
    assert!(!exists(&name));
    made.assert_none_left();
}

/// Mappings and fds of this process on segments named `names`, or on
/// anonymous segments.
fn mappings_and_fds_of(names: &[String]) -> (usize, usize) {
    let ours = |s: &str| names.iter().any(|n| s.contains(n.as_str())) || s.contains("multiproc-shared-memory");
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap().lines().filter(|l| ours(l)).count();
    let fds = std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .flatten()
        .filter_map(|e| std::fs::read_link(e.path()).ok())
        .filter(|target| ours(&target.to_string_lossy()))
        .count();
    (maps, fds)
}

/// What [`churn`] counted: mappings and fds of segments before and after,
/// all fds before and after, and the names it made.
type Counts = ((usize, usize), (usize, usize), (usize, usize), Vec<String>);

/// In a process of its own (a forked one inherits its parent's mappings,
/// hence the counts before): 50 rounds of every call.
fn churn(_: ()) -> multiproc::Result<Counts> {
    let warm = SharedMemory::create(None, 10)?; // starts the tracker
    warm.unlink()?;
    drop(warm);
    let before = mappings_and_fds_of(&[]);
    let fds_before = common::fd_count();
    let mut names = Vec::new();
    for i in 0..50 {
        let a = if i % 2 == 0 { SharedMemory::create(None, 4096)? } else { SharedMemory::create_untracked(None, 10)? };
        let name = a.name().unwrap().to_owned();
        let b = SharedMemory::open(&name)?;
        let c = b.try_clone()?;
        let d = SharedMemory::anonymous(100)?;
        let e = d.try_clone()?;
        c.unlink()?;
        drop((a, b, c, d, e));
        names.push(name);
    }
    Ok((before, mappings_and_fds_of(&names), (fds_before, common::fd_count()), names))
}

per_method! {
    fn dropped_handles_leave_no_fd_mapping_or_name(method: StartMethod) {
        let child = Process::new(churn, ()).start_method(method).start().unwrap();
        let (before, after, (fds_before, fds_after), names) = child.join_timeout(LONG).unwrap().unwrap();
        let mut made = Made::new();
        names.iter().for_each(|n| drop(made.add(n)));
        assert_eq!(after, before, "(mappings, fds) of segments before and after 50 rounds");
        assert_eq!(fds_after, fds_before, "fds before and after 50 rounds");
        made.assert_none_left();
    }
}

fn open_and_write((name, creates_own): (String, bool)) -> multiproc::Result<(u8, Option<String>)> {
    let shm = SharedMemory::open(&name)?;
    let mut seen = [0];
    shm.read_at(0, &mut seen)?;
    shm.write_at(1, b"child")?;
    // With a tracked segment of its own, this process has a tracker that
    // runs when it exits: it must not take the opened segment along.
    let own = if creates_own { Some(SharedMemory::create(None, 8)?.name().unwrap().to_owned()) } else { None };
    drop(shm);
    Ok((seen[0], own))
}

per_method! {
    fn a_child_opens_by_name_and_writes_and_its_exit_removes_nothing_of_ours(method: StartMethod) {
        let mut made = Made::new();
        let shm = SharedMemory::create(None, 64).unwrap();
        let name = made.add(shm.name().unwrap());
        shm.write_at(0, &[42]).unwrap();
        let child = Process::new(open_and_write, (name.clone(), true)).start_method(method).start().unwrap();
        let (seen, own) = child.join_timeout(LONG).unwrap().unwrap();
        let own = made.add(&own.unwrap());
        assert_eq!(seen, 42);
        assert_eq!(read(&shm, 1, 5), b"child");
        // The child's tracker removed the child's segment, so it has run
        // its clean-up: our segment, which the child only opened, stays.
        assert!(common::wait_until(LONG, || !exists(&own)), "the child's own segment outlived it");
        assert!(exists(&name), "an opener's exit removed the segment");
        assert_eq!(byte(&SharedMemory::open(&name).unwrap(), 0), 42);
        shm.unlink().unwrap();
        made.assert_none_left();
    }
}

fn write_through_handles((named, anon): (SharedMemory, SharedMemory)) -> (Option<String>, usize, usize) {
    named.write_at(0, b"abc").unwrap();
    anon.write_at(0, b"xyz").unwrap();
    (named.name().map(str::to_owned), named.size(), anon.size())
}

per_method! {
    fn handles_travel_as_process_arguments(method: StartMethod) {
        let mut made = Made::new();
        let named = SharedMemory::create(None, 100).unwrap();
        let name = made.add(named.name().unwrap());
        let anon = SharedMemory::anonymous(50).unwrap();
        let arg = (named.try_clone().unwrap(), anon.try_clone().unwrap());
        let child = Process::new(write_through_handles, arg).start_method(method).start().unwrap();
        let (child_name, named_size, anon_size) = child.join_timeout(LONG).unwrap();
        assert_eq!((child_name.as_deref(), named_size, anon_size), (Some(name.as_str()), 100, 50));
        assert_eq!(read(&named, 0, 3), b"abc");
        assert_eq!(read(&anon, 0, 3), b"xyz");
        assert!(exists(&name), "a received handle's drop removed the segment");
        named.unlink().unwrap();
        made.assert_none_left();
    }
}

static WORKER_SHM: Mutex<Option<SharedMemory>> = Mutex::new(None);

fn keep_shm(shm: SharedMemory) {
    *WORKER_SHM.lock().unwrap() = Some(shm);
}

fn poke(i: usize) -> usize {
    let slot = WORKER_SHM.lock().unwrap();
    let shm = slot.as_ref().expect("the initializer ran");
    shm.write_at(i, &[i as u8 + 1]).unwrap();
    i
}

per_method! {
    fn handles_reach_pool_initializers(method: StartMethod) {
        let mut made = Made::new();
        let shm = SharedMemory::create(None, 32).unwrap();
        made.add(shm.name().unwrap());
        let pool = Pool::builder()
            .processes(2)
            .start_method(method)
            .initializer(keep_shm, shm.try_clone().unwrap())
            .build()
            .unwrap();
        assert_eq!(pool.chunksize(1).map(poke, 0..32).unwrap().len(), 32);
        pool.close();
        pool.join().unwrap();
        assert_eq!(read(&shm, 0, 32), (1..=32).collect::<Vec<u8>>());
        shm.unlink().unwrap();
        made.assert_none_left();
    }
}

/// Creates two tracked segments and one untracked, says their names, then
/// waits to be killed.
fn create_and_hold((names, hold): (Queue<Vec<String>>, Queue<()>)) -> multiproc::Result<()> {
    let a = SharedMemory::create(None, 4096)?;
    let b = SharedMemory::create(None, 1 << 20)?;
    let untracked = SharedMemory::create_untracked(None, 10)?;
    let all = [&a, &b, &untracked].map(|s| s.name().unwrap().to_owned()).to_vec();
    names.put(&all)?;
    hold.get_timeout(LONG)?;
    Ok(())
}

per_method! {
    fn a_sigkilled_creators_tracked_segments_are_gone_within_2s(method: StartMethod) {
        let mut made = Made::new();
        let (names, hold) = (Queue::new().unwrap(), Queue::new().unwrap());
        let child = Process::new(create_and_hold, (names.clone(), hold.clone())).start_method(method).start().unwrap();
        let got = names.get_timeout(LONG).unwrap();
        got.iter().for_each(|n| drop(made.add(n)));
        let (tracked, untracked) = (&got[..2], &got[2]);
        assert!(got.iter().all(|n| exists(n)));
        let tracker = tracker_of(child.pid()).expect("the creator has a tracker");
        child.kill().unwrap();
        let killed = Instant::now();
        assert!(common::wait_until(CLEANUP_BOUND, || tracked.iter().all(|n| !exists(n))), "still there after {CLEANUP_BOUND:?}: {:?}", tracked.iter().filter(|n| exists(n)).collect::<Vec<_>>());
        eprintln!("{method:?}: tracked segments gone {:?} after the SIGKILL", killed.elapsed());
        assert_eq!(child.join_timeout(LONG).unwrap_err().exitcode(), Some(-9));
        assert_tracker_ends(tracker);
        assert!(exists(untracked), "the tracker removed an untracked segment");
        SharedMemory::open(untracked).unwrap().unlink().unwrap();
        made.assert_none_left();
    }
}

/// Creates a tracked and an untracked segment and returns (exits normally).
fn create_and_leave(_: ()) -> multiproc::Result<(String, String, Option<u32>)> {
    let tracked = SharedMemory::create(None, 100)?;
    let untracked = SharedMemory::create_untracked(None, 100)?;
    let tracker = tracker_of(std::process::id());
    Ok((tracked.name().unwrap().to_owned(), untracked.name().unwrap().to_owned(), tracker))
}

per_method! {
    fn on_a_normal_exit_tracked_segments_go_and_untracked_ones_stay(method: StartMethod) {
        let mut made = Made::new();
        let child = Process::new(create_and_leave, ()).start_method(method).start().unwrap();
        let (tracked, untracked, tracker) = child.join_timeout(LONG).unwrap().unwrap();
        made.add(&tracked);
        made.add(&untracked);
        // Once the tracker has exited it has done all it will do.
        assert_tracker_ends(tracker.expect("the creator had a tracker"));
        assert!(!exists(&tracked), "the tracked segment outlived its creator");
        assert!(exists(&untracked), "the untracked segment was removed");
        SharedMemory::open(&untracked).unwrap().unlink().unwrap();
        made.assert_none_left();
    }
}

/// In a pool worker: a tracked and an untracked segment, with a byte
/// written in each; their names, and the worker's pid.
fn worker_creates(_: ()) -> multiproc::Result<(String, String, u32)> {
    let tracked = SharedMemory::create(None, 100)?;
    let untracked = SharedMemory::create_untracked(None, 100)?;
    tracked.write_at(0, &[1])?;
    untracked.write_at(0, &[2])?;
    Ok((tracked.name().unwrap().to_owned(), untracked.name().unwrap().to_owned(), std::process::id()))
}

per_method! {
    // The documented difference from Python: a tracked segment lives until
    // the end of the process that created it, here a pool worker, not of
    // the program; an untracked one outlives the worker, for the parent to
    // unlink.
    fn a_workers_tracked_segment_ends_with_the_worker_and_an_untracked_one_stays(method: StartMethod) {
        let mut made = Made::new();
        let pool = Pool::builder().processes(1).start_method(method).build().unwrap();
        let (tracked, untracked, worker) = pool.apply(worker_creates, ()).unwrap().unwrap();
        made.add(&tracked);
        made.add(&untracked);
        // While the worker lives, both outlive the task that made them.
        assert!(!common::gone(worker));
        assert_eq!(byte(&SharedMemory::open(&tracked).unwrap(), 0), 1);
        assert_eq!(byte(&SharedMemory::open(&untracked).unwrap(), 0), 2);
        let tracker = tracker_of(worker).expect("the worker has a tracker of its own");
        pool.close();
        pool.join().unwrap();
        assert_tracker_ends(tracker);
        assert!(!exists(&tracked), "the worker's tracked segment outlived the worker");
        let kept = SharedMemory::open(&untracked).expect("the untracked segment outlives the worker");
        assert_eq!(byte(&kept, 0), 2);
        kept.unlink().unwrap();
        made.assert_none_left();
    }
}

/// Creates a segment, says its name and its tracker's pid, waits for word,
/// and returns.
fn create_then_wait((said, go): (Queue<(String, u32)>, Queue<()>)) -> multiproc::Result<()> {
    let shm = SharedMemory::create(None, 100)?;
    let tracker = tracker_of(std::process::id()).expect("a tracker");
    said.put(&(shm.name().unwrap().to_owned(), tracker))?;
    go.get_timeout(LONG)?;
    Ok(())
}

per_method! {
    fn a_name_taken_again_by_a_live_process_is_not_removed_by_the_first_creators_tracker(method: StartMethod) {
        let mut made = Made::new();
        let (said, go) = (Queue::new().unwrap(), Queue::new().unwrap());
        let child = Process::new(create_then_wait, (said.clone(), go.clone())).start_method(method).start().unwrap();
        let (name, tracker) = said.get_timeout(LONG).unwrap();
        made.add(&name);
        // Unlink the child's segment and take its name for one of ours, while
        // the child's tracker still has the name registered.
        SharedMemory::open(&name).unwrap().unlink().unwrap();
        let ours = SharedMemory::create(Some(&name), 100).unwrap();
        ours.write_at(0, &[5]).unwrap();
        go.put(&()).unwrap();
        child.join_timeout(LONG).unwrap().unwrap();
        assert_tracker_ends(tracker);
        assert!(exists(&name), "the child's tracker removed a segment of a live process");
        assert_eq!(byte(&SharedMemory::open(&name).unwrap(), 0), 5);
        ours.unlink().unwrap();
        made.assert_none_left();
    }
}

/// A creator's children, its tracker, the tracker's parent, and the name
/// of its segment.
type Family = (Vec<(u32, char)>, u32, u32, String);

/// This process's [`Family`] after a tracked create.
fn own_children_after_create(_: ()) -> multiproc::Result<Family> {
    let shm = SharedMemory::create(None, 10)?;
    let tracker = tracker_of(std::process::id()).expect("a tracker");
    let (_, tracker_parent) = common::stat(tracker).expect("the tracker runs");
    Ok((common::children(), tracker, tracker_parent, shm.name().unwrap().to_owned()))
}

per_method! {
    fn each_process_has_its_own_tracker_which_is_nobodys_child(method: StartMethod) {
        let mut made = Made::new();
        // This process's own tracker, which a forked child must not use.
        let ours = SharedMemory::create(None, 10).unwrap();
        made.add(ours.name().unwrap());
        let my_tracker = tracker_of(std::process::id()).expect("a tracker of ours");
        let child = Process::new(own_children_after_create, ()).start_method(method).start().unwrap();
        let child_pid = child.pid();
        let (children, tracker, tracker_parent, theirs) = child.join_timeout(LONG).unwrap().unwrap();
        made.add(&theirs);
        assert_ne!(tracker, my_tracker, "the child used its parent's tracker");
        assert!(children.is_empty(), "the creator has children after create (a zombie?): {children:?}");
        assert_ne!(tracker_parent, child_pid, "the tracker is its creator's child");
        assert_tracker_ends(tracker);
        assert!(!exists(&theirs), "the child's segment outlived it");
        assert!(exists(ours.name().unwrap()), "the child's exit removed its parent's segment");
        assert!(common::gone(tracker) && !common::gone(my_tracker));
        ours.unlink().unwrap();
        made.assert_none_left();
    }
}

/// Two segment names, the tracker that was killed and its replacement.
type Replaced = (Vec<String>, u32, u32);

/// Creates a segment, kills its own tracker, creates another (which starts
/// a new tracker), says both names and both trackers, then waits to be
/// killed.
fn outlive_own_tracker((said, hold): (Queue<Replaced>, Queue<()>)) -> multiproc::Result<()> {
    let first = SharedMemory::create(None, 10)?;
    let old = tracker_of(std::process::id()).expect("a tracker");
    common::sigkill(old);
    assert!(common::wait_until(LONG, || common::gone(old)), "the tracker survived SIGKILL");
    let second = SharedMemory::create(None, 10)?;
    let new = tracker_of(std::process::id()).expect("a new tracker");
    let names = vec![first.name().unwrap().to_owned(), second.name().unwrap().to_owned()];
    said.put(&(names, old, new))?;
    hold.get_timeout(LONG)?;
    Ok(())
}

per_method! {
    fn a_killed_tracker_is_replaced_and_told_every_segment(method: StartMethod) {
        let mut made = Made::new();
        let (said, hold) = (Queue::new().unwrap(), Queue::new().unwrap());
        let child = Process::new(outlive_own_tracker, (said.clone(), hold.clone())).start_method(method).start().unwrap();
        let (names, old, new) = said.get_timeout(LONG).unwrap();
        names.iter().for_each(|n| drop(made.add(n)));
        assert_ne!(old, new);
        assert!(names.iter().all(|n| exists(n)));
        child.kill().unwrap();
        assert!(
            common::wait_until(CLEANUP_BOUND, || names.iter().all(|n| !exists(n))),
            "the replacement tracker did not remove both segments within {CLEANUP_BOUND:?}"
        );
        assert_eq!(child.join_timeout(LONG).unwrap_err().exitcode(), Some(-9));
        assert_tracker_ends(new);
        made.assert_none_left();
    }
}
