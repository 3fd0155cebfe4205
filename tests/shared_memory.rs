//! SharedMemory: Python's calls and errors, segments opened by name and
//! handles passed to children and pool initializers under every start
//! method, and who removes a segment: a SIGKILLed creator's tracked
//! segments are gone from /dev/shm within 2 s, untracked ones stay, an
//! opener never removes anything, a name taken again by a live process is
//! left alone, a forked child gets a tracker of its own, and no tracker is
//! ever anybody's zombie. Every test checks that the names it made are
//! gone from /dev/shm at its end (it filters by name: the other tests run
//! in parallel).
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

fn io_kind(err: &multiproc::Error) -> Option<std::io::ErrorKind> {
    std::error::Error::source(err)?.downcast_ref::<std::io::Error>().map(std::io::Error::kind)
}

#[test]
fn calls_and_errors_follow_python() {
    let _w = common::watchdog("calls_and_errors_follow_python");
    let mut made = Made::new();
    let mut a = SharedMemory::create(None, 1000).unwrap();
    let name = made.add(a.name().unwrap());
    assert!(name.starts_with("psm_") && name.len() == 12, "{name}");
    assert!(exists(&name));
    assert_eq!(a.size(), 1000);
    assert!(a.buf().iter().all(|&b| b == 0), "a new segment is zeroed");
    a.buf_mut()[999] = 7;

    let b = SharedMemory::open(&name).unwrap();
    assert_eq!((b.name(), b.size(), b.buf()[999]), (Some(name.as_str()), 1000, 7));
    let slashed = SharedMemory::open(&format!("/{name}")).unwrap();
    assert_eq!(slashed.name(), Some(name.as_str()), "Python's /psm_ form opens the same segment");
    let c = b.try_clone().unwrap();
    a.buf_mut()[0] = 1;
    assert_eq!((c.buf()[0], slashed.buf()[0]), (1, 1));
    assert!(format!("{c:?}").contains(&name));

    // Creating a taken name.
    let err = SharedMemory::create(Some(&name), 10).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Io);
    assert_eq!(io_kind(&err), Some(std::io::ErrorKind::AlreadyExists));
    assert!(err.to_string().contains("already exists") && err.to_string().contains("SharedMemory::open"), "{err}");
    assert_eq!(a.buf()[999], 7, "the failed create left the segment alone");

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
    assert_eq!(a.buf()[999], 7);
    let err = open_err(&name);
    assert_eq!((err.kind(), io_kind(&err)), (ErrorKind::Io, Some(std::io::ErrorKind::NotFound)));
    assert!(err.to_string().contains("no shared memory segment named"), "{err}");
    let err = a.unlink().unwrap_err();
    assert_eq!(io_kind(&err), Some(std::io::ErrorKind::NotFound));
    assert!(err.to_string().contains("unlinked already"), "{err}");

    // The name taken again: the old handles' unlink leaves the new segment.
    let mut again = SharedMemory::create(Some(&name), 5).unwrap();
    again.buf_mut()[0] = 9;
    let err = c.unlink().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidState);
    assert!(err.to_string().contains("another shared memory segment"), "{err}");
    assert_eq!(SharedMemory::open(&name).unwrap().buf()[0], 9);
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
    let mut shm = SharedMemory::open(&name)?;
    let seen = shm.buf()[0];
    shm.buf_mut()[1..6].copy_from_slice(b"child");
    // With a tracked segment of its own, this process has a tracker that
    // runs when it exits: it must not take the opened segment along.
    let own = if creates_own { Some(SharedMemory::create(None, 8)?.name().unwrap().to_owned()) } else { None };
    drop(shm);
    Ok((seen, own))
}

per_method! {
    fn a_child_opens_by_name_and_writes_and_its_exit_removes_nothing_of_ours(method: StartMethod) {
        let mut made = Made::new();
        let mut shm = SharedMemory::create(None, 64).unwrap();
        let name = made.add(shm.name().unwrap());
        shm.buf_mut()[0] = 42;
        let child = Process::new(open_and_write, (name.clone(), true)).start_method(method).start().unwrap();
        let (seen, own) = child.join_timeout(LONG).unwrap().unwrap();
        let own = made.add(&own.unwrap());
        assert_eq!(seen, 42);
        assert_eq!(&shm.buf()[1..6], b"child");
        // The child's tracker removed the child's segment, so it has run
        // its clean-up: our segment, which the child only opened, stays.
        assert!(common::wait_until(LONG, || !exists(&own)), "the child's own segment outlived it");
        assert!(exists(&name), "an opener's exit removed the segment");
        assert_eq!(SharedMemory::open(&name).unwrap().buf()[0], 42);
        shm.unlink().unwrap();
        made.assert_none_left();
    }
}

fn write_through_handles((mut named, mut anon): (SharedMemory, SharedMemory)) -> (Option<String>, usize, usize) {
    named.buf_mut()[..3].copy_from_slice(b"abc");
    anon.buf_mut()[..3].copy_from_slice(b"xyz");
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
        assert_eq!(&named.buf()[..3], b"abc");
        assert_eq!(&anon.buf()[..3], b"xyz");
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
    let mut slot = WORKER_SHM.lock().unwrap();
    let shm = slot.as_mut().expect("the initializer ran");
    shm.buf_mut()[i] = i as u8 + 1;
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
        assert_eq!(shm.buf(), (1..=32).collect::<Vec<u8>>());
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
        let mut ours = SharedMemory::create(Some(&name), 100).unwrap();
        ours.buf_mut()[0] = 5;
        go.put(&()).unwrap();
        child.join_timeout(LONG).unwrap().unwrap();
        assert_tracker_ends(tracker);
        assert!(exists(&name), "the child's tracker removed a segment of a live process");
        assert_eq!(SharedMemory::open(&name).unwrap().buf()[0], 5);
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
