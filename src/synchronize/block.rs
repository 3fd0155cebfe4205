//! The page of shared memory a synchronisation object lives in: a memfd
//! that every holder maps, and that travels to children as its fd (so
//! nothing is ever left in `/dev/shm`).

use std::sync::Arc;
use std::sync::atomic::Ordering;

use crate::codec::{FdHandle, FdIn, FdOut};
use crate::error::{Error, ErrorKind, Result};
use crate::sys::{self, AsFd, GuardedMapping, OwnedFd};

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
    /// A pool's token budget (`crate::pool::tokens`).
    Tokens,
}

impl Kind {
    /// Whether a lock sits at [`START`].
    fn has_lock(self) -> bool {
        matches!(self, Kind::Lock | Kind::RLock | Kind::Value | Kind::Array | Kind::Barrier)
    }

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
    /// Always `Some` until `drop`, which may leak it (see there).
    map: Option<GuardedMapping>,
    kind: Kind,
    /// The memfd's device and inode: the same object through any handle.
    id: (u64, u64),
}

impl Drop for Block {
    /// Unmaps, unless a live thread of this process holds a lock inside
    /// (its guard was forgotten): glibc keeps a held robust mutex in the
    /// thread's list of them, and unmapping it would leave that list
    /// pointing at freed memory. The page is leaked instead.
    fn drop(&mut self) {
        let Some(map) = self.map.take() else { return };
        if self.kind.has_lock() && map.mutex_at(START).owner_tid().is_some_and(sys::is_own_thread) {
            std::mem::forget(map);
        }
    }
}

impl Block {
    /// A fresh zeroed block of `len` bytes, set up by `init` before it is
    /// marked as a `kind`.
    pub(crate) fn new(kind: Kind, len: usize, init: impl FnOnce(&GuardedMapping) -> Result<()>) -> Result<Arc<Block>> {
        let what = format!("creating a shared {kind:?}");
        let fd = sys::memfd(&format!("multiproc-{kind:?}"), len as u64).map_err(|e| Error::io(&what, e))?;
        let map = GuardedMapping::new(fd.as_fd(), 0, len).map_err(|e| Error::io(&what, e))?;
        init(&map)?;
        map.u64_at(OFF_MAGIC).store(kind.magic(), Ordering::Release);
        Block::finish(fd, map, kind)
    }

    /// Maps a block that arrived from another process, checking its kind.
    pub(crate) fn attach(fd: OwnedFd, kind: Kind) -> Result<Arc<Block>> {
        let what = format!("mapping a shared {kind:?} from another process");
        let len = sys::file_len(fd.as_fd()).map_err(|e| Error::io(&what, e))? as usize;
        if len < START {
            return Err(not_a(kind));
        }
        let map = GuardedMapping::new(fd.as_fd(), 0, len).map_err(|e| Error::io(&what, e))?;
        if map.u64_at(OFF_MAGIC).load(Ordering::Acquire) != kind.magic() {
            return Err(not_a(kind));
        }
        Block::finish(fd, map, kind)
    }

    fn finish(fd: OwnedFd, map: GuardedMapping, kind: Kind) -> Result<Arc<Block>> {
        let (id, _) = sys::file_id(fd.as_fd()).map_err(|e| Error::io("identifying shared memory", e))?;
        Ok(Arc::new(Block { fd, map: Some(map), kind, id: (id.dev, id.ino) }))
    }

    pub(crate) fn map(&self) -> &GuardedMapping {
        self.map.as_ref().expect("mapped until dropped")
    }

    /// The shared object's identity, the same through every handle.
    pub(crate) fn id(&self) -> (u64, u64) {
        self.id
    }

    /// The block as one of the fds of handle `H`, on its way out.
    pub(crate) fn fd_out<H: FdHandle + ?Sized>(&self) -> FdOut<'_, H> {
        FdOut::new(self.fd.as_fd())
    }

    /// Maps the block of handle `H` that arrived as `fd`, checking that it
    /// holds a `kind`.
    pub(crate) fn from_fd_in<H: ?Sized, E: serde::de::Error>(
        fd: FdIn<H>,
        kind: Kind,
    ) -> std::result::Result<Arc<Block>, E> {
        Block::attach(fd.into_fd(), kind).map_err(E::custom)
    }
}

fn not_a(kind: Kind) -> Error {
    Error::new(
        ErrorKind::Protocol,
        format!("a {kind:?} arrived whose shared memory is not a multiproc {kind:?}; both ends must be the same build"),
    )
}

/// Implements `FdHandle`, `Serialize` and `Deserialize` for a type built
/// from one block by `$from` and holding it at `$get`: it travels as that
/// block's fd.
macro_rules! block_serde {
    ($ty:ident $(<$g:ident $(: $b:path)?>)?, $kind:expr, $what:literal, |$b2:ident| $from:expr, |$s:ident| $get:expr) => {
        impl$(<$g $(: $b)?>)? $crate::codec::FdHandle for $ty$(<$g>)? {
            const WHAT: &'static str = $what;
        }
        impl$(<$g $(: $b)?>)? serde::Serialize for $ty$(<$g>)? {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
                let $s = self;
                serde::Serialize::serialize(&$crate::synchronize::block::Block::fd_out::<Self>($get), serializer)
            }
        }
        impl<'de $(, $g $(: $b)?)?> serde::Deserialize<'de> for $ty$(<$g>)? {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
                let fd = <$crate::codec::FdIn<Self> as serde::Deserialize>::deserialize(deserializer)?;
                let $b2 = $crate::synchronize::block::Block::from_fd_in(fd, $kind)?;
                $from
            }
        }
    };
}
pub(crate) use block_serde;
