//! Shared memory by name, as Python's `multiprocessing.shared_memory`: the
//! parent creates a block and writes into it, a child opens it by name,
//! reads, and writes back, the parent reads the child's byte, then
//! unlinks the block. Python's `buf[a:b]` slicing is `read_at` and
//! `write_at` here (safe copies; `buf()` lends a plain slice to callers who rule out concurrent writers).
//!
//! ```text
//! cargo run --example shared_memory
//! ```
//!
//! The Python it mirrors:
//!
//! ```text
//! shm_a = shared_memory.SharedMemory(create=True, size=10)
//! shm_a.buf[:4] = bytearray([22, 33, 44, 55])
//! # in another process:
//! shm_b = shared_memory.SharedMemory(shm_a.name)
//! bytes(shm_b.buf[:5])  # b'\x16!,7\x00'
//! shm_b.buf[4] = 99
//! shm_b.close()
//! # back in the first:
//! shm_a.close()
//! shm_a.unlink()
//! ```

use multiproc::{Process, SharedMemory};

/// Opens the block by name, reads the first five bytes, sets the fifth.
fn child(name: String) -> multiproc::Result<Vec<u8>> {
    let shm_b = SharedMemory::open(&name)?;
    let mut seen = vec![0; 5];
    shm_b.read_at(0, &mut seen)?;
    shm_b.write_at(4, &[99])?;
    Ok(seen)
}

fn main() -> multiproc::Result<()> {
    let shm_a = SharedMemory::create(None, 10)?;
    shm_a.write_at(0, &[22, 33, 44, 55])?;
    let name = shm_a.name().expect("a named block").to_owned();
    println!("created a block of {} bytes (its name starts with psm_: {})", shm_a.size(), name.starts_with("psm_"));

    let seen = Process::new(child, name.clone()).start()?.join()??;
    println!("the child saw {seen:?} and set byte 4");
    let mut now = [0; 5];
    shm_a.read_at(0, &mut now)?;
    println!("the parent reads {now:?}");

    shm_a.unlink()?;
    println!("unlinked; opening it again fails: {}", SharedMemory::open(&name).is_err());
    Ok(())
}
