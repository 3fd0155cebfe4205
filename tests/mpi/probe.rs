//! A raw MPI program for the multi-host test harness (tests/mpi_hosts.rs):
//! every rank sends rank 0 the host it runs on and the square of its rank;
//! rank 0 prints one line per rank. It checks the network-namespace hosts
//! and the `mpirun` set-up that the MPI pool's tests run on.

use mpi::point_to_point::{Destination, Source};
use mpi::topology::Communicator;

fn main() {
    let universe = mpi::initialize().expect("run me under mpirun");
    let world = universe.world();
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default().trim().to_string();
    let me = world.rank();
    if me == 0 {
        println!("rank 0 on {host}: 0");
        for r in 1..world.size() {
            let (name, _) = world.process_at_rank(r).receive_vec::<u8>();
            let (square, _) = world.process_at_rank(r).receive::<u64>();
            println!("rank {r} on {}: {square}", String::from_utf8_lossy(&name));
        }
    } else {
        let root = world.process_at_rank(0);
        root.send(host.as_bytes());
        root.send(&(u64::from(me.unsigned_abs()).pow(2)));
    }
}
