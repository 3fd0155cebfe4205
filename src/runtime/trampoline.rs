//! Turning a target function into a number every process of this
//! executable understands, and back.
//!
//! The number is the offset of a monomorphised trampoline from [`anchor`]:
//! ASLR moves the executable as one piece, so the offset is the same in a
//! forked, a re-exec'd and a fork-server child. An offset travels with a
//! tag, a checksum of the offset keyed on this build's fingerprint, and is
//! turned back into a function only when the tag matches. That refuses a
//! corrupt id and an id from another build. It is not a secret: ids are
//! only ever accepted from the parent over a private socket (a peer on a
//! shared channel must be authenticated before any id it sends is read).
//!
//! `unsafe_code` is allowed in this file (it is not an OS call, so it is
//! not in `sys`): making the one value of a zero-sized fn type
//! ([`conjure`]) and turning a checked address back into a fn pointer
//! ([`resolve`], [`resolve_chunk`]). Each block says why it is sound.

#![allow(unsafe_code)]

use std::any::TypeId;
use std::cell::Cell;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::OnceLock;

/// A reply-producing entry point: the encoded argument in, a whole reply
/// frame out.
pub(crate) type Trampoline = fn(&[u8]) -> Vec<u8>;

/// A pool's entry point: `count` encoded arguments in, their outcomes out
/// through a context of type `C` (the worker's result buffer and status
/// page).
pub(crate) type ChunkTrampoline<C> = fn(&[u8], u32, &mut C);

/// Which kind of entry point an id names; part of the tag, so that an id of
/// one kind never resolves as the other. A chunk entry point's domain also
/// names its context type, so that an id made for one context type never
/// resolves as another.
#[derive(Clone, Copy, Hash)]
enum Domain {
    Task,
    Chunk(TypeId),
}

/// The compile-time check that a target can be named in another process:
/// one constant per target type, so that a capturing closure gets one
/// error, wherever it is used (the error's notes name the closure by its
/// place in the caller's source: `{closure@src/main.rs:3:41}`).
pub(crate) struct Nameable<F>(std::marker::PhantomData<F>);

impl<F> Nameable<F> {
    pub(crate) const CHECK: () = assert!(
        std::mem::size_of::<F>() == 0,
        "multiproc: this target cannot run in another process: it is a closure that captures variables (or a fn \
         pointer). Use a fn item (`fn work(x: u64) -> u64`) or a closure that captures nothing, and pass the values \
         it needs through its argument (a tuple for several): `Process::new(work, (x, y))`. The closure is named \
         in the notes below as {{closure@<your file>:<line>}}."
    );
}

/// Produces the one value of the zero-sized function type `F`.
///
/// On stable Rust only fn items, closures and fn pointers implement `Fn`;
/// fn pointers are not zero-sized (checked at compile time), so `F` is a fn
/// item or a closure that captures nothing: a type with no fields and no
/// invariant, whose value can be made from nothing.
pub(crate) fn conjure<F, A, R>() -> F
where
    F: Fn(A) -> R + Copy,
{
    value_of_fn_type()
}

/// Produces the one value of the zero-sized method type `F` (a fn item
/// such as `Counter::add`, or a closure that captures nothing, taking the
/// object and one argument): as [`conjure`], whose safety argument holds
/// for every `Fn` signature.
pub(crate) fn conjure_method<F, T, A, R>() -> F
where
    F: Fn(&mut T, A) -> R + Copy,
{
    value_of_fn_type()
}

/// The one value of `F`, which its callers' `Fn` bounds make a fn item, a
/// captureless closure or a fn pointer, and the check below zero-sized:
/// a fn item or a captureless closure.
fn value_of_fn_type<F: Copy>() -> F {
    let () = Nameable::<F>::CHECK;
    // SAFETY: `F` is zero-sized (checked at compile time), so reading it
    // through a dangling but aligned, non-null pointer touches no memory;
    // as a fn item or captureless closure type (every caller bounds it by
    // `Fn`) it has no invariant beyond existing, and it is `Copy`, so this
    // is no different from copying the value the caller named.
    unsafe { std::ptr::NonNull::<F>::dangling().as_ptr().read() }
}

/// The fixed point that task offsets are measured from.
#[inline(never)]
fn anchor() -> u64 {
    // A distinctive body, so that the linker has no reason to fold it with
    // another function (folding would still be harmless: the address would
    // stay fixed within the executable).
    std::hint::black_box(0x6d75_6c74_6970_726f)
}

fn anchor_addr() -> usize {
    anchor as fn() -> u64 as usize
}

/// The build fingerprint of this executable: its GNU build-id, or, when the
/// linker wrote none, a hash of the executable file.
pub(crate) fn fingerprint() -> &'static [u8] {
    static FP: OnceLock<Vec<u8>> = OnceLock::new();
    FP.get_or_init(|| {
        crate::sys::build_id().unwrap_or_else(|| {
            let mut h = DefaultHasher::new();
            match std::fs::read("/proc/self/exe") {
                Ok(bytes) => bytes.hash(&mut h),
                Err(_) => anchor_addr().hash(&mut h),
            }
            h.finish().to_le_bytes().to_vec()
        })
    })
}

fn tag(offset: u64, domain: Domain) -> u64 {
    // The hasher's state after the fingerprint, computed once: a pool
    // worker makes a tag per chunk.
    static SEEDED: OnceLock<DefaultHasher> = OnceLock::new();
    let mut h = SEEDED
        .get_or_init(|| {
            let mut h = DefaultHasher::new();
            fingerprint().hash(&mut h);
            h
        })
        .clone();
    offset.hash(&mut h);
    0x6d00u16.hash(&mut h);
    domain.hash(&mut h);
    h.finish()
}

fn id_of_addr(addr: usize, domain: Domain) -> (u64, u64) {
    let offset = addr.wrapping_sub(anchor_addr()) as u64;
    (offset, tag(offset, domain))
}

/// The address an id names, if its tag is right for this build and domain.
fn resolve_addr(offset: u64, tag_received: u64, domain: Domain) -> Option<usize> {
    (tag_received == tag(offset, domain)).then(|| anchor_addr().wrapping_add(offset as usize))
}

/// The id of `call`: its offset from the anchor, and the offset's tag.
pub(crate) fn id_of(call: Trampoline) -> (u64, u64) {
    id_of_addr(call as usize, Domain::Task)
}

/// The id of a pool entry point.
pub(crate) fn chunk_id_of<C: 'static>(call: ChunkTrampoline<C>) -> (u64, u64) {
    id_of_addr(call as usize, Domain::Chunk(TypeId::of::<C>()))
}

/// The trampoline an id names, if its tag is right for this build.
pub(crate) fn resolve(offset: u64, tag_received: u64) -> Option<Trampoline> {
    let addr = resolve_addr(offset, tag_received, Domain::Task)?;
    // SAFETY: the tag matches, so the offset was made by `id_of` from a
    // real `Trampoline` in this same build (same fingerprint, same domain):
    // the address is that trampoline's here, ASLR having moved the anchor
    // and it together. Ids come only from the parent over a private socket
    // (see the module documentation), so a matching tag is not forged.
    Some(unsafe { std::mem::transmute::<usize, Trampoline>(addr) })
}

/// The pool entry point an id names, if its tag is right for this build
/// and context type.
pub(crate) fn resolve_chunk<C: 'static>(offset: u64, tag_received: u64) -> Option<ChunkTrampoline<C>> {
    // A pool worker resolves the same id chunk after chunk: the last id
    // whose tag matched is remembered, and not hashed again.
    thread_local! {
        static LAST: Cell<Option<(u64, u64, TypeId)>> = const { Cell::new(None) };
    }
    let key = (offset, tag_received, TypeId::of::<C>());
    let addr = if LAST.get() == Some(key) {
        anchor_addr().wrapping_add(offset as usize)
    } else {
        let addr = resolve_addr(offset, tag_received, Domain::Chunk(TypeId::of::<C>()))?;
        LAST.set(Some(key));
        addr
    };
    // SAFETY: as in `resolve`, for ids made by `chunk_id_of::<C>` (the
    // domain, with `C`'s `TypeId`, which is the same in every process of
    // one build, is part of the tag: a task id, or a chunk id made for
    // another context type, never resolves here).
    Some(unsafe { std::mem::transmute::<usize, ChunkTrampoline<C>>(addr) })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn echo(input: &[u8]) -> Vec<u8> {
        input.to_vec()
    }

    #[test]
    fn ids_resolve_to_the_same_function_and_garbage_does_not() {
        let (offset, tag) = id_of(echo);
        let call = resolve(offset, tag).unwrap();
        assert_eq!(call(b"hi"), b"hi");
        assert!(resolve(offset, tag ^ 1).is_none());
        assert!(resolve(offset + 8, tag).is_none());
        assert!(resolve(0xdead_beef, 0x1234).is_none());
    }

    fn count(_: &[u8], n: u32, out: &mut Vec<u8>) {
        out.push(n as u8);
    }

    #[test]
    fn chunk_ids_live_in_their_own_domain_and_context_type() {
        let (offset, tag) = chunk_id_of(count);
        let mut out = Vec::new();
        resolve_chunk::<Vec<u8>>(offset, tag).unwrap()(b"", 3, &mut out);
        assert_eq!(out, [3]);
        assert!(resolve(offset, tag).is_none());
        assert!(resolve_chunk::<String>(offset, tag).is_none(), "another context type");
        let (offset, tag) = id_of(echo);
        assert!(resolve_chunk::<Vec<u8>>(offset, tag).is_none());
    }

    #[test]
    fn fingerprint_is_stable_and_non_empty() {
        assert!(!fingerprint().is_empty());
        assert_eq!(fingerprint(), fingerprint());
    }
}
