//! The MPI pool on one host: `mpirun --oversubscribe -np 3` on the probe
//! program (tests/mpi/pool_probe.rs), which runs every pool method on
//! ranks 1 and 2 and checks each result; and a job where one rank runs
//! another build, which the pool must refuse before sending any task.
//! Runs with the `mpi` feature (CI builds the examples first); skips with a
//! note when `mpirun` is missing.

#![cfg(feature = "mpi")]

mod common;

use std::process::{Command, Output};
use std::time::Duration;

fn mpirun() -> Option<Command> {
    if Command::new("mpirun").arg("--version").output().is_err() {
        eprintln!("skipped: needs Open MPI's mpirun (apt-get install openmpi-bin)");
        return None;
    }
    let mut cmd = Command::new("mpirun");
    cmd.args(["--allow-run-as-root", "--oversubscribe"]);
    Some(cmd)
}

fn text(out: &Output) -> String {
    format!("{}\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

#[test]
fn every_pool_method_runs_on_mpi_ranks() {
    let _w = common::watchdog_for("the MPI pool probe", Duration::from_secs(300));
    let Some(mut cmd) = mpirun() else { return };
    let out = cmd.args(["-np", "3"]).arg(common::example("mpi_pool_probe")).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "the probe failed:\n{}", text(&out));
    for check in [
        "ok pool of 2 ranks",
        "ok map runs on ranks >= 1",
        "ok map\n",
        "ok map of 3 MiB arguments and results",
        "ok imap imap_unordered",
        "ok starmap map_async starmap_async",
        "ok apply apply_async callback submit wait as_completed",
        "ok errors and panics fail alone",
        "ok timeouts refused, ranks held",
        "ok cancel",
        "ok stats name ranks and hosts",
        "ok a local pool inside a rank",
        "ok close join",
        "ok initializer maxtasksperchild",
        "ok terminate frees the ranks",
    ] {
        assert!(stdout.contains(check), "missing {check:?} in:\n{}", text(&out));
    }
    assert!(!String::from_utf8_lossy(&out.stderr).contains("three is not allowed"), "a rank printed a task's panic");
}

#[test]
fn a_rank_running_another_build_is_refused_by_name() {
    let _w = common::watchdog_for("the MPI build mismatch", Duration::from_secs(120));
    let Some(mut cmd) = mpirun() else { return };
    // Rank 0 and 1 run the probe; rank 2 runs another program (another
    // build fingerprint) that links multiproc too.
    let out = cmd
        .args(["-np", "2"])
        .arg(common::example("mpi_pool_probe"))
        .arg("--expect-mismatch")
        .args([":", "-np", "1"])
        .arg(common::example("mpi_map"))
        .output()
        .unwrap();
    assert!(out.status.success(), "the probe failed:\n{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("ok mismatch refused: MPI rank 2 on host"), "{}", text(&out));
    assert!(stdout.contains("another build"), "{}", text(&out));
}

#[test]
fn a_rank_that_dies_ends_the_job_instead_of_hanging() {
    let _w = common::watchdog_for("an MPI rank's death", Duration::from_secs(120));
    let Some(mut cmd) = mpirun() else { return };
    let out = cmd.args(["-np", "3"]).arg(common::example("mpi_pool_probe")).arg("--crash").output().unwrap();
    let all = text(&out);
    assert!(!out.status.success(), "mpirun reports the job failed:\n{all}");
    assert!(all.contains("crashing a rank"), "{all}");
    assert!(!all.contains("rank 0 went on"), "{all}");
    assert!(
        all.contains("signal 6") || all.contains("Aborted") || all.contains("exited on signal"),
        "mpirun names the death:\n{all}"
    );
}

#[test]
fn outside_mpirun_the_error_says_how_to_start() {
    let err = multiproc::mpi::pool().unwrap_err();
    assert_eq!(err.kind(), multiproc::ErrorKind::InvalidState);
    assert!(err.to_string().contains("mpirun -np"), "{err}");
    assert_eq!(multiproc::mpi::rank(), None);
}
