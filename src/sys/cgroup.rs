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

/// The mount point and root of each cgroup hierarchy, from
/// `/proc/self/mountinfo`: (fstype, super options, root, mount point).
fn cgroup_mounts() -> Vec<(String, String, String, PathBuf)> {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else { return Vec::new() };
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

fn find_base() -> Result<Base, String> {
    let own =
        std::fs::read_to_string("/proc/self/cgroup").map_err(|e| format!("/proc/self/cgroup cannot be read ({e})"))?;
    let mounts = cgroup_mounts();
    let mut why = Vec::new();
    // v2: "0::/path", with the memory controller enabled for children.
    if let Some(path) = own.lines().find_map(|l| l.strip_prefix("0::")) {
        if let Some((_, _, root, mount)) = mounts.iter().find(|m| m.0 == "cgroup2") {
            let dir = under(mount, root, path);
            match v2_ready(&dir) {
                Ok(()) => return Ok(Base { dir, version: 2 }),
                Err(e) => why.push(format!("cgroup v2 at {}: {e}", dir.display())),
            }
        }
    }
    // v1: "N:memory:/path" (or "N:cpu,memory:/path").
    let v1 = own.lines().find_map(|l| {
        let mut parts = l.splitn(3, ':');
        let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
        controllers.split(',').any(|c| c == "memory").then_some(path)
    });
    if let Some(path) = v1 {
        let mount = mounts.iter().find(|m| m.0 == "cgroup" && m.1.split(',').any(|o| o == "memory"));
        if let Some((_, _, root, mount)) = mount {
            let dir = under(mount, root, path);
            match writable(&dir) {
                Ok(()) => return Ok(Base { dir, version: 1 }),
                Err(e) => why.push(format!("cgroup v1 memory at {}: {e}", dir.display())),
            }
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
