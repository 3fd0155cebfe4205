//! Plain numbers, and vectors of them, skip serde in items (pool chunks,
//! queue and connection messages): a `u64` or an `f64` goes as its
//! fixed-width little-endian bytes, a `Vec<u8>` or a `String` as a length
//! and its bytes, a `Vec<f64>` as a length and 8 bytes per element.
//!
//! postcard spends about 4 ns turning a `u64` into a varint and 2 ns
//! turning it back, where copying 8 bytes costs well under one; and it
//! writes a `Vec<u8>` one element at a time (about 1 ms per MiB). The
//! choice is made per type through `TypeId`, which the compiler folds to a
//! constant, and both ends of a stream run the same code for the same
//! type, so they always agree. Other types (and `bool` and `char`, which
//! need validation) go through postcard.

use std::any::Any;
use std::mem::size_of;

/// Calls `$m!` with every type that goes as plain bytes.
macro_rules! for_plain_types {
    ($m:ident) => {
        $m!(u8, u16, u32, u64, u128, usize, i8, i16, i32, i64, i128, isize, f32, f64)
    };
}

/// Appends `value` as plain bytes if its type is a plain number, a
/// `String`, or a `Vec` of plain numbers; false (and nothing appended)
/// otherwise.
#[inline]
pub(crate) fn encode<T: 'static>(value: &T, out: &mut Vec<u8>) -> bool {
    let any: &dyn Any = value;
    macro_rules! each {
        ($($t:ty),*) => {$(
            if let Some(v) = any.downcast_ref::<$t>() {
                out.extend_from_slice(&v.to_le_bytes());
                return true;
            }
            if let Some(v) = any.downcast_ref::<Vec<$t>>() {
                out.extend_from_slice(&(v.len() as u64).to_le_bytes());
                out.reserve(v.len() * size_of::<$t>());
                for x in v {
                    out.extend_from_slice(&x.to_le_bytes());
                }
                return true;
            }
        )*};
    }
    if let Some(v) = any.downcast_ref::<Vec<u8>>() {
        out.extend_from_slice(&(v.len() as u64).to_le_bytes());
        out.extend_from_slice(v);
        return true;
    }
    if let Some(v) = any.downcast_ref::<String>() {
        out.extend_from_slice(&(v.len() as u64).to_le_bytes());
        out.extend_from_slice(v.as_bytes());
        return true;
    }
    for_plain_types!(each);
    false
}

/// What [`decode`] found.
#[derive(Debug, PartialEq)]
pub(crate) enum Decoded<T> {
    /// `T` is not a plain number: use serde.
    NotPlain,
    /// The value; `bytes` was advanced past it.
    Value(T),
    /// Fewer bytes than the type's width were left.
    Short,
    /// The bytes are not a `String` (not UTF-8).
    NotUtf8,
}

/// Takes the length prefix of a vector of `width`-byte elements from the
/// front of `bytes`, and the bytes of its elements.
fn take_vec<'a>(bytes: &mut &'a [u8], width: usize) -> Option<&'a [u8]> {
    let (len, rest) = bytes.split_first_chunk::<8>()?;
    let n = usize::try_from(u64::from_le_bytes(*len)).ok()?.checked_mul(width)?;
    let (body, rest) = rest.split_at_checked(n)?;
    *bytes = rest;
    Some(body)
}

/// Takes a `T` from the front of `bytes` if `T` is one of the types
/// [`encode`] writes as plain bytes.
#[inline]
pub(crate) fn decode<T: 'static>(bytes: &mut &[u8]) -> Decoded<T> {
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
                *s = Some(
                    body.chunks_exact(size_of::<$t>())
                        .map(|c| <$t>::from_le_bytes(c.try_into().expect("exact chunks")))
                        .collect(),
                );
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
        let Some(body) = take_vec(bytes, 1) else {
            return Decoded::Short;
        };
        let Ok(text) = std::str::from_utf8(body) else {
            return Decoded::NotUtf8;
        };
        *s = Some(text.to_owned());
        return slot.map_or(Decoded::Short, Decoded::Value);
    }
    for_plain_types!(each);
    Decoded::NotPlain
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_round_trip_as_fixed_width_bytes() {
        let mut out = Vec::new();
        assert!(encode(&0x0102_0304_0506_0708u64, &mut out));
        assert!(encode(&-1.5f64, &mut out));
        assert!(encode(&-7i8, &mut out));
        assert!(encode(&u128::MAX, &mut out));
        assert_eq!(out.len(), 8 + 8 + 1 + 16);
        assert_eq!(out[..8], [8, 7, 6, 5, 4, 3, 2, 1]);
        let mut rest = &out[..];
        assert_eq!(decode::<u64>(&mut rest), Decoded::Value(0x0102_0304_0506_0708));
        assert_eq!(decode::<f64>(&mut rest), Decoded::Value(-1.5));
        assert_eq!(decode::<i8>(&mut rest), Decoded::Value(-7));
        assert_eq!(decode::<u128>(&mut rest), Decoded::Value(u128::MAX));
        assert!(rest.is_empty());
    }

    #[test]
    fn strings_and_vectors_of_numbers_round_trip() {
        let mut out = Vec::new();
        assert!(encode(&vec![1u8, 2, 3], &mut out));
        assert!(encode(&String::from("héllo"), &mut out));
        assert!(encode(&vec![1.5f64, -2.0], &mut out));
        assert!(encode(&Vec::<i32>::new(), &mut out));
        assert_eq!(out.len(), 8 + 3 + 8 + 6 + 8 + 16 + 8);
        let mut rest = &out[..];
        assert_eq!(decode::<Vec<u8>>(&mut rest), Decoded::Value(vec![1, 2, 3]));
        assert_eq!(decode::<String>(&mut rest), Decoded::Value("héllo".into()));
        assert_eq!(decode::<Vec<f64>>(&mut rest), Decoded::Value(vec![1.5, -2.0]));
        assert_eq!(decode::<Vec<i32>>(&mut rest), Decoded::Value(vec![]));
        assert!(rest.is_empty());
    }

    #[test]
    fn lying_lengths_and_bad_text_are_reported() {
        let mut bytes = u64::MAX.to_le_bytes().to_vec();
        bytes.extend_from_slice(&[1, 2]);
        assert_eq!(decode::<Vec<u64>>(&mut &bytes[..]), Decoded::Short);
        assert_eq!(decode::<Vec<u8>>(&mut &bytes[..]), Decoded::Short);
        let mut bad = 2u64.to_le_bytes().to_vec();
        bad.extend_from_slice(&[0xff, 0xfe]);
        assert_eq!(decode::<String>(&mut &bad[..]), Decoded::NotUtf8);
    }

    #[test]
    fn other_types_are_left_to_serde() {
        let mut out = Vec::new();
        assert!(!encode(&true, &mut out));
        assert!(!encode(&vec![true], &mut out));
        assert!(!encode(&(1u8, 2u8), &mut out));
        assert!(out.is_empty());
        let mut rest: &[u8] = &[1, 2, 3];
        assert_eq!(decode::<Vec<bool>>(&mut rest), Decoded::NotPlain);
        assert_eq!(rest.len(), 3);
    }

    #[test]
    fn a_short_buffer_is_reported_and_not_consumed() {
        let mut rest: &[u8] = &[1, 2, 3];
        assert_eq!(decode::<u32>(&mut rest), Decoded::Short);
        assert_eq!(rest.len(), 3);
    }
}
