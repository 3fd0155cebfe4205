//! Fixtures shared by the integration tests: a watchdog, per-start-method
//! test generation, and counters for leak checks (fds, threads, children,
//! zombies) read from /proc.

#![allow(dead_code, unreachable_pub)]

pub mod counting_alloc;
pub mod crash;
pub mod probe;

use std::path::PathBuf;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use multiproc::StartMethod;

/// The ceiling on any single blocking call in a test.
pub const LONG: Duration = Duration::from_secs(30);

/// Every start method, for tests that run under each.
pub const METHODS: [StartMethod; 3] = [StartMethod::Fork, StartMethod::Spawn, StartMethod::ForkServer];

/// Generates one `#[test]` per start method: `name::fork`, `name::spawn`
/// and `name::forkserver`, each calling `body(method)` under a watchdog.
#[macro_export]
macro_rules! per_method {
    ($(#[$meta:meta])* fn $name:ident($method:ident: $ty:ty) $body:block) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;
            fn run($method: $ty) $body
            #[test]
            fn fork() {
                let _w = $crate::common::watchdog(stringify!($name));
                run(multiproc::StartMethod::Fork)
            }
            #[test]
            fn spawn() {
                let _w = $crate::common::watchdog(stringify!($name));
                run(multiproc::StartMethod::Spawn)
            }
            #[test]
            fn forkserver() {
                let _w = $crate::common::watchdog(stringify!($name));
                run(multiproc::StartMethod::ForkServer)
            }
        }
    };
}

/// Aborts the whole test process if the guard is still alive after 120 s,
/// so that a hang fails the run instead of stalling it.
pub struct Watchdog {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<thread::JoinHandle<()>>,
}

pub fn watchdog(what: &'static str) -> Watchdog {
    watchdog_for(what, Duration::from_secs(120))
}

pub fn watchdog_for(what: &'static str, limit: Duration) -> Watchdog {
    let (tx, rx) = mpsc::channel::<()>();
    let thread = thread::spawn(move || {
        if let Err(mpsc::RecvTimeoutError::Timeout) = rx.recv_timeout(limit) {
            // Straight to fd 2: the harness's capture of `eprintln!` is
            // lost when the process aborts.
            use std::io::Write;
            let _ = writeln!(std::io::stderr(), "watchdog: test '{what}' still running after {limit:?}; aborting");
            dump_stacks();
            std::process::abort();
        }
    });
    Watchdog { stop: Some(tx), thread: Some(thread) }
}

/// Prints every thread's stack of this process and of its descendants
/// (children, and their children: a fork server's workers) on stderr, with
/// gdb if the machine has it: where a hang was, for a run that cannot be
/// repeated at will.
fn dump_stacks() {
    use std::io::Write;
    use std::os::fd::AsFd;
    use std::process::{Command, Stdio};
    let parents: Vec<(u32, u32)> = std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            // The parent pid is the second field after the command's ")".
            let ppid = stat.rsplit_once(')')?.1.split_whitespace().nth(1)?.parse::<u32>().ok()?;
            Some((pid, ppid))
        })
        .collect();
    let mut family = vec![std::process::id()];
    let mut i = 0;
    while i < family.len() && family.len() < 16 {
        let parent = family[i];
        family.extend(parents.iter().filter(|&&(_, ppid)| ppid == parent).map(|&(pid, _)| pid));
        i += 1;
    }
    for pid in family.into_iter().take(16) {
        let _ = writeln!(std::io::stderr(), "watchdog: stacks of pid {pid}");
        let gdb = Command::new("gdb")
            .args(["-p", &pid.to_string(), "-batch", "-nx", "-ex", "thread apply all bt"])
            .stdin(Stdio::null())
            .stdout(Stdio::from(std::io::stderr().as_fd().try_clone_to_owned().expect("a copy of stderr")))
            .stderr(Stdio::null())
            .spawn();
        let Ok(mut gdb) = gdb else { return };
        let deadline = Instant::now() + Duration::from_secs(30);
        while gdb.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(50));
        }
        let _ = gdb.kill();
        let _ = gdb.wait();
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        if thread::panicking() {
            // Keep watching: a failed test must not hang the run on its way
            // out (say, in an exit handler waiting for a child).
            std::mem::forget(self.stop.take());
            return;
        }
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Polls `cond` every 5 ms until it holds or `limit` passes. For waiting on
/// an outside event (a process vanishing, a file appearing) with a ceiling.
pub fn wait_until(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(5));
    }
}

/// Raises the soft limit on open files to the hard limit if it is below
/// `need` (a fresh machine's soft limit is often 1,024), and fails the test
/// if the hard limit is below `need` too.
pub fn raise_fd_limit(need: u64) {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut limit = getrlimit(Resource::Nofile);
    if limit.current.is_some_and(|c| c < need) {
        limit.current = limit.maximum;
        setrlimit(Resource::Nofile, limit).expect("raising RLIMIT_NOFILE to its hard limit");
    }
    let limit = getrlimit(Resource::Nofile);
    assert!(
        limit.current.is_none_or(|c| c >= need),
        "RLIMIT_NOFILE is {:?} (hard {:?}); this test needs {need} open files",
        limit.current,
        limit.maximum
    );
}

/// Open fds of this process.
pub fn fd_count() -> usize {
    std::fs::read_dir("/proc/self/fd").map(|d| d.count()).unwrap_or(0).saturating_sub(1)
}

/// Status pages a process keeps for its pools' next workers (memfds; at
/// most 16), counted apart from other fds by leak checks.
pub fn spare_pages() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .flatten()
        .filter(|e| std::fs::read_link(e.path()).is_ok_and(|l| l.to_string_lossy().contains("multiproc-pool-worker")))
        .count()
}

/// Threads of this process.
pub fn thread_count() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status.lines().find_map(|l| l.strip_prefix("Threads:")).and_then(|v| v.trim().parse().ok()).unwrap()
}

/// The state letter and parent pid of a process, if it exists.
pub fn stat(pid: u32) -> Option<(char, u32)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let ppid = fields.next()?.parse().ok()?;
    Some((state, ppid))
}

/// Whether the process has ended: no /proc entry, or a zombie waiting for a
/// parent that is not us to reap it.
pub fn gone(pid: u32) -> bool {
    match stat(pid) {
        None => true,
        Some((state, _)) => state == 'Z' || state == 'X',
    }
}

/// Direct children of this process, with their state letters.
pub fn children() -> Vec<(u32, char)> {
    let me = std::process::id();
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        if let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() {
            if let Some((state, ppid)) = stat(pid) {
                if ppid == me {
                    out.push((pid, state));
                }
            }
        }
    }
    out.sort();
    out
}

/// Where cargo put the example binary `name` for this profile.
pub fn example(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap().parent().unwrap();
    dir.join("examples").join(name)
}

/// A fresh, empty directory under the system temp dir.
pub fn temp_dir(tag: &str) -> PathBuf {
    let dir =
        std::env::temp_dir().join(format!("multiproc-test-{}-{tag}-{:?}", std::process::id(), thread::current().id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Sends SIGKILL to `pid` (cleanup of strays after a failed assertion).
pub fn sigkill(pid: u32) {
    // Quietly: the process may be gone already.
    let _ = std::process::Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .stderr(std::process::Stdio::null())
        .status();
}

/// The names in /dev/shm now.
pub fn dev_shm() -> std::collections::BTreeSet<String> {
    std::fs::read_dir("/dev/shm")
        .map(|d| d.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default()
}

/// What a process holds that a leak would grow: fds (but the spare status
/// pages, a bounded cache), threads, children (and their states, so that
/// zombies show), memory mappings and `/dev/shm` entries.
#[derive(Debug, Clone, PartialEq)]
pub struct Holdings {
    pub fds: Vec<String>,
    pub threads: usize,
    pub children: Vec<(u32, char)>,
    pub mappings: usize,
    pub dev_shm: std::collections::BTreeSet<String>,
}

impl Holdings {
    /// What this process holds now.
    pub fn now() -> Holdings {
        let mut fds: Vec<String> = std::fs::read_dir("/proc/self/fd")
            .map(|d| {
                d.flatten().filter_map(|e| std::fs::read_link(e.path()).ok()).map(|p| p.display().to_string()).collect()
            })
            .unwrap_or_default();
        // The read_dir's own fd, and the bounded cache of status pages.
        fds.retain(|f| !f.starts_with("/proc/") && !f.contains("multiproc-pool-worker"));
        fds.sort();
        // Shared mappings only (`s` in the permissions): what a leaked
        // queue, lock, value, status page or segment would leave. Private
        // ones come and go with the allocator's arenas and glibc's cache of
        // exited threads' stacks, which grows with how many threads were
        // alive at once: a loaded machine counted 18 more after a test that
        // had leaked nothing.
        let mappings = std::fs::read_to_string("/proc/self/maps")
            .map(|m| m.lines().filter(|l| l.split_whitespace().nth(1).is_some_and(|p| p.ends_with('s'))).count())
            .unwrap_or(0);
        Holdings { fds, threads: thread_count(), children: children(), mappings, dev_shm: dev_shm() }
    }

    /// Whether `self` (later) holds no more than `before`: as many fds or
    /// fewer, no more threads, children or shared mappings (`slack` extra
    /// allowed: the bounded cache of spare status pages), no new `/dev/shm`
    /// entry.
    pub fn within(&self, before: &Holdings, slack: usize) -> bool {
        self.fds.len() <= before.fds.len()
            && self.threads <= before.threads
            && self.children.len() <= before.children.len()
            && self.children.iter().all(|&(_, s)| s != 'Z')
            && self.mappings <= before.mappings + slack
            && self.dev_shm.is_subset(&before.dev_shm)
    }
}

/// A leak check: the holdings at its creation, compared by
/// [`LeakGuard::check`] (which waits up to [`LONG`] for children and
/// threads being reaped). Use it in a binary, or a serial group, of its
/// own: the counts are process-wide, so other tests running beside it
/// would be counted too.
pub struct LeakGuard {
    before: Holdings,
    slack: usize,
}

impl LeakGuard {
    pub fn new() -> LeakGuard {
        LeakGuard { before: Holdings::now(), slack: 16 }
    }

    /// Panics, saying what grew, unless everything is back to what it was.
    pub fn check(&self, what: &str) {
        let mut now = Holdings::now();
        if !now.within(&self.before, self.slack) {
            wait_until(LONG, || {
                now = Holdings::now();
                now.within(&self.before, self.slack)
            });
        }
        assert!(
            now.within(&self.before, self.slack),
            "{what} leaked: spare status pages {} (at most 16); before {:#?}\nafter {now:#?}",
            spare_pages(),
            self.before
        );
        assert!(spare_pages() <= 16, "{} spare status pages", spare_pages());
    }
}

impl Default for LeakGuard {
    fn default() -> Self {
        LeakGuard::new()
    }
}

/// Checks that `docs/reliability.md`'s section between
/// `<!-- {section}:start -->` and `<!-- {section}:end -->` is `fresh`, the
/// table a test made from its own cases (`MULTIPROC_BLESS=1` rewrites it).
pub fn check_published(section: &str, fresh: &str) {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/reliability.md");
    let doc = std::fs::read_to_string(&path).unwrap_or_default();
    let (start, end) = (format!("<!-- {section}:start -->\n"), format!("<!-- {section}:end -->"));
    let span = doc.find(&start).map(|a| a + start.len()).zip(doc.find(&end));
    if span.map(|(a, b)| &doc[a..b]) == Some(fresh) {
        return;
    }
    if let (Some((a, b)), Some(_)) = (span, std::env::var_os("MULTIPROC_BLESS")) {
        std::fs::write(&path, format!("{}{fresh}{}", &doc[..a], &doc[b..])).unwrap();
        return;
    }
    panic!("docs/reliability.md's {section} table is stale; run with MULTIPROC_BLESS=1 to rewrite it:\n{fresh}");
}
