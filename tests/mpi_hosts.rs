//! The multi-host set-up of the MPI tests: three hosts made here as
//! network namespaces joined by a bridge in a namespace of its own
//! (tests/mpi/hosts.sh; no traffic leaves the machine), `mpirun` entering
//! them through an rsh agent (tests/mpi/rsh.sh), Open MPI's TCP transport
//! between them. Runs with the `mpi` feature, as root (CI runs it); skips
//! with a note otherwise.

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
fn three_namespace_hosts_run_one_mpi_job() {
    let _w = common::watchdog_for("three namespace hosts", std::time::Duration::from_secs(120));
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
    let out = Command::new(script("hosts.sh"))
        .args(["run", &names[0], "mpirun", "--allow-run-as-root", "-np", "3", "--hostfile"])
        .arg(&hostfile)
        .args(["--mca", "plm_rsh_agent"])
        .arg(script("rsh.sh"))
        .args(["--mca", "btl", "tcp,self", "--mca", "oob_tcp_if_include", &subnet])
        .args(["--mca", "btl_tcp_if_include", &subnet])
        .arg(common::example("mpi_hosts_probe"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "mpirun failed: {stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    let mut lines: Vec<&str> = stdout.lines().collect();
    lines.sort_unstable();
    let want: Vec<String> = (0..3).map(|r| format!("rank {r} on {}: {}", names[r], r * r)).collect();
    assert_eq!(lines, want, "each rank on its own host");
    drop(hosts);
    assert!(
        !String::from_utf8(Command::new("ip").args(["netns", "list"]).output().unwrap().stdout)
            .unwrap()
            .contains(&prefix),
        "the hosts were removed"
    );
    std::fs::remove_dir_all(dir).unwrap();
}
