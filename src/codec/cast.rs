//! A downcast that also accepts unsized values (`str`, `[u8]`), for the
//! codec's plain fast paths: `dyn Any` needs a sized value to point at.
//!
//! `unsafe_code` is allowed in this file (it is not an OS call, so it is
//! not in `sys`): each cast is a pointer cast between two types that the
//! `TypeId` check has just shown to be the same.

#![allow(unsafe_code)]

use std::any::TypeId;

/// `value` as a `&U` if `T` is `U`.
pub(crate) fn downcast_ref<T: ?Sized + 'static, U: 'static>(value: &T) -> Option<&U> {
    if TypeId::of::<T>() != TypeId::of::<U>() {
        return None;
    }
    // SAFETY: `T` and `U` are the same type (equal `TypeId`s), so `T` is
    // sized here and the pointer, whose metadata (none) the cast drops,
    // points at a valid `U` for the borrow's lifetime.
    Some(unsafe { &*std::ptr::from_ref(value).cast::<U>() })
}

/// `value` as a `&str` if `T` is `str`.
pub(crate) fn as_str<T: ?Sized + 'static>(value: &T) -> Option<&str> {
    if TypeId::of::<T>() != TypeId::of::<str>() {
        return None;
    }
    let len = std::mem::size_of_val(value);
    // SAFETY: `T` is `str` (equal `TypeId`s): the data pointer and its
    // byte length (`size_of_val` of a `str`) describe valid UTF-8 that
    // lives as long as the borrow.
    Some(unsafe {
        std::str::from_utf8_unchecked(std::slice::from_raw_parts(std::ptr::from_ref(value).cast::<u8>(), len))
    })
}

/// `value` as a `&[u8]` if `T` is `[u8]`.
pub(crate) fn as_bytes<T: ?Sized + 'static>(value: &T) -> Option<&[u8]> {
    if TypeId::of::<T>() != TypeId::of::<[u8]>() {
        return None;
    }
    let len = std::mem::size_of_val(value);
    // SAFETY: `T` is `[u8]` (equal `TypeId`s): the data pointer and the
    // slice's byte length describe initialised bytes that live as long as
    // the borrow.
    Some(unsafe { std::slice::from_raw_parts(std::ptr::from_ref(value).cast::<u8>(), len) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn casts_only_to_the_same_type() {
        assert_eq!(downcast_ref::<u32, u32>(&5), Some(&5));
        assert_eq!(downcast_ref::<u32, u64>(&5), None);
        assert_eq!(downcast_ref::<str, u8>("x"), None);
        assert_eq!(as_str::<str>("héllo"), Some("héllo"));
        assert_eq!(as_str::<String>(&"x".to_string()), None);
        assert_eq!(as_bytes::<[u8]>(&[1, 2, 3][..]), Some(&[1u8, 2, 3][..]));
        assert_eq!(as_bytes::<[u16]>(&[1u16][..]), None);
    }
}
