//! Memory cgroups: a group of its own per child, with a hard limit, made
//! under the cgroup this process lives in when it may write there (root,
//! or a delegated subtree). Both hierarchies: v2 (`memory.max`,
//! `memory.events`, `memory.peak`) and v1's memory controller
//! (`memory.limit_in_bytes`, `memory.oom_control`,
//! `memory.max_usage_in_bytes`), whichever holds the memory controller.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

/// Where this process may make memory groups, found once.
#[derive(Debug)]
struct Base {
    dir: PathBuf,
    version: u8,
}

static BASE: OnceLock<Result<Base, String>> = OnceLock::new();
static NEXT: AtomicU64 = AtomicU64::new(0);

/// The cgroup version under which memory groups would be made (1 or 2),
/// or why none can be.
pub(crate) fn memory_groups() -> Result<u8, String> {
    base().map(|b| b.version)
}

fn base() -> Result<&'static Base, String> {
    BASE.get_or_init(find_base).as_ref().map_err(Clone::clone)
}

/// The mount point and root of each cgroup hierarchy in `mountinfo`
/// (`/proc/self/mountinfo`'s text): (fstype, super options, root, mount
/// point).
fn cgroup_mounts(info: &str) -> Vec<(String, String, String, PathBuf)> {
    info.lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let fields: Vec<&str> = left.split(' ').collect();
            let mut tail = right.split(' ');
            let fstype = tail.next()?;
            let _source = tail.next()?;
            let options = tail.next().unwrap_or("");
            if fstype != "cgroup" && fstype != "cgroup2" {
                return None;
            }
            Some((fstype.to_owned(), options.to_owned(), fields.get(3)?.to_string(), PathBuf::from(fields.get(4)?)))
        })
        .collect()
}

/// `path` (from `/proc/self/cgroup`) under the hierarchy mounted at
/// `mount` whose root is `root`.
fn under(mount: &Path, root: &str, path: &str) -> PathBuf {
    let rel = path.strip_prefix(root).unwrap_or(path).trim_start_matches('/');
    mount.join(rel)
}

/// This process's own cgroup directories, from its `/proc/self/cgroup`
/// text `own` and `mountinfo`: in the v2 hierarchy, and in the v1
/// hierarchy that has the memory controller (either may be missing).
fn own_dirs(own: &str, mountinfo: &str) -> (Option<PathBuf>, Option<PathBuf>) {
    let mounts = cgroup_mounts(mountinfo);
    // v2: "0::/path".
    let v2 = own.lines().find_map(|l| l.strip_prefix("0::")).and_then(|path| {
        let (_, _, root, mount) = mounts.iter().find(|m| m.0 == "cgroup2")?;
        Some(under(mount, root, path))
    });
    // v1: "N:memory:/path" (or "N:cpu,memory:/path").
    let v1 = own
        .lines()
        .find_map(|l| {
            let mut parts = l.splitn(3, ':');
            let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
            controllers.split(',').any(|c| c == "memory").then_some(path)
        })
        .and_then(|path| {
            let (_, _, root, mount) =
                mounts.iter().find(|m| m.0 == "cgroup" && m.1.split(',').any(|o| o == "memory"))?;
            Some(under(mount, root, path))
        });
    (v2, v1)
}

fn find_base() -> Result<Base, String> {
    let own =
        std::fs::read_to_string("/proc/self/cgroup").map_err(|e| format!("/proc/self/cgroup cannot be read ({e})"))?;
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let (v2, v1) = own_dirs(&own, &mountinfo);
    let mut why = Vec::new();
    // v2 first, with the memory controller enabled for children.
    if let Some(dir) = v2 {
        match v2_ready(&dir) {
            Ok(()) => return Ok(Base { dir, version: 2 }),
            Err(e) => why.push(format!("cgroup v2 at {}: {e}", dir.display())),
        }
    }
    if let Some(dir) = v1 {
        match writable(&dir) {
            Ok(()) => return Ok(Base { dir, version: 1 }),
            Err(e) => why.push(format!("cgroup v1 memory at {}: {e}", dir.display())),
        }
    }
    if why.is_empty() {
        why.push("no cgroup hierarchy has the memory controller".to_owned());
    }
    Err(why.join("; "))
}

fn writable(dir: &Path) -> Result<(), String> {
    rustix::fs::access(dir, rustix::fs::Access::WRITE_OK)
        .map_err(|e| format!("this process may not make groups there ({})", io::Error::from(e)))
}

/// A v2 group may have memory-limited children when the memory controller
/// is in its `cgroup.subtree_control` (enabled here if it can be: the
/// root group, or one without processes of its own).
fn v2_ready(dir: &Path) -> Result<(), String> {
    let read = |f: &str| std::fs::read_to_string(dir.join(f)).unwrap_or_default();
    let has = |s: String| s.split_whitespace().any(|c| c == "memory");
    if !has(read("cgroup.controllers")) {
        return Err("the memory controller is not available to this group".to_owned());
    }
    writable(dir)?;
    if has(read("cgroup.subtree_control")) {
        return Ok(());
    }
    std::fs::write(dir.join("cgroup.subtree_control"), "+memory").map_err(|e| {
        format!("the memory controller cannot be enabled for its children ({e}; a group with processes of its own cannot delegate it)")
    })
}

/// A memory group of its own for one child: made with its limit, joined
/// by the child ([`join_memory_group`]), read after the child ended, and
/// removed when dropped (it is empty by then).
#[derive(Debug)]
pub(crate) struct MemoryGroup {
    dir: PathBuf,
    version: u8,
    limit: u64,
}

impl MemoryGroup {
    /// A new group under this process's own, capped at `limit` bytes, with
    /// no swap where the kernel lets us say so.
    #[doc(alias("memory.max", "memory.limit_in_bytes"))]
    pub(crate) fn create(limit: u64) -> io::Result<MemoryGroup> {
        let base = base().map_err(io::Error::other)?;
        let name = format!(
            "multiproc-{}-{}",
            rustix::process::getpid().as_raw_nonzero(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let dir = base.dir.join(name);
        std::fs::create_dir(&dir)?;
        let group = MemoryGroup { dir, version: base.version, limit };
        let (max, swap) = match group.version {
            2 => ("memory.max", "memory.swap.max"),
            _ => ("memory.limit_in_bytes", "memory.memsw.limit_in_bytes"),
        };
        std::fs::write(group.dir.join(max), limit.to_string())?;
        // v2 counts swap apart (0: none); v1's memsw counts memory and swap
        // together (the same limit: none). Absent without swap accounting.
        let _ =
            std::fs::write(group.dir.join(swap), if group.version == 2 { "0".to_owned() } else { limit.to_string() });
        Ok(group)
    }

    /// The limit, in bytes.
    pub(crate) fn limit(&self) -> u64 {
        self.limit
    }

    /// The group's directory, for the child to join.
    pub(crate) fn path(&self) -> &Path {
        &self.dir
    }

    /// How many processes of the group the kernel's OOM killer ended.
    #[doc(alias("memory.events", "memory.oom_control", "oom_kill"))]
    pub(crate) fn oom_kills(&self) -> u64 {
        let file = if self.version == 2 { "memory.events" } else { "memory.oom_control" };
        std::fs::read_to_string(self.dir.join(file))
            .ok()
            .and_then(|s| s.lines().find_map(|l| l.strip_prefix("oom_kill ")?.trim().parse().ok()))
            .unwrap_or(0)
    }

    /// The group's peak memory use in bytes, where the kernel keeps it
    /// (`memory.peak` needs Linux 5.19 for v2).
    #[doc(alias("memory.peak", "memory.max_usage_in_bytes"))]
    pub(crate) fn peak(&self) -> Option<u64> {
        let file = if self.version == 2 { "memory.peak" } else { "memory.max_usage_in_bytes" };
        std::fs::read_to_string(self.dir.join(file)).ok()?.trim().parse().ok()
    }
}

impl Drop for MemoryGroup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(&self.dir);
    }
}

/// Moves the calling process into the group at `dir`.
pub(crate) fn join_memory_group(dir: &Path) -> io::Result<()> {
    std::fs::write(dir.join("cgroup.procs"), "0")
}

/// What the group at `dir` uses now, in bytes (`memory.current`, or v1's
/// `memory.usage_in_bytes`).
#[doc(alias("memory.current", "memory.usage_in_bytes"))]
pub(crate) fn memory_group_usage(dir: &Path) -> Option<u64> {
    let read = |f: &str| std::fs::read_to_string(dir.join(f)).ok()?.trim().parse().ok();
    read("memory.current").or_else(|| read("memory.usage_in_bytes"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_v2_only_system_finds_its_unified_group() {
        // A systemd host: everything in one v2 hierarchy.
        let own = "0::/user.slice/user-1000.slice/session-2.scope\n";
        let info = "25 30 0:23 / /sys/fs/cgroup rw,nosuid shared:9 - cgroup2 cgroup2 rw,nsdelegate\n\
                    30 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw\n";
        let (v2, v1) = own_dirs(own, info);
        assert_eq!(v2.unwrap(), Path::new("/sys/fs/cgroup/user.slice/user-1000.slice/session-2.scope"));
        assert_eq!(v1, None);
    }

    #[test]
    fn a_container_sees_its_group_from_its_mount_root() {
        // A cgroup namespace's root is mounted; the path is relative to it.
        let own = "0::/\n";
        let info = "700 690 0:26 / /sys/fs/cgroup ro,nosuid - cgroup2 cgroup rw\n";
        assert_eq!(own_dirs(own, info).0.unwrap(), Path::new("/sys/fs/cgroup"));
        // A bind of a sub-tree: the mount's root is cut from the path.
        let own = "0::/docker/abc\n";
        let info = "700 690 0:26 /docker/abc /sys/fs/cgroup rw - cgroup2 cgroup rw\n";
        assert_eq!(own_dirs(own, info).0.unwrap(), Path::new("/sys/fs/cgroup"));
    }

    #[test]
    fn a_hybrid_system_finds_the_v1_memory_hierarchy() {
        let own = "4:memory:/process_api/a9\n1:cpu,cpuacct:/\n0::/\n";
        let info = "31 25 0:27 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n\
                    32 25 0:28 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu,cpuacct\n\
                    33 25 0:29 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n";
        let (v2, v1) = own_dirs(own, info);
        assert_eq!(v2.unwrap(), Path::new("/sys/fs/cgroup/unified"));
        assert_eq!(v1.unwrap(), Path::new("/sys/fs/cgroup/memory/process_api/a9"));
    }
}
