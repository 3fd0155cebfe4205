//! Workers under control (issue 17): a memory cap that replaces a worker
//! between tasks, and `interrupt()` (in tests/process.rs).

mod common;

use multiproc::{ErrorKind, MemoryCap, Pool, Process, StartMethod};

/// This worker's pid and resident memory.
fn pid_and_rss(_: ()) -> (u32, u64) {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: u64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    (std::process::id(), pages * 4096)
}

/// Keeps `mib` MiB, touched, for the rest of the worker's life; its pid.
fn hog(mib: usize) -> u32 {
    Box::leak(vec![1u8; mib << 20].into_boxed_slice());
    std::process::id()
}

per_method! {
    fn a_worker_over_max_memory_is_replaced_after_its_task(method: StartMethod) {
        // What a fresh worker holds, to set the cap above it.
        let probe = Pool::builder().processes(1).start_method(method).build().unwrap();
        let (_, baseline) = probe.apply(pid_and_rss, ()).unwrap();
        drop(probe);
        let pool = Pool::builder()
            .processes(1)
            .start_method(method)
            .max_memory_per_child(baseline + (32 << 20))
            .build()
            .unwrap();
        let (first, _) = pool.apply(pid_and_rss, ()).unwrap();
        let (again, _) = pool.apply(pid_and_rss, ()).unwrap();
        assert_eq!(first, again, "under the cap, the worker stays");
        // The task that goes over succeeds; the next one runs elsewhere.
        assert_eq!(pool.apply(hog, 64).unwrap(), first);
        let (next, rss) = pool.apply(pid_and_rss, ()).unwrap();
        assert_ne!(next, first, "the worker over the cap was replaced");
        assert!(rss < baseline + (32 << 20), "the new worker starts small: {rss}");
        // A map whose every chunk goes over: every result is right, none
        // lost or run twice.
        let pids = pool.chunksize(1).map(hog, vec![40; 6]).unwrap();
        let distinct: std::collections::HashSet<u32> = pids.iter().copied().collect();
        assert_eq!(distinct.len(), 6, "each chunk in a fresh worker: {pids:?}");
        assert_eq!(pool.stats().failed, 0);
    }
}

#[test]
fn a_zero_memory_cap_is_refused() {
    let err = Pool::builder().max_memory_per_child(0).build().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
}

/// Allocates and touches `mib` MiB, and gives its size back.
fn allocate(mib: usize) -> usize {
    let v = vec![1u8; mib << 20];
    v.iter().step_by(4096).map(|&b| usize::from(b)).sum::<usize>() * 4096
}

/// A pool of 2 under a 128 MiB limit kept by `cap`: only the 256 MiB task
/// fails, with `MemoryExceeded` naming the mechanism, and the pool goes on.
fn only_the_task_over_the_limit_fails(method: StartMethod, cap: MemoryCap) {
    let pool =
        Pool::builder().processes(2).start_method(method).memory_limit(128 << 20).memory_cap(cap).build().unwrap();
    let sizes = [8, 256, 16, 4, 32, 1];
    let results: Vec<_> = sizes.iter().map(|&mib| pool.apply_async(allocate, mib).unwrap()).collect();
    for (mib, r) in sizes.iter().zip(&results) {
        match r.get_timeout(common::LONG) {
            Ok(bytes) => assert_eq!(bytes, mib << 20, "{mib} MiB"),
            Err(e) => {
                assert_eq!(*mib, 256, "only the 256 MiB task fails: {e}");
                assert_eq!(e.kind(), ErrorKind::MemoryExceeded, "{e}");
                let (limit, peak) = e.memory().unwrap();
                assert_eq!(limit, 128 << 20);
                assert!(peak > 0 && peak < 256 << 20, "{peak}");
                assert!(e.to_string().contains("memory_limit"), "{e}");
                assert!(e.to_string().contains(mechanism_word(cap)), "{e}");
            }
        }
    }
    assert!(results[1].get_timeout(common::LONG).is_err());
    // The pool goes on, in a fresh worker.
    assert_eq!(pool.map(allocate, [2, 3]).unwrap(), [2 << 20, 3 << 20]);
    let stats = pool.stats();
    assert_eq!(stats.failed, 1, "{stats:?}");
}

/// The word a `MemoryExceeded` message uses for `cap`.
fn mechanism_word(cap: MemoryCap) -> &'static str {
    match cap {
        MemoryCap::Cgroup => "cgroup",
        MemoryCap::Rlimit => "RLIMIT_DATA",
    }
}

/// Whether this machine lets the test process make memory cgroups; says
/// so on stderr when it does not (the cgroup tests then check nothing).
fn cgroups_here(test: &str) -> bool {
    match MemoryCap::why_not_cgroup() {
        None => true,
        Some(why) => {
            eprintln!("{test}: skipped, no memory cgroups here: {why}");
            false
        }
    }
}

per_method! {
    fn a_task_over_memory_limit_fails_alone_with_memory_exceeded(method: StartMethod) {
        only_the_task_over_the_limit_fails(method, MemoryCap::Rlimit);
    }
}

per_method! {
    fn a_task_over_a_cgroup_memory_limit_fails_alone_with_memory_exceeded(method: StartMethod) {
        if cgroups_here("cgroup memory_limit") {
            only_the_task_over_the_limit_fails(method, MemoryCap::Cgroup);
        }
    }
}

/// The memory cgroups this process made and has not removed.
fn own_groups() -> Vec<std::path::PathBuf> {
    let prefix = format!("multiproc-{}-", std::process::id());
    let own = std::fs::read_to_string("/proc/self/cgroup").unwrap();
    let mut dirs = Vec::new();
    for line in own.lines() {
        let mut parts = line.splitn(3, ':');
        let (_, controllers, path) = (parts.next().unwrap(), parts.next().unwrap(), parts.next().unwrap());
        let path = path.trim_start_matches('/');
        if controllers.split(',').any(|c| c == "memory") {
            dirs.push(std::path::Path::new("/sys/fs/cgroup/memory").join(path));
        }
        if controllers.is_empty() {
            dirs.push(std::path::Path::new("/sys/fs/cgroup").join(path));
            dirs.push(std::path::Path::new("/sys/fs/cgroup/unified").join(path));
        }
    }
    dirs.iter()
        .filter_map(|d| std::fs::read_dir(d).ok())
        .flatten()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
        .map(|e| e.path())
        .collect()
}

/// In a child of its own (so that no other test's groups are counted): a
/// pool with cgroup limits, one task killed at its limit, and then, once
/// the pool is gone, no group of this process is left.
fn groups_left_after_a_pool(method: StartMethod) -> (usize, usize, usize) {
    let pool = Pool::builder()
        .processes(2)
        .start_method(method)
        .memory_limit(64 << 20)
        .memory_cap(MemoryCap::Cgroup)
        .build()
        .unwrap();
    assert_eq!(pool.map(allocate, [1, 2]).unwrap(), [1 << 20, 2 << 20]);
    let during = own_groups().len();
    assert_eq!(pool.apply(allocate, 256).unwrap_err().kind(), ErrorKind::MemoryExceeded);
    assert_eq!(pool.apply(allocate, 1).unwrap(), 1 << 20);
    pool.close();
    pool.join().unwrap();
    let after_join = own_groups().len();
    drop(pool);
    (during, after_join, own_groups().len())
}

per_method! {
    fn memory_cgroups_are_removed_with_their_workers(method: StartMethod) {
        if cgroups_here("cgroup removal") {
            let child = Process::new(groups_left_after_a_pool, method).start().unwrap();
            let (during, after_join, after_drop) = child.join_timeout(common::LONG).unwrap();
            assert_eq!(during, 2, "one group per live worker");
            assert_eq!((after_join, after_drop), (0, 0), "no group outlives its worker");
        }
    }
}

/// A `Process` with a memory_limit kept by `cap`: under it the target
/// returns; over it `join` fails with `MemoryExceeded` (exit code 1 under
/// RLIMIT_DATA, as Python's child after a MemoryError; −9 from a cgroup's
/// OOM killer).
fn a_process_over_its_limit(method: StartMethod, cap: MemoryCap) {
    let small = Process::new(allocate, 8).start_method(method).memory_limit(64 << 20).memory_cap(cap).start().unwrap();
    assert_eq!(small.join_timeout(common::LONG).unwrap(), 8 << 20);
    let big = Process::new(allocate, 256).start_method(method).memory_limit(64 << 20).memory_cap(cap).start().unwrap();
    let e = big.join_timeout(common::LONG).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::MemoryExceeded, "{e}");
    let (limit, peak) = e.memory().unwrap();
    assert_eq!(limit, 64 << 20);
    assert!(peak > 0 && peak < 256 << 20, "{peak}");
    assert!(e.to_string().contains(mechanism_word(cap)), "{e}");
    let code = if cap == MemoryCap::Rlimit { 1 } else { -9 };
    assert_eq!((e.exitcode(), big.exitcode()), (Some(code), Some(code)), "{e}");
}

per_method! {
    fn a_process_over_its_rlimit_fails_with_memory_exceeded(method: StartMethod) {
        a_process_over_its_limit(method, MemoryCap::Rlimit);
    }
}

per_method! {
    fn a_process_over_its_cgroup_limit_fails_with_memory_exceeded(method: StartMethod) {
        if cgroups_here("process cgroup limit") {
            a_process_over_its_limit(method, MemoryCap::Cgroup);
        }
    }
}

per_method! {
    fn max_memory_per_child_reads_the_workers_cgroup(method: StartMethod) {
        if cgroups_here("max_memory_per_child in a cgroup") {
            // In a group of its own a worker's use counts from its start,
            // so the soft cap needs no baseline.
            let pool = Pool::builder()
                .processes(1)
                .start_method(method)
                .memory_limit(512 << 20)
                .memory_cap(MemoryCap::Cgroup)
                .max_memory_per_child(32 << 20)
                .build()
                .unwrap();
            let (first, _) = pool.apply(pid_and_rss, ()).unwrap();
            assert_eq!(pool.apply(pid_and_rss, ()).unwrap().0, first, "under the cap, the worker stays");
            assert_eq!(pool.apply(hog, 64).unwrap(), first);
            assert_ne!(pool.apply(pid_and_rss, ()).unwrap().0, first, "the worker over the cap was replaced");
            assert_eq!(pool.stats().failed, 0);
        }
    }
}

#[test]
fn a_zero_process_memory_limit_is_refused() {
    let err = Process::new(allocate, 1).memory_limit(0).start().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
}

#[test]
fn the_detected_mechanism_is_the_default() {
    let cap = MemoryCap::detect();
    assert_eq!(cap == MemoryCap::Cgroup, MemoryCap::why_not_cgroup().is_none());
    let pool = Pool::builder().processes(1).memory_limit(64 << 20).build().unwrap();
    let e = pool.apply(allocate, 256).unwrap_err();
    assert!(e.to_string().contains(mechanism_word(cap)), "{e}");
}

#[test]
fn a_zero_memory_limit_is_refused() {
    let err = Pool::builder().memory_limit(0).build().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
}

/// Burns CPU: `millions` of dependent multiply-adds (about a millisecond
/// each million; the count, not the clock, sets the work).
fn burn(millions: u64) -> u64 {
    let mut x = 1u64;
    for _ in 0..millions * 1_000_000 {
        x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
    }
    x
}

per_method! {
    fn track_usage_finds_the_task_that_eats_cpu_and_memory(method: StartMethod) {
        let pool = Pool::builder().processes(2).start_method(method).track_usage().build().unwrap();
        let small = pool.apply_async(allocate, 1).unwrap();
        let big = pool.apply_async(allocate, 96).unwrap();
        let busy = pool.apply_async(burn, 60).unwrap();
        let idle = pool.apply_async(burn, 0).unwrap();
        for r in [&small, &big] {
            assert!(r.wait_timeout(common::LONG));
        }
        assert!(busy.wait_timeout(common::LONG) && idle.wait_timeout(common::LONG));
        let (s, b) = (small.usage().unwrap(), big.usage().unwrap());
        assert!(b.peak_rss >= s.peak_rss + (64 << 20), "{s:?} {b:?}");
        let (hot, cold) = (busy.usage().unwrap(), idle.usage().unwrap());
        assert!(hot.cpu_time >= std::time::Duration::from_millis(5), "{hot:?}");
        assert!(cold.cpu_time < hot.cpu_time, "{cold:?} {hot:?}");
        // A map adds its chunks' CPU up.
        let all = pool.chunksize(1).map_async(burn, [10, 10, 10]).unwrap();
        assert!(all.wait_timeout(common::LONG));
        assert!(all.usage().unwrap().cpu_time >= std::time::Duration::from_millis(3), "{:?}", all.usage());
        // Without track_usage there is none.
        let plain = Pool::builder().processes(1).start_method(method).build().unwrap();
        let r = plain.apply_async(burn, 0).unwrap();
        assert!(r.wait_timeout(common::LONG));
        assert!(r.usage().is_none());
    }
}

/// The busy counter: [busy now, most busy at once], handed to every
/// worker by the pools' initializer (an Array travels only there).
static COUNTER: std::sync::Mutex<Option<multiproc::Array<i64>>> = std::sync::Mutex::new(None);

fn keep(counter: multiproc::Array<i64>) {
    *COUNTER.lock().unwrap() = Some(counter);
}

fn counter() -> multiproc::Array<i64> {
    COUNTER.lock().unwrap().clone().expect("set by the initializer")
}

/// Marks this process busy while it burns CPU.
fn busy_for(millions: u64) -> u64 {
    let counter = counter();
    counter
        .with_lock(|c| {
            c[0] += 1;
            c[1] = c[1].max(c[0]);
        })
        .unwrap();
    let x = burn(millions);
    counter.with_lock(|c| c[0] -= 1).unwrap();
    x
}

/// An outer task: busy for a while, then waits for an inner pool of 2
/// (created here, inside a pool worker) that does more busy work.
fn outer_task(method: StartMethod) -> u64 {
    let mine = busy_for(5);
    let pool = Pool::builder().processes(2).start_method(method).initializer(keep, counter()).build().unwrap();
    let inner = pool.chunksize(1).map(busy_for, [5; 6]).unwrap().iter().fold(0u64, |a, x| a.wrapping_add(*x));
    mine.wrapping_add(inner)
}

per_method! {
    fn nested_pools_share_one_token_budget(method: StartMethod) {
        let counter = multiproc::Array::new(&[0i64, 0]).unwrap();
        let pool = Pool::builder()
            .processes(2)
            .start_method(method)
            .tokens(Some(2))
            .initializer(keep, counter.clone())
            .build()
            .unwrap();
        let results = pool.chunksize(1).map(outer_task, [method; 4]).unwrap();
        assert_eq!(results.len(), 4);
        let [now, most] = [counter.at(0).unwrap(), counter.at(1).unwrap()];
        assert_eq!(now, 0);
        assert!(most <= 2, "at most 2 busy across the outer pool and its 4 inner pools: {most}");
        assert!(most >= 1);
    }
}

per_method! {
    fn without_a_budget_nested_pools_still_work(method: StartMethod) {
        let counter = multiproc::Array::new(&[0i64, 0]).unwrap();
        let pool = Pool::builder()
            .processes(2)
            .start_method(method)
            .tokens(None)
            .initializer(keep, counter.clone())
            .build()
            .unwrap();
        let results = pool.chunksize(1).map(outer_task, [method; 2]).unwrap();
        assert_eq!(results.len(), 2);
        assert_eq!(counter.at(0).unwrap(), 0);
    }
}

#[test]
fn a_zero_token_budget_is_refused() {
    let err = Pool::builder().tokens(Some(0)).build().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
}

/// Checks one stream of examples/worker_logs: 4 tasks × 1,000 lines, each
/// whole, tagged `[<prefix>N pid]`, each exactly once.
fn check_forwarded(text: &str, word: &str, prefix: &str) {
    let mut seen = std::collections::HashSet::new();
    for line in text.lines() {
        let rest =
            line.strip_prefix('[').and_then(|l| l.strip_prefix(prefix)).unwrap_or_else(|| panic!("untagged: {line:?}"));
        let (tag, body) = rest.split_once("] ").unwrap_or_else(|| panic!("no tag end: {line:?}"));
        let (n, pid) = tag.split_once(' ').unwrap_or_else(|| panic!("no pid: {line:?}"));
        assert!(n.parse::<u32>().is_ok() && pid.parse::<u32>().is_ok(), "{line:?}");
        let fields: Vec<&str> = body.split(' ').collect();
        assert!(fields.len() == 4 && fields[0] == "task" && fields[2] == word, "broken line: {line:?}");
        let key = (fields[1].parse::<u32>().unwrap(), fields[3].parse::<u32>().unwrap());
        assert!(key.0 < 4 && key.1 < 1000, "{line:?}");
        assert!(seen.insert(key), "twice: {line:?}");
    }
    assert_eq!(seen.len(), 4000, "every {word} line arrived once");
}

per_method! {
    fn forwarded_output_arrives_whole_and_tagged(method: StartMethod) {
        let arg = match method {
            StartMethod::Fork => "fork",
            StartMethod::Spawn => "spawn",
            StartMethod::ForkServer => "forkserver",
        };
        let out = std::process::Command::new(common::example("worker_logs")).arg(arg).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let prefix = match method {
            StartMethod::Fork => "ForkPoolWorker-",
            StartMethod::Spawn => "SpawnPoolWorker-",
            StartMethod::ForkServer => "ForkServerPoolWorker-",
        };
        check_forwarded(&String::from_utf8(out.stdout).unwrap(), "line", prefix);
        check_forwarded(&String::from_utf8(out.stderr).unwrap(), "err", prefix);
        // Plain children, each joined: all their lines are out by then.
        let out = std::process::Command::new(common::example("worker_logs")).args([arg, "process"]).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        check_forwarded(&String::from_utf8(out.stdout).unwrap(), "line", "Process-");
        check_forwarded(&String::from_utf8(out.stderr).unwrap(), "err", "Process-");
    }
}

fn nap_ms(ms: u64) -> u64 {
    std::thread::sleep(std::time::Duration::from_millis(ms));
    ms
}

per_method! {
    fn a_worker_killed_holding_a_token_gives_it_back(method: StartMethod) {
        // One token: if the killed worker's token were lost, nothing would
        // run again.
        let pool = Pool::builder().processes(1).start_method(method).tokens(Some(1)).build().unwrap();
        let long = pool.apply_async(nap_ms, 60_000).unwrap();
        // Wait until it runs (it holds the token then), then kill it.
        assert!(common::wait_until(common::LONG, || pool.stats().running == 1));
        assert!(long.kill());
        assert_eq!(long.get_timeout(common::LONG).unwrap_err().kind(), ErrorKind::Cancelled);
        assert_eq!(pool.apply_async(nap_ms, 1).unwrap().get_timeout(common::LONG).unwrap(), 1);
    }
}

/// The event a nested worker sets once it holds the token (given to each
/// worker by its pool's initializer: an event cannot travel in a task).
static RUNNING: std::sync::OnceLock<multiproc::Event> = std::sync::OnceLock::new();

fn keep_running(event: multiproc::Event) {
    let _ = RUNNING.set(event);
}

/// Says that it runs (it holds the budget's token then), and stays.
fn hold_token(_: ()) -> u64 {
    RUNNING.get().expect("set by the initializer").set();
    std::thread::sleep(common::LONG);
    0
}

/// A task that runs `hold_token` in a pool of its own (which shares the
/// outer pool's budget: this task lends its token while it waits).
fn nest_hold(_: ()) -> u64 {
    let running = RUNNING.get().expect("set by the initializer").clone();
    let inner = Pool::builder().processes(1).initializer(keep_running, running).build().unwrap();
    inner.apply(hold_token, ()).unwrap_or(0)
}

per_method! {
    fn a_token_held_by_a_nested_worker_comes_back_when_its_pool_dies(method: StartMethod) {
        // One token, held by a worker of a pool nested in the outer pool's
        // only worker. The outer worker is killed: its pool's worker dies
        // with it (parent-death signal), and nobody is left to bury it. The
        // next worker that waits for the token finds its holder gone and
        // takes it back; without that, nothing would run again.
        let running = multiproc::Event::new().unwrap();
        let pool = Pool::builder()
            .processes(1)
            .start_method(method)
            .tokens(Some(1))
            .initializer(keep_running, running.clone())
            .build()
            .unwrap();
        let nested = pool.apply_async(nest_hold, ()).unwrap();
        assert!(running.wait(Some(common::LONG)).unwrap(), "the nested worker runs, holding the token");
        common::sigkill(pool.stats().workers[0].pid);
        assert_eq!(nested.get_timeout(common::LONG).unwrap_err().kind(), ErrorKind::WorkerLost);
        assert_eq!(pool.apply_async(nap_ms, 1).unwrap().get_timeout(common::LONG).unwrap(), 1);
    }
}
