//! Shared memory by name, as Python's `multiprocessing.shared_memory`: the
//! parent creates a block and writes into it, a child opens it by name,
//! reads, and writes back, the parent reads the child's byte, then
//! unlinks the block.
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
    let mut shm_b = SharedMemory::open(&name)?;
    let seen = shm_b.buf()[..5].to_vec();
    shm_b.buf_mut()[4] = 99;
    Ok(seen)
}

fn main() -> multiproc::Result<()> {
    let mut shm_a = SharedMemory::create(None, 10)?;
    shm_a.buf_mut()[..4].copy_from_slice(&[22, 33, 44, 55]);
    let name = shm_a.name().expect("a named block").to_owned();
    println!("created a block of {} bytes (its name starts with psm_: {})", shm_a.size(), name.starts_with("psm_"));

    let seen = Process::new(child, name.clone()).start()?.join()??;
    println!("the child saw {seen:?} and set byte 4");
    println!("the parent reads {:?}", &shm_a.buf()[..5]);

    shm_a.unlink()?;
    println!("unlinked; opening it again fails: {}", SharedMemory::open(&name).is_err());
    Ok(())
}
