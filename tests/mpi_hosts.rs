//! The MPI pool across hosts: three hosts made here as network namespaces
//! joined by a bridge in a namespace of its own (tests/mpi/hosts.sh; no
//! traffic leaves the machine), `mpirun` entering them through an rsh
//! agent (tests/mpi/rsh.sh), Open MPI's TCP transport between them. A raw
//! MPI job runs first, then the pool probe (tests/mpi/pool_probe.rs) with
//! each worker rank on its own host. Runs with the `mpi` feature, as root
//! (CI runs it); skips with a note otherwise.

#![cfg(feature = "mpi")]

mod common;

use std::path::PathBuf;
use std::process::Command;

fn script(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/mpi").join(name)
}

/// Removes the hosts when dropped, whatever the test did.
struct Hosts(String);

impl Drop for Hosts {
    fn drop(&mut self) {
        let _ = Command::new(script("hosts.sh")).args(["down", &self.0]).status();
    }
}

#[test]
fn three_namespace_hosts_run_mpi_jobs_and_the_mpi_pool() {
    let _w = common::watchdog_for("three namespace hosts", std::time::Duration::from_secs(300));
    if !rustix::process::geteuid().is_root() || Command::new("mpirun").arg("--version").output().is_err() {
        eprintln!("skipped: needs root and Open MPI's mpirun");
        return;
    }
    let prefix = format!("mpt{}", std::process::id() % 100_000);
    let up = Command::new(script("hosts.sh")).args(["up", &prefix, "3"]).output().unwrap();
    let hosts = Hosts(prefix.clone());
    assert!(up.status.success(), "hosts.sh up: {}", String::from_utf8_lossy(&up.stderr));
    let subnet = String::from_utf8(up.stdout).unwrap().trim().to_string();
    let names: Vec<String> = (1..=3).map(|i| format!("{prefix}-h{i}")).collect();
    let dir = common::temp_dir("mpi-hosts");
    let hostfile = dir.join("hostfile");
    std::fs::write(&hostfile, names.iter().map(|h| format!("{h} slots=1\n")).collect::<String>()).unwrap();
    let run = |example: &str| {
        Command::new(script("hosts.sh"))
            .args(["run", &names[0], "mpirun", "--allow-run-as-root", "-np", "3", "--hostfile"])
            .arg(&hostfile)
            .args(["--mca", "plm_rsh_agent"])
            .arg(script("rsh.sh"))
            .args(["--mca", "btl", "tcp,self", "--mca", "oob_tcp_if_include", &subnet])
            .args(["--mca", "btl_tcp_if_include", &subnet])
            .arg(common::example(example))
            .output()
            .unwrap()
    };
    // A raw MPI program first: the hosts and the launcher work.
    let out = run("mpi_hosts_probe");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "mpirun failed: {stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    let mut lines: Vec<&str> = stdout.lines().collect();
    lines.sort_unstable();
    let want: Vec<String> = (0..3).map(|r| format!("rank {r} on {}: {}", names[r], r * r)).collect();
    assert_eq!(lines, want, "each rank on its own host");
    // Then the MPI pool across them: every method, every result checked
    // by the probe, each worker rank on its own host.
    let out = run("mpi_pool_probe");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "the pool probe failed: {stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    for (r, host) in names.iter().enumerate().skip(1) {
        assert!(stdout.contains(&format!("placed rank {r} on {host}\n")), "rank {r} on {host}: {stdout}");
    }
    assert!(stdout.contains("ok terminate frees the ranks"), "the probe ran to its end: {stdout}");
    drop(hosts);
    assert!(
        !String::from_utf8(Command::new("ip").args(["netns", "list"]).output().unwrap().stdout)
            .unwrap()
            .contains(&prefix),
        "the hosts were removed"
    );
    std::fs::remove_dir_all(dir).unwrap();
}
