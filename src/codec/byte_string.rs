//! Bytes that serialize as one byte string, not one element per byte (the
//! way serde writes a `Vec<u8>` otherwise): for encoded values carried
//! inside other values. Use `#[serde(with = "crate::codec::byte_string")]`
//! on a `Vec<u8>` field, or the two wrappers.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Borrowed bytes, serialized as a byte string.
pub(crate) struct Ref<'a>(pub(crate) &'a [u8]);

impl Serialize for Ref<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(self.0)
    }
}

/// Owned bytes, deserialized from a byte string.
pub(crate) struct Owned(pub(crate) Vec<u8>);

impl<'de> Deserialize<'de> for Owned {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Owned;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a byte string")
            }
            fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Owned, E> {
                Ok(Owned(v.to_vec()))
            }
            fn visit_byte_buf<E: serde::de::Error>(self, v: Vec<u8>) -> Result<Owned, E> {
                Ok(Owned(v))
            }
        }
        deserializer.deserialize_byte_buf(V)
    }
}

/// For `#[serde(with = ...)]` on a `Vec<u8>` field.
pub(crate) fn serialize<S: Serializer>(bytes: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
    Ref(bytes).serialize(serializer)
}

/// For `#[serde(with = ...)]` on a `Vec<u8>` field.
pub(crate) fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<u8>, D::Error> {
    Ok(Owned::deserialize(deserializer)?.0)
}
