//! Every fd multiproc creates is CLOEXEC, and a child receives only the fds
//! it needs: its control socket (and, under fork, the user's own fds, as
//! in Python), never another child's.
//!
//! One test in its own binary, so that no other test's fds interfere.

mod common;

use common::LONG;
use multiproc::{Process, StartMethod};

fn forever(_: ()) {
    loop {
        std::thread::park();
    }
}

/// `(fd, link target)` for every fd of this process.
fn open_fds() -> Vec<(i32, String)> {
    let dir = std::fs::read_dir("/proc/self/fd").unwrap();
    let mut fds: Vec<(i32, String)> = dir
        .flatten()
        .filter_map(|e| {
            let fd = e.file_name().to_string_lossy().parse().ok()?;
            let target = std::fs::read_link(e.path()).ok()?.to_string_lossy().into_owned();
            Some((fd, target))
        })
        .filter(|(_, target)| !target.starts_with("/proc/") || !target.ends_with("/fd"))
        .collect();
    fds.sort();
    fds
}

fn my_fds(_: ()) -> Vec<(i32, String)> {
    open_fds()
}

fn is_cloexec(fd: i32) -> bool {
    let info = std::fs::read_to_string(format!("/proc/self/fdinfo/{fd}")).unwrap();
    let flags = info.lines().find_map(|l| l.strip_prefix("flags:")).unwrap().trim();
    u32::from_str_radix(flags, 8).unwrap() & 0o2000000 != 0
}

#[test]
fn children_get_only_the_fds_they_need() {
    let _w = common::watchdog("fds");
    let inherited = open_fds();
    // A user fd, which a fork child inherits (as in Python) and the others
    // do not.
    let user_file = std::fs::File::open("/proc/self/status").unwrap();
    let user_fd = std::os::fd::AsRawFd::as_raw_fd(&user_file);
    // Other children, so that there are internal fds around to leak, and
    // a user fd opened between them, its number amid theirs: a fork child
    // closes the internal ones in runs of consecutive numbers, and must
    // keep this one.
    let start_others = || -> Vec<_> {
        (common::METHODS.iter().cycle().take(6))
            .map(|&m| Process::new(forever, ()).daemon(true).start_method(m).start().unwrap())
            .collect()
    };
    let mut others = start_others();
    let amid_file = std::fs::File::open("/proc/self/status").unwrap();
    let amid_fd = std::os::fd::AsRawFd::as_raw_fd(&amid_file);
    others.extend(start_others());

    // Every fd opened since the test began is CLOEXEC: multiproc's
    // sockets, pidfds and pipes, and Rust's own file.
    let new: Vec<(i32, String)> = open_fds().into_iter().filter(|fd| !inherited.contains(fd)).collect();
    assert!(new.len() >= 7, "the children's fds and the fork server's: {new:?}");
    for (fd, target) in new {
        assert!(is_cloexec(fd), "fd {fd} ({target}) is not CLOEXEC");
    }

    for method in common::METHODS {
        let child = Process::new(my_fds, ()).start_method(method).start().unwrap();
        let fds = child.join_timeout(LONG).unwrap();
        // What the child has beyond stdio and what this test process
        // inherited from its own environment.
        let extra: Vec<&(i32, String)> = fds.iter().filter(|fd| fd.0 > 2 && !inherited.contains(fd)).collect();
        let sockets = extra.iter().filter(|(_, t)| t.starts_with("socket:")).count();
        assert_eq!(sockets, 1, "{method}: only the control socket, got {fds:?}");
        assert!(!extra.iter().any(|(_, t)| t.contains("pidfd")), "{method}: another child's pidfd leaked: {fds:?}");
        assert!(!extra.iter().any(|(_, t)| t.starts_with("pipe:")), "{method}: a pipe leaked: {fds:?}");
        match method {
            StartMethod::Fork => {
                assert!(extra.iter().any(|(fd, _)| *fd == user_fd), "fork inherits user fds: {fds:?}");
                assert!(extra.iter().any(|(fd, _)| *fd == amid_fd), "fork inherits user fds: {fds:?}");
                assert_eq!(extra.len(), 3, "fork: the user's two files and the control socket, got {fds:?}");
            }
            _ => {
                assert_eq!(extra.len(), 1, "{method}: only the control socket, got {fds:?}");
                assert!(fds.iter().all(|fd| fd.0 <= 2 || fd == extra[0]), "{method}: nothing inherited, got {fds:?}");
            }
        }
    }
    for other in &others {
        other.kill().unwrap();
        let _ = other.join_timeout(LONG);
    }
}
