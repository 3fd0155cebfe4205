//! Plain numbers skip serde on the pool's chunk streams: a `u64` or an
//! `f64` goes as its fixed-width little-endian bytes.
//!
//! postcard spends about 4 ns turning a `u64` into a varint and 2 ns
//! turning it back, where copying 8 bytes costs well under one; for a `map`
//! over numbers that is most of the per-item cost. The choice is made per
//! type through `TypeId`, which the compiler folds to a constant, and both
//! ends of a stream run the same code for the same type, so they always
//! agree. Other types (and `bool` and `char`, which need validation) go
//! through postcard.

use std::any::Any;

/// Calls `$m!` with every type that goes as plain bytes.
macro_rules! for_plain_types {
    ($m:ident) => {
        $m!(u8, u16, u32, u64, u128, usize, i8, i16, i32, i64, i128, isize, f32, f64)
    };
}

/// Appends `value` as plain bytes if its type is a plain number; false
/// (and nothing appended) otherwise.
#[inline]
pub(crate) fn encode<T: 'static>(value: &T, out: &mut Vec<u8>) -> bool {
    let any: &dyn Any = value;
    macro_rules! each {
        ($($t:ty),*) => {$(
            if let Some(v) = any.downcast_ref::<$t>() {
                out.extend_from_slice(&v.to_le_bytes());
                return true;
            }
        )*};
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
}

/// Takes a `T` from the front of `bytes` if `T` is a plain number.
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
        )*};
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
    fn other_types_are_left_to_serde() {
        let mut out = Vec::new();
        assert!(!encode(&true, &mut out));
        assert!(!encode(&String::from("x"), &mut out));
        assert!(!encode(&(1u8, 2u8), &mut out));
        assert!(out.is_empty());
        let mut rest: &[u8] = &[1, 2, 3];
        assert_eq!(decode::<String>(&mut rest), Decoded::NotPlain);
        assert_eq!(rest.len(), 3);
    }

    #[test]
    fn a_short_buffer_is_reported_and_not_consumed() {
        let mut rest: &[u8] = &[1, 2, 3];
        assert_eq!(decode::<u32>(&mut rest), Decoded::Short);
        assert_eq!(rest.len(), 3);
    }
}
