//! Plain numbers, strings and vectors of numbers skip serde in items (pool
//! chunks, queue and connection messages).
//!
//! postcard spends about 4 ns turning a `u64` into a varint and 2 ns
//! turning it back, where copying 8 bytes costs well under one; and it
//! writes a `Vec<u8>` one element at a time (about 1 ms per MiB). The
//! choice is made per type through `TypeId`, which the compiler folds to a
//! constant. Other types (and `bool` and `char`, which need validation) go
//! through postcard.
//!
//! Two [`Form`]s: where both ends share the type (pool tasks, `Queue<T>`),
//! integers go as fixed-width little-endian bytes. Where the receiver
//! names its own type (a `Connection`), only the forms that are byte for
//! byte postcard's are used: `u8`, `i8`, `f32`, `f64`, vectors of them and
//! `String`, each vector or string as postcard's varint length and its
//! bytes, so `&str` sent is read as `String`, `&[u8]` as `Vec<u8>`, and a
//! `u32` as a `u64`, exactly as through serde.

use std::any::Any;
use std::mem::size_of;

use super::Sink;
use super::cast;

/// Which plain forms a stream may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Form {
    /// Both ends use the same type: every plain form.
    Typed,
    /// Each end names its own type: only postcard's own byte forms.
    Postcard,
}

/// Calls `$m!` with the numbers whose postcard form is their fixed-width
/// little-endian bytes.
macro_rules! for_postcard_numbers {
    ($m:ident) => {
        $m!(u8, i8, f32, f64)
    };
}

/// Calls `$m!` with the integers postcard writes as varints, which the
/// typed form writes as fixed-width bytes.
macro_rules! for_fixed_integers {
    ($m:ident) => {
        $m!(u16, u32, u64, u128, usize, i16, i32, i64, i128, isize)
    };
}

/// Appends postcard's varint for a length.
pub(crate) fn put_len<S: Sink + ?Sized>(out: &mut S, mut n: usize) {
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

/// Takes postcard's varint for a length from the front of `bytes`.
fn take_len(bytes: &mut &[u8]) -> Option<usize> {
    let mut n: usize = 0;
    for (i, &b) in bytes.iter().enumerate().take(usize::BITS as usize / 7 + 1) {
        let part = usize::from(b & 0x7f);
        let shift = 7 * i as u32;
        if shift >= usize::BITS || (part << shift) >> shift != part {
            return None;
        }
        n |= part << shift;
        if b & 0x80 == 0 {
            *bytes = &bytes[i + 1..];
            return Some(n);
        }
    }
    None
}

/// Appends `value` in its plain form if its type has one in `form`; false
/// (and nothing appended) otherwise.
#[inline]
pub(crate) fn encode<T: ?Sized, S: Sink + ?Sized>(value: &T, out: &mut S, form: Form) -> bool {
    macro_rules! each {
        ($($t:ty),*) => {$(
            if let Some(v) = cast::downcast_ref::<T, $t>(value) {
                out.extend_from_slice(&v.to_le_bytes());
                return true;
            }
            if let Some(v) = cast::downcast_ref::<T, Vec<$t>>(value) {
                put_len(out, v.len());
                if cfg!(target_endian = "little") {
                    // In memory, the numbers are their little-endian
                    // bytes already: one copy.
                    out.extend_from_slice(bytemuck::cast_slice::<$t, u8>(v));
                } else {
                    out.reserve(v.len() * size_of::<$t>());
                    for x in v {
                        out.extend_from_slice(&x.to_le_bytes());
                    }
                }
                return true;
            }
        )*};
    }
    let bytes = cast::downcast_ref::<T, Vec<u8>>(value)
        .map(Vec::as_slice)
        .or_else(|| cast::as_bytes(value))
        .or_else(|| cast::downcast_ref::<T, String>(value).map(String::as_bytes))
        .or_else(|| cast::as_str(value).map(str::as_bytes));
    if let Some(v) = bytes {
        put_len(out, v.len());
        out.extend_from_slice(v);
        return true;
    }
    for_postcard_numbers!(each);
    if form == Form::Typed {
        for_fixed_integers!(each);
    }
    false
}

/// As [`encode`], for a sized `'static` value: the type test is one
/// constant per type (the compiler drops every branch but the one that
/// matches), so a batch of numbers pays only for the copy of each.
#[inline]
pub(crate) fn encode_sized<T: 'static, S: Sink + ?Sized>(value: &T, out: &mut S, form: Form) -> bool {
    let any: &dyn Any = value;
    macro_rules! each {
        ($($t:ty),*) => {$(
            if let Some(v) = any.downcast_ref::<$t>() {
                out.extend_from_slice(&v.to_le_bytes());
                return true;
            }
        )*};
    }
    for_postcard_numbers!(each);
    if form == Form::Typed {
        for_fixed_integers!(each);
    }
    if any.is::<String>() || any.is::<Vec<u8>>() || fixed_size_vec::<T>(form) {
        return encode(value, out, form);
    }
    false
}

/// Whether `T` is a vector of numbers with a plain form in `form`.
#[inline]
fn fixed_size_vec<T: 'static>(form: Form) -> bool {
    macro_rules! each {
        ($($t:ty),*) => {$(
            if std::any::TypeId::of::<T>() == std::any::TypeId::of::<Vec<$t>>() {
                return true;
            }
        )*};
    }
    for_postcard_numbers!(each);
    if form == Form::Typed {
        for_fixed_integers!(each);
    }
    false
}

/// The size of the plain form of every `T` in `form`, if all have the
/// same: the numbers (a constant, folded by the compiler).
#[inline]
pub(crate) fn fixed_size<T: ?Sized + 'static>(form: Form) -> Option<usize> {
    macro_rules! each {
        ($($t:ty),*) => {$(
            if std::any::TypeId::of::<T>() == std::any::TypeId::of::<$t>() {
                return Some(size_of::<$t>());
            }
        )*};
    }
    for_postcard_numbers!(each);
    if form == Form::Typed {
        for_fixed_integers!(each);
    }
    None
}

/// Takes `count` numbers of type `T` written one after another in their
/// typed form (each as [`encode_sized`] writes it) from the front of
/// `bytes`, in one copy: `None` if `T` is not such a number (read them
/// one by one), `Some(None)` if fewer bytes than that are left.
pub(crate) fn decode_run<T: 'static>(bytes: &mut &[u8], count: usize) -> Option<Option<Vec<T>>> {
    let mut slot: Option<Vec<T>> = None;
    let any: &mut dyn Any = &mut slot;
    macro_rules! each {
        ($($t:ty),*) => {$(
            if let Some(s) = any.downcast_mut::<Option<Vec<$t>>>() {
                let Some(n) = count.checked_mul(size_of::<$t>()).filter(|&n| n <= bytes.len()) else {
                    return Some(None);
                };
                let (body, rest) = bytes.split_at(n);
                let mut v = vec![<$t>::default(); count];
                if cfg!(target_endian = "little") {
                    bytemuck::cast_slice_mut::<$t, u8>(&mut v).copy_from_slice(body);
                } else {
                    for (x, c) in v.iter_mut().zip(body.chunks_exact(size_of::<$t>())) {
                        *x = <$t>::from_le_bytes(c.try_into().expect("exact chunks"));
                    }
                }
                *s = Some(v);
                *bytes = rest;
                return Some(slot);
            }
        )*};
    }
    for_postcard_numbers!(each);
    for_fixed_integers!(each);
    None
}

/// What [`decode`] found.
#[derive(Debug, PartialEq)]
pub(crate) enum Decoded<T> {
    /// `T` has no plain form here: use serde.
    NotPlain,
    /// The value; `bytes` was advanced past it.
    Value(T),
    /// Fewer bytes than the value needs were left (or its length is not a
    /// valid varint).
    Short,
    /// The bytes are not a `String` (not UTF-8).
    NotUtf8,
}

/// Takes the length prefix of a vector of `width`-byte elements from the
/// front of `bytes`, and the bytes of its elements; `bytes` is left alone
/// if they are not all there.
fn take_vec<'a>(bytes: &mut &'a [u8], width: usize) -> Option<&'a [u8]> {
    let mut rest = *bytes;
    let n = take_len(&mut rest)?.checked_mul(width)?;
    let (body, rest) = rest.split_at_checked(n)?;
    *bytes = rest;
    Some(body)
}

/// Takes a `T` from the front of `bytes` if `T` has a plain form in `form`
/// (the one [`encode`] wrote).
#[inline]
pub(crate) fn decode<T: 'static>(bytes: &mut &[u8], form: Form) -> Decoded<T> {
    let mut slot: Option<T> = None;
    let any: &mut dyn Any = &mut slot;
    macro_rules! each {
        ($($t:ty),*) => {$(
            if let Some(s) = any.downcast_mut::<Option<$t>>() {
                let Some((head, rest)) = bytes.split_first_chunk() else {
                    return Decoded::Short;
                };
                *s = Some(<$t>::from_le_bytes(*head));
                *bytes = rest;
                return slot.map_or(Decoded::Short, Decoded::Value);
            }
            if let Some(s) = any.downcast_mut::<Option<Vec<$t>>>() {
                let Some(body) = take_vec(bytes, size_of::<$t>()) else {
                    return Decoded::Short;
                };
                *s = Some(if cfg!(target_endian = "little") {
                    // One copy into a vector of the right alignment.
                    let mut v = vec![<$t>::default(); body.len() / size_of::<$t>()];
                    bytemuck::cast_slice_mut::<$t, u8>(&mut v).copy_from_slice(body);
                    v
                } else {
                    body.chunks_exact(size_of::<$t>())
                        .map(|c| <$t>::from_le_bytes(c.try_into().expect("exact chunks")))
                        .collect()
                });
                return slot.map_or(Decoded::Short, Decoded::Value);
            }
        )*};
    }
    if let Some(s) = any.downcast_mut::<Option<Vec<u8>>>() {
        let Some(body) = take_vec(bytes, 1) else {
            return Decoded::Short;
        };
        *s = Some(body.to_vec());
        return slot.map_or(Decoded::Short, Decoded::Value);
    }
    if let Some(s) = any.downcast_mut::<Option<String>>() {
        let mut rest = *bytes;
        let Some(body) = take_vec(&mut rest, 1) else {
            return Decoded::Short;
        };
        let Ok(text) = std::str::from_utf8(body) else {
            return Decoded::NotUtf8;
        };
        *s = Some(text.to_owned());
        *bytes = rest;
        return slot.map_or(Decoded::Short, Decoded::Value);
    }
    for_postcard_numbers!(each);
    if form == Form::Typed {
        for_fixed_integers!(each);
    }
    Decoded::NotPlain
}

#[cfg(test)]
mod tests {
    use super::*;
    use Form::{Postcard, Typed};

    #[test]
    fn numbers_round_trip_as_fixed_width_bytes() {
        let mut out = Vec::new();
        assert!(encode(&0x0102_0304_0506_0708u64, &mut out, Typed));
        assert!(encode(&-1.5f64, &mut out, Typed));
        assert!(encode(&-7i8, &mut out, Typed));
        assert!(encode(&u128::MAX, &mut out, Typed));
        assert_eq!(out.len(), 8 + 8 + 1 + 16);
        assert_eq!(out[..8], [8, 7, 6, 5, 4, 3, 2, 1]);
        let mut rest = &out[..];
        assert_eq!(decode::<u64>(&mut rest, Typed), Decoded::Value(0x0102_0304_0506_0708));
        assert_eq!(decode::<f64>(&mut rest, Typed), Decoded::Value(-1.5));
        assert_eq!(decode::<i8>(&mut rest, Typed), Decoded::Value(-7));
        assert_eq!(decode::<u128>(&mut rest, Typed), Decoded::Value(u128::MAX));
        assert!(rest.is_empty());
    }

    #[test]
    fn strings_and_vectors_of_numbers_round_trip() {
        let mut out = Vec::new();
        assert!(encode(&vec![1u8, 2, 3], &mut out, Typed));
        assert!(encode(&String::from("héllo"), &mut out, Typed));
        assert!(encode(&vec![1.5f64, -2.0], &mut out, Typed));
        assert!(encode(&Vec::<i32>::new(), &mut out, Typed));
        assert!(encode(&vec![7u16; 200], &mut out, Typed));
        assert_eq!(out.len(), 1 + 3 + 1 + 6 + 1 + 16 + 1 + 2 + 400);
        let mut rest = &out[..];
        assert_eq!(decode::<Vec<u8>>(&mut rest, Typed), Decoded::Value(vec![1, 2, 3]));
        assert_eq!(decode::<String>(&mut rest, Typed), Decoded::Value("héllo".into()));
        assert_eq!(decode::<Vec<f64>>(&mut rest, Typed), Decoded::Value(vec![1.5, -2.0]));
        assert_eq!(decode::<Vec<i32>>(&mut rest, Typed), Decoded::Value(vec![]));
        assert_eq!(decode::<Vec<u16>>(&mut rest, Typed), Decoded::Value(vec![7; 200]));
        assert!(rest.is_empty());
    }

    #[test]
    fn the_postcard_form_is_byte_for_byte_postcard() {
        fn same<T: serde::Serialize + 'static>(value: T) {
            let mut out = Vec::new();
            assert!(encode(&value, &mut out, Postcard), "{}", std::any::type_name::<T>());
            assert_eq!(out, postcard::to_allocvec(&value).unwrap(), "{}", std::any::type_name::<T>());
        }
        same(vec![9u8; 300]);
        same(String::from("héllo"));
        same("x".repeat(20_000));
        same(-3i8);
        same(250u8);
        same(-0.25f32);
        same(1e300f64);
        same(vec![1.5f64; 130]);
        same(vec![-1i8, 2]);
        // Unsized values, as `Connection::send("text")` passes them.
        for (value, bytes) in [("héllo", &b"h"[..]), ("", &b""[..])] {
            let mut out = Vec::new();
            assert!(encode::<str, Vec<u8>>(value, &mut out, Postcard));
            assert_eq!(out, postcard::to_allocvec(value).unwrap());
            out.clear();
            assert!(encode::<[u8], Vec<u8>>(bytes, &mut out, Postcard));
            assert_eq!(out, postcard::to_allocvec(bytes).unwrap());
        }
        // Integers wider than a byte are postcard varints: left to serde.
        let mut out = Vec::new();
        assert!(!encode(&5u32, &mut out, Postcard) && !encode(&vec![5u64], &mut out, Postcard));
        assert!(out.is_empty());
        let bytes = postcard::to_allocvec(&"text").unwrap();
        assert_eq!(decode::<String>(&mut &bytes[..], Postcard), Decoded::Value("text".into()));
        assert_eq!(decode::<u64>(&mut &bytes[..], Postcard), Decoded::NotPlain);
    }

    #[test]
    fn lying_lengths_and_bad_text_are_reported() {
        let mut bytes = Vec::new();
        put_len(&mut bytes, usize::MAX);
        bytes.extend_from_slice(&[1, 2]);
        assert_eq!(decode::<Vec<u64>>(&mut &bytes[..], Typed), Decoded::Short);
        assert_eq!(decode::<Vec<u8>>(&mut &bytes[..], Typed), Decoded::Short);
        let overlong = [0xffu8; 11];
        assert_eq!(decode::<Vec<u8>>(&mut &overlong[..], Postcard), Decoded::Short);
        let too_big = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f];
        assert_eq!(decode::<String>(&mut &too_big[..], Postcard), Decoded::Short);
        let bad = [2u8, 0xff, 0xfe];
        let mut rest = &bad[..];
        assert_eq!(decode::<String>(&mut rest, Typed), Decoded::NotUtf8);
        assert_eq!(rest.len(), 3, "nothing consumed");
    }

    #[test]
    fn other_types_are_left_to_serde() {
        let mut out = Vec::new();
        assert!(!encode(&true, &mut out, Typed));
        assert!(!encode(&vec![true], &mut out, Typed));
        assert!(!encode(&(1u8, 2u8), &mut out, Typed));
        assert!(out.is_empty());
        let mut rest: &[u8] = &[1, 2, 3];
        assert_eq!(decode::<Vec<bool>>(&mut rest, Typed), Decoded::NotPlain);
        assert_eq!(rest.len(), 3);
    }

    #[test]
    fn a_short_buffer_is_reported_and_not_consumed() {
        let mut rest: &[u8] = &[5, 2, 3];
        assert_eq!(decode::<u32>(&mut rest, Typed), Decoded::Short);
        assert_eq!(decode::<Vec<u8>>(&mut rest, Typed), Decoded::Short);
        assert_eq!(rest.len(), 3);
    }
}
