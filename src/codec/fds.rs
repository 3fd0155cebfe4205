//! Handles inside values: a `Queue` or a `Connection` in a process's
//! argument serializes as an index into a side table of fds, and the fds
//! travel beside the bytes (`SCM_RIGHTS`, or inheritance under fork).
//!
//! While [`encode_with_fds`] runs, a handle's `Serialize` impl calls
//! [`serialize_fd`], which duplicates the fd into the table and writes its
//! index. While [`with_incoming`] runs, [`deserialize_fd`] takes the fd back
//! by index. Outside both, a handle refuses to serialize with a message
//! that says where handles can go.

use std::cell::RefCell;

use serde::de::Error as _;
use serde::ser::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{Error, ErrorKind, Result};
use crate::sys::{self, AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};

thread_local! {
    /// The duplicates, and the fd numbers they were made from.
    static OUTGOING: RefCell<Option<(Vec<OwnedFd>, Vec<RawFd>)>> = const { RefCell::new(None) };
    static INCOMING: RefCell<Option<Vec<Option<OwnedFd>>>> = const { RefCell::new(None) };
}

/// A value's bytes, and the fds of the handles inside it.
#[derive(Debug, Default)]
pub(crate) struct Encoded {
    pub(crate) bytes: Vec<u8>,
    pub(crate) fds: Vec<OwnedFd>,
    /// The numbers of the fds that `fds` duplicate, in this process: a
    /// fork child, which inherits them too, closes them so that it holds
    /// one copy of each handle, as a Python fork child does.
    pub(crate) originals: Vec<RawFd>,
}

impl Encoded {
    /// In a fork child: takes over the inherited `fds` without duplicating
    /// them, and closes the parent's `originals`, so that the child holds
    /// one copy of each handle, as a Python fork child does.
    pub(crate) fn take_in_fork_child(&self) -> Vec<OwnedFd> {
        let keep: Vec<RawFd> = self.fds.iter().map(AsRawFd::as_raw_fd).collect();
        let mut closed: Vec<RawFd> = Vec::new();
        for &fd in &self.originals {
            if !keep.contains(&fd) && !closed.contains(&fd) {
                sys::close_raw(fd);
                closed.push(fd);
            }
        }
        keep.into_iter().map(sys::take_inherited).collect()
    }

    /// A copy with duplicated fds.
    pub(crate) fn try_clone(&self) -> Result<Encoded> {
        let fds = self
            .fds
            .iter()
            .map(|fd| fd.try_clone().map_err(|e| Error::io("duplicating the fds of an argument's handles", e)))
            .collect::<Result<_>>()?;
        // A fork child holding the copy inherits this one's fds too.
        let originals = self.originals.iter().copied().chain(self.fds.iter().map(AsRawFd::as_raw_fd)).collect();
        Ok(Encoded { bytes: self.bytes.clone(), fds, originals })
    }
}

/// Serializes `value` with postcard, collecting the fds of the handles in
/// it (duplicated, so that the result owns them).
pub(crate) fn encode_with_fds<T: Serialize + ?Sized>(value: &T, what: &str) -> Result<Encoded> {
    /// Puts the outer table back, also when serialization panics.
    struct Restore(Option<Option<(Vec<OwnedFd>, Vec<RawFd>)>>);
    impl Drop for Restore {
        fn drop(&mut self) {
            if let Some(outer) = self.0.take() {
                OUTGOING.with(|o| *o.borrow_mut() = outer);
            }
        }
    }
    let mut restore = Restore(Some(OUTGOING.with(|o| o.borrow_mut().replace((Vec::new(), Vec::new())))));
    let bytes = super::encode(value, what);
    let outer = restore.0.take().expect("set above");
    let (fds, originals) = OUTGOING.with(|o| std::mem::replace(&mut *o.borrow_mut(), outer)).unwrap_or_default();
    let bytes = bytes?;
    if fds.len() > sys::MAX_FDS {
        return Err(Error::new(
            ErrorKind::InvalidInput,
            format!(
                "{what} holds {} handles (queues, connections); at most {} can travel to one process",
                fds.len(),
                sys::MAX_FDS
            ),
        ));
    }
    Ok(Encoded { bytes, fds, originals })
}

/// Runs `f` with `fds` as the side table that handles deserialize from.
pub(crate) fn with_incoming<R>(fds: Vec<OwnedFd>, f: impl FnOnce() -> R) -> R {
    /// Puts the outer table back, also when `f` panics.
    struct Restore(Option<Vec<Option<OwnedFd>>>);
    impl Drop for Restore {
        fn drop(&mut self) {
            let outer = self.0.take();
            INCOMING.with(|i| *i.borrow_mut() = outer);
        }
    }
    let _restore = Restore(INCOMING.with(|i| i.borrow_mut().replace(fds.into_iter().map(Some).collect())));
    f()
}

/// Serializes a handle's fd as an index into the side table. `what` names
/// the handle type for the error outside [`encode_with_fds`].
pub(crate) fn serialize_fd<S: Serializer>(fd: BorrowedFd<'_>, serializer: S, what: &str) -> Result<S::Ok, S::Error> {
    let index = OUTGOING.with(|o| -> Result<Option<u32>, S::Error> {
        let mut table = o.borrow_mut();
        let Some(table) = table.as_mut() else {
            return Ok(None);
        };
        let dup = rustix::io::fcntl_dupfd_cloexec(fd, 0)
            .map_err(|e| S::Error::custom(format!("could not duplicate the fd of {what}: {e}")))?;
        table.0.push(dup);
        table.1.push(fd.as_raw_fd());
        Ok(Some((table.0.len() - 1) as u32))
    })?;
    match index {
        Some(index) => index.serialize(serializer),
        None => Err(S::Error::custom(format!(
            "{what} can travel only inside the argument of Process::new or of a pool initializer, where its file \
             descriptors go along; pass it there (or share it by inheritance), not through a pool task or a message"
        ))),
    }
}

/// Takes a handle's fd back from the side table.
pub(crate) fn deserialize_fd<'de, D: Deserializer<'de>>(deserializer: D, what: &str) -> Result<OwnedFd, D::Error> {
    let index = u32::deserialize(deserializer)? as usize;
    INCOMING.with(|i| {
        let mut table = i.borrow_mut();
        let table = table.as_mut().ok_or_else(|| {
            D::Error::custom(format!("{what} arrived without its file descriptors (not as a process argument)"))
        })?;
        table.get_mut(index).and_then(Option::take).ok_or_else(|| {
            D::Error::custom(format!("{what} refers to file descriptor slot {index}, which is missing or was taken"))
        })
    })
}

/// An [`Encoded`] nested in another value (a pool initializer's argument
/// inside a worker's configuration) keeps its fds: they join the outer
/// table.
impl Serialize for Encoded {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeTuple;
        struct Fds<'a>(&'a [OwnedFd]);
        impl Serialize for Fds<'_> {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                use serde::ser::SerializeSeq;
                let mut seq = serializer.serialize_seq(Some(self.0.len()))?;
                for fd in self.0 {
                    seq.serialize_element(&Slot(fd.as_fd()))?;
                }
                seq.end()
            }
        }
        struct Slot<'a>(BorrowedFd<'a>);
        impl Serialize for Slot<'_> {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serialize_fd(self.0, serializer, "an encoded argument with handles")
            }
        }
        let mut t = serializer.serialize_tuple(2)?;
        t.serialize_element(&BytesRef(&self.bytes))?;
        t.serialize_element(&Fds(&self.fds))?;
        t.end()
    }
}

impl<'de> Deserialize<'de> for Encoded {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Slot(OwnedFd);
        impl<'de> Deserialize<'de> for Slot {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                deserialize_fd(deserializer, "an encoded argument with handles").map(Slot)
            }
        }
        let (bytes, fds): (Bytes, Vec<Slot>) = Deserialize::deserialize(deserializer)?;
        Ok(Encoded { bytes: bytes.0, fds: fds.into_iter().map(|s| s.0).collect(), originals: Vec::new() })
    }
}

/// Bytes that serialize as one byte string (not one element per byte).
struct BytesRef<'a>(&'a [u8]);

impl Serialize for BytesRef<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(self.0)
    }
}

struct Bytes(Vec<u8>);

impl<'de> Deserialize<'de> for Bytes {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Bytes;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a byte string")
            }
            fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Bytes, E> {
                Ok(Bytes(v.to_vec()))
            }
            fn visit_byte_buf<E: serde::de::Error>(self, v: Vec<u8>) -> Result<Bytes, E> {
                Ok(Bytes(v))
            }
        }
        deserializer.deserialize_byte_buf(V)
    }
}
