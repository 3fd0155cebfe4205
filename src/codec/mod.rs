//! The wire codec: serde values to bytes ([this module](self)), and bytes
//! into length-prefixed frames ([`frame`]).
//!
//! The serde format is postcard, chosen by measurement (README, "Codec").

use std::any::type_name;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{Error, ErrorKind, Result};

pub(crate) mod byte_string;
mod cast;
mod fds;
mod frame;
mod plain;
mod probe;
mod sink;

pub(crate) use fds::{Encoded, FdHandle, FdIn, FdOut, encode_with_fds, fd_newtype, with_incoming};
pub(crate) use frame::HEADER;
pub(crate) use frame::LEN_MASK;
pub(crate) use frame::{
    Frame, FrameBuf, FrameReader, FrameStream, ReadOutcome, append_frame, check_len, check_outgoing,
    check_outgoing_len, frame_of, kind, kind_of, parse_frame, read_frame_with_fds, write_frame, write_frame_with_fds,
};
pub(crate) use sink::Sink;

/// The default frame-size limit: 1 GiB.
///
/// # Examples
///
/// ```
/// assert!(multiproc::max_frame_size() <= multiproc::DEFAULT_MAX_FRAME_SIZE);
/// ```
pub const DEFAULT_MAX_FRAME_SIZE: u64 = 1 << 30;
static MAX_FRAME: AtomicU64 = AtomicU64::new(DEFAULT_MAX_FRAME_SIZE);

/// Sets the largest frame, in bytes, that this process accepts: an encoded
/// argument or result (or, later, a message) whose size is above it is
/// refused with [`ErrorKind::FrameTooLarge`] before anything is allocated.
/// Children started afterwards inherit the limit. The default is
/// [`DEFAULT_MAX_FRAME_SIZE`] (1 GiB).
///
/// # Errors
///
/// [`ErrorKind::InvalidInput`] for 0 or a value of 2^56 or more.
///
/// # Examples
///
/// ```
/// multiproc::set_max_frame_size(64 << 20)?;
/// assert_eq!(multiproc::max_frame_size(), 64 << 20);
/// multiproc::set_max_frame_size(multiproc::DEFAULT_MAX_FRAME_SIZE)?;
/// # Ok::<(), multiproc::Error>(())
/// ```
pub fn set_max_frame_size(bytes: u64) -> Result<()> {
    if bytes == 0 || bytes > LEN_MASK {
        return Err(Error::new(
            ErrorKind::InvalidInput,
            format!("a frame-size limit of {bytes} bytes is out of range; pick a value between 1 and 2^56 - 1"),
        ));
    }
    MAX_FRAME.store(bytes, Ordering::Relaxed);
    Ok(())
}

/// The current frame-size limit in bytes (see [`set_max_frame_size`]).
///
/// # Examples
///
/// ```
/// assert!(multiproc::max_frame_size() >= 1);
/// ```
pub fn max_frame_size() -> u64 {
    MAX_FRAME.load(Ordering::Relaxed)
}

/// Serializes `value` with postcard.
pub(crate) fn encode<T: Serialize + ?Sized>(value: &T, what: &str) -> Result<Vec<u8>> {
    postcard::to_stdvec(value).map_err(|e| serialize_error(value, what, e))
}

/// Appends `value`, serialized, to `out`; on error `out` is left as it was.
pub(crate) fn encode_into<T: Serialize + ?Sized, S: Sink + ?Sized>(value: &T, out: &mut S, what: &str) -> Result<()> {
    let start = out.len();
    match postcard::serialize_with_flavor(value, Tail(out)) {
        Ok(()) => Ok(()),
        Err(e) => {
            out.truncate(start);
            Err(serialize_error(value, what, e))
        }
    }
}

/// Serializes many values one after another into a buffer, through one
/// postcard serializer (cheaper than one serializer per value).
pub(crate) struct Encoder<'a, S: Sink + ?Sized = Vec<u8>> {
    ser: postcard::Serializer<Tail<'a, S>>,
}

impl<'a, S: Sink + ?Sized> Encoder<'a, S> {
    pub(crate) fn new(out: &'a mut S) -> Self {
        Encoder { ser: postcard::Serializer { output: Tail(out) } }
    }

    /// Appends `value`; on error the buffer is left as it was.
    #[inline]
    pub(crate) fn push<T: Serialize + ?Sized>(&mut self, value: &T, what: &str) -> Result<()> {
        let start = self.ser.output.0.len();
        value.serialize(&mut self.ser).map_err(|e| {
            self.ser.output.0.truncate(start);
            serialize_error(value, what, e)
        })
    }

    /// Appends one item of a stream whose ends share the type (a pool
    /// chunk, a queue): a plain value in its typed form ([`plain`]),
    /// anything else through postcard. Read it back with
    /// [`Decoder::next_item`].
    #[inline]
    pub(crate) fn push_item<T: Serialize + ?Sized + 'static>(&mut self, value: &T, what: &str) -> Result<()> {
        self.push_in(value, what, plain::Form::Typed)
    }

    /// As [`push_item`](Encoder::push_item), for a sized value: the plain
    /// forms cost only their copy (one item of a batch).
    #[inline]
    pub(crate) fn push_value<T: Serialize + 'static>(&mut self, value: &T, what: &str) -> Result<()> {
        if plain::encode_sized(value, self.ser.output.0, plain::Form::Typed) {
            return Ok(());
        }
        self.push(value, what)
    }

    /// Appends one message for a receiver that names its own type (a
    /// connection): exactly postcard's bytes, with plain shortcuts only
    /// where they write the same. Read it back with
    /// [`Decoder::next_message`].
    #[inline]
    pub(crate) fn push_message<T: Serialize + ?Sized>(&mut self, value: &T, what: &str) -> Result<()> {
        self.push_in(value, what, plain::Form::Postcard)
    }

    #[inline]
    fn push_in<T: Serialize + ?Sized>(&mut self, value: &T, what: &str, form: plain::Form) -> Result<()> {
        if plain::encode(value, self.ser.output.0, form) {
            return Ok(());
        }
        self.push(value, what)
    }

    /// The buffer, for raw bytes between values.
    pub(crate) fn buf(&mut self) -> &mut S {
        self.ser.output.0
    }
}

/// Appends postcard's varint for a length (a byte string's, a
/// sequence's).
pub(crate) fn put_varint(out: &mut Vec<u8>, n: usize) {
    plain::put_len(out, n);
}

/// The size of every item of type `T` as [`Encoder::push_item`] writes
/// it, if all have the same (plain numbers).
#[inline]
pub(crate) fn fixed_item_size<T: ?Sized + 'static>() -> Option<usize> {
    plain::fixed_size::<T>(plain::Form::Typed)
}

/// Deserializes many values one after another from a buffer.
pub(crate) struct Decoder<'de> {
    rest: &'de [u8],
}

impl<'de> Decoder<'de> {
    pub(crate) fn new(bytes: &'de [u8]) -> Self {
        Decoder { rest: bytes }
    }

    /// The next value.
    #[inline]
    pub(crate) fn next<T: serde::Deserialize<'de>>(&mut self, what: &str) -> Result<T> {
        let (value, rest) = postcard::take_from_bytes(self.rest).map_err(|e| deserialize_error::<T>(what, e))?;
        self.rest = rest;
        Ok(value)
    }

    /// How many bytes are left.
    pub(crate) fn remaining(&self) -> usize {
        self.rest.len()
    }

    /// The next raw byte, if any is left.
    #[inline]
    pub(crate) fn next_byte(&mut self) -> Option<u8> {
        let (&byte, rest) = self.rest.split_first()?;
        self.rest = rest;
        Some(byte)
    }

    /// The next item, as [`Encoder::push_item`] wrote it.
    #[inline]
    pub(crate) fn next_item<T: DeserializeOwned + 'static>(&mut self, what: &str) -> Result<T> {
        self.next_in(what, plain::Form::Typed)
    }

    /// The next `count` items, each as [`Encoder::push_value`] wrote it:
    /// numbers in one copy, anything else one by one.
    pub(crate) fn next_items<T: DeserializeOwned + 'static>(&mut self, count: usize, what: &str) -> Result<Vec<T>> {
        match plain::decode_run::<T>(&mut self.rest, count) {
            Some(Some(items)) => Ok(items),
            Some(None) => Err(Error::new(
                ErrorKind::Deserialize,
                format!(
                    "could not deserialize {count} items of {what} as `{}`: the bytes ended early; the stream is \
                     corrupt",
                    type_name::<T>()
                ),
            )),
            None => {
                let mut items = Vec::with_capacity(count.min(self.rest.len()));
                for _ in 0..count {
                    items.push(self.next_item(what)?);
                }
                Ok(items)
            }
        }
    }

    /// The next message, as [`Encoder::push_message`] (or plain postcard)
    /// wrote it.
    #[inline]
    pub(crate) fn next_message<T: DeserializeOwned + 'static>(&mut self, what: &str) -> Result<T> {
        self.next_in(what, plain::Form::Postcard)
    }

    #[inline]
    fn next_in<T: DeserializeOwned + 'static>(&mut self, what: &str, form: plain::Form) -> Result<T> {
        match plain::decode::<T>(&mut self.rest, form) {
            plain::Decoded::Value(value) => Ok(value),
            plain::Decoded::NotPlain => self.next(what),
            plain::Decoded::Short => Err(Error::new(
                ErrorKind::Deserialize,
                format!(
                    "could not deserialize {what} as `{}`: the bytes ended early; the stream is corrupt",
                    type_name::<T>()
                ),
            )),
            plain::Decoded::NotUtf8 => Err(Error::new(
                ErrorKind::Deserialize,
                format!("could not deserialize {what} as a `String`: it is not UTF-8; the stream is corrupt"),
            )),
        }
    }
}

/// A postcard flavor that appends to a borrowed buffer.
struct Tail<'a, S: Sink + ?Sized>(&'a mut S);

impl<S: Sink + ?Sized> postcard::ser_flavors::Flavor for Tail<'_, S> {
    type Output = ();

    #[inline]
    fn try_push(&mut self, data: u8) -> postcard::Result<()> {
        self.0.push(data);
        Ok(())
    }

    #[inline]
    fn try_extend(&mut self, data: &[u8]) -> postcard::Result<()> {
        // Varints come in slices of a few bytes: pushing them one by one
        // beats a call to memcpy.
        if data.len() <= 16 {
            for &b in data {
                self.0.push(b);
            }
        } else {
            self.0.extend_from_slice(data);
        }
        Ok(())
    }

    fn finalize(self) -> postcard::Result<()> {
        Ok(())
    }
}

/// Deserializes a whole `T` from `bytes`; trailing bytes are an error.
pub(crate) fn decode<T: DeserializeOwned>(bytes: &[u8], what: &str) -> Result<T> {
    match postcard::take_from_bytes::<T>(bytes) {
        Ok((value, [])) => Ok(value),
        Ok((_, rest)) => Err(Error::new(
            ErrorKind::Deserialize,
            format!(
                "{what}: {} trailing bytes after a `{}`; both sides must use the same type",
                rest.len(),
                type_name::<T>()
            ),
        )),
        Err(e) => Err(deserialize_error::<T>(what, e)),
    }
}

/// Deserializes a `T` from the front of `bytes`, returning the rest.
pub(crate) fn decode_prefix<'a, T: serde::Deserialize<'a>>(bytes: &'a [u8], what: &str) -> Result<(T, &'a [u8])> {
    postcard::take_from_bytes::<T>(bytes).map_err(|e| deserialize_error::<T>(what, e))
}

/// The error for a value that failed to serialize, with the message its
/// `Serialize` impl gave (recovered by [`probe`]) when there is one.
pub(crate) fn serialize_error<T: Serialize + ?Sized>(value: &T, what: &str, e: postcard::Error) -> Error {
    let reason = match probe::failure_message(value) {
        Some(msg) => msg,
        None => e.to_string(),
    };
    Error::new(
        ErrorKind::Serialize,
        format!(
            "could not serialize {what} of type `{}`: {reason}; every field must serialize without error \
             (and sequences need a known length)",
            type_name::<T>()
        ),
    )
    .with_source(e)
}

fn deserialize_error<T: ?Sized>(what: &str, e: postcard::Error) -> Error {
    Error::new(
        ErrorKind::Deserialize,
        format!(
            "could not deserialize {what} as `{}`: {e}; the sender and the receiver must agree on the type",
            type_name::<T>()
        ),
    )
    .with_source(e)
}

/// A small serde type for the codec's tests.
#[cfg(test)]
#[derive(Debug, PartialEq, Serialize, serde::Deserialize)]
pub(crate) struct Point {
    pub(crate) x: i32,
    pub(crate) name: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_round_trip() {
        let p = Point { x: -3, name: "a".into() };
        let bytes = encode(&p, "a point").unwrap();
        assert_eq!(decode::<Point>(&bytes, "a point").unwrap(), p);
    }

    #[test]
    fn trailing_bytes_and_garbage_are_typed_errors() {
        let mut bytes = encode(&5u64, "x").unwrap();
        bytes.push(0);
        assert_eq!(decode::<u64>(&bytes, "x").unwrap_err().kind(), ErrorKind::Deserialize);
        assert_eq!(decode::<String>(&[0xff, 0xff, 0xff], "x").unwrap_err().kind(), ErrorKind::Deserialize);
    }

    struct Unserializable;
    impl Serialize for Unserializable {
        fn serialize<S: serde::Serializer>(&self, _: S) -> std::result::Result<S::Ok, S::Error> {
            Err(serde::ser::Error::custom("refused on purpose"))
        }
    }

    #[test]
    fn a_value_that_fails_to_serialize_is_a_typed_error() {
        let err = encode(&Unserializable, "the argument").unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Serialize);
        assert!(err.to_string().contains("Unserializable"), "{err}");
        let mut f = FrameBuf::new();
        f.push(&1u8, "x").unwrap();
        assert!(f.push(&Unserializable, "x").is_err());
    }

    #[test]
    fn bad_limits_are_refused() {
        assert_eq!(set_max_frame_size(0).unwrap_err().kind(), ErrorKind::InvalidInput);
        assert_eq!(set_max_frame_size(1 << 56).unwrap_err().kind(), ErrorKind::InvalidInput);
    }
}
