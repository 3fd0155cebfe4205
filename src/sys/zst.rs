//! Turning task ids back into functions.

/// Produces a value of the zero-sized type `F`.
///
/// `F` is the type of a fn item or of a closure that captures nothing: such
/// a type has no fields and no invariant, so its one value can be made from
/// nothing. Callers restrict `F` to `Fn(A) -> R + Copy`, which on stable
/// Rust only fn items and closures implement; the size check is enforced at
/// compile time.
pub(crate) fn conjure<F: Copy>() -> F {
    const { assert!(std::mem::size_of::<F>() == 0) };
    // SAFETY: `F` is zero-sized (checked at compile time), so reading it
    // through a dangling but aligned, non-null pointer touches no memory;
    // and as a fn item or captureless closure type it has no invariant
    // beyond existing. It is also `Copy`, so this is no different from
    // copying the value the parent holds.
    unsafe { std::ptr::NonNull::<F>::dangling().as_ptr().read() }
}

/// The function at `anchor + offset`, as a task trampoline.
///
/// Callers only pass offsets that the parent computed from a real
/// trampoline in this same executable (verified by the build fingerprint
/// and the task tag).
pub(crate) fn fn_at(anchor: usize, offset: u64) -> fn(&[u8]) -> Vec<u8> {
    let addr = anchor.wrapping_add(offset as usize);
    // SAFETY: the task protocol only hands us offsets taken from
    // `trampoline::<F, A, R> as fn(&[u8]) -> Vec<u8>` in a process running
    // the same executable (same build fingerprint), and authenticated by a
    // keyed tag; ASLR moves the anchor and the trampoline together, so
    // `addr` is that trampoline's address here.
    unsafe { std::mem::transmute::<usize, fn(&[u8]) -> Vec<u8>>(addr) }
}
