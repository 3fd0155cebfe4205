//! Handles inside values: a `Queue` or a `Connection` in a process's
//! argument serializes as an index into a side table of fds, and the fds
//! travel beside the bytes (`SCM_RIGHTS`, or inheritance under fork).
//!
//! Every handle type does it the same way: it implements [`FdHandle`] (its
//! name, for errors) and serializes each of its fds as an [`FdOut`], which,
//! while [`encode_with_fds`] runs, duplicates the fd into the table and
//! writes its index; it deserializes them as [`FdIn`]s, which, while
//! [`with_incoming`] runs, take the fds back by index. Outside both, a
//! handle refuses to serialize with a message that says where handles can
//! go.

use std::cell::RefCell;
use std::marker::PhantomData;

use serde::de::Error as _;
use serde::ser::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{Error, Result};
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

/// A type whose values travel with fds (a handle): it names itself in the
/// errors of its fds' slots.
pub(crate) trait FdHandle {
    /// The handle as errors name it: "a Queue".
    const WHAT: &'static str;
}

/// One of a handle's fds on its way out: serializes as its slot in the
/// side table of the value being encoded (a duplicate of the fd goes in
/// the slot).
pub(crate) struct FdOut<'a, H: ?Sized> {
    fd: BorrowedFd<'a>,
    _handle: PhantomData<fn(&H)>,
}

impl<'a, H: FdHandle + ?Sized> FdOut<'a, H> {
    pub(crate) fn new(fd: BorrowedFd<'a>) -> Self {
        FdOut { fd, _handle: PhantomData }
    }
}

impl<H: FdHandle + ?Sized> Serialize for FdOut<'_, H> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let what = H::WHAT;
        let index = OUTGOING.with(|o| -> Result<Option<u32>, S::Error> {
            let mut table = o.borrow_mut();
            let Some(table) = table.as_mut() else {
                return Ok(None);
            };
            let dup = rustix::io::fcntl_dupfd_cloexec(self.fd, 0)
                .map_err(|e| S::Error::custom(format!("could not duplicate the fd of {what}: {e}")))?;
            table.0.push(dup);
            table.1.push(self.fd.as_raw_fd());
            Ok(Some((table.0.len() - 1) as u32))
        })?;
        match index {
            Some(index) => index.serialize(serializer),
            None => Err(S::Error::custom(format!(
                "{what} can travel only inside the argument of Process::new or of a pool initializer, where its \
                 file descriptors go along; pass it there (or share it by inheritance), not through a pool task or \
                 a message"
            ))),
        }
    }
}

/// One of a handle's fds on its way in: taken from the side table by the
/// slot that [`FdOut`] wrote.
pub(crate) struct FdIn<H: ?Sized> {
    fd: OwnedFd,
    _handle: PhantomData<fn(&H)>,
}

impl<H: ?Sized> FdIn<H> {
    pub(crate) fn into_fd(self) -> OwnedFd {
        self.fd
    }
}

impl<'de, H: FdHandle + ?Sized> Deserialize<'de> for FdIn<H> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let what = H::WHAT;
        let index = u32::deserialize(deserializer)? as usize;
        let fd = INCOMING.with(|i| {
            let mut table = i.borrow_mut();
            let table = table.as_mut().ok_or_else(|| {
                D::Error::custom(format!("{what} arrived without its file descriptors (not as a process argument)"))
            })?;
            table.get_mut(index).and_then(Option::take).ok_or_else(|| {
                D::Error::custom(format!(
                    "{what} refers to file descriptor slot {index}, which is missing or was taken"
                ))
            })
        })?;
        Ok(FdIn { fd, _handle: PhantomData })
    }
}

impl FdHandle for Encoded {
    const WHAT: &'static str = "an encoded argument with handles";
}

/// An [`Encoded`] nested in another value (a pool initializer's argument
/// inside a worker's configuration) keeps its fds: they join the outer
/// table.
impl Serialize for Encoded {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let fds: Vec<FdOut<'_, Self>> = self.fds.iter().map(|fd| FdOut::new(fd.as_fd())).collect();
        (super::byte_string::Ref(&self.bytes), fds).serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Encoded {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let (bytes, fds): (super::byte_string::Owned, Vec<FdIn<Self>>) = Deserialize::deserialize(deserializer)?;
        Ok(Encoded { bytes: bytes.0, fds: fds.into_iter().map(FdIn::into_fd).collect(), originals: Vec::new() })
    }
}

/// Declares `$name`, an owned fd that travels as a handle (its fd goes
/// along, as the other handles' do): for fds that a parent hands its
/// children inside a configuration. `$what` names it in errors.
macro_rules! fd_newtype {
    ($(#[$meta:meta])* $name:ident, $what:literal) => {
        $(#[$meta])*
        #[derive(Debug)]
        pub(crate) struct $name(pub(crate) $crate::sys::OwnedFd);

        impl $crate::codec::FdHandle for $name {
            const WHAT: &'static str = $what;
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
                serde::Serialize::serialize(
                    &$crate::codec::FdOut::<Self>::new($crate::sys::AsFd::as_fd(&self.0)),
                    serializer,
                )
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
                let handle = <$crate::codec::FdIn<Self> as serde::Deserialize>::deserialize(deserializer)?;
                Ok($name(handle.into_fd()))
            }
        }
    };
}
pub(crate) use fd_newtype;
