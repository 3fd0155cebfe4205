//! A downcast that also accepts unsized values (`str`, `[u8]`), for the
//! codec's plain fast paths: `dyn Any` needs a sized value to point at.
//!
//! `unsafe_code` is allowed in this file (it is not an OS call, so it is
//! not in `sys`): each cast is a pointer cast between two types that the
//! `TypeId` check has just shown to be the same.

#![allow(unsafe_code)]

use std::any::TypeId;
use std::marker::PhantomData;

/// The `TypeId` of `T` with its lifetimes erased, so that values that
/// borrow (a `(u32, &str)` sent on a connection) can be asked whether they
/// are one of the plain types. It is compared only with the `TypeId` of a
/// [`LifetimeFree`] type, for which "the same up to lifetimes" is "the
/// same".
fn erased_type_id<T: ?Sized>() -> TypeId {
    trait NonStatic {
        fn type_id(&self) -> TypeId
        where
            Self: 'static;
    }
    impl<T: ?Sized> NonStatic for PhantomData<T> {
        fn type_id(&self) -> TypeId
        where
            Self: 'static,
        {
            TypeId::of::<T>()
        }
    }
    let marker = PhantomData::<T>;
    let object: &dyn NonStatic = &marker;
    // SAFETY: only the trait object's lifetime bound changes, and the
    // method called through it reads no data (a `PhantomData` has none): it
    // returns the `TypeId` of `T` with every lifetime in it erased, which
    // is all this function promises (the technique of dtolnay's `typeid`
    // crate, which erased-serde relies on).
    let object: &(dyn NonStatic + 'static) = unsafe { std::mem::transmute(object) };
    object.type_id()
}

/// Types without lifetime parameters: for them an equal erased `TypeId`
/// means the very same type.
///
/// # Safety
///
/// Implement it only for types with no lifetime parameter anywhere in
/// them.
pub(crate) unsafe trait LifetimeFree: 'static {}

macro_rules! lifetime_free {
    ($($t:ty),*) => {$(
        // SAFETY: a primitive, a `String` or a `Vec` of a primitive: no
        // lifetime parameter.
        unsafe impl LifetimeFree for $t {}
        // SAFETY: as above.
        unsafe impl LifetimeFree for Vec<$t> {}
    )*};
}
lifetime_free!(u8, u16, u32, u64, u128, usize, i8, i16, i32, i64, i128, isize, f32, f64);
// SAFETY: `String` has no lifetime parameter.
unsafe impl LifetimeFree for String {}

/// `value` as a `&U` if `T` is `U` (`T` may borrow: a `U` never does).
pub(crate) fn downcast_ref<T: ?Sized, U: LifetimeFree>(value: &T) -> Option<&U> {
    if erased_type_id::<T>() != TypeId::of::<U>() {
        return None;
    }
    // SAFETY: `T` and `U` are the same type up to lifetimes (equal erased
    // `TypeId`s), and `U` has none, so `T` is `U`: sized here, and the
    // pointer, whose metadata (none) the cast drops, points at a valid `U`
    // for the borrow's lifetime.
    Some(unsafe { &*std::ptr::from_ref(value).cast::<U>() })
}

/// `value` as a `&str` if `T` is `str`.
pub(crate) fn as_str<T: ?Sized>(value: &T) -> Option<&str> {
    if erased_type_id::<T>() != TypeId::of::<str>() {
        return None;
    }
    let len = std::mem::size_of_val(value);
    // SAFETY: `T` is `str` (equal `TypeId`s; `str` has no lifetimes): the
    // data pointer and its byte length (`size_of_val` of a `str`) describe
    // valid UTF-8 that lives as long as the borrow.
    Some(unsafe {
        std::str::from_utf8_unchecked(std::slice::from_raw_parts(std::ptr::from_ref(value).cast::<u8>(), len))
    })
}

/// `value` as a `&[u8]` if `T` is `[u8]`.
pub(crate) fn as_bytes<T: ?Sized>(value: &T) -> Option<&[u8]> {
    if erased_type_id::<T>() != TypeId::of::<[u8]>() {
        return None;
    }
    let len = std::mem::size_of_val(value);
    // SAFETY: `T` is `[u8]` (equal `TypeId`s; `[u8]` has no lifetimes): the
    // data pointer and the slice's byte length describe initialised bytes
    // that live as long as the borrow.
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

    #[test]
    fn borrowing_types_are_told_apart_from_plain_ones() {
        let s = String::from("x");
        let borrowed: (u32, &str) = (1, &s);
        assert_eq!(downcast_ref::<(u32, &str), u32>(&borrowed), None);
        assert_eq!(downcast_ref::<&str, String>(&s.as_str()), None);
        assert_eq!(as_str::<str>(s.as_str()), Some("x"));
        assert_eq!(erased_type_id::<&'static str>(), erased_type_id::<&str>());
        assert_ne!(erased_type_id::<&str>(), erased_type_id::<&[u8]>());
    }
}
