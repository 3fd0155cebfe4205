//! A real segmentation fault, for the fault matrix: a store to an address
//! no mapping covers, as a bug in C code makes. (A SIGSEGV sent with
//! kill(2) does not end a Rust process: std's stack-overflow handler sees
//! no guard-page fault, restores the default action and returns, and the
//! process goes on until the next one.)
//!
//! `unsafe_code` is allowed in this file: the store is the point.

#![allow(unsafe_code)]

/// Ends this process with SIGSEGV, as a crash does.
pub fn segfault() -> ! {
    // SAFETY: not safe, on purpose: address 16 is never mapped (the first
    // page is kept unmapped by Linux's mmap_min_addr), so the store faults
    // and the kernel ends the process with SIGSEGV before it returns.
    unsafe { std::ptr::write_volatile(std::ptr::without_provenance_mut::<u64>(16), 1) };
    unreachable!("a store to address 16 did not fault")
}
