//! `SharedMemory`'s zero-copy accessors (Python's `buf`), which hand out
//! plain slices of the mapping.
//!
//! `unsafe_code` is allowed in this file: the two methods are `unsafe fn`s
//! (their callers promise that nobody writes the bytes while a slice
//! lives), and each body passes that promise on to
//! [`Mapping::as_slice`](crate::sys::Mapping::as_slice) or
//! [`Mapping::as_mut_slice`](crate::sys::Mapping::as_mut_slice).

#![allow(unsafe_code)]

use super::SharedMemory;

impl SharedMemory {
    /// The segment's bytes as a plain slice (Python's `buf`, read side),
    /// with no copy.
    ///
    /// Prefer [`read_at`](SharedMemory::read_at), which is safe: a
    /// plain slice promises the compiler that its bytes do not change while
    /// it is borrowed, and shared memory cannot keep that promise by
    /// itself.
    ///
    /// # Safety
    ///
    /// While the slice lives, nobody may write these bytes: no other
    /// handle on the segment ([`try_clone`](SharedMemory::try_clone),
    /// a second [`open`](SharedMemory::open), a handle a child
    /// received), in this process or in any other, no
    /// [`write_at`](SharedMemory::write_at) or atomic store, from
    /// any thread. Holding a [`Lock`](crate::Lock) that every writer takes
    /// first is the usual way to make sure; a program whose other processes
    /// only read, or have ended, is another.
    ///
    /// # Examples
    ///
    /// ```
    /// let shm = multiproc::SharedMemory::anonymous(3)?;
    /// shm.write_at(1, &[7])?;
    /// // SAFETY: no other handle on this segment exists, and nothing in
    /// // this thread writes while `bytes` is borrowed.
    /// let bytes = unsafe { shm.buf() };
    /// assert_eq!(bytes, [0, 7, 0]);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub unsafe fn buf(&self) -> &[u8] {
        // SAFETY: the caller promises that nobody writes the bytes while
        // the slice lives, which is all `Mapping::as_slice` asks.
        unsafe { self.map.as_slice() }
    }

    /// The segment's bytes as a plain writable slice (Python's `buf`,
    /// write side), with no copy.
    ///
    /// Prefer [`write_at`](SharedMemory::write_at), which is safe.
    /// `&mut self` makes this the only access through this handle, but
    /// other handles on the same segment, here or in other processes, are
    /// not borrowed by it.
    ///
    /// # Safety
    ///
    /// While the slice lives, nobody else may read or write these bytes: no
    /// other handle on the segment, in this process or in any other, from
    /// any thread. Holding a [`Lock`](crate::Lock) that every other user of
    /// the segment takes first is the usual way to make sure.
    ///
    /// # Examples
    ///
    /// ```
    /// let mut shm = multiproc::SharedMemory::anonymous(8)?;
    /// // SAFETY: no other handle on this segment exists yet.
    /// let bytes = unsafe { shm.buf_mut() };
    /// bytes.copy_from_slice(&7u64.to_le_bytes());
    /// let mut back = [0; 8];
    /// shm.read_at(0, &mut back)?;
    /// assert_eq!(u64::from_le_bytes(back), 7);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub unsafe fn buf_mut(&mut self) -> &mut [u8] {
        // SAFETY: the caller promises that nobody else reads or writes the
        // bytes while the slice lives, which is all `Mapping::as_mut_slice`
        // asks.
        unsafe { self.map.as_mut_slice() }
    }
}
