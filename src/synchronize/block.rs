//! The page of shared memory a synchronisation object lives in: a memfd
//! that every holder maps, and that travels to children as its fd (so
//! nothing is ever left in `/dev/shm`).

use std::sync::Arc;
use std::sync::atomic::Ordering;

use serde::{Deserializer, Serializer};

use crate::codec;
use crate::error::{Error, ErrorKind, Result};
use crate::sys::{self, AsFd, BorrowedFd, Mapping, OwnedFd};

/// Which object a block holds; checked when a block arrives in a child.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Lock = 1,
    RLock,
    Semaphore,
    Event,
    Condition,
    Barrier,
    Value,
    Array,
    AtomicValue,
}

impl Kind {
    fn magic(self) -> u64 {
        0x6d70_7379_6e63_0000 | self as u64
    }
}

/// Offset of the block's magic number; objects start at [`START`].
const OFF_MAGIC: usize = 0;
/// Where an object's own fields begin.
pub(crate) const START: usize = 64;

#[derive(Debug)]
pub(crate) struct Block {
    fd: OwnedFd,
    map: Mapping,
}

impl Block {
    /// A fresh zeroed block of `len` bytes, set up by `init` before it is
    /// marked as a `kind`.
    pub(crate) fn new(kind: Kind, len: usize, init: impl FnOnce(&Mapping) -> Result<()>) -> Result<Arc<Block>> {
        let what = format!("creating a shared {kind:?}");
        let fd = sys::memfd(&format!("multiproc-{kind:?}"), len as u64).map_err(|e| Error::io(&what, e))?;
        let map = Mapping::new(fd.as_fd(), 0, len).map_err(|e| Error::io(&what, e))?;
        init(&map)?;
        map.u64_at(OFF_MAGIC).store(kind.magic(), Ordering::Release);
        Ok(Arc::new(Block { fd, map }))
    }

    /// Maps a block that arrived from another process, checking its kind.
    pub(crate) fn attach(fd: OwnedFd, kind: Kind) -> Result<Arc<Block>> {
        let what = format!("mapping a shared {kind:?} from another process");
        let len = sys::file_len(fd.as_fd()).map_err(|e| Error::io(&what, e))? as usize;
        if len < START {
            return Err(not_a(kind));
        }
        let map = Mapping::new(fd.as_fd(), 0, len).map_err(|e| Error::io(&what, e))?;
        if map.u64_at(OFF_MAGIC).load(Ordering::Acquire) != kind.magic() {
            return Err(not_a(kind));
        }
        Ok(Arc::new(Block { fd, map }))
    }

    pub(crate) fn map(&self) -> &Mapping {
        &self.map
    }

    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

fn not_a(kind: Kind) -> Error {
    Error::new(
        ErrorKind::Protocol,
        format!("a {kind:?} arrived whose shared memory is not a multiproc {kind:?}; both ends must be the same build"),
    )
}

/// Writes a block as its fd (for the serde impls of the objects).
pub(crate) fn serialize<S: Serializer>(
    block: &Block,
    serializer: S,
    what: &str,
) -> std::result::Result<S::Ok, S::Error> {
    codec::serialize_fd(block.fd(), serializer, what)
}

/// Reads a block written by [`serialize`], checking that it holds a `kind`.
pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
    deserializer: D,
    kind: Kind,
    what: &str,
) -> std::result::Result<Arc<Block>, D::Error> {
    let fd = codec::deserialize_fd(deserializer, what)?;
    Block::attach(fd, kind).map_err(serde::de::Error::custom)
}

/// Implements `Serialize`/`Deserialize` for a type built from one block by
/// `$from` and holding it at `self.$($field).+`.
macro_rules! block_serde {
    ($ty:ident $(<$g:ident $(: $b:path)?>)?, $kind:expr, $what:literal, |$b2:ident| $from:expr, |$s:ident| $get:expr) => {
        impl$(<$g $(: $b)?>)? serde::Serialize for $ty$(<$g>)? {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
                let $s = self;
                $crate::synchronize::block::serialize($get, serializer, $what)
            }
        }
        impl<'de $(, $g $(: $b)?)?> serde::Deserialize<'de> for $ty$(<$g>)? {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
                let $b2 = $crate::synchronize::block::deserialize(deserializer, $kind, $what)?;
                $from
            }
        }
    };
}
pub(crate) use block_serde;
